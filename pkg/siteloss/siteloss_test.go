package siteloss

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sitefail/kubectl-sitefail/pkg/selector"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

func node(name, site string, ready bool, labels ...string) snapshot.Node {
	l := map[string]string{selector.DefaultSiteKey: site}
	for _, kv := range labels {
		k, v, _ := strings.Cut(kv, "=")
		l[k] = v
	}
	st, cs := snapshot.NodeReady, corev1.ConditionTrue
	if !ready {
		st, cs = snapshot.NodeUnknown, corev1.ConditionUnknown
	}
	return snapshot.Node{Name: name, Site: site, State: st, Labels: l, Conditions: map[corev1.NodeConditionType]corev1.ConditionStatus{corev1.NodeReady: cs}}
}

func members(nodes ...string) *snapshot.Etcd {
	e := &snapshot.Etcd{}
	for _, n := range nodes {
		ready := !strings.HasSuffix(n, "-")
		n = strings.TrimSuffix(n, "-")
		e.Members = append(e.Members, snapshot.EtcdMember{Pod: "kube-system/etcd-" + n, Node: n, Ready: ready})
	}
	return e
}

func TestQuorumIfLost(t *testing.T) {
	nodes := []snapshot.Node{node("p1", "Primary", true), node("p2", "Primary", true), node("d1", "DR", true), node("d2", "DR", true),
		node("a1", "arbiter", true), node("dead", "DR", false), node("u1", "", true)}
	for _, tc := range []struct {
		name    string
		etcd    *snapshot.Etcd
		site    string
		lost    bool
		known   bool
		members int
	}{
		{"two of three on the site", members("p1", "p2", "d1"), "Primary", true, true, 2},
		{"the other site of two of three", members("p1", "p2", "d1"), "DR", false, true, 1},
		{"one per site with a witness", members("p1", "d1", "a1"), "Primary", false, true, 1},
		{"one per site, the witness member down", members("p1", "d1", "a1-"), "Primary", true, true, 1},
		{"a member on a NotReady node elsewhere does not vote", members("p1", "d1", "dead"), "Primary", true, true, 1},
		{"half of an even count is no quorum", members("p1", "p2", "d1", "d2"), "Primary", true, true, 2},
		{"a member on a deleted node counts, and never votes", members("p1", "d1", "gone"), "DR", true, true, 1},
		{"an unlabeled node's member votes", members("p1", "d1", "u1"), "Primary", false, true, 1},
		{"no etcd pod: not counted", &snapshot.Etcd{}, "Primary", false, false, 0},
		{"unread: not counted", &snapshot.Etcd{Members: members("p1").Members, Unread: "forbidden"}, "Primary", false, false, 1},
		{"not read at all (a cache snapshot)", nil, "Primary", false, false, 0},
	} {
		s := &snapshot.Snapshot{Keys: selector.DefaultKeys(), Nodes: nodes, Etcd: tc.etcd}
		q := QuorumIfLost(s, tc.site)
		if q.Lost != tc.lost || q.Known != tc.known || q.Members != tc.members {
			t.Errorf("%s: %+v", tc.name, q)
		}
		d := q.Describe(tc.site)
		if tc.lost != strings.Contains(d, "if "+tc.site+" is lost, the API server loses quorum, and no tool that talks to it (this one included) can fail over") {
			t.Errorf("%s: %s", tc.name, d)
		}
	}
}

func nhc(name string, spec map[string]any, status map[string]any) unstructured.Unstructured {
	o := map[string]any{"apiVersion": "remediation.medik8s.io/v1alpha1", "kind": "NodeHealthCheck", "metadata": map[string]any{"name": name}, "spec": spec}
	if status != nil {
		o["status"] = status
	}
	return unstructured.Unstructured{Object: o}
}

var workers = map[string]any{"matchExpressions": []any{map[string]any{"key": "node-role.kubernetes.io/worker", "operator": "Exists"}}}

// node-healthcheck-operator v0.12.0's arithmetic: percentages of the selected nodes
// rounded up, maxUnhealthy as the selected less it, healthy meaning no unhealthy
// condition matched and no remediation in flight, and every reason it skips a site.
func TestRemediationIfLost(t *testing.T) {
	w := "node-role.kubernetes.io/worker="
	// Primary: 3 workers and a control-plane node; DR: 2 workers, one already under
	// remediation in some tests; a witness without the worker role.
	nodes := []snapshot.Node{
		node("p1", "Primary", true, w), node("p2", "Primary", true, w), node("p3", "Primary", true, w), node("pc", "Primary", true),
		node("d1", "DR", true, w), node("d2", "DR", true, w), node("a1", "arbiter", true),
	}
	for _, tc := range []struct {
		name       string
		spec       map[string]any
		status     map[string]any
		site       string
		remediated bool
		min        int
		reason     string
		absent     bool
	}{
		{name: "51% of 5 workers is 3; 2 stay", spec: map[string]any{"selector": workers, "minHealthy": "51%"}, site: "Primary", min: 3, reason: "fewer than minHealthy 51% (3)"},
		{name: "51% of 5: losing DR leaves 3", spec: map[string]any{"selector": workers, "minHealthy": "51%"}, site: "DR", remediated: true, min: 3},
		{name: "40% of 5 rounds up to 2", spec: map[string]any{"selector": workers, "minHealthy": "40%"}, site: "Primary", remediated: true, min: 2},
		{name: "41% of 5 rounds up to 3", spec: map[string]any{"selector": workers, "minHealthy": "41%"}, site: "Primary", min: 3},
		{name: "absolute 2", spec: map[string]any{"selector": workers, "minHealthy": int64(2)}, site: "Primary", remediated: true, min: 2},
		{name: "absolute 3", spec: map[string]any{"selector": workers, "minHealthy": int64(3)}, site: "Primary", min: 3},
		{name: "maxUnhealthy 3 of 5", spec: map[string]any{"selector": workers, "maxUnhealthy": int64(3)}, site: "Primary", remediated: true, min: 2},
		{name: "maxUnhealthy 40% of 5 is 2", spec: map[string]any{"selector": workers, "maxUnhealthy": "40%"}, site: "Primary", min: 3, reason: "5 selected less maxUnhealthy 40%"},
		{name: "maxUnhealthy above the selected", spec: map[string]any{"selector": workers, "maxUnhealthy": int64(6)}, site: "Primary", reason: "greater than the number of selected nodes"},
		{name: "both set", spec: map[string]any{"selector": workers, "minHealthy": int64(1), "maxUnhealthy": int64(1)}, site: "Primary", reason: "both minHealthy and maxUnhealthy"},
		{name: "neither set", spec: map[string]any{"selector": workers}, site: "Primary", reason: "neither minHealthy nor maxUnhealthy"},
		{name: "a node under remediation is not healthy", spec: map[string]any{"selector": workers, "minHealthy": int64(2)},
			status: map[string]any{"unhealthyNodes": []any{map[string]any{"name": "d2"}}}, site: "Primary", min: 2, reason: "1 of its 5"},
		{name: "an empty selector selects every node", spec: map[string]any{"minHealthy": "50%"}, site: "Primary", min: 4, reason: "3 of its 7"},
		{name: "not selecting the site", spec: map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/hostname": "d1"}}, "minHealthy": int64(0)}, site: "Primary", absent: true},
		{name: "paused", spec: map[string]any{"selector": workers, "minHealthy": int64(0), "pauseRequests": []any{"upgrade"}}, site: "Primary", reason: "paused"},
		{name: "disabled", spec: map[string]any{"selector": workers, "minHealthy": int64(0)},
			status: map[string]any{"conditions": []any{map[string]any{"type": "Disabled", "status": "True", "reason": "RemediationTemplateNotFound", "lastTransitionTime": "2026-01-01T00:00:00Z", "message": "x"}}}, site: "Primary", reason: "disabled: RemediationTemplateNotFound"},
		{name: "conditions that never see a lost site", spec: map[string]any{"selector": workers, "minHealthy": int64(0),
			"unhealthyConditions": []any{map[string]any{"type": "Ready", "status": "False", "duration": "300s"}}}, site: "Primary", reason: "Ready=Unknown"},
		{name: "invalid selector", spec: map[string]any{"selector": map[string]any{"matchExpressions": []any{map[string]any{"key": "x", "operator": "Bogus"}}}, "minHealthy": int64(0)}, site: "Primary", reason: "selector is invalid"},
	} {
		s := &snapshot.Snapshot{Keys: selector.DefaultKeys(), Nodes: nodes,
			NodeHealthChecks: &snapshot.NodeHealthChecks{Objects: []unstructured.Unstructured{nhc("n", tc.spec, tc.status)}}}
		rs := RemediationIfLost(s, tc.site)
		if tc.absent {
			if len(rs) != 0 {
				t.Errorf("%s: %+v", tc.name, rs)
			}
			if Summary(s, rs) != "will not" {
				t.Errorf("%s: summary %s", tc.name, Summary(s, rs))
			}
			continue
		}
		if len(rs) != 1 {
			t.Fatalf("%s: %+v", tc.name, rs)
		}
		r := rs[0]
		if r.Remediated != tc.remediated || (tc.min != 0 && r.MinHealthy != tc.min) || !strings.Contains(r.Reason, tc.reason) {
			t.Errorf("%s: %+v", tc.name, r)
		}
		want := map[bool]string{true: "will", false: "will not"}[tc.remediated]
		if Summary(s, rs) != want {
			t.Errorf("%s: summary %s, want %s", tc.name, Summary(s, rs), want)
		}
	}
}

func TestRemediationExclusionAndUnreadAndPartly(t *testing.T) {
	w := "node-role.kubernetes.io/worker="
	x := ExcludeFromRemediation + "=true"
	nodes := []snapshot.Node{node("p1", "Primary", true, w, x), node("p2", "Primary", true, w, x), node("d1", "DR", true, w), node("d2", "DR", true, w)}
	s := &snapshot.Snapshot{Keys: selector.DefaultKeys(), Nodes: nodes, NodeHealthChecks: &snapshot.NodeHealthChecks{Objects: []unstructured.Unstructured{
		nhc("excluded", map[string]any{"selector": workers, "minHealthy": int64(1)}, nil),
	}}}
	rs := RemediationIfLost(s, "Primary")
	if len(rs) != 1 || rs[0].Remediated || !strings.Contains(rs[0].Reason, "exclude-from-remediation") {
		t.Fatalf("every site node excluded: %+v", rs)
	}
	s.Nodes[1].Labels = map[string]string{"node-role.kubernetes.io/worker": ""}
	s.NodeHealthChecks.Objects = append(s.NodeHealthChecks.Objects, nhc("strict", map[string]any{"selector": workers, "minHealthy": "100%"}, nil))
	rs = RemediationIfLost(s, "Primary")
	if len(rs) != 2 || !rs[0].Remediated || !strings.Contains(rs[0].Reason, "not p1") || rs[1].Remediated || Summary(s, rs) != "partly" {
		t.Fatalf("partly: %+v %s", rs, Summary(s, rs))
	}
	s.NodeHealthChecks.Unread = "forbidden"
	if Summary(s, nil) != "unknown" {
		t.Fatal("unread NHCs must be unknown")
	}
	s.NodeHealthChecks = nil
	if RemediationIfLost(s, "Primary") != nil || Summary(s, nil) != "unknown" {
		t.Fatal("a snapshot without NHCs read must be unknown")
	}
}
