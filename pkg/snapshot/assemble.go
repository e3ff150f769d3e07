package snapshot

import (
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
)

// Read and the TUI's watches reduce each object with the same functions (NodeFrom,
// VMFrom, InstanceFrom, LauncherOf, ActiveMigration) and join them with Compose, so
// both see the cluster through the same rules.

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
