package fencing

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

var fencedAt = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

func obj(name string, spec, status map[string]any) unstructured.Unstructured {
	u := unstructured.Unstructured{Object: map[string]any{"spec": spec, "status": status}}
	u.SetName(name)
	u.SetUID(types.UID("uid-" + name))
	u.SetResourceVersion("42")
	u.SetCreationTimestamp(metav1.Time{Time: fencedAt.Add(-time.Hour)})
	return u
}

func conds(kv ...string) []any {
	var out []any
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, map[string]any{"type": kv[i], "status": kv[i+1], "lastTransitionTime": fencedAt.Format(time.RFC3339)})
	}
	return out
}

func farObj(name, action string, kv ...string) unstructured.Unstructured {
	return obj(name, map[string]any{"sharedparameters": map[string]any{"--action": action}}, map[string]any{"conditions": conds(kv...)})
}

func fence(name, state, result string, cidrs ...string) unstructured.Unstructured {
	c := make([]any, len(cidrs))
	for i := range cidrs {
		c[i] = cidrs[i]
	}
	return obj(name, map[string]any{"fenceState": state, "cidrs": c}, map[string]any{"result": result})
}

func down(name string, ips ...string) Node {
	return Node{Name: name, InternalIPs: ips, NotReadySince: fencedAt.Add(-time.Minute)}
}

// Each rule of issue 21's evidence table, one object at a time, for node p1
// (10.0.1.1, NotReady since a minute before the fence).
func TestEachProofIsJudgedByItsRule(t *testing.T) {
	deleted := farObj("p1", "off", "FenceAgentActionSucceeded", "True", "Succeeded", "True")
	deleted.SetDeletionTimestamp(&metav1.Time{Time: fencedAt})
	annotated := farObj("far-p1-x", "off", "FenceAgentActionSucceeded", "True", "Succeeded", "True")
	annotated.SetAnnotations(map[string]string{"remediation.medik8s.io/node-name": "p1"})
	cases := []struct {
		name   string
		node   Node
		objs   Objects
		want   Strength
		listed bool
		detail string
	}{
		{name: "no evidence", node: down("p1", "10.0.1.1"), want: None},
		{name: "FAR off, succeeded", node: down("p1", "10.0.1.1"), listed: true, want: Strong,
			objs: Objects{FenceAgentsRemediations: []unstructured.Unstructured{farObj("p1", "off", "FenceAgentActionSucceeded", "True", "Succeeded", "True")}}},
		{name: "FAR matched by the node-name annotation", node: down("p1", "10.0.1.1"), listed: true, want: Strong,
			objs: Objects{FenceAgentsRemediations: []unstructured.Unstructured{annotated}}},
		{name: "FAR of another node", node: down("p1", "10.0.1.1"), want: None,
			objs: Objects{FenceAgentsRemediations: []unstructured.Unstructured{farObj("p2", "off", "FenceAgentActionSucceeded", "True", "Succeeded", "True")}}},
		{name: "FAR action not yet succeeded", node: down("p1", "10.0.1.1"), listed: true, want: None, detail: "FenceAgentActionSucceeded=False",
			objs: Objects{FenceAgentsRemediations: []unstructured.Unstructured{farObj("p1", "off", "FenceAgentActionSucceeded", "False", "Succeeded", "False")}}},
		{name: "FAR without Succeeded", node: down("p1", "10.0.1.1"), listed: true, want: None, detail: "Succeeded=unknown",
			objs: Objects{FenceAgentsRemediations: []unstructured.Unstructured{farObj("p1", "off", "FenceAgentActionSucceeded", "True")}}},
		{name: "FAR being deleted", node: down("p1", "10.0.1.1"), want: None,
			objs: Objects{FenceAgentsRemediations: []unstructured.Unstructured{deleted}}},
		{name: "FAR reboot, node NotReady since before the fence", node: down("p1", "10.0.1.1"), listed: true, want: Strong,
			objs: Objects{FenceAgentsRemediations: []unstructured.Unstructured{farObj("p1", "reboot", "FenceAgentActionSucceeded", "True", "Succeeded", "True")}}},
		{name: "FAR reboot, node Ready again", node: Node{Name: "p1", InternalIPs: []string{"10.0.1.1"}, Ready: true}, listed: true, want: None, detail: "Ready since",
			objs: Objects{FenceAgentsRemediations: []unstructured.Unstructured{farObj("p1", "reboot", "FenceAgentActionSucceeded", "True", "Succeeded", "True")}}},
		{name: "FAR reboot, node came back and failed again after the fence", node: Node{Name: "p1", InternalIPs: []string{"10.0.1.1"}, NotReadySince: fencedAt.Add(time.Hour)}, listed: true, want: None,
			objs: Objects{FenceAgentsRemediations: []unstructured.Unstructured{farObj("p1", "reboot", "FenceAgentActionSucceeded", "True", "Succeeded", "True")}}},
		{name: "FAR with an action that proves nothing", node: down("p1", "10.0.1.1"), listed: true, want: None, detail: `"status"`,
			objs: Objects{FenceAgentsRemediations: []unstructured.Unstructured{farObj("p1", "status", "FenceAgentActionSucceeded", "True", "Succeeded", "True")}}},
		{name: "FAR off, node Ready again (powered back on by hand)", node: Node{Name: "p1", InternalIPs: []string{"10.0.1.1"}, Ready: true}, listed: true, want: None, detail: "Ready since",
			objs: Objects{FenceAgentsRemediations: []unstructured.Unstructured{farObj("p1", "off", "FenceAgentActionSucceeded", "True", "Succeeded", "True")}}},
		{name: "FAR off, node came back and failed again after the fence", node: Node{Name: "p1", InternalIPs: []string{"10.0.1.1"}, NotReadySince: fencedAt.Add(time.Hour)}, listed: true, want: None, detail: "Ready since",
			objs: Objects{FenceAgentsRemediations: []unstructured.Unstructured{farObj("p1", "off", "FenceAgentActionSucceeded", "True", "Succeeded", "True")}}},
		{name: "FAR made before the node object (an earlier node of that name)", node: Node{Name: "p1", InternalIPs: []string{"10.0.1.1"}, NotReadySince: fencedAt.Add(-time.Minute), Created: fencedAt.Add(24 * time.Hour)}, listed: true, want: None, detail: "earlier node",
			objs: Objects{FenceAgentsRemediations: []unstructured.Unstructured{farObj("p1", "off", "FenceAgentActionSucceeded", "True", "Succeeded", "True")}}},
		// Found by review: a strong proof that newer signals contradict. A kubelet that
		// renews its lease, or a storage heartbeat written, after the fence runs.
		{name: "FAR off, but the kubelet renewed its lease after the fence", node: Node{Name: "p1", InternalIPs: []string{"10.0.1.1"}, NotReadySince: fencedAt.Add(-time.Minute), LeaseRenewed: fencedAt.Add(5 * time.Minute)}, listed: true, want: None, detail: "renewed its lease",
			objs: Objects{FenceAgentsRemediations: []unstructured.Unstructured{farObj("p1", "off", "FenceAgentActionSucceeded", "True", "Succeeded", "True")}}},
		{name: "FAR off, lease last renewed before the fence", node: Node{Name: "p1", InternalIPs: []string{"10.0.1.1"}, NotReadySince: fencedAt.Add(-time.Minute), LeaseRenewed: fencedAt.Add(-90 * time.Second)}, listed: true, want: Strong,
			objs: Objects{FenceAgentsRemediations: []unstructured.Unstructured{farObj("p1", "off", "FenceAgentActionSucceeded", "True", "Succeeded", "True")}}},
		{name: "SBR fenced, but the storage heartbeat is newer", node: Node{Name: "p1", InternalIPs: []string{"10.0.1.1"}, NotReadySince: fencedAt.Add(-time.Minute), StorageHeartbeat: fencedAt.Add(5 * time.Minute)}, listed: true, want: None, detail: "storage heartbeat",
			objs: Objects{StorageBasedRemediations: []unstructured.Unstructured{obj("p1", nil, map[string]any{"conditions": conds("FencingSucceeded", "True")})}}},
		{name: "SBR, node Ready since", node: Node{Name: "p1", InternalIPs: []string{"10.0.1.1"}, NotReadySince: fencedAt.Add(time.Hour)}, listed: true, want: None, detail: "Ready since",
			objs: Objects{StorageBasedRemediations: []unstructured.Unstructured{obj("p1", nil, map[string]any{"conditions": conds("FencingSucceeded", "True")})}}},
		{name: "NetworkFence over the node's address", node: down("p1", "10.0.1.1"), listed: true, want: Strong,
			objs: Objects{NetworkFences: []unstructured.Unstructured{fence("sitefail-primary", "Fenced", "Succeeded", "10.0.1.1/32")}}},
		{name: "NetworkFence over the node's subnet", node: down("p1", "10.0.1.1"), listed: true, want: Strong,
			objs: Objects{NetworkFences: []unstructured.Unstructured{fence("site", "Fenced", "Succeeded", "10.0.0.0/16")}}},
		{name: "NetworkFence over one of two addresses", node: down("p1", "10.0.1.1", "192.168.7.1"), listed: true, want: None, detail: "covers 1 of the node's 2",
			objs: Objects{NetworkFences: []unstructured.Unstructured{fence("site", "Fenced", "Succeeded", "10.0.1.1/32")}}},
		{name: "NetworkFence Unfenced", node: down("p1", "10.0.1.1"), listed: true, want: None, detail: "fenceState is Unfenced",
			objs: Objects{NetworkFences: []unstructured.Unstructured{fence("site", "Unfenced", "Succeeded", "10.0.1.1/32")}}},
		{name: "NetworkFence failed", node: down("p1", "10.0.1.1"), listed: true, want: None, detail: "result is Failed",
			objs: Objects{NetworkFences: []unstructured.Unstructured{fence("site", "Fenced", "Failed", "10.0.1.1/32")}}},
		{name: "NetworkFence set back to Fenced, its result still the unfence's", node: down("p1", "10.0.1.1"), listed: true, want: None, detail: "not done yet",
			objs: Objects{NetworkFences: []unstructured.Unstructured{func() unstructured.Unstructured {
				u := fence("site", "Fenced", "Succeeded", "10.0.1.1/32")
				_ = unstructured.SetNestedField(u.Object, "unfencing operation successful", "status", "message")
				return u
			}()}}},
		{name: "NetworkFence of other addresses", node: down("p1", "10.0.1.1"), want: None,
			objs: Objects{NetworkFences: []unstructured.Unstructured{fence("site", "Fenced", "Succeeded", "10.0.2.0/24")}}},
		{name: "a node without InternalIP is covered by no NetworkFence", node: down("p1"), want: None,
			objs: Objects{NetworkFences: []unstructured.Unstructured{fence("site", "Fenced", "Succeeded", "0.0.0.0/0")}}},
		{name: "SBR fencing succeeded", node: down("p1", "10.0.1.1"), listed: true, want: Strong,
			objs: Objects{StorageBasedRemediations: []unstructured.Unstructured{obj("p1", nil, map[string]any{"conditions": conds("FencingSucceeded", "True")})}}},
		{name: "SBR not yet", node: down("p1", "10.0.1.1"), listed: true, want: None,
			objs: Objects{StorageBasedRemediations: []unstructured.Unstructured{obj("p1", nil, map[string]any{"conditions": conds("FencingSucceeded", "False")})}}},
		{name: "SNR completed is weak", node: down("p1", "10.0.1.1"), listed: true, want: Weak,
			objs: Objects{SelfNodeRemediations: []unstructured.Unstructured{obj("p1", nil, map[string]any{"phase": "Fencing-Completed", "conditions": conds("Succeeded", "True")})}}},
		{name: "SNR still fencing", node: down("p1", "10.0.1.1"), listed: true, want: None,
			objs: Objects{SelfNodeRemediations: []unstructured.Unstructured{obj("p1", nil, map[string]any{"phase": "Pre-Reboot-Completed", "conditions": conds("Succeeded", "False")})}}},
		{name: "the out-of-service taint is an assertion", node: Node{Name: "p1", OutOfService: true}, listed: true, want: Assertion},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := Judge([]Node{c.node}, c.objs)
			if len(ev) != 1 || ev[0].Node != "p1" {
				t.Fatalf("evidence %+v", ev)
			}
			if got := ev[0].Best(); got != c.want {
				t.Errorf("best proof %s, want %s: %+v", got, c.want, ev[0].Proofs)
			}
			if listed := len(ev[0].Proofs) > 0; listed != c.listed {
				t.Errorf("listed %v, want %v: %+v", listed, c.listed, ev[0].Proofs)
			}
			if c.detail != "" && (len(ev[0].Proofs) == 0 || !strings.Contains(ev[0].Proofs[0].Detail, c.detail)) {
				t.Errorf("detail lacks %q: %+v", c.detail, ev[0].Proofs)
			}
			for _, p := range ev[0].Proofs {
				if p.Kind != "Taint" && (p.UID == "" || p.ResourceVersion != "42") {
					t.Errorf("proof %+v does not name its object's UID and resourceVersion", p)
				}
			}
		})
	}
}

// A failover may rest on evidence alone only when every node of the site has strong
// evidence; a weak proof, an assertion or nothing names the node.
func TestUnprovenNamesEveryNodeWithoutStrongEvidence(t *testing.T) {
	nodes := []Node{down("p1", "10.0.1.1"), down("p2", "10.0.1.2"), down("p3", "10.0.1.3"), {Name: "p4", OutOfService: true}}
	objs := Objects{
		FenceAgentsRemediations: []unstructured.Unstructured{farObj("p1", "off", "FenceAgentActionSucceeded", "True", "Succeeded", "True")},
		SelfNodeRemediations:    []unstructured.Unstructured{obj("p2", nil, map[string]any{"phase": "Fencing-Completed", "conditions": conds("Succeeded", "True")})},
	}
	got := Unproven(Judge(nodes, objs))
	want := []string{"p2 (weak)", "p3 (none)", "p4 (assertion)"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("unproven %v, want %v", got, want)
	}
	objs.NetworkFences = []unstructured.Unstructured{fence("sitefail-primary", "Fenced", "Succeeded", "10.0.1.0/24")}
	nodes[3].InternalIPs = []string{"10.0.1.4"}
	if got := Unproven(Judge(nodes, objs)); len(got) != 0 {
		t.Fatalf("a site-wide NetworkFence proves every node: unproven %v", got)
	}
}

// The strongest proof comes first, so that a report leads with what the release rests on.
func TestProofsAreOrderedStrongestFirst(t *testing.T) {
	n := down("p1", "10.0.1.1")
	n.OutOfService = true
	ev := Judge([]Node{n}, Objects{
		SelfNodeRemediations: []unstructured.Unstructured{obj("p1", nil, map[string]any{"phase": "Fencing-Completed", "conditions": conds("Succeeded", "True")})},
		NetworkFences:        []unstructured.Unstructured{fence("f", "Fenced", "Succeeded", "10.0.1.1")},
	})
	var kinds []string
	for _, p := range ev[0].Proofs {
		kinds = append(kinds, p.Kind)
	}
	if got := strings.Join(kinds, ","); got != "NetworkFence,SelfNodeRemediation,Taint" {
		t.Fatalf("order %s", got)
	}
}

// Issue 21: a NotReady node's SBRStorageUnhealthy=False condition is its storage
// heartbeat, as SBR's agents last saw it; True, or no condition, is none.
func TestNodeFromReadsTheStorageHeartbeat(t *testing.T) {
	at := metav1.NewTime(time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC))
	for _, tc := range []struct {
		status corev1.ConditionStatus
		want   bool
	}{{corev1.ConditionFalse, true}, {corev1.ConditionTrue, false}, {corev1.ConditionUnknown, false}} {
		n := &corev1.Node{Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, LastTransitionTime: at},
			{Type: "SBRStorageUnhealthy", Status: tc.status, LastHeartbeatTime: at, LastTransitionTime: at},
		}}}
		if got := NodeFrom(n).StorageHeartbeat; got.IsZero() == tc.want {
			t.Errorf("SBRStorageUnhealthy=%s: storage heartbeat %v; want one: %v", tc.status, got, tc.want)
		}
	}
}

// Each node's line in sites -o wide and the ui names the proof its judgement rests on,
// or why nothing counts, so that a FAR that failed is not mistaken for no FAR at all.
func TestSummaryNamesTheStrongestProofOrWhyNoneCounts(t *testing.T) {
	nodes := []Node{down("p1", "10.0.1.1"), down("p2", "10.0.1.2"), down("p3", "10.0.1.3")}
	fs := JudgeSite(nodes, Objects{FenceAgentsRemediations: []unstructured.Unstructured{
		farObj("p1", "off", "FenceAgentActionSucceeded", "True", "Succeeded", "True"),
		farObj("p2", "off", "FenceAgentActionSucceeded", "False", "Succeeded", "False"),
	}}, nil)
	for node, want := range map[string]string{
		"p1": "strong: FenceAgentsRemediation p1",
		"p2": "none counts (FenceAgentsRemediation: not finished: FenceAgentActionSucceeded=False, Succeeded=False)",
		"p3": "none",
		"p9": "none",
	} {
		if ev, _ := fs.Node(node); ev.Summary() != want {
			t.Errorf("%s: %q, want %q", node, ev.Summary(), want)
		}
	}
	now := time.Now()
	if got := (Node{LeaseRenewed: now.Add(-90*time.Second - 300*time.Millisecond)}).LeaseAge(now); got != "1m30s" {
		t.Errorf("lease age %q", got)
	}
	if got := (Node{}).LeaseAge(now); got != "-" {
		t.Errorf("unknown lease age %q", got)
	}
}

// Each remediation kind states its end its own way: FAR and SNR with Succeeded, SBR
// with FencingSucceeded (found by review); Processing=True is at work whatever else.
func TestUnfinishedReadsEachKindsEnd(t *testing.T) {
	nodes := []Node{{Name: "p1"}}
	for _, tc := range []struct {
		name string
		objs Objects
		want bool
	}{
		{"FAR succeeded", Objects{FenceAgentsRemediations: []unstructured.Unstructured{obj("p1", nil, map[string]any{"conditions": conds("Processing", "False", "Succeeded", "True")})}}, false},
		{"FAR processing", Objects{FenceAgentsRemediations: []unstructured.Unstructured{obj("p1", nil, map[string]any{"conditions": conds("Processing", "True")})}}, true},
		{"SBR fencing succeeded", Objects{StorageBasedRemediations: []unstructured.Unstructured{obj("p1", nil, map[string]any{"conditions": conds("FencingSucceeded", "True")})}}, false},
		{"SBR without a word", Objects{StorageBasedRemediations: []unstructured.Unstructured{obj("p1", nil, map[string]any{})}}, true},
		{"SNR failed, over", Objects{SelfNodeRemediations: []unstructured.Unstructured{obj("p1", nil, map[string]any{"conditions": conds("Processing", "False", "Succeeded", "False")})}}, false},
		{"SNR processing", Objects{SelfNodeRemediations: []unstructured.Unstructured{obj("p1", nil, map[string]any{"conditions": conds("Processing", "True", "Succeeded", "False")})}}, true},
		{"another node's", Objects{SelfNodeRemediations: []unstructured.Unstructured{obj("p2", nil, map[string]any{"conditions": conds("Processing", "True")})}}, false},
	} {
		if got := len(Unfinished(nodes, tc.objs)) > 0; got != tc.want {
			t.Errorf("%s: at work %v, want %v", tc.name, got, tc.want)
		}
	}
}
