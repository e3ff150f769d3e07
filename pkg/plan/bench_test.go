package plan

import (
	"fmt"
	"testing"

	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

// bigSnapshot is a 5,000-VM cluster over 2 sites of 50 nodes.
func bigSnapshot(vms int) *snapshot.Snapshot {
	s := twoSites(snapshot.NodeReady)
	s.Nodes = nil
	for i := 0; i < 50; i++ {
		s.Nodes = append(s.Nodes, node(fmt.Sprintf("p%d", i), "Primary", snapshot.NodeReady), node(fmt.Sprintf("d%d", i), "DR", snapshot.NodeReady))
	}
	for i := range s.Nodes {
		s.Nodes[i].CPUMilli, s.Nodes[i].MemoryBytes = 1<<20, 1<<50
	}
	for i := 0; i < vms; i++ {
		s.VMs = append(s.VMs, vm(fmt.Sprintf("ns%d", i%20), fmt.Sprintf("vm%d", i), i%4, "Primary", kubevirtv1.RunStrategyAlways, fmt.Sprintf("p%d", i%50), i%3 != 0))
	}
	return s
}

// BenchmarkPlan5000 is the pure planning cost of `plan --all` at 5,000 VMs; the target
// is well under a second so that plan, move and the TUI replan instantly.
func BenchmarkPlan5000(b *testing.B) {
	s := bigSnapshot(5000)
	req := Request{To: "DR", All: true, Mode: ModeAuto, MaxInFlight: 5}
	b.ReportAllocs()
	for b.Loop() {
		s.Derive()
		p, err := Build(s, req)
		if err != nil || len(p.Steps) != 5000 {
			b.Fatal(err)
		}
	}
}
