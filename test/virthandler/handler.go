// Package virthandler is the test cluster's stand-in for KubeVirt's virt-handler, the
// per-node agent that runs QEMU and so needs KVM. Everything else in the test cluster's
// KubeVirt is KubeVirt's own code (virt-controller, virt-api); this package reports only
// what a real handler would report about a domain, in KubeVirt's order:
//
//   - a VMI that virt-controller handed over (phase Scheduled, pod ready) on one of the
//     site's nodes boots: phase Running, LiveMigratable, an interface;
//   - a VMI being deleted on one of the site's nodes shuts down cleanly: Succeeded;
//   - a migration hand-off in v1.8.0's order: the target reports its address, the source
//     the start time, the target the domain-ready time, then the target takes the VMI
//     over (endTimestamp, status.nodeName and the node label in one write), then marks
//     it Completed (virt-controller then marks the VMIM Succeeded and removes the
//     migration-target label), and the source launcher ends;
//   - the faults of faults.go, switched per VMI by annotation or per site, and the node
//     heartbeat of heartbeat.go.
//
// It also plays the one part of the kubelet that kwok does not: a running launcher pod
// that the node controller marked not Ready (its node missed heartbeats, as when the
// API server was away) is reported Ready again once the handler sees it, as the kubelet
// reports its probes again; KubeVirt derives the VMI's Ready condition from the pod's.
//
// One Handler runs per site, on that site's nodes; the test cluster stops it together
// with the site's kwok, so a dark site has no handler either, as in a real outage.
package virthandler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
)

// Config tunes a handler.
type Config struct {
	// NodeSelector selects the nodes this handler runs (a label selector).
	NodeSelector string
	// BootDelay is how long a handed-over VMI takes to report Running.
	BootDelay time.Duration
	// MigrationDelay is how long memory transfer takes once the source started it.
	MigrationDelay time.Duration
	// Address is what the target reports as its migration address.
	Address string
	// Site names the site this handler runs (BootFailAnnotation names one).
	Site string
	// HeartbeatInterval paces the node heartbeat (v1.8.0: one minute); 0 means a minute.
	HeartbeatInterval time.Duration
	// DevicePluginDelay is how long a (re)started handler keeps its nodes labelled
	// kubevirt.io/schedulable=false, as v1.8.0 does until its device plugins are up.
	DevicePluginDelay time.Duration
	// DomainsLost: the site comes back after a power loss, so every domain of a VMI
	// created before this handler started died with its launcher.
	DomainsLost bool
}

// Handler is one site's fake virt-handler.
type Handler struct {
	cfg Config
	// born is when this handler was made: with DomainsLost, the VMIs older than it had
	// their domains on the powered-off nodes.
	born time.Time
	kube kubernetes.Interface
	// kubelet reports launcher pods ending, as the node's kubelet would (kwok runs the
	// pods but knows nothing of the QEMU inside them).
	kubelet kubernetes.Interface
	dyn     dynamic.Interface
	nodes   cache.SharedIndexInformer
	vmis    cache.SharedIndexInformer
	pods    cache.SharedIndexInformer
	queue   workqueue.TypedRateLimitingInterface[string]

	mu sync.Mutex
	// scheduledAt remembers when a VMI was first seen handed over, for the boot delay.
	scheduledAt map[string]time.Time
	// ended holds the migrations whose source launcher has ended.
	ended map[string]bool
	// deletedAt remembers when a VMI was first seen deleted, for a slow shutdown.
	deletedAt map[string]time.Time
	faults    Faults
	// beatDone closes when the heartbeat has stopped.
	beatDone chan struct{}
}

// New builds a handler. kube and dyn authenticate as KubeVirt's handler service account
// (virt-api reverts VMI status written by anyone else); kubelet writes pod status.
func New(kube, kubelet kubernetes.Interface, dyn dynamic.Interface, cfg Config) *Handler {
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1"
	}
	h := &Handler{cfg: cfg, born: time.Now().Truncate(time.Second), kube: kube, kubelet: kubelet, dyn: dyn, scheduledAt: map[string]time.Time{}, ended: map[string]bool{}, deletedAt: map[string]time.Time{}, beatDone: make(chan struct{}),
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](20*time.Millisecond, 2*time.Second))}
	kf := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = cfg.NodeSelector
	}))
	h.nodes = kf.Core().V1().Nodes().Informer()
	df := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	h.vmis = df.ForResource(kubevirt.VMIs).Informer()
	enqueue := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if k, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			h.queue.Add(k)
		}
	}
	_, _ = h.vmis.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: enqueue, UpdateFunc: func(_, n any) { enqueue(n) }, DeleteFunc: enqueue})
	pf := informers.NewSharedInformerFactoryWithOptions(kubelet, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = launcherSelector
	}))
	h.pods = pf.Core().V1().Pods().Informer()
	podChanged := func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok && notReadyAgain(p) {
			h.queue.Add(podKeyPrefix + p.Namespace + "/" + p.Name)
		}
	}
	_, _ = h.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: podChanged, UpdateFunc: func(_, n any) { podChanged(n) }})
	return h
}

const (
	launcherSelector = "kubevirt.io=virt-launcher"
	podKeyPrefix     = "pod:"
)

// notReadyAgain reports a running launcher whose Ready condition was turned False from
// outside (the node controller does that to every pod of a node that missed heartbeats);
// a paused guest's launcher is not Ready on purpose.
func notReadyAgain(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning || gateFalse(p) {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status != corev1.ConditionTrue
		}
	}
	return false
}

// unpausedGate is the readiness gate KubeVirt gives every launcher pod.
const unpausedGate = corev1.PodConditionType(kubevirtv1.VirtualMachineUnpaused)

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func gateFalse(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == unpausedGate {
			return c.Status == corev1.ConditionFalse
		}
	}
	return false
}

// pause reports the guest paused, as the real handler does on virtctl pause: the VMI's
// Paused condition; virt-controller then turns the launcher's unpaused readiness gate
// False (done here too, whichever comes first), and the kubelet its Ready, from which
// virt-controller takes the VMI's Ready.
func (h *Handler) pause(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance) error {
	if c, ok := kubevirt.VMICondition(vmi, kubevirtv1.VirtualMachineInstancePaused); !ok || c.Status != corev1.ConditionTrue {
		setCondition(vmi, kubevirtv1.VirtualMachineInstanceCondition{Type: kubevirtv1.VirtualMachineInstancePaused,
			Status: corev1.ConditionTrue, Reason: "PausedByUser", Message: "VMI was paused by user", LastTransitionTime: metav1.Now()})
		return h.update(ctx, vmi)
	}
	pods, err := h.kubelet.CoreV1().Pods(vmi.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: kubevirt.CreatedByLabel + "=" + string(vmi.UID),
		FieldSelector: "spec.nodeName=" + vmi.Status.NodeName,
	})
	if err != nil {
		return err
	}
	now := metav1.Now()
	for i := range pods.Items {
		p := &pods.Items[i]
		// virt-controller may have turned the gate already (syncPausedConditionToPod);
		// Ready is the kubelet's to turn, which kwok does not do.
		if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil || gateFalse(p) && !podReady(p) {
			continue
		}
		found := false
		for j := range p.Status.Conditions {
			switch c := &p.Status.Conditions[j]; c.Type {
			case unpausedGate:
				c.Status, c.Reason, c.LastTransitionTime, found = corev1.ConditionFalse, "Paused", now, true
			case corev1.PodReady:
				c.Status, c.Reason, c.LastTransitionTime = corev1.ConditionFalse, "ReadinessGatesNotReady", now
			}
		}
		if !found {
			p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: unpausedGate, Status: corev1.ConditionFalse, Reason: "Paused", LastTransitionTime: now})
		}
		if _, err := h.kubelet.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// reportReady sets a launcher pod Ready again, as its kubelet would once it reports.
func (h *Handler) reportReady(ctx context.Context, key string) error {
	obj, exists, err := h.pods.GetStore().GetByKey(key)
	if err != nil || !exists {
		return err
	}
	p := obj.(*corev1.Pod).DeepCopy()
	if !notReadyAgain(p) || !h.mine(p.Spec.NodeName) {
		return nil
	}
	now := metav1.Now()
	for i := range p.Status.Conditions {
		if c := &p.Status.Conditions[i]; c.Type == corev1.PodReady || c.Type == corev1.ContainersReady {
			c.Status, c.Reason, c.Message, c.LastTransitionTime = corev1.ConditionTrue, "", "", now
		}
	}
	for i := range p.Status.ContainerStatuses {
		p.Status.ContainerStatuses[i].Ready = true
	}
	if _, err := h.kubelet.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

// Run starts the informers and workers and returns once the caches are synced; the
// handler stops when ctx ends.
func (h *Handler) Run(ctx context.Context, workers int) error {
	go h.nodes.Run(ctx.Done())
	go h.vmis.Run(ctx.Done())
	go h.pods.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), h.nodes.HasSynced, h.vmis.HasSynced, h.pods.HasSynced) {
		return fmt.Errorf("fake virt-handler (%s): caches did not sync", h.cfg.NodeSelector)
	}
	go func() {
		<-ctx.Done()
		h.queue.ShutDown()
	}()
	for i := 0; i < workers; i++ {
		go func() {
			for h.work(ctx) {
			}
		}()
	}
	go h.heartbeat(ctx)
	return nil
}

func (h *Handler) work(ctx context.Context) bool {
	key, quit := h.queue.Get()
	if quit {
		return false
	}
	defer h.queue.Done(key)
	if err := h.sync(ctx, key); err != nil {
		if ctx.Err() == nil {
			h.queue.AddRateLimited(key)
		}
		return true
	}
	h.queue.Forget(key)
	return true
}

func (h *Handler) mine(node string) bool {
	if node == "" {
		return false
	}
	_, ok, _ := h.nodes.GetStore().GetByKey(node)
	return ok
}

func (h *Handler) sync(ctx context.Context, key string) error {
	if pod, ok := strings.CutPrefix(key, podKeyPrefix); ok {
		return h.reportReady(ctx, pod)
	}
	obj, exists, err := h.vmis.GetStore().GetByKey(key)
	if err != nil {
		return err
	}
	if !exists {
		h.mu.Lock()
		delete(h.scheduledAt, key)
		delete(h.deletedAt, key)
		h.mu.Unlock()
		return nil
	}
	vmi, err := kubevirt.ToVMI(obj.(*unstructured.Unstructured))
	if err != nil {
		return err
	}
	if ms := vmi.Status.MigrationState; ms != nil && !(ms.Completed && vmi.Status.NodeName == ms.TargetNode && !h.mine(ms.SourceNode)) {
		if done, err := h.migrate(ctx, key, vmi); done || err != nil {
			return err
		}
	}
	if !h.mine(vmi.Status.NodeName) {
		return nil
	}
	switch {
	case h.cfg.DomainsLost && !vmi.IsFinal() && (vmi.IsRunning() || vmi.IsScheduled()) && vmi.CreationTimestamp.Time.Before(h.born):
		// Back from a power loss: v1.8.0's handler finds no domain for the VMI and its
		// launcher unresponsive, and reports it Failed (pkg/virt-handler/vm.go,
		// calculateVmPhaseForStatusReason); the launcher's pod ended with the power.
		vmi.Status.Reason = "PowerLoss"
		setPhase(vmi, kubevirtv1.Failed)
		if err := h.update(ctx, vmi); err != nil {
			return err
		}
		return h.endLaunchers(ctx, vmi, vmi.Status.NodeName, corev1.PodFailed)
	case vmi.DeletionTimestamp != nil && !vmi.IsFinal():
		// The domain shuts down, at once or as slowly as the guest takes.
		if wait := h.since(h.deletedAt, key, h.shutdownDelay(vmi)); wait > 0 {
			h.queue.AddAfter(key, wait)
			return nil
		}
		setPhase(vmi, kubevirtv1.Succeeded)
		if err := h.update(ctx, vmi); err != nil {
			return err
		}
		// virt-launcher exits once the domain is gone: its kubelet reports the pod
		// ended, and only then deletes it (kwok-stages.yaml in test/cluster).
		return h.endLaunchers(ctx, vmi, vmi.Status.NodeName, corev1.PodSucceeded)
	case vmi.DeletionTimestamp != nil && vmi.Status.Phase == kubevirtv1.Succeeded:
		// The retry of the case above when ending a launcher failed (the pod changed
		// under the write, as virt-controller deleted it): the launcher has exited all
		// the same, and a pod left running would hold the VMI until its grace period is
		// over. Already-ended pods are left as they are.
		return h.endLaunchers(ctx, vmi, vmi.Status.NodeName, corev1.PodSucceeded)
	case vmi.IsScheduled() && vmi.DeletionTimestamp == nil && h.bootFails(vmi):
		// QEMU fails to start: the handler reports the domain gone and the VMI Failed,
		// and the launcher exits with an error.
		vmi.Status.Reason = "QEMUFailed"
		setPhase(vmi, kubevirtv1.Failed)
		if err := h.update(ctx, vmi); err != nil {
			return err
		}
		return h.endLaunchers(ctx, vmi, vmi.Status.NodeName, corev1.PodFailed)
	case vmi.IsRunning() && vmi.DeletionTimestamp == nil && vmi.Annotations[PausedAnnotation] == "true":
		return h.pause(ctx, vmi)
	case vmi.IsRunning() && vmi.DeletionTimestamp == nil && setMigratable(vmi):
		// The real handler recomputes the condition at every sync: virt-controller may
		// write a PVC's information into the volume status after the boot.
		return h.update(ctx, vmi)
	case vmi.IsScheduled() && vmi.DeletionTimestamp == nil:
		if wait := h.since(h.scheduledAt, key, h.bootDelay(vmi)); wait > 0 {
			h.queue.AddAfter(key, wait)
			return nil
		}
		h.boot(vmi)
		return h.update(ctx, vmi)
	case vmi.IsRunning() && vmi.DeletionTimestamp == nil && targetNeverRan(vmi):
		// The migration handed the VMI over and was finalized, but the domain never ran
		// here: the handler that now owns it finds the domain shut off and reports the
		// VMI Failed (vm.go), after the fault's wait, measured from the hand-off.
		wait, _ := targetInactiveWait(vmi)
		if left := time.Until(vmi.Status.MigrationState.EndTimestamp.Add(wait)); left > 0 {
			h.queue.AddAfter(key, left)
			return nil
		}
		vmi.Status.Reason = "DomainNotRunning"
		setPhase(vmi, kubevirtv1.Failed)
		if err := h.update(ctx, vmi); err != nil {
			return err
		}
		return h.endLaunchers(ctx, vmi, vmi.Status.NodeName, corev1.PodFailed)
	case vmi.Status.Phase == kubevirtv1.Failed:
		// Failed by someone else (the source of a migration whose target never ran the
		// domain): the handler that owns it now kills what is left of the domain, and
		// the launcher exits with an error (vm.go, processVmCleanup). Already-ended pods
		// are left as they are.
		return h.endLaunchers(ctx, vmi, vmi.Status.NodeName, corev1.PodFailed)
	}
	return nil
}

// since records when key was first seen in m and returns how much of d is left.
func (h *Handler) since(m map[string]time.Time, key string, d time.Duration) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	at, seen := m[key]
	if !seen {
		at = time.Now()
		m[key] = at
	}
	return time.Until(at.Add(d))
}

// boot reports the domain running, as the handler does once QEMU started.
func (h *Handler) boot(vmi *kubevirtv1.VirtualMachineInstance) {
	setPhase(vmi, kubevirtv1.Running)
	// No SELinux on the node: a migration's target pod is labelled from this field.
	vmi.Status.SelinuxContext = "none"
	vmi.Status.Machine = &kubevirtv1.Machine{Type: "q35"}
	setMigratable(vmi)
	if len(vmi.Status.Interfaces) == 0 {
		vmi.Status.Interfaces = []kubevirtv1.VirtualMachineInstanceNetworkInterface{{
			Name: "default", IP: "10.244.0.10", IPs: []string{"10.244.0.10"}, InterfaceName: "eth0",
			InfoSource: "domain, guest-agent",
		}}
	}
}

// migrate plays this site's part of a live migration, if it has one now. done reports
// that the VMI was written (the next event continues).
func (h *Handler) migrate(ctx context.Context, key string, vmi *kubevirtv1.VirtualMachineInstance) (done bool, err error) {
	ms := vmi.Status.MigrationState
	if ms.MigrationUID == "" || ms.TargetNode == "" || ms.AbortRequested {
		return false, nil
	}
	source, target := h.mine(ms.SourceNode) && vmi.Status.NodeName == ms.SourceNode, h.mine(ms.TargetNode)
	if ms.Failed {
		// The target's launcher, whose QEMU waited for the memory, exits.
		if target && ms.TargetPod != "" {
			return false, h.endLauncher(ctx, vmi.Namespace, ms.TargetPod, corev1.PodFailed)
		}
		return false, nil
	}
	switch {
	case source && !ms.Completed && ms.StartTimestamp != nil && h.migrationFailure(vmi) != "":
		// libvirt aborts the transfer; the source reports it (v1.8.0
		// migration-source.go setMigrationProgressStatus) and keeps running the guest.
		now := metav1.Now()
		ms.Failed, ms.Completed, ms.EndTimestamp = true, true, &now
		ms.FailureReason = h.migrationFailure(vmi)
	case target && !ms.Completed && ms.TargetNodeAddress == "":
		ms.TargetNodeAddress = h.cfg.Address
		ms.TargetDirectMigrationNodePorts = map[string]int{"49152": 0, "49153": 49153}
	case source && !ms.Completed && ms.TargetNodeAddress != "" && ms.StartTimestamp == nil:
		now := metav1.Now()
		ms.StartTimestamp = &now
		ms.Mode = kubevirtv1.MigrationPreCopy
		if r := h.migrationFailure(vmi); r != "" {
			// The failure is reported in the write that starts the transfer: a second
			// sync would race the target handler, which may finish the hand-off first
			// (a failed migration seen succeeding in CI).
			ms.Failed, ms.Completed, ms.EndTimestamp = true, true, &now
			ms.FailureReason = r
		}
	case target && !ms.Completed && ms.StartTimestamp != nil && ms.TargetNodeDomainReadyTimestamp == nil && ms.EndTimestamp == nil:
		if wait := time.Until(ms.StartTimestamp.Add(h.migrationDelay(vmi))); wait > 0 {
			h.queue.AddAfter(key, wait)
			return true, nil
		}
		now := metav1.Now()
		ms.TargetNodeDomainDetected = true
		if _, inactive := targetInactiveWait(vmi); inactive {
			// The domain arrived and libvirt reported the migration ended, but it never
			// ran here: the target acknowledges the hand-off without a ready domain
			// (migration-target.go updateStatus detects and acks in one pass).
			ackHandOff(vmi, ms, &now)
			break
		}
		ms.TargetNodeDomainReadyTimestamp = &now
	case target && !ms.Completed && ms.TargetNodeDomainReadyTimestamp != nil && ms.EndTimestamp == nil:
		// The migration ended in libvirt: the target acknowledges it and takes the VMI
		// over in one write (v1.8.0 migration-target.go ackMigrationCompletion).
		now := metav1.Now()
		ackHandOff(vmi, ms, &now)
	case target && !ms.Completed && ms.EndTimestamp != nil && vmi.Status.NodeName == ms.TargetNode:
		// Then it finalizes the migration (finalizeMigration): Completed. virt-controller
		// marks the VMIM Succeeded and removes the migration-target label after that.
		ms.Completed = true
	case h.mine(ms.SourceNode) && ms.Completed && vmi.Status.NodeName == ms.TargetNode:
		// The source launcher's QEMU has left: its pod ends.
		h.mu.Lock()
		ended := h.ended[string(ms.MigrationUID)]
		h.mu.Unlock()
		if ended {
			return true, nil
		}
		if err := h.endLaunchers(ctx, vmi, ms.SourceNode, corev1.PodSucceeded); err != nil {
			return true, err
		}
		h.mu.Lock()
		h.ended[string(ms.MigrationUID)] = true
		h.mu.Unlock()
		return true, nil
	default:
		return false, nil
	}
	return true, h.update(ctx, vmi)
}

// endLaunchers reports the VMI's launcher pods on node ended, as their kubelet does
// once the launcher exits: Succeeded after a hand-over, Failed when QEMU failed.
func (h *Handler) endLaunchers(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance, node string, phase corev1.PodPhase) error {
	pods, err := h.kubelet.CoreV1().Pods(vmi.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: kubevirt.CreatedByLabel + "=" + string(vmi.UID),
		FieldSelector: "spec.nodeName=" + node,
	})
	if err != nil {
		return err
	}
	for i := range pods.Items {
		if err := h.endPod(ctx, &pods.Items[i], phase); err != nil {
			return err
		}
	}
	return nil
}

// endLauncher ends one launcher pod by name.
func (h *Handler) endLauncher(ctx context.Context, ns, name string, phase corev1.PodPhase) error {
	p, err := h.kubelet.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return h.endPod(ctx, p, phase)
}

func (h *Handler) endPod(ctx context.Context, p *corev1.Pod, phase corev1.PodPhase) error {
	// A pod being deleted is ended too: its kubelet deletes it once the launcher has
	// exited, which is what a graceful deletion waits for.
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return nil
	}
	now := metav1.Now()
	p.Status.Phase = phase
	exit, reason := int32(0), "Completed"
	if phase == corev1.PodFailed {
		exit, reason = 1, "Error"
	}
	for j := range p.Status.ContainerStatuses {
		cs := &p.Status.ContainerStatuses[j]
		started := now
		if cs.State.Running != nil {
			started = cs.State.Running.StartedAt
		}
		cs.Ready = false
		cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: exit, Reason: reason, StartedAt: started, FinishedAt: now}}
	}
	for j := range p.Status.Conditions {
		if c := &p.Status.Conditions[j]; c.Type == corev1.PodReady || c.Type == corev1.ContainersReady {
			c.Status, c.Reason, c.LastTransitionTime = corev1.ConditionFalse, "PodCompleted", now
		}
	}
	if _, err := h.kubelet.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

func (h *Handler) update(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance) error {
	u, err := kubevirt.ToUnstructured(vmi)
	if err != nil {
		return err
	}
	u.SetAPIVersion(kubevirtv1.SchemeGroupVersion.String())
	u.SetKind("VirtualMachineInstance")
	_, err = h.dyn.Resource(kubevirt.VMIs).Namespace(vmi.Namespace).Update(ctx, u, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil && !apierrors.IsConflict(err) && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("fake virt-handler: update VMI %s/%s: %w", vmi.Namespace, vmi.Name, err)
	}
	return err
}

// setPhase records the transition time too, as the real handler does: virt-controller
// counts a VMI that failed without a Running transition as a start failure and backs the
// VM off (CrashLoopBackOff) before starting it again.
func setPhase(vmi *kubevirtv1.VirtualMachineInstance, phase kubevirtv1.VirtualMachineInstancePhase) {
	if vmi.Status.Phase == phase {
		return
	}
	vmi.Status.Phase = phase
	for _, ts := range vmi.Status.PhaseTransitionTimestamps {
		if ts.Phase == phase {
			return
		}
	}
	vmi.Status.PhaseTransitionTimestamps = append(vmi.Status.PhaseTransitionTimestamps, kubevirtv1.VirtualMachineInstancePhaseTransitionTimestamp{
		Phase: phase, PhaseTransitionTimestamp: metav1.Now(),
	})
}

// setMigratable sets the LiveMigratable condition from the VMI's spec and volume
// status, and reports whether it changed.
func setMigratable(vmi *kubevirtv1.VirtualMachineInstance) bool {
	c := liveMigratable(vmi)
	for _, old := range vmi.Status.Conditions {
		if old.Type == c.Type && old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message {
			return false
		}
	}
	c.LastTransitionTime = metav1.Now()
	setCondition(vmi, c)
	return true
}

func setCondition(vmi *kubevirtv1.VirtualMachineInstance, c kubevirtv1.VirtualMachineInstanceCondition) {
	for i := range vmi.Status.Conditions {
		if vmi.Status.Conditions[i].Type == c.Type {
			vmi.Status.Conditions[i] = c
			return
		}
	}
	vmi.Status.Conditions = append(vmi.Status.Conditions, c)
}

// ackHandOff is the target's acknowledgement that the migration ended in libvirt: it
// takes the VMI over in one write (v1.8.0 migration-target.go ackMigrationCompletion).
func ackHandOff(vmi *kubevirtv1.VirtualMachineInstance, ms *kubevirtv1.VirtualMachineInstanceMigrationState, now *metav1.Time) {
	ms.EndTimestamp = now
	if vmi.Labels == nil {
		vmi.Labels = map[string]string{}
	}
	vmi.Labels[kubevirtv1.NodeNameLabel] = ms.TargetNode
	vmi.Status.NodeName = ms.TargetNode
	vmi.Status.MigrationTransport = kubevirtv1.MigrationTransportUnix
}

// targetNeverRan reports a VMI that a migration handed to this node, finalized, and
// whose domain never ran here (MigrationTargetInactiveAnnotation).
func targetNeverRan(vmi *kubevirtv1.VirtualMachineInstance) bool {
	ms := vmi.Status.MigrationState
	_, inactive := targetInactiveWait(vmi)
	return inactive && ms != nil && ms.Completed && !ms.Failed && ms.EndTimestamp != nil &&
		ms.TargetNodeDomainReadyTimestamp == nil && vmi.Status.NodeName == ms.TargetNode
}
