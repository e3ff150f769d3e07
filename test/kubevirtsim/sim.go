// Package kubevirtsim is a small KubeVirt stand-in for the test cluster. It behaves as
// KubeVirt does where sitefail depends on it: VMs become VMIs and virt-launcher pods
// that the real scheduler places and kwok runs; LiveUpdate copies a VM's nodeSelector
// into its running VMI without moving it; migrations start a target pod that honours
// the VMI's own selector; a VMI is recreated only after the old one is gone; and the
// subresources.kubevirt.io endpoints refuse what KubeVirt refuses.
package kubevirtsim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"reflect"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

const (
	finalizer = "sim.kubevirt.io/launcher-cleanup"
	// NotMigratableAnnotation on a VM template's metadata makes its VMIs report
	// LiveMigratable=False with the annotation's value as the reason (KubeVirt derives it
	// from volumes and interfaces; the simulator has neither).
	NotMigratableAnnotation = "sim.kubevirt.io/not-migratable"
	// desiredAnnotation records the start/stop requests of Manual and RerunOnFailure VMs.
	desiredAnnotation = "sim.kubevirt.io/desired"
	migrationJobLabel = "kubevirt.io/migrationJobUID"
)

// Config tunes the simulator.
type Config struct {
	// BootDelay is how long a VMI takes from a Running pod to Running and Ready.
	BootDelay time.Duration
	// MigrationDelay is how long a migration runs once its target pod is Running.
	MigrationDelay time.Duration
	// Stage selects vmRolloutStrategy Stage; the default is LiveUpdate.
	Stage bool
}

// Counts are what a VM went through, for tests.
type Counts struct {
	// Starts counts VMIs created for the VM (the first start included).
	Starts int
	// Migrations counts succeeded migrations.
	Migrations int
	// Restarts counts accepted restart requests.
	Restarts int
}

// Sim is a running simulator.
type Sim struct {
	cfg  Config
	kube kubernetes.Interface
	dyn  dynamic.Interface

	vms, vmis, migs cache.SharedIndexInformer
	pods            cache.SharedIndexInformer
	queue           workqueue.TypedRateLimitingInterface[string]

	mu     sync.Mutex
	counts map[string]*Counts
}

// New builds a simulator; Run starts it.
func New(kube kubernetes.Interface, dyn dynamic.Interface, cfg Config) *Sim {
	s := &Sim{cfg: cfg, kube: kube, dyn: dyn, counts: map[string]*Counts{},
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, 5*time.Second))}
	df := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	s.vms = df.ForResource(kubevirt.VMs).Informer()
	s.vmis = df.ForResource(kubevirt.VMIs).Informer()
	s.migs = df.ForResource(kubevirt.Migrations).Informer()
	kf := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = kubevirt.LauncherSelector
	}))
	s.pods = kf.Core().V1().Pods().Informer()
	_ = s.pods.AddIndexers(cache.Indexers{"vmi": func(obj any) ([]string, error) {
		p := obj.(*corev1.Pod)
		return []string{p.Namespace + "/" + p.Annotations[kubevirtv1.DomainAnnotation]}, nil
	}})
	_ = s.migs.AddIndexers(cache.Indexers{"vmi": func(obj any) ([]string, error) {
		u := obj.(*unstructured.Unstructured)
		name, _, _ := unstructured.NestedString(u.Object, "spec", "vmiName")
		return []string{u.GetNamespace() + "/" + name}, nil
	}})
	enqueue := func(kind string, keyOf func(any) string) cache.ResourceEventHandler {
		add := func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if k := keyOf(obj); k != "" {
				s.queue.Add(kind + "|" + k)
			}
		}
		return cache.ResourceEventHandlerFuncs{AddFunc: add, UpdateFunc: func(_, n any) { add(n) }, DeleteFunc: add}
	}
	metaKey := func(obj any) string {
		m, err := meta(obj)
		if err != nil {
			return ""
		}
		return m.GetNamespace() + "/" + m.GetName()
	}
	_, _ = s.vms.AddEventHandler(enqueue("vm", metaKey))
	_, _ = s.vmis.AddEventHandler(enqueue("vmi", metaKey))
	_, _ = s.vmis.AddEventHandler(enqueue("vm", metaKey)) // a VMI's VM has the same name
	_, _ = s.migs.AddEventHandler(enqueue("mig", metaKey))
	_, _ = s.pods.AddEventHandler(enqueue("vmi", func(obj any) string {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return ""
		}
		return p.Namespace + "/" + p.Annotations[kubevirtv1.DomainAnnotation]
	}))
	_, _ = s.pods.AddEventHandler(enqueue("migpod", func(obj any) string {
		p, ok := obj.(*corev1.Pod)
		if !ok || p.Labels[migrationJobLabel] == "" {
			return ""
		}
		return p.Namespace + "/" + p.Labels[migrationJobLabel]
	}))
	return s
}

func meta(obj any) (metav1.Object, error) {
	switch o := obj.(type) {
	case metav1.Object:
		return o, nil
	}
	return nil, fmt.Errorf("no metadata in %T", obj)
}

// Run starts the informers and workers; it returns once caches are synced.
func (s *Sim) Run(ctx context.Context, workers int) error {
	for _, inf := range []cache.SharedIndexInformer{s.vms, s.vmis, s.migs, s.pods} {
		go inf.Run(ctx.Done())
	}
	if !cache.WaitForCacheSync(ctx.Done(), s.vms.HasSynced, s.vmis.HasSynced, s.migs.HasSynced, s.pods.HasSynced) {
		return fmt.Errorf("simulator caches did not sync")
	}
	for i := 0; i < workers; i++ {
		go func() {
			for s.next(ctx) {
			}
		}()
	}
	go func() {
		<-ctx.Done()
		s.queue.ShutDown()
	}()
	return nil
}

func (s *Sim) next(ctx context.Context) bool {
	item, quit := s.queue.Get()
	if quit {
		return false
	}
	defer s.queue.Done(item)
	kind, key := splitKey(item)
	var after time.Duration
	var err error
	switch kind {
	case "vm":
		after, err = s.syncVM(ctx, key)
	case "vmi":
		after, err = s.syncVMI(ctx, key)
	case "mig":
		after, err = s.syncMigration(ctx, key)
	case "migpod":
		s.enqueueMigrationByUID(key)
	}
	switch {
	case err != nil:
		s.queue.AddRateLimited(item)
	case after > 0:
		s.queue.Forget(item)
		s.queue.AddAfter(item, after)
	default:
		s.queue.Forget(item)
	}
	return true
}

func splitKey(item string) (string, string) {
	for i := 0; i < len(item); i++ {
		if item[i] == '|' {
			return item[:i], item[i+1:]
		}
	}
	return item, ""
}

// Counts returns what the VM went through so far.
func (s *Sim) Counts(ns, name string) Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.counts[ns+"/"+name]; c != nil {
		return *c
	}
	return Counts{}
}

func (s *Sim) count(key string, f func(*Counts)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counts[key]
	if c == nil {
		c = &Counts{}
		s.counts[key] = c
	}
	f(c)
}

func (s *Sim) getVM(key string) *kubevirtv1.VirtualMachine {
	obj, ok, _ := s.vms.GetStore().GetByKey(key)
	if !ok {
		return nil
	}
	vm, err := kubevirt.ToVM(obj.(*unstructured.Unstructured))
	if err != nil {
		return nil
	}
	return vm
}

func (s *Sim) getVMI(key string) *kubevirtv1.VirtualMachineInstance {
	obj, ok, _ := s.vmis.GetStore().GetByKey(key)
	if !ok {
		return nil
	}
	vmi, err := kubevirt.ToVMI(obj.(*unstructured.Unstructured))
	if err != nil {
		return nil
	}
	return vmi
}

func (s *Sim) podsOf(vmi *kubevirtv1.VirtualMachineInstance) []*corev1.Pod {
	objs, _ := s.pods.GetIndexer().ByIndex("vmi", vmi.Namespace+"/"+vmi.Name)
	var out []*corev1.Pod
	for _, o := range objs {
		p := o.(*corev1.Pod)
		if p.Labels[kubevirt.CreatedByLabel] == string(vmi.UID) {
			out = append(out, p)
		}
	}
	return out
}

func toUnstructured(obj runtime.Object, gvk schema.GroupVersionKind) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetGroupVersionKind(gvk)
	return u, nil
}

var (
	vmGVK   = kubevirtv1.SchemeGroupVersion.WithKind("VirtualMachine")
	vmiGVK  = kubevirtv1.SchemeGroupVersion.WithKind("VirtualMachineInstance")
	migGVK  = kubevirtv1.SchemeGroupVersion.WithKind("VirtualMachineInstanceMigration")
	trueVal = true
)

func randSuffix() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:5]
}

// desiredRunning decides whether a VM without an instance should get one.
func desiredRunning(vm *kubevirtv1.VirtualMachine) bool {
	switch kubevirt.RunStrategy(vm) {
	case kubevirtv1.RunStrategyAlways:
		return true
	case kubevirtv1.RunStrategyRerunOnFailure:
		return vm.Annotations[desiredAnnotation] != "stopped"
	case kubevirtv1.RunStrategyManual, kubevirtv1.RunStrategyOnce:
		return vm.Annotations[desiredAnnotation] == "running"
	}
	return false
}

func (s *Sim) syncVM(ctx context.Context, key string) (time.Duration, error) {
	vm := s.getVM(key)
	if vm == nil || vm.DeletionTimestamp != nil {
		return 0, nil
	}
	vmi := s.getVMI(key)
	strategy := kubevirt.RunStrategy(vm)
	if vmi != nil && vmi.DeletionTimestamp == nil {
		final := vmi.Status.Phase == kubevirtv1.Succeeded || vmi.Status.Phase == kubevirtv1.Failed
		switch {
		case final && (strategy == kubevirtv1.RunStrategyAlways || strategy == kubevirtv1.RunStrategyHalted ||
			(strategy == kubevirtv1.RunStrategyRerunOnFailure && vmi.Status.Phase == kubevirtv1.Failed)):
			// The old instance must be gone before a new one is created.
			if err := s.deleteVMI(ctx, vmi); err != nil {
				return 0, err
			}
		case !final && (strategy == kubevirtv1.RunStrategyHalted || !desiredRunning(vm) && strategy != kubevirtv1.RunStrategyOnce):
			if err := s.deleteVMI(ctx, vmi); err != nil {
				return 0, err
			}
		case !final && !s.cfg.Stage:
			if err := s.liveUpdate(ctx, vm, vmi); err != nil {
				return 0, err
			}
		}
	}
	if vmi == nil && desiredRunning(vm) && vm.Spec.Template != nil {
		if err := s.createVMI(ctx, vm); err != nil {
			return 0, err
		}
		if strategy == kubevirtv1.RunStrategyOnce {
			// Once runs a single time.
			if err := s.setDesired(ctx, vm, "done"); err != nil {
				return 0, err
			}
		}
	}
	return 0, s.updateVMStatus(ctx, vm, vmi)
}

// liveUpdate copies nodeSelector, affinity and tolerations from the template into the
// running VMI, as KubeVirt's LiveUpdate rollout does. It does not migrate anything, and
// it refuses while a migration runs or once RestartRequired is set.
func (s *Sim) liveUpdate(ctx context.Context, vm *kubevirtv1.VirtualMachine, vmi *kubevirtv1.VirtualMachineInstance) error {
	tpl := vm.Spec.Template.Spec
	if reflect.DeepEqual(tpl.NodeSelector, vmi.Spec.NodeSelector) && reflect.DeepEqual(tpl.Affinity, vmi.Spec.Affinity) && reflect.DeepEqual(tpl.Tolerations, vmi.Spec.Tolerations) {
		return nil
	}
	if kubevirt.VMCondition(vm, kubevirtv1.VirtualMachineRestartRequired) {
		return nil
	}
	if ms := vmi.Status.MigrationState; ms != nil && !ms.Completed && !ms.Failed {
		s.queue.AddAfter("vm|"+vm.Namespace+"/"+vm.Name, time.Second)
		return nil
	}
	vmi.Spec.NodeSelector, vmi.Spec.Affinity, vmi.Spec.Tolerations = tpl.NodeSelector, tpl.Affinity, tpl.Tolerations
	return s.updateVMI(ctx, vmi)
}

func (s *Sim) setDesired(ctx context.Context, vm *kubevirtv1.VirtualMachine, v string) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, desiredAnnotation, v)
	_, err := s.dyn.Resource(kubevirt.VMs).Namespace(vm.Namespace).Patch(ctx, vm.Name, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{})
	return err
}

func (s *Sim) createVMI(ctx context.Context, vm *kubevirtv1.VirtualMachine) error {
	tpl := vm.Spec.Template
	labels := map[string]string{"kubevirt.io/vm": vm.Name}
	for k, v := range tpl.ObjectMeta.Labels {
		labels[k] = v
	}
	vmi := &kubevirtv1.VirtualMachineInstance{
		ObjectMeta: metav1.ObjectMeta{Name: vm.Name, Namespace: vm.Namespace, Labels: labels, Annotations: tpl.ObjectMeta.Annotations,
			Finalizers:      []string{finalizer},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: vmGVK.GroupVersion().String(), Kind: "VirtualMachine", Name: vm.Name, UID: vm.UID, Controller: &trueVal, BlockOwnerDeletion: &trueVal}}},
		Spec: *tpl.Spec.DeepCopy(),
	}
	vmi.Status.Phase = kubevirtv1.Pending
	u, err := toUnstructured(vmi, vmiGVK)
	if err != nil {
		return err
	}
	_, err = s.dyn.Resource(kubevirt.VMIs).Namespace(vm.Namespace).Create(ctx, u, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err == nil {
		s.count(vm.Namespace+"/"+vm.Name, func(c *Counts) { c.Starts++ })
	}
	return err
}

func (s *Sim) deleteVMI(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance) error {
	err := s.dyn.Resource(kubevirt.VMIs).Namespace(vmi.Namespace).Delete(ctx, vmi.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &vmi.UID}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

func (s *Sim) updateVMI(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance) error {
	u, err := toUnstructured(vmi, vmiGVK)
	if err != nil {
		return err
	}
	_, err = s.dyn.Resource(kubevirt.VMIs).Namespace(vmi.Namespace).Update(ctx, u, metav1.UpdateOptions{})
	return err
}

func condStatus(b bool) corev1.ConditionStatus {
	if b {
		return corev1.ConditionTrue
	}
	return corev1.ConditionFalse
}

func (s *Sim) updateVMStatus(ctx context.Context, vm *kubevirtv1.VirtualMachine, vmi *kubevirtv1.VirtualMachineInstance) error {
	st := kubevirtv1.VirtualMachineStatus{}
	st.Created = vmi != nil
	migrating := false
	if vmi != nil {
		if ms := vmi.Status.MigrationState; ms != nil && !ms.Completed && !ms.Failed {
			migrating = true
		}
	}
	ready := false
	switch {
	case vmi == nil:
		st.PrintableStatus = kubevirtv1.VirtualMachineStatusStopped
	case vmi.DeletionTimestamp != nil:
		st.PrintableStatus = kubevirtv1.VirtualMachineStatusTerminating
	case migrating:
		st.PrintableStatus = kubevirtv1.VirtualMachineStatusMigrating
	case vmi.Status.Phase == kubevirtv1.Running:
		st.PrintableStatus = kubevirtv1.VirtualMachineStatusRunning
	case vmi.Status.Phase == kubevirtv1.Succeeded || vmi.Status.Phase == kubevirtv1.Failed:
		st.PrintableStatus = kubevirtv1.VirtualMachineStatusStopped
	case vmi.Status.Phase == kubevirtv1.Pending && vmiCondReason(vmi, kubevirtv1.VirtualMachineInstanceConditionType(corev1.PodScheduled)) == corev1.PodReasonUnschedulable:
		st.PrintableStatus = kubevirtv1.VirtualMachineStatusUnschedulable
	default:
		st.PrintableStatus = kubevirtv1.VirtualMachineStatusStarting
	}
	if vmi != nil {
		if c, ok := kubevirt.VMICondition(vmi, kubevirtv1.VirtualMachineInstanceReady); ok && c.Status == corev1.ConditionTrue && vmi.DeletionTimestamp == nil {
			ready = true
		}
	}
	st.Ready = ready
	st.Conditions = []kubevirtv1.VirtualMachineCondition{{Type: kubevirtv1.VirtualMachineReady, Status: condStatus(ready)}}
	restartRequired := kubevirt.VMCondition(vm, kubevirtv1.VirtualMachineRestartRequired)
	if vmi != nil && vmi.DeletionTimestamp == nil && vm.Spec.Template != nil && !reflect.DeepEqual(vm.Spec.Template.Spec.NodeSelector, vmi.Spec.NodeSelector) && s.cfg.Stage {
		restartRequired = true
	}
	if vmi == nil {
		restartRequired = false
	}
	if restartRequired {
		st.Conditions = append(st.Conditions, kubevirtv1.VirtualMachineCondition{Type: kubevirtv1.VirtualMachineRestartRequired, Status: corev1.ConditionTrue,
			Message: "a non-live-updatable field was changed in the template spec"})
	}
	old := vm.Status
	// Compare without timestamps so that a steady state writes nothing.
	if old.PrintableStatus == st.PrintableStatus && old.Ready == st.Ready && old.Created == st.Created && len(old.Conditions) == len(st.Conditions) &&
		kubevirt.VMCondition(vm, kubevirtv1.VirtualMachineRestartRequired) == restartRequired {
		return nil
	}
	vm.Status = st
	u, err := toUnstructured(vm, vmGVK)
	if err != nil {
		return err
	}
	_, err = s.dyn.Resource(kubevirt.VMs).Namespace(vm.Namespace).UpdateStatus(ctx, u, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func vmiCondReason(vmi *kubevirtv1.VirtualMachineInstance, t kubevirtv1.VirtualMachineInstanceConditionType) string {
	c, _ := kubevirt.VMICondition(vmi, t)
	return c.Reason
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podUnschedulable(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return true
		}
	}
	return false
}

// launcherPod renders a virt-launcher pod from the VMI, as virt-controller does.
func launcherPod(vmi *kubevirtv1.VirtualMachineInstance, nodeSelector map[string]string, affinity *corev1.Affinity, migrationUID string) *corev1.Pod {
	cpu, mem := snapshot.Requests(&vmi.Spec.Domain)
	labels := map[string]string{kubevirtv1.AppLabel: "virt-launcher", kubevirt.CreatedByLabel: string(vmi.UID), "vm.kubevirt.io/name": vmi.Name}
	if migrationUID != "" {
		labels[migrationJobLabel] = migrationUID
	}
	grace := int64(30)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "virt-launcher-" + vmi.Name + "-" + randSuffix(), Namespace: vmi.Namespace, Labels: labels,
			Annotations:     map[string]string{kubevirtv1.DomainAnnotation: vmi.Name},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: vmiGVK.GroupVersion().String(), Kind: "VirtualMachineInstance", Name: vmi.Name, UID: vmi.UID, Controller: &trueVal, BlockOwnerDeletion: &trueVal}},
		},
		Spec: corev1.PodSpec{
			NodeSelector: nodeSelector, Affinity: affinity, Tolerations: vmi.Spec.Tolerations,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{Name: "compute", Image: "virt-launcher",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: *resource.NewMilliQuantity(cpu, resource.DecimalSI), corev1.ResourceMemory: *resource.NewQuantity(mem, resource.BinarySI)}}}},
		},
	}
}

func (s *Sim) syncVMI(ctx context.Context, key string) (time.Duration, error) {
	vmi := s.getVMI(key)
	if vmi == nil {
		return 0, nil
	}
	pods := s.podsOf(vmi)
	if vmi.DeletionTimestamp != nil {
		// Graceful: the launcher pods go first; on a dead node they never finish until
		// someone force-deletes them, and the VMI waits with them.
		for _, p := range pods {
			if p.DeletionTimestamp == nil {
				if err := s.kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
					return 0, err
				}
			}
		}
		if len(pods) > 0 {
			return 0, nil
		}
		var keep []string
		for _, f := range vmi.Finalizers {
			if f != finalizer {
				keep = append(keep, f)
			}
		}
		if len(keep) != len(vmi.Finalizers) {
			vmi.Finalizers = keep
			return 0, s.updateVMI(ctx, vmi)
		}
		return 0, nil
	}
	if vmi.Status.Phase == kubevirtv1.Succeeded || vmi.Status.Phase == kubevirtv1.Failed {
		return 0, nil
	}
	var pod *corev1.Pod
	for _, p := range pods {
		if p.Labels[migrationJobLabel] != "" && p.Spec.NodeName != vmi.Status.NodeName {
			continue
		}
		if vmi.Status.NodeName == "" || p.Spec.NodeName == vmi.Status.NodeName {
			pod = p
			break
		}
	}
	st := vmi.Status.DeepCopy()
	requeue := time.Duration(0)
	switch {
	case pod == nil && (vmi.Status.Phase == kubevirtv1.Running || vmi.Status.Phase == kubevirtv1.Scheduled):
		// The launcher pod is gone from under a running VMI (force-deleted): the VMI failed.
		st.Phase = kubevirtv1.Failed
		st.Conditions = []kubevirtv1.VirtualMachineInstanceCondition{{Type: kubevirtv1.VirtualMachineInstanceReady, Status: corev1.ConditionFalse, Reason: "PodNotExists"}}
	case pod == nil:
		if len(pods) == 0 {
			p := launcherPod(vmi, vmi.Spec.NodeSelector, vmi.Spec.Affinity, "")
			if _, err := s.kube.CoreV1().Pods(vmi.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
				return 0, err
			}
		}
		st.Phase = kubevirtv1.Pending
	case pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded:
		st.Phase = kubevirtv1.Failed
	default:
		st.NodeName = pod.Spec.NodeName
		ready := false
		reason := ""
		switch {
		case pod.Spec.NodeName == "":
			st.Phase = kubevirtv1.Pending
			if podUnschedulable(pod) {
				reason = corev1.PodReasonUnschedulable
			}
		case pod.Status.Phase != corev1.PodRunning:
			st.Phase = kubevirtv1.Scheduling
		default:
			booted := pod.Status.StartTime != nil && time.Since(pod.Status.StartTime.Time) >= s.cfg.BootDelay
			if st.Phase == kubevirtv1.Running || booted {
				st.Phase = kubevirtv1.Running
				ready = podReady(pod) && pod.DeletionTimestamp == nil
				if pod.DeletionTimestamp != nil {
					reason = "PodTerminating"
				}
			} else {
				st.Phase = kubevirtv1.Scheduled
				if pod.Status.StartTime != nil {
					requeue = s.cfg.BootDelay - time.Since(pod.Status.StartTime.Time) + 50*time.Millisecond
				} else {
					requeue = s.cfg.BootDelay
				}
			}
		}
		migratable, mreason := true, ""
		if r := vmi.Annotations[NotMigratableAnnotation]; r != "" {
			migratable, mreason = false, r
		}
		st.Conditions = []kubevirtv1.VirtualMachineInstanceCondition{
			{Type: kubevirtv1.VirtualMachineInstanceReady, Status: condStatus(ready), Reason: reason},
			{Type: kubevirtv1.VirtualMachineInstanceIsMigratable, Status: condStatus(migratable), Reason: mreason},
		}
		if reason == corev1.PodReasonUnschedulable {
			st.Conditions = append(st.Conditions, kubevirtv1.VirtualMachineInstanceCondition{Type: kubevirtv1.VirtualMachineInstanceConditionType(corev1.PodScheduled), Status: corev1.ConditionFalse, Reason: reason})
		}
	}
	if reflect.DeepEqual(*st, vmi.Status) {
		return requeue, nil
	}
	vmi.Status = *st
	if err := s.updateVMI(ctx, vmi); err != nil {
		return 0, err
	}
	return requeue, nil
}
