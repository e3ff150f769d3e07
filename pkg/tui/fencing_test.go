package tui

import (
	"context"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

// deadSite is testSnapshot(true) with a second node on Primary, both down for ten
// minutes, silent since 40 s before that, and a Fence Agents Remediation that powered
// off each node in fenced five minutes ago, as a full read holds them at now. lastSilent,
// when set, is how long ago p2's kubelet last renewed its lease instead. The watches
// hold no evidence: watched drops it, as the ui's caches do.
func deadSite(now time.Time, watched bool, lastSilent time.Duration, fenced ...string) *snapshot.Snapshot {
	s := testSnapshot(true)
	p2 := s.Nodes[0]
	p2.Name, p2.Fence.Name = "p2", "p2"
	s.Nodes = append(s.Nodes, p2)
	for i := range s.Nodes {
		n := &s.Nodes[i]
		if n.Site != "Primary" {
			continue
		}
		n.Fence.NotReadySince, n.Fence.Created = now.Add(-10*time.Minute), now.Add(-48*time.Hour)
		n.Fence.LeaseRenewed = now.Add(-10*time.Minute - 40*time.Second)
		if n.Name == "p2" && lastSilent > 0 {
			n.Fence.LeaseRenewed = now.Add(-lastSilent)
		}
	}
	for _, node := range fenced {
		s.Fencing.FenceAgentsRemediations = append(s.Fencing.FenceAgentsRemediations, farOff(node, now.Add(-5*time.Minute)))
	}
	if watched {
		s.Fencing = fencing.Objects{}
		for i := range s.Nodes {
			s.Nodes[i].Fence.LeaseRenewed = time.Time{}
		}
	}
	s.Derive()
	return s
}

// farOff is a Fence Agents Remediation whose agent powered the node off at at.
func farOff(node string, at time.Time) unstructured.Unstructured {
	ts := at.UTC().Format(time.RFC3339)
	return unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "fence-agents-remediation.medik8s.io/v1alpha1", "kind": "FenceAgentsRemediation",
		"metadata": map[string]any{"name": node, "namespace": "medik8s", "uid": "uid-" + node, "resourceVersion": "7", "creationTimestamp": ts},
		"spec":     map[string]any{"agent": "fence_ipmilan", "sharedparameters": map[string]any{"--action": "off"}},
		"status": map[string]any{"conditions": []any{
			map[string]any{"type": "FenceAgentActionSucceeded", "status": "True", "reason": "FenceAgentSucceeded", "message": "", "lastTransitionTime": ts},
			map[string]any{"type": "Succeeded", "status": "True", "reason": "RemediationFinishedSuccessfully", "message": "", "lastTransitionTime": ts},
		}},
	}}
}

// The confirmation of a failover shows what it rests on before the operator types the
// site's name, from the full read the plan was made from (the watches hold no
// evidence): every node fenced, or the nodes without strong evidence, and each node's
// proof and lease age, as sites -o wide shows them.
func TestFailoverConfirmationShowsEachNodesEvidence(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fenced []string
		want   []string
	}{
		{"every node fenced", []string{"p1", "p2"}, []string{"PROVEN", "strong: FenceAgentsRemediation p1", "strong: FenceAgentsRemediation p2"}},
		{"one node without proof", []string{"p1"}, []string{"NOT PROVEN", "p2 (none)", "strong: FenceAgentsRemediation p1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Now()
			full := deadSite(now, false, 0, tc.fenced...)
			m := newModel(100, 40, deadSite(now, true, 0), Options{Read: func(context.Context) (*snapshot.Snapshot, error) { return full, nil }})
			keys(m, "right", "1")
			_, cmd := m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("p")})
			if cmd == nil {
				t.Fatal("no full read for the plan")
			}
			m.Update(cmd())
			keys(m, "m")
			v := m.View()
			if !strings.Contains(v, `Type "Primary"`) {
				t.Fatalf("not at the confirmation:\n%s", v)
			}
			for _, want := range append(tc.want, "LEASE-AGE", "10m4") {
				if !strings.Contains(v, want) {
					t.Errorf("confirmation lacks %q:\n%s", want, v)
				}
			}
			if len(tc.fenced) == 2 && strings.Contains(v, "NOT PROVEN") {
				t.Errorf("a site fenced node by node is shown unproven:\n%s", v)
			}
			if p2 := lineWith(v, "p2  "); len(tc.fenced) == 1 && !strings.Contains(p2, "none") {
				t.Errorf("p2's row %q does not say it has no evidence:\n%s", p2, v)
			}
		})
	}
}

func lineWith(screen, s string) string {
	for _, l := range strings.Split(screen, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// n reads the cluster afresh for the focused site's nodes (the watches hold no leases
// and no evidence) and shows, for a dead site, whether a failover of it is proven, each
// node's proof and lease age, and a site whose nodes went silent minutes apart as
// possibly partitioned; ←/→ switch sites within the same read, esc closes,
// and the next n reads again.
func TestNodesPaneReadsTheEvidenceAfresh(t *testing.T) {
	now := time.Now()
	reads := 0
	// p2's kubelet went silent six minutes ago, before its fence (a renewal after the
	// fence would contradict it, and the site would not be proven).
	full := deadSite(now, false, 6*time.Minute, "p1", "p2")
	m := newModel(100, 30, deadSite(now, true, 0), Options{Read: func(context.Context) (*snapshot.Snapshot, error) {
		reads++
		return full, nil
	}})
	keys(m, "right")
	_, cmd := m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("n")})
	if cmd == nil || !strings.Contains(m.View(), "reading the cluster for the nodes' leases and fencing evidence") {
		t.Fatalf("n started no read:\n%s", m.View())
	}
	m.Update(cmd())
	v := m.View()
	for _, want := range []string{"Primary DOWN 0/2 nodes Ready", "FENCING Primary PROVEN down", "POSSIBLY PARTITIONED", "went silent at different times",
		"strong: FenceAgentsRemediation p2", "6m0s"} {
		if !strings.Contains(v, want) {
			t.Errorf("nodes pane lacks %q:\n%s", want, v)
		}
	}
	checkSize(t, v, 100, 30)
	keys(m, "h")
	if v := m.View(); !strings.Contains(v, "DR UP 1/1 nodes Ready") || strings.Contains(v, "PROVEN") || reads != 1 {
		t.Fatalf("←: want DR's nodes from the same read (reads %d):\n%s", reads, v)
	}
	// An answer to an earlier opening is ignored.
	m.Update(NodesMsg{Err: context.DeadlineExceeded, Seq: m.nodesSeq - 1})
	if m.nodesErr != nil {
		t.Fatal("a stale read replaced the current one")
	}
	keys(m, "esc")
	if v := m.View(); strings.Contains(v, "nodes Ready") || !strings.Contains(v, "prod/db-1") {
		t.Fatalf("esc: want the sites back:\n%s", v)
	}
	_, cmd = m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("n")})
	m.Update(cmd())
	if reads != 2 {
		t.Fatalf("reopening read %d times in all, want 2", reads)
	}
}

// Found by review (issue 21): a plan that fails no site over but guards a start by a
// dead site (5k) asks for that site's name, which the move then gets as its
// confirmation; it used to ask for "yes", and the move refused the start.
func TestConfirmationAsksForASiteAStartIsGuardedBy(t *testing.T) {
	m := &Model{plan: &plan.Plan{Steps: []plan.Step{{Namespace: "a", Name: "v", Action: plan.ActionRestart, To: "DR", ReleasedFrom: "Primary"}}}}
	if got := m.confirmWord(); got != "Primary" {
		t.Fatalf("confirm word %q; want Primary", got)
	}
}
