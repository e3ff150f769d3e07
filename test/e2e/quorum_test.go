package e2e

import (
	"context"
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
// remediate Primary's loss, and the plan says so.
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
	nhc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "remediation.medik8s.io/v1alpha1", "kind": "NodeHealthCheck",
		"metadata": map[string]any{"name": "workers"},
		"spec": map[string]any{
			"minHealthy": "51%",
			"selector":   map[string]any{"matchExpressions": []any{map[string]any{"key": "topology.kubernetes.io/site", "operator": "In", "values": []any{"Primary", "DR"}}}},
			"remediationTemplate": map[string]any{"apiVersion": "fence-agents-remediation.medik8s.io/v1alpha1", "kind": "FenceAgentsRemediationTemplate",
				"namespace": "medik8s", "name": "far-template"},
			"unhealthyConditions": []any{map[string]any{"type": "Ready", "status": "Unknown", "duration": "300s"}, map[string]any{"type": "Ready", "status": "False", "duration": "300s"}},
		},
	}}
	nhcs := env.Dynamic.Resource(fencing.NodeHealthChecks)
	if _, err := nhcs.Create(ctx, nhc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the NodeHealthCheck, validated by its CRD: %v", err)
	}
	t.Cleanup(func() {
		_ = nhcs.Delete(ctx, "workers", metav1.DeleteOptions{})
		for _, p := range pods {
			_ = env.Kube.CoreV1().Pods("kube-system").Delete(ctx, p, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		}
		_ = env.Kube.CoreV1().Nodes().Delete(ctx, arbiter, metav1.DeleteOptions{})
	})
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
}

func hasIssue(issues []plan.Issue, code string) bool {
	for _, i := range issues {
		if i.Code == code {
			return true
		}
	}
	return false
}
