package plugin

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"

	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

// stretched is Primary (two workers), DR (one) and a one-node arbiter site, with an
// etcd member on each Primary node and on the arbiter, and a NodeHealthCheck over the
// workers with minHealthy 51%.
func stretched(t *testing.T) (*kubefake.Clientset, []runtime.Object) {
	t.Helper()
	worker := func(n *corev1.Node) *corev1.Node { n.Labels["node-role.kubernetes.io/worker"] = ""; return n }
	arbiter := testNode("arbiter-1", "arbiter")
	arbiter.Labels[snapshot.ZoneLabel] = snapshot.ArbiterZone
	etcd := func(node string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "etcd-" + node, Labels: map[string]string{"component": "etcd"}},
			Spec: corev1.PodSpec{NodeName: node}, Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}
	}
	kube := kubefake.NewSimpleClientset(worker(testNode("primary-1", "Primary")), worker(testNode("primary-2", "Primary")), worker(testNode("dr-1", "DR")), arbiter,
		etcd("primary-1"), etcd("primary-2"), etcd("arbiter-1"))
	var objs []runtime.Object
	objs = append(objs, testVM(t, "prod", "db", "1", "Primary", true)...)
	objs = append(objs, &unstructured.Unstructured{Object: map[string]any{"apiVersion": "remediation.medik8s.io/v1alpha1", "kind": "NodeHealthCheck",
		"metadata": map[string]any{"name": "workers"},
		"spec":     map[string]any{"minHealthy": "51%", "selector": map[string]any{"matchExpressions": []any{map[string]any{"key": "node-role.kubernetes.io/worker", "operator": "Exists"}}}}}})
	return kube, objs
}

func TestSitesShowWitnessQuorumAndRemediation(t *testing.T) {
	kube, objs := stretched(t)
	out, _, err := runCmd(t, kube, objs, "sites")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Site arbiter: witness (every node carries topology.kubernetes.io/zone=arbiter): never a move's target.",
		"Site Primary holds 2 of 3 etcd members; without it 1 can vote, and a quorum is 2: if Primary is lost, the API server loses quorum",
		"Site Primary: its loss will not be remediated automatically (NodeHealthCheck workers: with Primary lost, 1 of its 3 selected nodes stay healthy, fewer than minHealthy 51% (2)",
		"Site DR: its loss will be remediated automatically.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("sites lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Site DR holds") {
		t.Errorf("DR's loss keeps quorum:\n%s", out)
	}
	out, _, err = runCmd(t, kube, objs, "sites", "-o", "wide")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			rows[f[0]] = f
		}
	}
	for site, want := range map[string]string{"Primary": "data 2/3 lost will not", "DR": "data 0/3 kept will", "arbiter": "witness 1/3 kept will not"} {
		f := rows[site]
		if len(f) < 4 || !strings.HasSuffix(strings.Join(f, " "), want) {
			t.Errorf("wide row %s: %v, want it to end %q\n%s", site, f, want, out)
		}
	}
	out, _, err = runCmd(t, kube, objs, "sites", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Etcd  *snapshot.Etcd `json:"etcd"`
		Sites []SiteReport   `json:"sites"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	got := map[string]SiteReport{}
	for _, r := range doc.Sites {
		got[r.Site] = r
	}
	p, a := got["Primary"], got["arbiter"]
	if len(doc.Etcd.Members) != 3 || p.EtcdIfLost == nil || p.EtcdIfLost.Members != 2 || !p.EtcdIfLost.Lost || a.Witness == "" || p.Witness != "" ||
		p.RemediationIfLost == nil || p.RemediationIfLost.Automatic != "will not" || len(p.RemediationIfLost.NodeHealthChecks) != 1 {
		t.Fatalf("json: %s", out)
	}
}

func TestWitnessIsNoTargetFromLabelsFlagOrConfig(t *testing.T) {
	kube, objs := stretched(t)
	out, _, err := runCmd(t, kube, objs, "plan", "--to-other", "prod/db", "-o", "json")
	if err != nil {
		t.Fatalf("--to-other with an arbiter: %v", err)
	}
	var p plan.Plan
	if err := json.Unmarshal([]byte(out), &p); err != nil || p.Request.To != "DR" {
		t.Fatalf("--to-other picked %q (%v)", p.Request.To, err)
	}
	var quorum, remediation bool
	for _, w := range p.Warnings {
		quorum = quorum || w.Code == "QuorumAtRisk"
	}
	for _, n := range p.Notes {
		remediation = remediation || (n.Code == "SiteLossNotRemediated" && strings.Contains(n.Message, "if Primary is lost"))
	}
	if !quorum || !remediation {
		t.Fatalf("plan warnings %+v notes %+v", p.Warnings, p.Notes)
	}
	out, _, err = runCmd(t, kube, objs, "plan", "--to", "arbiter", "prod/db")
	if Code(err) != ExitBlocked || !strings.Contains(out, "(WitnessTarget)") {
		t.Fatalf("--to arbiter: exit %d %v\n%s", Code(err), err, out)
	}
	// DR declared a witness by flag, then by the config file: no target is left.
	_, _, err = runCmd(t, kube, objs, "plan", "--to", "DR", "prod/db", "--witness-site", "DR")
	if Code(err) != ExitBlocked {
		t.Fatalf("--witness-site DR: exit %d %v", Code(err), err)
	}
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte("witnessSites: [DR]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err = runCmd(t, kube, objs, "plan", "--to", "DR", "prod/db", "--config", cfg)
	if Code(err) != ExitBlocked || !strings.Contains(out, "drop it from --witness-site") {
		t.Fatalf("witnessSites in the config file: exit %d %v\n%s", Code(err), err, out)
	}
	if _, _, err := runCmd(t, kube, objs, "plan", "--to-other", "prod/db", "--witness-site", "DR"); err == nil || !strings.Contains(err.Error(), "exactly two sites that are not witnesses") {
		t.Fatalf("--to-other with one data site: %v", err)
	}
	if _, _, err := runCmd(t, kube, objs, "sites", "--witness-site", "bad site!"); err == nil || !strings.Contains(err.Error(), "not a site name") {
		t.Fatalf("bad --witness-site: %v", err)
	}
}

// sites shows, for a site with no Ready node, whether a failover from it rests on
// fencing evidence or needs the typed confirmation, naming the nodes without proof, and
// each node's strongest proof in the wide node table.
func TestSitesShowFencingEvidenceOfADeadSite(t *testing.T) {
	down := func(n *corev1.Node) *corev1.Node {
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, LastTransitionTime: metav1.NewTime(time.Now().Add(-time.Hour))}}
		return n
	}
	far := func(node string) runtime.Object {
		at := time.Now().Add(-30 * time.Minute).UTC().Format(time.RFC3339)
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "fence-agents-remediation.medik8s.io/v1alpha1", "kind": "FenceAgentsRemediation",
			"metadata": map[string]any{"name": node, "namespace": "medik8s", "uid": "uid-" + node, "resourceVersion": "7", "creationTimestamp": at},
			"spec":     map[string]any{"agent": "fence_ipmilan", "sharedparameters": map[string]any{"--action": "off"}},
			"status": map[string]any{"conditions": []any{
				map[string]any{"type": "FenceAgentActionSucceeded", "status": "True", "reason": "FenceAgentSucceeded", "message": "", "lastTransitionTime": at},
				map[string]any{"type": "Succeeded", "status": "True", "reason": "RemediationFinishedSuccessfully", "message": "", "lastTransitionTime": at},
			}},
		}}
	}
	nodes := func() *kubefake.Clientset {
		p1, p2 := down(testNode("primary-1", "Primary")), down(testNode("primary-2", "Primary"))
		p1.CreationTimestamp = metav1.NewTime(time.Now().Add(-48 * time.Hour))
		p2.CreationTimestamp = p1.CreationTimestamp
		return kubefake.NewSimpleClientset(p1, p2, testNode("dr-1", "DR"))
	}
	out, _, err := runCmd(t, nodes(), []runtime.Object{far("primary-1")}, "sites", "-o", "wide")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Site Primary is down; no fencing evidence proves primary-2 (none): a failover needs --confirm-site-down=Primary",
		"strong: FenceAgentsRemediation primary-1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("sites -o wide lacks %q:\n%s", want, out)
		}
	}
	out, _, err = runCmd(t, nodes(), []runtime.Object{far("primary-1"), far("primary-2")}, "sites", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Sites []SiteReport `json:"sites"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	for _, r := range doc.Sites {
		switch r.Site {
		case "Primary":
			if r.Fencing == nil || !r.Fencing.Proven || len(r.Fencing.Nodes) != 2 || r.Fencing.Nodes[0].Proofs[0].UID != "uid-primary-1" {
				t.Fatalf("Primary's fencing in json: %+v", r.Fencing)
			}
		case "DR":
			if r.Fencing != nil {
				t.Fatalf("a healthy site has fencing evidence in json: %+v", r.Fencing)
			}
		}
	}
	out, _, _ = runCmd(t, nodes(), []runtime.Object{far("primary-1"), far("primary-2")}, "sites")
	if !strings.Contains(out, "Site Primary is down and every node of it is fenced: a failover needs no --confirm-site-down") {
		t.Errorf("sites with every node fenced:\n%s", out)
	}
}

// A dead site whose nodes went silent minutes apart is flagged as possibly partitioned,
// from the kubelets' leases, in sites and as a plan warning before a failover.
func TestADeadSiteThatWentSilentNodeByNodeIsFlagged(t *testing.T) {
	// NotReady 40 s after its last renewal, as the node controller marks a silent node.
	down := func(n *corev1.Node, silent time.Duration) *corev1.Node {
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, LastTransitionTime: metav1.NewTime(time.Now().Add(-silent + 40*time.Second))}}
		return n
	}
	lease := func(node string, ago time.Duration) *coordinationv1.Lease {
		at := metav1.NewMicroTime(time.Now().Add(-ago))
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: corev1.NamespaceNodeLease, Name: node}, Spec: coordinationv1.LeaseSpec{RenewTime: &at}}
	}
	kube := func(second time.Duration) *kubefake.Clientset {
		return kubefake.NewSimpleClientset(down(testNode("primary-1", "Primary"), 30*time.Minute), down(testNode("primary-2", "Primary"), second), testNode("dr-1", "DR"),
			lease("primary-1", 30*time.Minute), lease("primary-2", second), lease("dr-1", time.Second))
	}
	objs := testVM(t, "prod", "db", "1", "Primary", true)
	out, _, err := runCmd(t, kube(3*time.Minute), objs, "sites")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "Site Primary may be partitioned rather than powered off: its nodes went silent at different times (primary-1 30m0s ago, primary-2 3m0s ago)") {
		t.Errorf("sites:\n%s", out)
	}
	out, _, _ = runCmd(t, kube(3*time.Minute), objs, "plan", "--all", "--to", "DR", "-o", "json")
	var p plan.Plan
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	found := false
	for _, w := range p.Warnings {
		found = found || w.Code == "PossiblyPartitioned"
	}
	if !found || p.Fencing["Primary"].Partition == "" {
		t.Fatalf("plan warnings %+v; want PossiblyPartitioned", p.Warnings)
	}
	// Silent within the same minute: a power loss, no flag.
	out, _, _ = runCmd(t, kube(30*time.Minute+10*time.Second), objs, "sites")
	if strings.Contains(out, "partitioned") {
		t.Errorf("a site that went silent at once is flagged:\n%s", out)
	}
}
