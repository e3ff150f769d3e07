package snapshot

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/pager"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
	"github.com/sitefail/kubectl-sitefail/pkg/journal"
	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
)

// PageSize is the LIST page size: large enough that a 5,000-VM cluster costs a few
// requests, small enough to keep each response bounded.
const PageSize = 500

// Source is where a snapshot is read from.
type Source struct {
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface
	// Namespace limits VMs to one namespace; "" reads all namespaces.
	Namespace string
	// LabelSelector limits the VMs read.
	LabelSelector string
	Keys          selector.Keys
	// Config, when set, lets the KubeVirt lists decode straight into their types;
	// without it (fake clients) they go through Dynamic.
	Config *rest.Config
}

// Read lists nodes, VMs, VMIs, virt-launcher pods, migrations, the KubeVirt CR and the
// storage (claims, volumes, storage classes, DataVolumes), one paginated LIST each, and
// derives every VM's placement. The request count does not grow with the
// number of VMs.
func Read(ctx context.Context, src Source) (*Snapshot, error) {
	// The five LISTs run at once, and each item is reduced as its page arrives: a page's
	// JSON is garbage as soon as its items are, so memory holds the reduced cluster and
	// a page or two, not the whole of it decoded, and the wall time is the longest LIST
	// rather than their sum.
	var (
		nodes     []Node
		vms       []VM
		instances = map[string]*VMI{}
		launchers = map[types.UID][]string{}
		active    = map[string]string{}
		activeTo  = map[string]string{}
		errs      [5]error
		wg        sync.WaitGroup
		rc        rest.Interface
	)
	if src.Config != nil {
		var err error
		if rc, err = kubevirt.RESTClient(src.Config); err != nil {
			return nil, err
		}
	}
	run := func(i int, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn()
		}()
	}
	run(0, func() error {
		err := listAll(ctx, func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return src.Kube.CoreV1().Nodes().List(ctx, opts)
		}, func(obj runtime.Object) error {
			nodes = append(nodes, NodeFrom(obj.(*corev1.Node), src.Keys.Site))
			return nil
		}, metav1.ListOptions{})
		return describe(err, "list", "nodes", "")
	})
	run(1, func() error {
		err := eachKubeVirt(ctx, rc, src.Dynamic, kubevirt.VMIs, src.Namespace, "", func() runtime.Object { return &kubevirtv1.VirtualMachineInstanceList{} },
			kubevirt.ToVMI, func(vmi *kubevirtv1.VirtualMachineInstance) error {
				instances[vmi.Namespace+"/"+vmi.Name] = InstanceFrom(vmi)
				return nil
			})
		return describe(err, "list", "virtualmachineinstances.kubevirt.io", src.Namespace)
	})
	run(2, func() error {
		err := eachKubeVirt(ctx, rc, src.Dynamic, kubevirt.VMs, src.Namespace, src.LabelSelector, func() runtime.Object { return &kubevirtv1.VirtualMachineList{} },
			kubevirt.ToVM, func(vm *kubevirtv1.VirtualMachine) error {
				vms = append(vms, VMFrom(vm, nil, src.Keys))
				return nil
			})
		return describe(err, "list", "virtualmachines.kubevirt.io", src.Namespace)
	})
	run(3, func() error {
		err := listAll(ctx, func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return src.Kube.CoreV1().Pods(src.Namespace).List(ctx, opts)
		}, func(obj runtime.Object) error {
			p := obj.(*corev1.Pod)
			if uid, ok := LauncherOf(p.Labels); ok {
				launchers[uid] = append(launchers[uid], p.Name)
			}
			return nil
		}, metav1.ListOptions{LabelSelector: kubevirt.LauncherSelector})
		return describe(err, "list", "pods", src.Namespace)
	})
	run(4, func() error {
		err := eachKubeVirt(ctx, rc, src.Dynamic, kubevirt.Migrations, src.Namespace, "", func() runtime.Object { return &kubevirtv1.VirtualMachineInstanceMigrationList{} },
			kubevirt.ToMigration, func(m *kubevirtv1.VirtualMachineInstanceMigration) error {
				if vmi, ok := ActiveMigration(m); ok {
					active[vmi] = m.Name
					if to := m.Labels[journal.To]; to != "" {
						activeTo[vmi] = to
					}
				}
				return nil
			})
		return describe(err, "list", "virtualmachineinstancemigrations.kubevirt.io", src.Namespace)
	})
	wg.Wait()
	// The first failure in a fixed order, so that the same cluster gives the same message.
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	s := Compose(src.Keys, nodes, vms, instances, launchers, active)
	s.ActiveMigrationTo = activeTo
	readKubeVirtConfig(ctx, src.Dynamic, s)
	readStorage(ctx, src, s)
	readInstancetypes(ctx, src, s)
	readNetworks(ctx, src, s)
	// A failover may rest on the fencing tools' evidence instead of a typed confirmation.
	s.Fencing, s.FencingUnread, _ = fencing.Read(ctx, src.Dynamic)
	readNodeLeases(ctx, src, s)
	// What losing a site costs beyond its VMs: etcd quorum, and whether its nodes are
	// remediated automatically.
	s.Etcd = readEtcd(ctx, src)
	s.NodeHealthChecks = readNodeHealthChecks(ctx, src)
	return s, nil
}

// DefaultMigrationsPerCluster is KubeVirt's parallelMigrationsPerCluster default.
const DefaultMigrationsPerCluster = 5

// readKubeVirtConfig reads the KubeVirt CR; one that cannot be read (no permission)
// leaves the rollout strategy unknown, which the plan reports as a warning.
func readKubeVirtConfig(ctx context.Context, dyn dynamic.Interface, s *Snapshot) {
	s.MigrationsPerCluster = DefaultMigrationsPerCluster
	list, err := dyn.Resource(kubevirt.KubeVirts).List(ctx, metav1.ListOptions{Limit: 10})
	if err != nil {
		return
	}
	for _, kv := range list.Items {
		if kv.GetDeletionTimestamp() != nil {
			continue
		}
		if phase, _, _ := unstructured.NestedString(kv.Object, "status", "phase"); phase == "" {
			continue
		}
		s.RolloutStrategy = string(kubevirtv1.VMRolloutStrategyLiveUpdate)
		if rs, _, _ := unstructured.NestedString(kv.Object, "spec", "configuration", "vmRolloutStrategy"); rs != "" {
			s.RolloutStrategy = rs
		}
		if n, ok, _ := unstructured.NestedInt64(kv.Object, "spec", "configuration", "migrations", "parallelMigrationsPerCluster"); ok && n > 0 {
			s.MigrationsPerCluster = int(n)
		}
		return
	}
}

// Derive fills each VM's current site and state from its instance and the nodes.
func (s *Snapshot) Derive() {
	s.nodeIndex = nil
	for i := range s.VMs {
		vm := &s.VMs[i]
		vm.CurrentSite = ""
		if vm.Instance != nil && vm.Instance.NodeName != "" {
			if n, ok := s.Node(vm.Instance.NodeName); ok {
				vm.CurrentSite = n.Site
			}
		}
		if vm.Instance != nil && s.ActiveMigrations[vm.Key()] != "" {
			vm.Instance.Migrating = true
		}
		vm.State = s.stateOf(vm)
	}
}

func (s *Snapshot) stateOf(vm *VM) VMState {
	if vm.Instance == nil || vm.Instance.NodeName == "" {
		switch {
		case vm.HomeSite == "":
			return StateUnpinned
		case vm.Instance == nil:
			return StateStopped
		default:
			return StateUnknown
		}
	}
	if n, ok := s.Node(vm.Instance.NodeName); ok && n.State != NodeReady && !s.SiteAlive(n.Site) {
		return StateStranded
	}
	switch {
	case vm.HomeSite == "":
		return StateUnpinned
	case vm.CurrentSite == "":
		return StateUnknown
	case vm.CurrentSite == vm.HomeSite:
		return StateAligned
	default:
		return StatePendingMove
	}
}

// controllerOf names the controller among owner references, "Kind/name".
func controllerOf(refs []metav1.OwnerReference) string {
	for _, r := range refs {
		if r.Controller != nil && *r.Controller {
			return r.Kind + "/" + r.Name
		}
	}
	return ""
}

// NodeFrom reduces a Node to what placement needs.
func NodeFrom(n *corev1.Node, siteKey string) Node {
	state := NodeUnknown
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			switch c.Status {
			case corev1.ConditionTrue:
				state = NodeReady
			case corev1.ConditionFalse:
				state = NodeNotReady
			}
		}
	}
	alloc := n.Status.Allocatable
	conds := make(map[corev1.NodeConditionType]corev1.ConditionStatus, len(n.Status.Conditions))
	for _, c := range n.Status.Conditions {
		conds[c.Type] = c.Status
	}
	return Node{
		Conditions:            conds,
		Name:                  n.Name,
		Site:                  n.Labels[siteKey],
		State:                 state,
		Unschedulable:         n.Spec.Unschedulable,
		KubeVirtUnschedulable: n.Labels[kubevirtv1.NodeSchedulable] != "true",
		CPUMilli:              alloc.Cpu().MilliValue(),
		MemoryBytes:           alloc.Memory().Value(),
		Labels:                n.Labels,
		Taints:                n.Spec.Taints,
		Fence:                 fencing.NodeFrom(n),
		Devices:               extendedResources(alloc),
	}
}

// extendedResources keeps the device plugin resources with something allocatable.
func extendedResources(alloc corev1.ResourceList) map[string]int64 {
	var out map[string]int64
	for name, q := range alloc {
		if !strings.Contains(string(name), "/") || q.IsZero() {
			continue
		}
		if out == nil {
			out = map[string]int64{}
		}
		out[string(name)] = q.Value()
	}
	return out
}

// placementNeeds reads what KubeVirt adds to a launcher's scheduling beyond the VM's own
// nodeSelector and affinity: device plugin resources and node feature labels.
func placementNeeds(spec *kubevirtv1.VirtualMachineInstanceSpec) (devices []string, features map[string]string, hostModel bool) {
	d := spec.Domain
	for _, g := range d.Devices.GPUs {
		devices = append(devices, g.DeviceName)
	}
	for _, h := range d.Devices.HostDevices {
		devices = append(devices, h.DeviceName)
	}
	features = map[string]string{}
	hostModel = true
	if c := d.CPU; c != nil {
		if c.DedicatedCPUPlacement {
			features[kubevirtv1.CPUManager] = "true"
		}
		switch c.Model {
		case "", kubevirtv1.CPUModeHostModel:
		case kubevirtv1.CPUModeHostPassthrough:
			hostModel = false
		default:
			hostModel = false
			features[kubevirtv1.CPUModelLabel+c.Model] = "true"
		}
		for _, f := range c.Features {
			if f.Policy == "" || f.Policy == "require" {
				features[kubevirtv1.CPUFeatureLabel+f.Name] = "true"
			}
		}
	}
	if len(features) == 0 {
		features = nil
	}
	return devices, features, hostModel
}

// VMFrom reduces a VM and its instance (nil when none) to what decisions need.
func VMFrom(vm *kubevirtv1.VirtualMachine, vmi *kubevirtv1.VirtualMachineInstance, keys selector.Keys) VM {
	out := VM{
		Namespace:       vm.Namespace,
		Name:            vm.Name,
		UID:             vm.UID,
		RunStrategy:     kubevirt.RunStrategy(vm),
		PrintableStatus: string(vm.Status.PrintableStatus),
		Ready:           vm.Status.Ready,
		RestartRequired: kubevirt.VMCondition(vm, kubevirtv1.VirtualMachineRestartRequired),
		StartRequested:  startRequested(vm),
		Deleting:        vm.DeletionTimestamp != nil,
		GitOps:          GitOpsOwner(vm.Labels, vm.Annotations),
		Owner:           controllerOf(vm.OwnerReferences),
		Labels:          vm.Labels,
		Annotations:     vm.Annotations,
		HasAnnotations:  vm.Annotations != nil,
		ResourceVersion: vm.ResourceVersion,
	}
	if it := vm.Spec.Instancetype; it != nil && it.Name != "" {
		out.Instancetype, out.InstancetypeKind = it.Name, it.Kind
		if out.InstancetypeKind == "" {
			out.InstancetypeKind = "VirtualMachineClusterInstancetype"
		}
	}
	if t, ok, err := selector.ParseTier(vm.Labels[keys.Tier]); err != nil {
		out.TierError = fmt.Sprintf("label %s: %v", keys.Tier, err)
	} else if ok {
		out.Tier = t
	}
	if tpl := vm.Spec.Template; tpl != nil {
		out.NodeSelector = tpl.Spec.NodeSelector
		out.HasSelector = tpl.Spec.NodeSelector != nil
		out.HomeSite = tpl.Spec.NodeSelector[keys.Site]
		out.Affinity = tpl.Spec.Affinity
		out.Tolerations = tpl.Spec.Tolerations
		out.CPUMilli, out.MemoryBytes = Requests(&tpl.Spec.Domain)
		out.OverheadBytes = MemoryOverhead(&tpl.Spec)
		out.Claims, out.DataVolumes = volumeClaims(&tpl.Spec)
		out.Devices, out.NodeFeatures, out.HostModelCPU = placementNeeds(&tpl.Spec)
		out.Networks = multusNetworks(vm.Namespace, &tpl.Spec)
	}
	out.Instance = InstanceFrom(vmi)
	return out
}

// startRequested reports a start request KubeVirt has not acted on yet: a restart
// (virt-api's restart queues a stop and a start), or a start. With one pending, the VM
// controller starts the VM again once its instance is gone, whatever its run strategy.
func startRequested(vm *kubevirtv1.VirtualMachine) bool {
	for _, r := range vm.Status.StateChangeRequests {
		if r.Action == kubevirtv1.StartRequest {
			return true
		}
	}
	return false
}

// InstanceFrom reduces a VMI to what sitefail decides on; nil for no VMI.
func InstanceFrom(vmi *kubevirtv1.VirtualMachineInstance) *VMI {
	if vmi == nil {
		return nil
	}
	inst := &VMI{
		UID:          vmi.UID,
		Phase:        string(vmi.Status.Phase),
		NodeName:     kubevirt.RunningNode(vmi),
		NodeSelector: vmi.Spec.NodeSelector,
		Terminating:  vmi.DeletionTimestamp != nil,
	}
	if c, ok := kubevirt.VMICondition(vmi, kubevirtv1.VirtualMachineInstanceReady); ok {
		inst.Ready = c.Status == corev1.ConditionTrue
	}
	if c, ok := kubevirt.VMICondition(vmi, kubevirtv1.VirtualMachineInstanceIsMigratable); ok {
		inst.LiveMigratable = c.Status == corev1.ConditionTrue
		if !inst.LiveMigratable {
			inst.NotMigratable = c.Reason
		}
	} else {
		inst.NotMigratable = "LiveMigratable condition not reported"
	}
	inst.Paused, inst.PausedByUser = kubevirt.PausedState(vmi)
	if ms := vmi.Status.MigrationState; ms != nil && !ms.Completed && !ms.Failed && ms.StartTimestamp != nil {
		inst.Migrating = true
	}
	return inst
}

// Requests estimates what a VM's launcher pod asks the scheduler for: explicit requests
// when set, otherwise the guest memory and one tenth of a core per vCPU (KubeVirt's
// default CPU allocation ratio of 10).
func Requests(d *kubevirtv1.DomainSpec) (cpuMilli, memBytes int64) {
	if q, ok := d.Resources.Requests[corev1.ResourceCPU]; ok {
		cpuMilli = q.MilliValue()
	} else if c := d.CPU; c != nil {
		vcpus := int64(max(c.Cores, 1) * max(c.Sockets, 1) * max(c.Threads, 1))
		cpuMilli = vcpus * 100
	} else {
		cpuMilli = 100
	}
	if q, ok := d.Resources.Requests[corev1.ResourceMemory]; ok {
		memBytes = q.Value()
	} else if d.Memory != nil && d.Memory.Guest != nil {
		memBytes = d.Memory.Guest.Value()
	}
	return cpuMilli, memBytes
}

// MemoryOverhead is what KubeVirt v1.8.0 adds to a launcher pod's memory request on
// x86 (pkg/hypervisor/kvm/hypervisorbackend.go, GetMemoryOverhead), so that capacity
// counts what the scheduler counts: page tables, the fixed cost of the launcher's
// processes, 8Mi per vCPU and for the IOThread, video RAM, VFIO's locked MMIO space,
// dedicated CPUs and a reserved overhead. Probes and SEV add a little more; they are
// left out.
func MemoryOverhead(spec *kubevirtv1.VirtualMachineInstanceSpec) int64 {
	const mi = 1 << 20
	d := &spec.Domain
	_, mem := Requests(d)
	over := pageTables(mem)
	over += (25 + 100 + 25 + 40 + 30) * mi
	vcpus := int64(1)
	if c := d.CPU; c != nil {
		vcpus = int64(max(c.Cores, 1) * max(c.Sockets, 1) * max(c.Threads, 1))
	} else if q, ok := d.Resources.Limits[corev1.ResourceCPU]; ok && q.Value() > 0 {
		vcpus = q.Value()
	} else if q, ok := d.Resources.Requests[corev1.ResourceCPU]; ok && q.Value() > 0 {
		vcpus = q.Value()
	}
	over += 8*mi*vcpus + 8*mi
	if g := d.Devices.AutoattachGraphicsDevice; g == nil || *g {
		over += 32 * mi
	}
	if vfio(spec) {
		over += 1024 * mi
	}
	if d.CPU != nil && d.CPU.DedicatedCPUPlacement {
		over += 100 * mi
	}
	if m := d.Memory; m != nil && m.ReservedOverhead != nil && m.ReservedOverhead.AddedOverhead != nil {
		over += m.ReservedOverhead.AddedOverhead.Value()
	}
	return over
}

// pageTables is the request in kilobytes (rounded up) / 512, as KubeVirt counts it.
func pageTables(mem int64) int64 { return (mem + 999) / 1000 * 1000 / 512 }

// vfio reports a VMI with a host device, a GPU or an SR-IOV interface (KubeVirt's
// IsVFIOVMI): all its RAM is locked for DMA.
func vfio(spec *kubevirtv1.VirtualMachineInstanceSpec) bool {
	if len(spec.Domain.Devices.HostDevices) > 0 || len(spec.Domain.Devices.GPUs) > 0 {
		return true
	}
	for _, i := range spec.Domain.Devices.Interfaces {
		if i.SRIOV != nil {
			return true
		}
	}
	return false
}

// GitOpsOwner names the GitOps controller whose tracking metadata an object carries;
// such a controller reverts a direct patch at its next sync.
func GitOpsOwner(labels, annotations map[string]string) string {
	switch {
	case annotations["argocd.argoproj.io/tracking-id"] != "", labels["argocd.argoproj.io/instance"] != "":
		return "argocd"
	case labels["kustomize.toolkit.fluxcd.io/name"] != "", labels["helm.toolkit.fluxcd.io/name"] != "":
		return "flux"
	}
	return ""
}

func listAll(ctx context.Context, fn pager.ListPageFunc, each func(runtime.Object) error, opts metav1.ListOptions) error {
	p := pager.New(fn)
	p.PageSize = PageSize
	// One page fetched ahead while this one is reduced; the default of ten would hold
	// a 5,000-VM list whole.
	p.PageBufferSize = 1
	return p.EachListItem(ctx, opts, each)
}

func listDynamic(ctx context.Context, dc dynamic.Interface, gvr schema.GroupVersionResource, ns, sel string, each func(*unstructured.Unstructured) error) error {
	return listAll(ctx, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		return dc.Resource(gvr).Namespace(ns).List(ctx, o)
	}, func(obj runtime.Object) error {
		return each(obj.(*unstructured.Unstructured))
	}, metav1.ListOptions{LabelSelector: sel})
}

// describe turns API errors into messages that name the missing piece and the fix;
// nil stays nil.
func describe(err error, verb, resource, ns string) error {
	if err == nil {
		return nil
	}
	scope := "in all namespaces"
	if ns != "" {
		scope = "in namespace " + ns
	}
	switch {
	case apierrors.IsForbidden(err):
		return &AccessError{Verb: verb, Resource: resource, Scope: scope, Err: err}
	case apierrors.IsNotFound(err) && resource != "nodes" && resource != "pods":
		return fmt.Errorf("%s: the KubeVirt CRDs are not installed on this cluster (is KubeVirt deployed? try 'kubectl get crd virtualmachines.kubevirt.io'): %w", resource, ErrNoKubeVirt)
	}
	return fmt.Errorf("%s %s %s: %w", verb, resource, scope, err)
}

// ErrNoKubeVirt marks a cluster without the KubeVirt API.
var ErrNoKubeVirt = fmt.Errorf("KubeVirt API not found")

// AccessError names the verb and resource RBAC refused.
type AccessError struct {
	Verb, Resource, Scope string
	Err                   error
}

func (e *AccessError) Error() string {
	return fmt.Sprintf("forbidden: you may not %s %s %s; ask a cluster admin for a Role granting verb %q on %q: %v", e.Verb, e.Resource, e.Scope, e.Verb, e.Resource, e.Err)
}

func (e *AccessError) Unwrap() error { return e.Err }

// CanRead checks, with one single-item LIST per resource, that everything Read lists
// can be listed: the same errors as Read, in milliseconds instead of a full read. The
// TUI checks so before it takes the screen, then fills its watch caches.
func CanRead(ctx context.Context, src Source) error {
	one := metav1.ListOptions{Limit: 1}
	if _, err := src.Kube.CoreV1().Nodes().List(ctx, one); err != nil {
		return describe(err, "list", "nodes", "")
	}
	for _, r := range []struct {
		gvr  schema.GroupVersionResource
		name string
	}{{kubevirt.VMIs, "virtualmachineinstances.kubevirt.io"}, {kubevirt.VMs, "virtualmachines.kubevirt.io"}, {kubevirt.Migrations, "virtualmachineinstancemigrations.kubevirt.io"}} {
		if _, err := src.Dynamic.Resource(r.gvr).Namespace(src.Namespace).List(ctx, one); err != nil {
			return describe(err, "list", r.name, src.Namespace)
		}
	}
	one.LabelSelector = kubevirt.LauncherSelector
	if _, err := src.Kube.CoreV1().Pods(src.Namespace).List(ctx, one); err != nil {
		return describe(err, "list", "pods", src.Namespace)
	}
	return nil
}

// readNodeLeases reads the kubelets' lease renewals when a node is not Ready: whether a
// dead site went silent at once (its power) or node by node (a partition). One LIST,
// and none while every node is Ready; a lease that cannot be read leaves it unknown.
func readNodeLeases(ctx context.Context, src Source, s *Snapshot) {
	down := false
	for _, n := range s.Nodes {
		down = down || n.State != NodeReady
	}
	if !down || src.Kube == nil {
		return
	}
	leases, err := src.Kube.CoordinationV1().Leases(corev1.NamespaceNodeLease).List(ctx, metav1.ListOptions{})
	if err != nil {
		s.FencingUnread = append(s.FencingUnread, fmt.Sprintf("node leases (%v)", err))
		return
	}
	renewed := map[string]time.Time{}
	for _, l := range leases.Items {
		if l.Spec.RenewTime != nil {
			renewed[l.Name] = l.Spec.RenewTime.Time
		}
	}
	for i := range s.Nodes {
		s.Nodes[i].Fence.LeaseRenewed = renewed[s.Nodes[i].Name]
	}
}
