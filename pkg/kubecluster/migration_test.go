package kubecluster

import (
	"testing"

	kubevirtv1 "kubevirt.io/api/core/v1"
)

// A failed migration falls back to a restart only if its target pod was placed; the
// phase history virt-controller writes is what tells.
func TestTargetPlacedFollowsThePhaseHistory(t *testing.T) {
	for _, tc := range []struct {
		name   string
		phases []kubevirtv1.VirtualMachineInstanceMigrationPhase
		want   bool
	}{
		{"unschedulable target deleted", []kubevirtv1.VirtualMachineInstanceMigrationPhase{kubevirtv1.MigrationPending, kubevirtv1.MigrationScheduling, kubevirtv1.MigrationFailed}, false},
		{"queued behind the limit", []kubevirtv1.VirtualMachineInstanceMigrationPhase{kubevirtv1.MigrationPending}, false},
		{"no history", nil, false},
		{"source failed mid-copy", []kubevirtv1.VirtualMachineInstanceMigrationPhase{kubevirtv1.MigrationPending, kubevirtv1.MigrationScheduling, kubevirtv1.MigrationScheduled, kubevirtv1.MigrationPreparingTarget, kubevirtv1.MigrationTargetReady, kubevirtv1.MigrationRunning, kubevirtv1.MigrationFailed}, true},
		{"failed while preparing", []kubevirtv1.VirtualMachineInstanceMigrationPhase{kubevirtv1.MigrationScheduling, kubevirtv1.MigrationScheduled, kubevirtv1.MigrationFailed}, true},
	} {
		m := &kubevirtv1.VirtualMachineInstanceMigration{}
		for _, p := range tc.phases {
			m.Status.PhaseTransitionTimestamps = append(m.Status.PhaseTransitionTimestamps, kubevirtv1.VirtualMachineInstanceMigrationPhaseTransitionTimestamp{Phase: p})
		}
		if got := targetPlaced(m); got != tc.want {
			t.Errorf("%s: targetPlaced %v; want %v", tc.name, got, tc.want)
		}
	}
}
