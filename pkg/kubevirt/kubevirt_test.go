package kubevirt

import (
	"testing"

	kubevirtv1 "kubevirt.io/api/core/v1"
)

func TestRunningNodeFollowsACompletedMigration(t *testing.T) {
	vmi := &kubevirtv1.VirtualMachineInstance{Status: kubevirtv1.VirtualMachineInstanceStatus{NodeName: "primary-1"}}
	if RunningNode(vmi) != "primary-1" {
		t.Fatal("no migration: status.nodeName")
	}
	vmi.Status.MigrationState = &kubevirtv1.VirtualMachineInstanceMigrationState{TargetNode: "dr-1"}
	if RunningNode(vmi) != "primary-1" {
		t.Fatal("a migration in flight: still the source")
	}
	vmi.Status.MigrationState.Completed = true
	if RunningNode(vmi) != "dr-1" {
		t.Fatal("completed, not handed over yet: the domain runs on the target")
	}
	vmi.Status.MigrationState.Failed = true
	if RunningNode(vmi) != "primary-1" {
		t.Fatal("a failed migration leaves the domain on the source")
	}
}
