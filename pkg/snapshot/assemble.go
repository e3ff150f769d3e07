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

// Assemble builds a snapshot from raw objects. The TUI calls it on its watch caches;
// Read calls it on its LIST results, so both see the cluster through the same rules.
func Assemble(keys selector.Keys, o Objects) (*Snapshot, error) {
	s := &Snapshot{Keys: keys, LauncherPods: map[types.UID][]string{}, ActiveMigrations: map[string]string{}}
	for _, n := range o.Nodes {
		s.Nodes = append(s.Nodes, NodeFrom(n, keys.Site))
	}
	vmis := make(map[string]*kubevirtv1.VirtualMachineInstance, len(o.VMIs))
	for _, u := range o.VMIs {
		vmi, err := kubevirt.ToVMI(u)
		if err != nil {
			return nil, err
		}
		vmis[vmi.Namespace+"/"+vmi.Name] = vmi
	}
	for _, u := range o.VMs {
		vm, err := kubevirt.ToVM(u)
		if err != nil {
			return nil, err
		}
		s.VMs = append(s.VMs, VMFrom(vm, vmis[vm.Namespace+"/"+vm.Name], keys))
	}
	for _, p := range o.Pods {
		if uid := p.Labels[kubevirt.CreatedByLabel]; uid != "" {
			s.LauncherPods[types.UID(uid)] = append(s.LauncherPods[types.UID(uid)], p.Name)
		}
	}
	for _, u := range o.Migrations {
		m, err := kubevirt.ToMigration(u)
		if err != nil {
			return nil, err
		}
		if done, _ := kubevirt.MigrationDone(m); !done {
			s.ActiveMigrations[m.Namespace+"/"+m.Spec.VMIName] = m.Name
		}
	}
	s.Derive()
	return s, nil
}
