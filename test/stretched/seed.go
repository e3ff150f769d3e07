package stretched

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
)

// VMSpec describes one VM to create.
type VMSpec struct {
	Namespace, Name string
	Tier            int
	Site            string
	RunStrategy     kubevirtv1.VirtualMachineRunStrategy
	// Running uses the deprecated spec.running instead of runStrategy when set.
	Running *bool
	// Disk, when set, gives the VM one disk on a PVC of that access mode (CreateVMs makes
	// the PV and the PVC). KubeVirt reports a VM whose PVC is not ReadWriteMany not
	// live-migratable (DisksNotLiveMigratable).
	Disk corev1.PersistentVolumeAccessMode
	// DefaultNetwork names no interface: virt-api attaches the pod network with the
	// cluster's default binding, bridge, which v1.8.0 does not live-migrate
	// (InterfaceNotLiveMigratable). Otherwise the VM names masquerade, as operators who
	// live-migrate do.
	DefaultNetwork bool
	Cores          uint32
	Memory         string
	ExtraSelector  map[string]string
	Labels         map[string]string
	// TemplateAnnotations go on the VM's template, so on each of its VMIs: the fake
	// virt-handler's fault switches (virthandler.MigrationFailAnnotation and others).
	TemplateAnnotations map[string]string
	// EvictionStrategy sets the template's evictionStrategy (nil: the cluster's, None).
	EvictionStrategy *kubevirtv1.EvictionStrategy
}

// VM renders the spec as a kubevirt.io/v1 VirtualMachine.
func (v VMSpec) VM() *kubevirtv1.VirtualMachine {
	labels := map[string]string{"app": v.Name}
	for k, val := range v.Labels {
		labels[k] = val
	}
	if v.Tier > 0 {
		labels[selector.DefaultTierKey] = fmt.Sprint(v.Tier)
	}
	sel := map[string]string{}
	for k, val := range v.ExtraSelector {
		sel[k] = val
	}
	if v.Site != "" {
		sel[selector.DefaultSiteKey] = v.Site
	}
	cores, mem := v.Cores, v.Memory
	if cores == 0 {
		cores = 1
	}
	if mem == "" {
		mem = "1Gi"
	}
	q := resource.MustParse(mem)
	tplAnn := map[string]string{}
	for k, val := range v.TemplateAnnotations {
		tplAnn[k] = val
	}
	vm := &kubevirtv1.VirtualMachine{
		TypeMeta:   metav1.TypeMeta{APIVersion: kubevirtv1.SchemeGroupVersion.String(), Kind: "VirtualMachine"},
		ObjectMeta: metav1.ObjectMeta{Name: v.Name, Namespace: v.Namespace, Labels: labels},
		Spec: kubevirtv1.VirtualMachineSpec{
			Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"kubevirt.io/domain": v.Name}, Annotations: tplAnn},
				Spec: kubevirtv1.VirtualMachineInstanceSpec{
					NodeSelector:     sel,
					EvictionStrategy: v.EvictionStrategy,
					Domain: kubevirtv1.DomainSpec{
						CPU:    &kubevirtv1.CPU{Cores: cores},
						Memory: &kubevirtv1.Memory{Guest: &q},
					},
				},
			},
		},
	}
	if len(sel) == 0 {
		vm.Spec.Template.Spec.NodeSelector = nil
	}
	tpl := &vm.Spec.Template.Spec
	if !v.DefaultNetwork {
		tpl.Networks = []kubevirtv1.Network{*kubevirtv1.DefaultPodNetwork()}
		tpl.Domain.Devices.Interfaces = []kubevirtv1.Interface{*kubevirtv1.DefaultMasqueradeNetworkInterface()}
	}
	if v.Disk != "" {
		tpl.Domain.Devices.Disks = []kubevirtv1.Disk{{Name: "disk", DiskDevice: kubevirtv1.DiskDevice{Disk: &kubevirtv1.DiskTarget{Bus: kubevirtv1.DiskBusVirtio}}}}
		tpl.Volumes = []kubevirtv1.Volume{{Name: "disk", VolumeSource: kubevirtv1.VolumeSource{
			PersistentVolumeClaim: &kubevirtv1.PersistentVolumeClaimVolumeSource{
				PersistentVolumeClaimVolumeSource: corev1.PersistentVolumeClaimVolumeSource{ClaimName: v.ClaimName()},
			},
		}}}
	}
	if v.Running != nil {
		vm.Spec.Running = v.Running
	} else {
		rs := v.RunStrategy
		if rs == "" {
			rs = kubevirtv1.RunStrategyAlways
		}
		vm.Spec.RunStrategy = &rs
	}
	return vm
}

// ClaimName names the PVC of the VM's disk.
func (v VMSpec) ClaimName() string { return v.Name + "-disk" }

// createDisk makes the VM's PVC and a PV bound to it (no provisioner runs here:
// kube-controller-manager's binder binds the pre-bound pair). The PV's name is
// unique, so a test that recreates a namespace never meets a Released one.
func (e *Env) createDisk(ctx context.Context, v VMSpec) error {
	size := resource.MustParse("1Gi")
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: v.ClaimName(), Namespace: v.Namespace},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{v.Disk},
			StorageClassName: ptr.To(""),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
		},
	}
	created, err := e.Kube.CoreV1().PersistentVolumeClaims(v.Namespace).Create(ctx, pvc, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create PVC %s/%s: %w", v.Namespace, pvc.Name, err)
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "sitefail-" + string(created.UID)},
		Spec: corev1.PersistentVolumeSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{v.Disk},
			Capacity:         corev1.ResourceList{corev1.ResourceStorage: size},
			StorageClassName: "",
			ClaimRef:         &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: v.Namespace, Name: created.Name, UID: created.UID},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: "/var/lib/sitefail/" + string(created.UID)},
			},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
		},
	}
	if _, err := e.Kube.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create PV for %s/%s: %w", v.Namespace, pvc.Name, err)
	}
	return nil
}

// CreateVMs creates the namespaces and VMs.
func (e *Env) CreateVMs(ctx context.Context, specs []VMSpec) error {
	seen := map[string]bool{}
	for _, s := range specs {
		if !seen[s.Namespace] {
			seen[s.Namespace] = true
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.Namespace}}
			if _, err := e.Kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return err
			}
		}
		if s.Disk != "" {
			if err := e.createDisk(ctx, s); err != nil {
				return err
			}
		}
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(s.VM())
		if err != nil {
			return err
		}
		if _, err := e.Dynamic.Resource(kubevirt.VMs).Namespace(s.Namespace).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create VM %s/%s: %w", s.Namespace, s.Name, err)
		}
	}
	return nil
}

// WaitSettled waits until every VM that should run is Ready and every other is stopped.
func (e *Env) WaitSettled(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		list, err := e.Dynamic.Resource(kubevirt.VMs).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		var waiting []string
		for i := range list.Items {
			vm, err := kubevirt.ToVM(&list.Items[i])
			if err != nil {
				return err
			}
			rs := kubevirt.RunStrategy(vm)
			want := rs == kubevirtv1.RunStrategyAlways || rs == kubevirtv1.RunStrategyRerunOnFailure
			if want && !vm.Status.Ready || !want && vm.Status.PrintableStatus != kubevirtv1.VirtualMachineStatusStopped && vm.Status.PrintableStatus != kubevirtv1.VirtualMachineStatusRunning {
				waiting = append(waiting, vm.Namespace+"/"+vm.Name+"("+string(vm.Status.PrintableStatus)+")")
			}
		}
		if len(waiting) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("VMs not settled after %s: %v", timeout, waiting)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// DemoVMs is the demo's realistic set: about 40 VMs in three namespaces and three
// tiers, homed on the first site, a few stopped, one not live-migratable, and a few
// with the older run strategies.
func DemoVMs(primary, dr string) []VMSpec {
	var out []VMSpec
	add := func(ns, name string, tier int, site string, mod func(*VMSpec)) {
		s := VMSpec{Namespace: ns, Name: name, Tier: tier, Site: site, Cores: 2, Memory: "2Gi"}
		if mod != nil {
			mod(&s)
		}
		out = append(out, s)
	}
	for i := 1; i <= 4; i++ {
		add("prod", fmt.Sprintf("db-%d", i), 1, primary, nil)
	}
	add("prod", "ldap-1", 1, primary, func(s *VMSpec) { s.Disk = corev1.ReadWriteOnce })
	add("finance", "ledger-1", 1, primary, func(s *VMSpec) { s.RunStrategy = kubevirtv1.RunStrategyRerunOnFailure })
	for i := 1; i <= 8; i++ {
		add("prod", fmt.Sprintf("app-%d", i), 2, primary, nil)
	}
	for i := 1; i <= 6; i++ {
		add("finance", fmt.Sprintf("report-%d", i), 2, primary, nil)
	}
	running := true
	add("finance", "batch-legacy", 2, primary, func(s *VMSpec) { s.Running = &running })
	for i := 1; i <= 10; i++ {
		add("dev", fmt.Sprintf("build-%d", i), 3, primary, func(s *VMSpec) { s.Cores, s.Memory = 1, "1Gi" })
	}
	for i := 1; i <= 3; i++ {
		add("dev", fmt.Sprintf("sandbox-%d", i), 3, primary, func(s *VMSpec) { s.RunStrategy = kubevirtv1.RunStrategyHalted })
	}
	add("finance", "archive-1", 2, primary, func(s *VMSpec) { s.RunStrategy = kubevirtv1.RunStrategyHalted })
	for i := 1; i <= 4; i++ {
		add("prod", fmt.Sprintf("dr-witness-%d", i), 3, dr, nil)
	}
	add("dev", "scratch", 0, primary, nil)
	return out
}
