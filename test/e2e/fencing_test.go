package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"

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

// Issue 21, --fence network: the plugin fences the dead site's storage itself. A fence
// the storage driver fails stops the move before any VM is touched, with the driver's
// message. A fence that succeeds is what the failover rests on: no --confirm-site-down,
// and the report names the fence. The failback lifts it (Unfenced, then deleted) before
// the VMs go back.
func TestFenceNetworkFailoverAndFailback(t *testing.T) {
	withEdge(t, []stretched.VMSpec{edgeVM("nf-1", 1, nil), edgeVM("nf-2", 2, nil)})
	ctx := context.Background()
	classes := env.Dynamic.Resource(fencing.NetworkFenceClasses)
	fences := env.Dynamic.Resource(fencing.NetworkFences)
	name := fencing.FenceName(edge)
	t.Cleanup(func() {
		_ = fences.Delete(ctx, name, metav1.DeleteOptions{})
		_ = classes.Delete(ctx, "ceph-unreachable", metav1.DeleteOptions{})
		_ = classes.Delete(ctx, "ceph", metav1.DeleteOptions{})
	})
	if err := env.CreateNetworkFenceClass(ctx, "ceph-unreachable", "rpc error: the Ceph cluster is unreachable"); err != nil {
		t.Fatal(err)
	}
	if err := env.CreateNetworkFenceClass(ctx, "ceph", ""); err != nil {
		t.Fatal(err)
	}
	if err := env.StopSite(edge); err != nil {
		t.Fatal(err)
	}
	waitEdge(t, false)

	// Two classes and none named: refused in preflight, nothing written.
	r := sitefail(t, "move", "-n", safetyNS, "--all", "--to", "DR", "--fence", "network")
	if r.code == 0 || !strings.Contains(r.stderr, "--network-fence-class") {
		t.Fatalf("--fence network with two classes and none named: %s", r)
	}
	if _, err := fences.Get(ctx, name, metav1.GetOptions{}); err == nil {
		t.Fatal("a refused preflight created the fence")
	}

	// The driver fails the fence: the move stops with its message, no VM touched.
	r = sitefail(t, "move", "-n", safetyNS, "--all", "--to", "DR", "--fence", "network", "--network-fence-class", "ceph-unreachable", "--fence-timeout", "1m")
	if r.code == 0 {
		t.Fatalf("a failed storage fence must stop the failover: %s", r)
	}
	contains(t, r.stderr, "the Ceph cluster is unreachable")
	for _, vm := range []string{"nf-1", "nf-2"} {
		if templateSiteIn(t, safetyNS, vm) != edge {
			t.Fatalf("%s's template was patched after the fence failed", vm)
		}
	}
	if err := fences.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("the failed fence: %v", err)
	}
	waitFor(t, time.Minute, "the failed fence to be gone", func() bool {
		_, err := fences.Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})

	// A client dry run shows the fence the move would make, and writes nothing.
	r = sitefail(t, "move", "-n", safetyNS, "--all", "--to", "DR", "--fence", "network", "--network-fence-class", "ceph", "--dry-run")
	contains(t, r.stdout, "create NetworkFence "+name)
	if _, err := fences.Get(ctx, name, metav1.GetOptions{}); err == nil {
		t.Fatal("a client dry run created the fence")
	}

	// The driver fences: the failover runs without a typed confirmation.
	var rep executor.Report
	r = sitefail(t, "move", "-n", safetyNS, "--all", "--to", "DR", "--fence", "network", "--network-fence-class", "ceph", "--ready-timeout", "3m", "-o", "json")
	mustJSON(t, r, &rep)
	if rep.Failed() {
		t.Fatalf("the failover behind the storage fence: %+v\n%s", rep, r)
	}
	for _, vm := range []string{"nf-1", "nf-2"} {
		if !vmiReady(ctx, safetyNS, vm) || siteOf(t, safetyNS, vm) != "DR" {
			t.Errorf("%s is not Ready on DR", vm)
		}
	}
	fence, err := fences.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the fence after the failover: %v", err)
	}
	cidrs, _, _ := unstructured.NestedStringSlice(fence.Object, "spec", "cidrs")
	if len(cidrs) != 2 {
		t.Errorf("the fence covers %v; want the two edge nodes' addresses", cidrs)
	}
	if len(rep.Releases) != 1 || rep.Releases[0].Basis != "fencing" || !strings.Contains(fmt.Sprint(rep.Releases[0].Evidence), name) {
		t.Errorf("the report's release basis: %+v; want the fence %s", rep.Releases, name)
	}

	// The site comes back: the failback lifts the fence first, then moves the VMs.
	if err := env.StartSite(edge); err != nil {
		t.Fatal(err)
	}
	// Back, untainted by the node controller, and schedulable for KubeVirt again.
	if err := env.WaitNodesMatching(ctx, 2*time.Minute, "topology.kubernetes.io/site="+edge, func(n *corev1.Node) bool {
		return cluster.NodeReady(n) && len(n.Spec.Taints) == 0 && n.Labels["kubevirt.io/schedulable"] == "true"
	}); err != nil {
		t.Fatal(err)
	}
	// At once, the fence stays: the returned kubelets may still be ending the guests the
	// failover released.
	r = sitefail(t, "failback", "-n", safetyNS, "--all", "--ready-timeout", "3m")
	if r.code == 0 || !strings.Contains(r.stderr, "has been Ready for") {
		t.Fatalf("a failback right after the site returned must keep the fence: %s", r)
	}
	if _, err := fences.Get(ctx, name, metav1.GetOptions{}); err != nil {
		t.Fatalf("the refused failback touched the fence: %v", err)
	}
	time.Sleep(10 * time.Second)
	r = sitefail(t, "failback", "-n", safetyNS, "--all", "--ready-timeout", "3m", "--unfence-settle", "10s", "--progress", "lines")
	if r.code != 0 {
		t.Fatalf("failback: %s", r)
	}
	contains(t, r.stderr, "fence is lifted")
	if _, err := fences.Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the fence after the failback: %v; want it deleted", err)
	}
	for _, vm := range []string{"nf-1", "nf-2"} {
		if !vmiReady(ctx, safetyNS, vm) || siteOf(t, safetyNS, vm) != edge {
			t.Errorf("%s is not Ready on %s after the failback", vm, edge)
		}
	}
}

// Issue 21: evidence withdrawn mid-move. A failover of Edge rests on the tool's own
// storage fence, with no typed confirmation; once tier 1 runs on DR, someone
// sets the fence back to Unfenced. Every release reads the evidence again (5c): nothing
// more is released, tiers 2 and 3 keep their templates and their launchers, and the
// move exits non-zero naming the fence. The record tells of the fence and the stop.
func TestFenceWithdrawnMidMoveStopsReleases(t *testing.T) {
	withEdge(t, []stretched.VMSpec{edgeVM("w1", 1, nil), edgeVM("w2", 2, nil), edgeVM("w3", 3, nil)})
	ctx := context.Background()
	classes := env.Dynamic.Resource(fencing.NetworkFenceClasses)
	fences := env.Dynamic.Resource(fencing.NetworkFences)
	name := fencing.FenceName(edge)
	t.Cleanup(func() {
		_ = fences.Delete(ctx, name, metav1.DeleteOptions{})
		_ = classes.Delete(ctx, "ceph", metav1.DeleteOptions{})
	})
	if err := env.CreateNetworkFenceClass(ctx, "ceph", ""); err != nil {
		t.Fatal(err)
	}
	if err := env.StopSite(edge); err != nil {
		t.Fatal(err)
	}
	waitEdge(t, false)
	// --rate 2: a start every 30 s, so the fence is withdrawn before tier 2's turn.
	cmd, out := startProcess(t, "move", "-n", safetyNS, "--all", "--to", "DR", "--fence", "network", "--network-fence-class", "ceph",
		"--rate", "2", "--max-in-flight", "1", "--progress", "lines")
	waitFor(t, 2*time.Minute, "tier 1 Ready on DR", func() bool { return vmiReady(ctx, safetyNS, "w1") && siteOf(t, safetyNS, "w1") == "DR" })
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u, err := fences.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if err := unstructured.SetNestedField(u.Object, "Unfenced", "spec", "fenceState"); err != nil {
			return err
		}
		_, err = fences.Update(ctx, u, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("withdraw the fence: %v", err)
	}
	err = cmd.Wait()
	t.Logf("move output:\n%s", out.String())
	if err == nil || !strings.Contains(out.String(), "no longer holds") {
		t.Fatalf("the move went on after its fence was withdrawn (%v)", err)
	}
	for _, vm := range []string{"w2", "w3"} {
		if s := templateSite(t, vm); s != edge {
			t.Errorf("%s: template moved to %q after the fence was withdrawn", vm, s)
		}
		if launcherPods(t, vm) == 0 || siteOf(t, safetyNS, vm) != edge {
			t.Errorf("%s was released after its fence was withdrawn", vm)
		}
	}
	r := sitefail(t, "report", "-o", "json")
	contains(t, r.stdout, "site "+edge+" fenced: NetworkFence "+name)
	contains(t, r.stdout, "no longer holds")
}
