package plan

import (
	"testing"

	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

func TestDevicesAndNodeFeatures(t *testing.T) {
	const gpu = "nvidia.com/GA102GL_A10"
	tests := []struct {
		name      string
		vm        func(*snapshot.VM)
		nodes     func(s *snapshot.Snapshot)
		mode      Mode
		wantBlock string
	}{
		{name: "GPU only on the source", vm: func(v *snapshot.VM) { v.Devices = []string{gpu} },
			nodes: func(s *snapshot.Snapshot) { s.Nodes[0].Devices = map[string]int64{gpu: 1} }, wantBlock: "DeviceNotOnTarget"},
		{name: "GPU on a DR node too", vm: func(v *snapshot.VM) { v.Devices = []string{gpu} },
			nodes: func(s *snapshot.Snapshot) { s.Nodes[3].Devices = map[string]int64{gpu: 2} }},
		{name: "dedicated CPUs without a CPU manager on DR", vm: func(v *snapshot.VM) { v.NodeFeatures = map[string]string{kubevirtv1.CPUManager: "true"} },
			wantBlock: "NodeFeatureNotOnTarget"},
		{name: "dedicated CPUs, CPU manager on d1", vm: func(v *snapshot.VM) { v.NodeFeatures = map[string]string{kubevirtv1.CPUManager: "true"} },
			nodes: func(s *snapshot.Snapshot) { s.Nodes[2].Labels[kubevirtv1.CPUManager] = "true" }},
		{name: "named CPU model and a feature, split over two DR nodes", vm: func(v *snapshot.VM) {
			v.NodeFeatures = map[string]string{kubevirtv1.CPUModelLabel + "Skylake": "true", kubevirtv1.CPUFeatureLabel + "avx512f": "true"}
		}, nodes: func(s *snapshot.Snapshot) {
			s.Nodes[2].Labels[kubevirtv1.CPUModelLabel+"Skylake"] = "true"
			s.Nodes[3].Labels[kubevirtv1.CPUFeatureLabel+"avx512f"] = "true"
		}, wantBlock: "NodeFeatureNotOnTarget"},
		{name: "host-model CPU no DR node can run", vm: func(v *snapshot.VM) { v.HostModelCPU = true },
			nodes: func(s *snapshot.Snapshot) { s.Nodes[0].Labels[kubevirtv1.HostModelCPULabel+"Icelake-Server"] = "true" }, wantBlock: "HostModelCPUMismatch"},
		{name: "host-model CPU that DR can run", vm: func(v *snapshot.VM) { v.HostModelCPU = true },
			nodes: func(s *snapshot.Snapshot) {
				s.Nodes[0].Labels[kubevirtv1.HostModelCPULabel+"Icelake-Server"] = "true"
				s.Nodes[2].Labels[kubevirtv1.SupportedHostModelMigrationCPU+"Icelake-Server"] = "true"
			}},
		{name: "host-model CPU, restarted rather than migrated", vm: func(v *snapshot.VM) { v.HostModelCPU = true }, mode: ModeRestart,
			nodes: func(s *snapshot.Snapshot) { s.Nodes[0].Labels[kubevirtv1.HostModelCPULabel+"Icelake-Server"] = "true" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := twoSites(snapshot.NodeReady)
			if tc.nodes != nil {
				tc.nodes(s)
			}
			v := vm("a", "vm", 1, "Primary", kubevirtv1.RunStrategyAlways, "p1", true)
			tc.vm(&v)
			s.VMs = []snapshot.VM{v}
			p := build(t, s, Request{To: "DR", All: true, Mode: tc.mode})
			for _, code := range []string{"DeviceNotOnTarget", "NodeFeatureNotOnTarget", "HostModelCPUMismatch"} {
				if got := hasIssue(p.Blockers, code, "a/vm"); got != (code == tc.wantBlock) {
					t.Errorf("blocker %s: %v, want %v: %+v", code, got, code == tc.wantBlock, p.Blockers)
				}
			}
		})
	}
}

func TestSiteKeyInTheInstancetypeBlocks(t *testing.T) {
	s := twoSites(snapshot.NodeReady)
	v := vm("a", "vm", 1, "Primary", kubevirtv1.RunStrategyAlways, "p1", true)
	v.Instancetype, v.InstancetypeKind, v.InstancetypeSite = "primary-large", "VirtualMachineClusterInstancetype", "Primary"
	s.VMs = []snapshot.VM{v}
	p := build(t, s, Request{To: "DR", All: true})
	if !hasIssue(p.Blockers, "SiteInInstancetype", "a/vm") {
		t.Fatalf("want SiteInInstancetype: %+v", p.Blockers)
	}
	s.InstancetypesUnread = "cannot list virtualmachineclusterinstancetypes: forbidden"
	s.VMs[0].InstancetypeSite = ""
	p = build(t, s, Request{To: "DR", All: true})
	if p.Blocked(false) || !hasIssue(p.Warnings, "InstancetypesUnchecked", "") {
		t.Fatalf("unread instance types are a warning: %+v %+v", p.Blockers, p.Warnings)
	}
}

// Issue 20, behaviour 6: an instance type with a nodeSelector makes KubeVirt v1.8.0
// refuse any template nodeSelector, so the move's site patch would fail at the write.
func TestNodeSelectorInTheInstancetypeBlocks(t *testing.T) {
	s := twoSites(snapshot.NodeReady)
	v := vm("a", "vm", 1, "", kubevirtv1.RunStrategyAlways, "p1", true)
	v.Instancetype, v.InstancetypeKind, v.InstancetypeSelects = "large", "VirtualMachineClusterInstancetype", true
	s.VMs = []snapshot.VM{v}
	p := build(t, s, Request{To: "DR", All: true})
	if !hasIssue(p.Blockers, "NodeSelectorInInstancetype", "a/vm") {
		t.Fatalf("want NodeSelectorInInstancetype: %+v", p.Blockers)
	}
}
