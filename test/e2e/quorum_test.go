package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
	"github.com/sitefail/kubectl-sitefail/test/cluster"
	"github.com/sitefail/kubectl-sitefail/test/stretched"
)

// Issue 21, part 3, on the real API server (the NodeHealthCheck CRD from its pinned
// module validates the object): a one-node arbiter site is never a target, and --to-other
// skips it; with two of three etcd members on Primary, a relocation off Primary warns
// that losing it costs the quorum; an NHC with minHealthy 51% over the workers does not
// remediate Primary's loss, and the plan says so. Then Primary is lost for real, with
// node-healthcheck-operator v0.12.0's own manager running: it skips remediation for the
// reason and with the numbers the plan gave, and creates no remediation.
func TestWitnessSiteQuorumAndRemediation(t *testing.T) {
	ctx := context.Background()
	const ns, arbiter = "quorum", "arbiter-node-1"
	// Run by Primary's kwok, so that it stays Ready; its site label makes it the arbiter.
	if err := env.AddNode(ctx, arbiter, "Arbiter", cluster.KwokGroup("Primary")); err != nil {
		t.Fatal(err)
	}
	patch := `{"metadata":{"labels":{"` + snapshot.ZoneLabel + `":"` + snapshot.ArbiterZone + `"}}}`
	if _, err := env.Kube.CoreV1().Nodes().Patch(ctx, arbiter, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	var pods []string
	for _, node := range []string{cluster.NodeName("Primary", 1), cluster.NodeName("Primary", 2), arbiter} {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "etcd-" + node, Labels: map[string]string{"component": "etcd", "tier": "control-plane"}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "etcd", Image: "registry.k8s.io/etcd:3.6.4-0"}}}}
		if _, err := env.Kube.CoreV1().Pods("kube-system").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pods = append(pods, p.Name)
	}
	t.Cleanup(func() {
		for _, p := range pods {
			_ = env.Kube.CoreV1().Pods("kube-system").Delete(ctx, p, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		}
		_ = env.Kube.CoreV1().Nodes().Delete(ctx, arbiter, metav1.DeleteOptions{})
	})
	nhc := withNodeHealthCheck(t, "workers", "51%", "Primary", "DR")
	waitFor(t, time.Minute, "the etcd pods Ready", func() bool {
		list, err := env.Kube.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "component=etcd"})
		if err != nil || len(list.Items) != 3 {
			return false
		}
		for _, p := range list.Items {
			if p.Status.Phase != corev1.PodRunning {
				return false
			}
		}
		return true
	})
	// Stopped (a Manual VM not started): a plan needs no instance, and one left on
	// Primary would be caught in a later test's failover of Primary (TestUIFailover
	// waited for one in a cold run).
	// The VM itself is deleted and waited for: while its namespace goes, which takes a
	// minute, a later test's move of every tier-1 VM would include it (TestUIFailover
	// waited for it).
	t.Cleanup(func() {
		vms := env.Dynamic.Resource(kubevirt.VMs).Namespace(ns)
		_ = vms.Delete(ctx, "q1", metav1.DeleteOptions{})
		waitFor(t, time.Minute, "VM q1 gone", func() bool {
			_, err := vms.Get(ctx, "q1", metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		})
		_ = env.Kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	})
	if err := env.CreateVMs(ctx, []stretched.VMSpec{{Namespace: ns, Name: "q1", Tier: 1, Site: "Primary", RunStrategy: kubevirtv1.RunStrategyManual}}); err != nil {
		t.Fatal(err)
	}

	p := planFor(t, ns, "--to", "Arbiter", "q1")
	if !hasIssue(p.Blockers, "WitnessTarget") {
		t.Fatalf("a move to the arbiter site: blockers %+v; want WitnessTarget", p.Blockers)
	}
	p = planFor(t, ns, "--to-other", "q1")
	if p.Request.To != "DR" {
		t.Fatalf("--to-other with an arbiter site picked %q; want DR", p.Request.To)
	}
	if !hasIssue(p.Warnings, "QuorumAtRisk") {
		t.Fatalf("a relocation off Primary, which holds 2 of 3 etcd members: warnings %+v; want QuorumAtRisk", p.Warnings)
	}
	if !hasIssue(p.Notes, "SiteLossNotRemediated") {
		t.Fatalf("NHC minHealthy 51%% over the workers: notes %+v; want SiteLossNotRemediated", p.Notes)
	}
	r := sitefail(t, "sites")
	for _, want := range []string{"Site Arbiter: witness", "if Primary is lost, the API server loses quorum", "Site Primary: its loss will not be remediated automatically"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("sites lacks %q:\n%s", want, r.stdout)
		}
	}

	// The plan's numbers: DR's nodes stay healthy out of Primary's and DR's, against 51%
	// of them rounded up.
	nodes, err := env.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "topology.kubernetes.io/site in (Primary,DR)"})
	if err != nil {
		t.Fatal(err)
	}
	selected, healthy := len(nodes.Items), 0
	for _, n := range nodes.Items {
		if n.Labels["topology.kubernetes.io/site"] == "DR" {
			healthy++
		}
	}
	need := (selected*51 + 99) / 100
	judged := fmt.Sprintf("%d of its %d selected nodes stay healthy, fewer than minHealthy 51%% (%d): NHC skips remediation", healthy, selected, need)
	contains(t, issueMessage(p.Notes, "SiteLossNotRemediated"), judged)

	// Primary is lost. The real controller finds its nodes unhealthy and skips them, as
	// the plan said; no remediation appears, and the plan, now a failover's, warns.
	t.Cleanup(func() {
		_ = env.StartSite("Primary")
		if err := env.WaitNodesMatching(ctx, 2*time.Minute, "topology.kubernetes.io/site=Primary", func(n *corev1.Node) bool {
			return cluster.NodeReady(n) && len(n.Spec.Taints) == 0 && n.Labels["kubevirt.io/schedulable"] == "true"
		}); err != nil {
			t.Errorf("Primary back: %v", err)
		}
		if err := env.WaitSettled(ctx, 3*time.Minute); err != nil {
			t.Errorf("the VMs after Primary came back: %v", err)
		}
	})
	// The node controller finds a dead site's nodes NotReady a few seconds apart, and
	// NHC judges each one 5 s after it: the first two of Primary's three, found while
	// the third still counted as healthy, were remediated in one run (4 of 6 healthy
	// then). The plan judges the whole site lost; the NHC is paused until it is.
	nhcs := env.Dynamic.Resource(fencing.NodeHealthChecks)
	pause := func(requests []any) {
		t.Helper()
		u, err := nhcs.Get(ctx, "workers", metav1.GetOptions{})
		if err == nil {
			err = unstructured.SetNestedSlice(u.Object, requests, "spec", "pauseRequests")
		}
		if err == nil {
			_, err = nhcs.Update(ctx, u, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Fatalf("pause requests %v on NodeHealthCheck workers: %v", requests, err)
		}
	}
	pause([]any{"the whole of Primary is going down"})
	if err := env.StopSite("Primary"); err != nil {
		t.Fatal(err)
	}
	if err := env.WaitNodesMatching(ctx, 90*time.Second, "topology.kubernetes.io/site=Primary", func(n *corev1.Node) bool { return !cluster.NodeReady(n) }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Second) // past NHC's 5 s on the last of them
	pause(nil)
	skipped := fmt.Sprintf("Skipped remediation because the number of healthy nodes selected by the selector is %d and should equal or exceed %d", healthy, need)
	var events []string
	waitFor(t, 2*time.Minute, "NodeHealthCheck workers to skip remediation", func() bool {
		list, err := env.Kube.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=workers,reason=RemediationSkipped"})
		if err != nil {
			return false
		}
		events = events[:0]
		for _, e := range list.Items {
			if e.InvolvedObject.UID == nhc.GetUID() {
				events = append(events, e.Message)
			}
		}
		// The pause had its own RemediationSkipped; the judgement comes after it.
		return slices.ContainsFunc(events, func(m string) bool { return strings.Contains(m, "number of healthy nodes") })
	})
	if !slices.ContainsFunc(events, func(m string) bool { return strings.Contains(m, skipped) }) {
		t.Fatalf("node-healthcheck-operator's RemediationSkipped events %q; want %q, the plan's numbers", events, skipped)
	}
	u, err := env.Dynamic.Resource(fencing.NodeHealthChecks).Get(ctx, "workers", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	unhealthy, _, _ := unstructured.NestedSlice(u.Object, "status", "unhealthyNodes")
	for _, n := range unhealthy {
		if rs, _, _ := unstructured.NestedSlice(n.(map[string]any), "remediations"); len(rs) > 0 {
			t.Errorf("NodeHealthCheck workers remediates: %v", n)
		}
	}
	if len(unhealthy) != selected-healthy {
		t.Errorf("NodeHealthCheck workers sees %d unhealthy nodes; want Primary's %d", len(unhealthy), selected-healthy)
	}
	// Its next reconcile skips again: still no remediation.
	time.Sleep(10 * time.Second)
	fars, err := env.Dynamic.Resource(fencing.FenceAgentsRemediations).Namespace(stretched.Medik8sNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(fars.Items) != 0 {
		t.Fatalf("NodeHealthCheck workers skipped remediation, yet %d FenceAgentsRemediations exist", len(fars.Items))
	}
	p = planFor(t, ns, "--to", "DR", "q1")
	contains(t, issueMessage(p.Warnings, "SiteLossNotRemediated"), judged)
}

// issueMessage is the message of the issue with code, "" when there is none.
func issueMessage(issues []plan.Issue, code string) string {
	for _, i := range issues {
		if i.Code == code {
			return i.Message
		}
	}
	return ""
}

func hasIssue(issues []plan.Issue, code string) bool {
	for _, i := range issues {
		if i.Code == code {
			return true
		}
	}
	return false
}
