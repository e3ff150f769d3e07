package snapshot

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
)

// Objects are the raw objects a snapshot is made of, from LISTs or watch caches.
type Objects struct {
	Nodes      []*corev1.Node
	VMs        []*unstructured.Unstructured
	VMIs       []*unstructured.Unstructured
	Pods       []*corev1.Pod
	Migrations []*unstructured.Unstructured
}

// Assemble builds a snapshot from raw objects (Read's LIST results). The TUI reduces
// each watched object once per event with the same functions (NodeFrom, VMFrom,
// InstanceFrom, LauncherOf, ActiveMigration) and joins them with Compose, so both see
// the cluster through the same rules.
func Assemble(keys selector.Keys, o Objects) (*Snapshot, error) {
	nodes := make([]Node, 0, len(o.Nodes))
	for _, n := range o.Nodes {
		nodes = append(nodes, NodeFrom(n, keys.Site))
	}
	instances := make(map[string]*VMI, len(o.VMIs))
	for _, u := range o.VMIs {
		vmi, err := kubevirt.ToVMI(u)
		if err != nil {
			return nil, err
		}
		instances[vmi.Namespace+"/"+vmi.Name] = InstanceFrom(vmi)
	}
	vms := make([]VM, 0, len(o.VMs))
	for _, u := range o.VMs {
		vm, err := kubevirt.ToVM(u)
		if err != nil {
			return nil, err
		}
		vms = append(vms, VMFrom(vm, nil, keys))
	}
	launchers := map[types.UID][]string{}
	for _, p := range o.Pods {
		if uid, ok := LauncherOf(p.Labels); ok {
			launchers[uid] = append(launchers[uid], p.Name)
		}
	}
	active := map[string]string{}
	for _, u := range o.Migrations {
		m, err := kubevirt.ToMigration(u)
		if err != nil {
			return nil, err
		}
		if vmi, ok := ActiveMigration(m); ok {
			active[vmi] = m.Name
		}
	}
	return Compose(keys, nodes, vms, instances, launchers, active), nil
}

// LauncherOf is the UID of the VMI whose virt-launcher pod carries these labels.
func LauncherOf(labels map[string]string) (types.UID, bool) {
	uid := labels[kubevirt.CreatedByLabel]
	return types.UID(uid), uid != ""
}

// ActiveMigration names the VMI (namespace/name) of a migration not yet in a final phase.
func ActiveMigration(m *kubevirtv1.VirtualMachineInstanceMigration) (string, bool) {
	if done, _ := kubevirt.MigrationDone(m); done {
		return "", false
	}
	return m.Namespace + "/" + m.Spec.VMIName, true
}

// Compose joins reduced objects into a snapshot: each VM gets its own copy of its
// instance (by namespace/name), then placement is derived. vms is kept as the
// snapshot's slice; instances are not changed.
func Compose(keys selector.Keys, nodes []Node, vms []VM, instances map[string]*VMI, launchers map[types.UID][]string, active map[string]string) *Snapshot {
	s := &Snapshot{Keys: keys, Nodes: nodes, VMs: vms, LauncherPods: launchers, ActiveMigrations: active}
	for i := range s.VMs {
		vm := &s.VMs[i]
		vm.Instance = nil
		if inst := instances[vm.Key()]; inst != nil {
			c := *inst
			vm.Instance = &c
		}
	}
	s.Derive()
	return s
}
