package plan

import (
	"strings"
	"testing"

	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/journal"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

func TestOtherSite(t *testing.T) {
	s := twoSites(snapshot.NodeReady)
	s.VMs = []snapshot.VM{
		vm("a", "onp", 1, "Primary", kubevirtv1.RunStrategyAlways, "p1", true),
		vm("a", "stopped", 1, "Primary", kubevirtv1.RunStrategyHalted, "", true),
		vm("a", "ondr", 2, "DR", kubevirtv1.RunStrategyAlways, "d1", true),
	}
	s.Derive()
	for _, tc := range []struct {
		vms     []string
		want    string
		wantErr string
	}{
		{vms: []string{"a/onp", "a/stopped"}, want: "DR"},
		{vms: []string{"a/ondr"}, want: "Primary"},
		{vms: []string{"a/onp", "a/ondr"}, wantErr: "on both sites"},
	} {
		got, err := OtherSite(s, Request{VMs: tc.vms})
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: %v, want error %q", tc.vms, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%v: %q %v, want %q", tc.vms, got, err, tc.want)
		}
	}
	three := twoSites(snapshot.NodeReady)
	three.Nodes = append(three.Nodes, node("e1", "Edge", snapshot.NodeReady))
	if _, err := OtherSite(three, Request{All: true}); err == nil || !strings.Contains(err.Error(), "exactly two sites") {
		t.Errorf("three sites: %v", err)
	}
}

func TestFailbackTarget(t *testing.T) {
	moved := func(name, from, to string) snapshot.VM {
		v := vm("a", name, 1, to, kubevirtv1.RunStrategyAlways, "d1", true)
		v.Annotations = map[string]string{journal.From: from, journal.To: to, journal.Phase: journal.PhaseDone}
		return v
	}
	s := twoSites(snapshot.NodeReady)
	handMoved := moved("hand", "Primary", "DR")
	handMoved.HomeSite = "Primary" // moved back by hand since
	s.VMs = []snapshot.VM{moved("x", "Primary", "DR"), moved("y", "Primary", "DR"), handMoved,
		vm("a", "never", 1, "DR", kubevirtv1.RunStrategyAlways, "d2", true)}
	s.Derive()
	fb, err := FailbackTarget(s, Request{All: true})
	if err != nil {
		t.Fatal(err)
	}
	if fb.To != "Primary" || strings.Join(fb.VMs, ",") != "a/x,a/y" || strings.Join(fb.Dropped, ",") != "a/hand,a/never" {
		t.Fatalf("failback: %+v", fb)
	}
	s.VMs = append(s.VMs, moved("z", "Edge", "DR"))
	if _, err := FailbackTarget(s, Request{All: true}); err == nil || !strings.Contains(err.Error(), "different sites") {
		t.Fatalf("mixed origins: %v", err)
	}
}
