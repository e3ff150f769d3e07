package e2e

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
	"github.com/sitefail/kubectl-sitefail/test/cluster"
	"github.com/sitefail/kubectl-sitefail/test/stretched"
)

// Issue 21: the edge site dies and Fence Agents Remediation (the real CRD, its
// controller played by the harness) reports every edge node powered off. With one
// node's agent failed (its BMC dark) the failover is refused naming that node, and
// nothing is changed; once that node's fence succeeds too, the failover runs without
// --confirm-site-down, and the plan names each FAR it rests on.
func TestFailoverProvenByFenceAgents(t *testing.T) {
	withEdge(t, []stretched.VMSpec{edgeVM("far-1", 1, nil), edgeVM("far-2", 1, nil)})
	ctx := context.Background()
	if err := env.StopSite(edge); err != nil {
		t.Fatal(err)
	}
	waitEdge(t, false)
	dark := cluster.NodeName(edge, 2)
	fars, err := env.FenceSiteWithAgents(ctx, edge, dark)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, n := range fars {
			_ = env.Dynamic.Resource(fencing.FenceAgentsRemediations).Namespace(stretched.FenceAgentsNamespace).Delete(ctx, n, metav1.DeleteOptions{})
		}
	})

	r := sitefail(t, "move", "-n", safetyNS, "--all", "--to", "DR", "--ready-timeout", "3m")
	if r.code != 2 {
		t.Fatalf("a failover with one node's fence failed, and no confirmation: exit %d, want 2 (refused):\n%s", r.code, r)
	}
	contains(t, r.stdout+r.stderr, dark)
	contains(t, r.stdout+r.stderr, "--confirm-site-down="+edge)
	if templateSiteIn(t, safetyNS, "far-1") != edge || templateSiteIn(t, safetyNS, "far-2") != edge {
		t.Fatal("the refused failover changed a template")
	}

	// The agent reaches the node's BMC on a retry: FAR reports it fenced too.
	res := env.Dynamic.Resource(fencing.FenceAgentsRemediations).Namespace(stretched.FenceAgentsNamespace)
	if err := res.Delete(ctx, dark, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.FenceNodeWithAgents(ctx, dark, false); err != nil {
		t.Fatal(err)
	}
	p := planFor(t, safetyNS, "--all", "--to", "DR")
	site := p.Fencing[edge]
	if !site.Proven || len(site.Nodes) != 2 {
		t.Fatalf("plan's fencing evidence for %s: %+v; want both nodes proven", edge, site)
	}
	for _, ev := range site.Nodes {
		far, err := res.Get(ctx, ev.Node, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !namesObject(ev.Proofs, far) {
			t.Fatalf("node %s: the plan's proofs %+v do not name FenceAgentsRemediation %s (uid %s, resourceVersion %s)", ev.Node, ev.Proofs, far.GetName(), far.GetUID(), far.GetResourceVersion())
		}
	}

	var rep executor.Report
	r = sitefail(t, "move", "-n", safetyNS, "--all", "--to", "DR", "--ready-timeout", "3m", "-o", "json")
	mustJSON(t, r, &rep)
	if rep.Failed() {
		t.Fatalf("the failover proven by FAR: %+v\n%s", rep, r)
	}
	for _, vm := range []string{"far-1", "far-2"} {
		if !vmiReady(ctx, safetyNS, vm) || siteOf(t, safetyNS, vm) != "DR" {
			t.Errorf("%s is not Ready on DR after the proven failover", vm)
		}
	}
	if !strings.Contains(r.stderr, "FenceAgentsRemediation") {
		t.Errorf("the move did not say what proved %s down:\n%s", edge, r.stderr)
	}
}

// namesObject reports whether a strong proof names the object by its UID and
// resourceVersion.
func namesObject(proofs []fencing.Proof, u *unstructured.Unstructured) bool {
	for _, p := range proofs {
		if p.Kind == "FenceAgentsRemediation" && p.Name == u.GetName() && p.UID == string(u.GetUID()) &&
			p.ResourceVersion == u.GetResourceVersion() && p.StrengthName == "strong" {
			return true
		}
	}
	return false
}
