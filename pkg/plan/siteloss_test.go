package plan

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

// threeSites is Primary and DR with two nodes each, and a one-node arbiter site.
func threeSites(primary snapshot.NodeState) *snapshot.Snapshot {
	s := twoSites(primary)
	a := node("a1", "arbiter", snapshot.NodeReady)
	a.Labels[snapshot.ZoneLabel] = snapshot.ArbiterZone
	s.Nodes = append(s.Nodes, a)
	return s
}

func issue(issues []Issue, code string) *Issue {
	for i := range issues {
		if issues[i].Code == code {
			return &issues[i]
		}
	}
	return nil
}

func TestWitnessSiteIsNeverATarget(t *testing.T) {
	s := threeSites(snapshot.NodeReady)
	s.VMs = []snapshot.VM{vm("a", "web", 1, "Primary", kubevirtv1.RunStrategyAlways, "p1", true)}
	p := build(t, s, Request{All: true, To: "arbiter"})
	b := issue(p.Blockers, "WitnessTarget")
	if b == nil || b.Overridable || !p.Blocked(true) {
		t.Fatalf("a witness target must be a blocker --force cannot waive: %+v", p.Blockers)
	}
	if !strings.Contains(b.Message, snapshot.ZoneLabel+"=arbiter") || !strings.Contains(b.Message, "--to (DR, Primary)") {
		t.Fatalf("the blocker must say why and name the data sites: %s", b.Message)
	}
	// Declared by the operator: the fix names the declaration.
	s = twoSites(snapshot.NodeReady)
	s.Keys.Witnesses = []string{"DR"}
	s.VMs = []snapshot.VM{vm("a", "web", 1, "Primary", kubevirtv1.RunStrategyAlways, "p1", true)}
	p = build(t, s, Request{All: true, To: "DR"})
	if b := issue(p.Blockers, "WitnessTarget"); b == nil || !strings.Contains(b.Message, "drop it from --witness-site") {
		t.Fatalf("declared witness: %+v", p.Blockers)
	}
	// A data site is no witness.
	s = threeSites(snapshot.NodeReady)
	s.VMs = []snapshot.VM{vm("a", "web", 1, "Primary", kubevirtv1.RunStrategyAlways, "p1", true)}
	if p := build(t, s, Request{All: true, To: "DR"}); issue(p.Blockers, "WitnessTarget") != nil {
		t.Fatalf("DR is no witness: %+v", p.Blockers)
	}
}

func TestOtherSiteSkipsTheWitness(t *testing.T) {
	s := threeSites(snapshot.NodeReady)
	s.VMs = []snapshot.VM{
		vm("a", "onp", 1, "Primary", kubevirtv1.RunStrategyAlways, "p1", true),
		vm("a", "ondr", 1, "DR", kubevirtv1.RunStrategyAlways, "d1", true),
		vm("a", "ona", 1, "arbiter", kubevirtv1.RunStrategyAlways, "a1", true),
		vm("a", "unpinned", 1, "", kubevirtv1.RunStrategyHalted, "", true),
	}
	s.Derive()
	for _, tc := range []struct {
		vms           []string
		want, wantErr string
	}{
		{vms: []string{"a/onp"}, want: "DR"},
		{vms: []string{"a/ondr"}, want: "Primary"},
		{vms: []string{"a/onp", "a/ondr"}, wantErr: "on both sites"},
		{vms: []string{"a/ona"}, wantErr: "neither DR nor Primary"},
		{vms: []string{"a/unpinned"}, wantErr: "on no site"},
		{vms: []string{"a/onp", "a/ona"}, wantErr: "on Primary, arbiter"},
	} {
		got, err := OtherSite(s, Request{VMs: tc.vms})
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: %q %v, want error %q", tc.vms, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%v: %q %v, want %q", tc.vms, got, err, tc.want)
		}
	}
	// Three data sites: refused, naming the way out.
	s.Nodes[len(s.Nodes)-1].Labels = map[string]string{siteKey: "arbiter"}
	if _, err := OtherSite(s, Request{VMs: []string{"a/onp"}}); err == nil || !strings.Contains(err.Error(), "--witness-site") {
		t.Fatalf("three data sites: %v", err)
	}
	s.Keys.Witnesses = []string{"arbiter"}
	if got, err := OtherSite(s, Request{VMs: []string{"a/onp"}}); err != nil || got != "DR" {
		t.Fatalf("declared witness: %q %v", got, err)
	}
}

func etcdOn(nodes ...string) *snapshot.Etcd {
	e := &snapshot.Etcd{}
	for _, n := range nodes {
		e.Members = append(e.Members, snapshot.EtcdMember{Pod: "kube-system/etcd-" + n, Node: n, Ready: true})
	}
	return e
}

// The quorum warning: a live source site whose loss leaves no etcd quorum. A dead source
// whose API server answers has a quorum; external etcd says nothing; pods that could not
// be listed are a warning of their own.
func TestQuorumAtRiskWarnsForALiveSource(t *testing.T) {
	for _, tc := range []struct {
		name      string
		primary   snapshot.NodeState
		etcd      *snapshot.Etcd
		code      string
		noWarning bool
	}{
		{name: "2 of 3 on the live source", primary: snapshot.NodeReady, etcd: etcdOn("p1", "p2", "d1"), code: "QuorumAtRisk"},
		{name: "1 of 3 with the arbiter", primary: snapshot.NodeReady, etcd: etcdOn("p1", "d1", "a1"), noWarning: true},
		{name: "2 of 3 on a dead source", primary: snapshot.NodeNotReady, etcd: etcdOn("p1", "p2", "d1"), noWarning: true},
		{name: "no etcd pods", primary: snapshot.NodeReady, etcd: &snapshot.Etcd{}, noWarning: true},
		{name: "pods forbidden", primary: snapshot.NodeReady, etcd: &snapshot.Etcd{Unread: "forbidden"}, code: "QuorumUnchecked"},
	} {
		s := threeSites(tc.primary)
		s.Etcd = tc.etcd
		s.VMs = []snapshot.VM{vm("a", "web", 1, "Primary", kubevirtv1.RunStrategyAlways, "p1", true)}
		p := build(t, s, Request{All: true, To: "DR"})
		got := issue(p.Warnings, "QuorumAtRisk")
		unchecked := issue(p.Warnings, "QuorumUnchecked")
		switch {
		case tc.noWarning && (got != nil || unchecked != nil):
			t.Errorf("%s: %+v", tc.name, p.Warnings)
		case tc.code == "QuorumAtRisk" && (got == nil || !strings.Contains(got.Message, "if Primary is lost, the API server loses quorum, and no tool that talks to it (this one included) can fail over") || !strings.Contains(got.Message, "docs/quorum-loss.md")):
			t.Errorf("%s: %+v", tc.name, p.Warnings)
		case tc.code == "QuorumUnchecked" && unchecked == nil:
			t.Errorf("%s: %+v", tc.name, p.Warnings)
		}
	}
}

// Remediation readiness of each source site: a failover's source that no NHC will
// remediate is a warning, the rest notes; no NHC in the cluster says nothing.
func TestSiteLossRemediationInThePlan(t *testing.T) {
	workers := map[string]any{"matchExpressions": []any{map[string]any{"key": "node-role.kubernetes.io/worker", "operator": "Exists"}}}
	mk := func(min any) []unstructured.Unstructured {
		return []unstructured.Unstructured{{Object: map[string]any{"apiVersion": "remediation.medik8s.io/v1alpha1", "kind": "NodeHealthCheck",
			"metadata": map[string]any{"name": "workers"}, "spec": map[string]any{"selector": workers, "minHealthy": min}}}}
	}
	for _, tc := range []struct {
		name     string
		primary  snapshot.NodeState
		nhc      *snapshot.NodeHealthChecks
		warning  string
		note     string
		contains string
	}{
		{name: "dead source, 51%", primary: snapshot.NodeNotReady, nhc: &snapshot.NodeHealthChecks{Objects: mk("51%")}, warning: "SiteLossNotRemediated", contains: "the loss of Primary will not be remediated automatically"},
		{name: "dead source, 50%", primary: snapshot.NodeNotReady, nhc: &snapshot.NodeHealthChecks{Objects: mk("50%")}, note: "SiteLossRemediated", contains: "will be remediated automatically"},
		{name: "live source, 51%", primary: snapshot.NodeReady, nhc: &snapshot.NodeHealthChecks{Objects: mk("51%")}, note: "SiteLossNotRemediated", contains: "if Primary is lost, its loss will not be remediated automatically"},
		{name: "unread", primary: snapshot.NodeNotReady, nhc: &snapshot.NodeHealthChecks{Unread: "forbidden"}, note: "RemediationUnchecked"},
		{name: "no NHC", primary: snapshot.NodeNotReady, nhc: &snapshot.NodeHealthChecks{}},
	} {
		s := twoSites(tc.primary)
		for i := range s.Nodes {
			s.Nodes[i].Labels["node-role.kubernetes.io/worker"] = ""
		}
		s.NodeHealthChecks = tc.nhc
		s.VMs = []snapshot.VM{vm("a", "web", 1, "Primary", kubevirtv1.RunStrategyAlways, "p1", true)}
		p := build(t, s, Request{All: true, To: "DR"})
		var all []Issue
		all = append(append(all, p.Warnings...), p.Notes...)
		w := issue(p.Warnings, "SiteLossNotRemediated")
		switch {
		case tc.warning != "" && (w == nil || !strings.Contains(w.Message, tc.contains)):
			t.Errorf("%s: warnings %+v", tc.name, p.Warnings)
		case tc.warning == "" && w != nil:
			t.Errorf("%s: unexpected warning %+v", tc.name, w)
		case tc.note != "" && (issue(p.Notes, tc.note) == nil || !strings.Contains(issue(p.Notes, tc.note).Message, tc.contains)):
			t.Errorf("%s: notes %+v", tc.name, p.Notes)
		case tc.note == "" && tc.warning == "" && len(p.Notes) > 0:
			t.Errorf("%s: notes %+v", tc.name, p.Notes)
		}
	}
}
