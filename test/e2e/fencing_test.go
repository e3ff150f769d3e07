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
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/test/cluster"
	"github.com/sitefail/kubectl-sitefail/test/stretched"
)

// Issue 21: the edge site dies, and node-healthcheck-operator v0.12.0 (its own manager,
// with one NodeHealthCheck for the site at minHealthy 0%, which the plan says will
// remediate its loss) creates a FenceAgentsRemediation for each of its nodes; the
// harness plays FAR's controller, whose default strategy deletes a fenced node's pods.
// The BMC of the node that runs far-1 is dark, so its agent fails and far-1 stays
// there: the failover is refused naming that node, the plan names the other node's FAR
// as its proof, and nothing is changed. The BMC answers again; the operator deletes the
// failed FAR, NHC makes a new one, and its agent succeeds and deletes the node's pods,
// so FAR has released every VM of the site: the failover restarts them on DR without
// --confirm-site-down and has nothing left to release.
func TestFailoverProvenByFenceAgents(t *testing.T) {
	withEdge(t, []stretched.VMSpec{edgeVM("far-1", 1, nil), edgeVM("far-2", 1, nil)})
	ctx := context.Background()
	vmi, err := getVMI(ctx, safetyNS, "far-1")
	if err != nil {
		t.Fatal(err)
	}
	dark, fenced := vmi.Status.NodeName, cluster.NodeName(edge, 1)
	if dark == fenced {
		fenced = cluster.NodeName(edge, 2)
	}
	env.SetBMCDark(dark, true)
	t.Cleanup(func() { env.SetBMCDark(dark, false) })
	nhc := withNodeHealthCheck(t, "edge", "0%", edge)
	if p := planFor(t, safetyNS, "--all", "--to", "DR"); !hasIssue(p.Notes, "SiteLossRemediated") {
		t.Fatalf("an NHC over %s alone at minHealthy 0%%: notes %+v; want SiteLossRemediated", edge, p.Notes)
	}
	if err := env.StopSite(edge); err != nil {
		t.Fatal(err)
	}
	waitEdge(t, false)

	// NHC's own remediations, one per node, each with its agent's result.
	res := env.Dynamic.Resource(fencing.FenceAgentsRemediations).Namespace(stretched.Medik8sNamespace)
	first := map[string]*unstructured.Unstructured{
		fenced: waitFAR(t, fenced, "", "True"),
		dark:   waitFAR(t, dark, "", "False"),
	}
	for node, far := range first {
		if !madeBy(far, nhc) || far.GetAnnotations()["remediation.medik8s.io/node-name"] != node {
			t.Fatalf("FenceAgentsRemediation %s: owners %+v, annotations %v; want NodeHealthCheck %s's, for node %s", far.GetName(), far.GetOwnerReferences(), far.GetAnnotations(), nhc.GetName(), node)
		}
	}
	if c := farCondition(first[dark], "FenceAgentActionSucceeded"); c == nil || c.Reason != "FenceAgentFailed" {
		t.Fatalf("the dark node's FAR: %+v; want FenceAgentActionSucceeded False, FenceAgentFailed", first[dark].Object["status"])
	}
	if pods := podsOn(t, fenced); len(pods) != 0 {
		t.Fatalf("FAR remediated %s, yet its pods remain: %v", fenced, pods)
	}

	p := planFor(t, safetyNS, "--all", "--to", "DR")
	site := p.Fencing[edge]
	if site.Proven || len(site.Nodes) != 2 {
		t.Fatalf("plan's fencing evidence for %s: %+v; want both nodes judged, not proven", edge, site)
	}
	for _, ev := range site.Nodes {
		far, err := res.Get(ctx, ev.Node, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if proven := namesObject(ev.Proofs, far); proven != (ev.Node == fenced) {
			t.Fatalf("node %s: the plan's proofs %+v against FenceAgentsRemediation %s (uid %s, resourceVersion %s); want it named strong only for %s", ev.Node, ev.Proofs, far.GetName(), far.GetUID(), far.GetResourceVersion(), fenced)
		}
	}
	r := sitefail(t, "move", "-n", safetyNS, "--all", "--to", "DR", "--ready-timeout", "3m")
	if r.code != 2 {
		t.Fatalf("a failover with one node's fence failed, and no confirmation: exit %d, want 2 (refused):\n%s", r.code, r)
	}
	contains(t, r.stdout+r.stderr, dark)
	contains(t, r.stdout+r.stderr, "--confirm-site-down="+edge)
	if templateSiteIn(t, safetyNS, "far-1") != edge || templateSiteIn(t, safetyNS, "far-2") != edge {
		t.Fatal("the refused failover changed a template")
	}

	// The BMC answers again. The failed FAR is final (FAR retries only within one
	// object): the operator deletes it, and NHC, which still finds the node unhealthy,
	// makes a new one.
	env.SetBMCDark(dark, false)
	if err := res.Delete(ctx, dark, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	again := waitFAR(t, dark, first[dark].GetUID(), "True")
	if !madeBy(again, nhc) {
		t.Fatalf("the new FAR of %s: owners %+v; want NodeHealthCheck %s's", dark, again.GetOwnerReferences(), nhc.GetName())
	}
	if pods := podsOn(t, dark); len(pods) != 0 {
		t.Fatalf("FAR remediated %s, yet its pods remain: %v", dark, pods)
	}
	p = planFor(t, safetyNS, "--all", "--to", "DR")
	if hasIssue(p.Warnings, "FailoverNeedsConfirmation") || len(p.NeedsFailover()) != 0 {
		t.Fatalf("FAR deleted every pod of %s: the plan %+v still wants a failover (%v)", edge, p.Warnings, p.NeedsFailover())
	}
	if !hasIssue(p.Notes, "SiteLossRemediated") {
		t.Fatalf("the dead %s, remediated by its NHC: notes %+v; want SiteLossRemediated", edge, p.Notes)
	}
	// KubeVirt failed the instances whose pods FAR deleted and started the VMs again,
	// Pending on the dead site: the plan restarts them on DR, each a release of the dead
	// site (their guests might still run there, for all the API shows: 5k), which FAR's
	// evidence now proves.
	for _, st := range p.Steps {
		// Found Pending (a restart), or still Failed on its node (a patch KubeVirt
		// recreates it from), depending on how far KubeVirt got.
		restart := st.Action == plan.ActionRestart && st.Node == ""
		recreated := st.Action == plan.ActionPatch && st.Recreated
		if !restart && !recreated || st.ReleasedFrom != edge {
			t.Fatalf("after FAR released %s: %s is planned %s on node %q, released from %q (%s); want a start guarded by %s", edge, st.Name, st.Action, st.Node, st.ReleasedFrom, st.Reason, edge)
		}
	}

	var rep executor.Report
	r = sitefail(t, "move", "-n", safetyNS, "--all", "--to", "DR", "--ready-timeout", "3m", "-o", "json")
	mustJSON(t, r, &rep)
	if rep.Failed() || len(rep.Releases) != 1 || rep.Releases[0].Site != edge || rep.Releases[0].Basis != "fencing" {
		t.Fatalf("the failover after FAR released the site: %+v; want its restarts resting on FAR's evidence\n%s", rep, r)
	}
	for _, vm := range []string{"far-1", "far-2"} {
		if !vmiReady(ctx, safetyNS, vm) || siteOf(t, safetyNS, vm) != "DR" {
			t.Errorf("%s is not Ready on DR after the failover", vm)
		}
	}
}

// podsOn names the pods bound to node.
func podsOn(t *testing.T, node string) []string {
	t.Helper()
	list, err := env.Kube.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range list.Items {
		names = append(names, p.Namespace+"/"+p.Name)
	}
	return names
}

// fenceAgentsTemplates is Fence Agents Remediation's template kind, which NHC copies
// into each remediation it makes.
var fenceAgentsTemplates = schema.GroupVersionResource{Group: "fence-agents-remediation.medik8s.io", Version: "v1alpha1", Resource: "fenceagentsremediationtemplates"}

// withNodeHealthCheck runs node-healthcheck-operator's manager for the test and
// creates a NodeHealthCheck over the nodes of sites, with minHealthy, whose nodes are
// unhealthy 5 s after their Ready condition turns Unknown or False, remediated by
// Fence Agents Remediation (action off, two agent attempts 5 s apart). At the end the
// NHC goes, then the remediations it made (their finalizers removed by the played FAR
// controller, while their nodes still exist), then the manager.
func withNodeHealthCheck(t *testing.T, name, minHealthy string, sites ...string) *unstructured.Unstructured {
	t.Helper()
	ctx := context.Background()
	stop, err := env.StartNodeHealthChecks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: stretched.Medik8sNamespace}}
	if _, err := env.Kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	nodes, err := env.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]any{}
	for _, n := range nodes.Items {
		if slices.Contains(sites, n.Labels["topology.kubernetes.io/site"]) {
			ports[n.Name] = "623"
		}
	}
	templates := env.Dynamic.Resource(fenceAgentsTemplates).Namespace(stretched.Medik8sNamespace)
	template := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "fence-agents-remediation.medik8s.io/v1alpha1", "kind": "FenceAgentsRemediationTemplate",
		"metadata": map[string]any{"name": "far-" + name},
		"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
			"agent":            "fence_ipmilan",
			"sharedparameters": map[string]any{"--action": "off", "--lanplus": ""},
			"nodeparameters":   map[string]any{"--ipport": ports},
			"retrycount":       int64(2),
			"retryinterval":    "5s",
		}}},
	}}
	if _, err := templates.Create(ctx, template, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the FenceAgentsRemediationTemplate, validated by its CRD: %v", err)
	}
	sel := make([]any, len(sites))
	for i, s := range sites {
		sel[i] = s
	}
	nhc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "remediation.medik8s.io/v1alpha1", "kind": "NodeHealthCheck",
		"metadata": map[string]any{"name": name},
		"spec": map[string]any{
			"minHealthy": minHealthy,
			"selector":   map[string]any{"matchExpressions": []any{map[string]any{"key": "topology.kubernetes.io/site", "operator": "In", "values": sel}}},
			"remediationTemplate": map[string]any{"apiVersion": "fence-agents-remediation.medik8s.io/v1alpha1", "kind": "FenceAgentsRemediationTemplate",
				"namespace": stretched.Medik8sNamespace, "name": "far-" + name},
			"unhealthyConditions": []any{map[string]any{"type": "Ready", "status": "Unknown", "duration": "5s"}, map[string]any{"type": "Ready", "status": "False", "duration": "5s"}},
		},
	}}
	nhcs := env.Dynamic.Resource(fencing.NodeHealthChecks)
	created, err := nhcs.Create(ctx, nhc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("the NodeHealthCheck, validated by its CRD: %v", err)
	}
	t.Cleanup(func() {
		_ = nhcs.Delete(ctx, name, metav1.DeleteOptions{})
		fars := env.Dynamic.Resource(fencing.FenceAgentsRemediations).Namespace(stretched.Medik8sNamespace)
		waitFor(t, 2*time.Minute, "the remediations of NodeHealthCheck "+name+" gone", func() bool {
			list, err := fars.List(ctx, metav1.ListOptions{})
			if err != nil {
				return false
			}
			return !slices.ContainsFunc(list.Items, func(u unstructured.Unstructured) bool { return madeBy(&u, created) })
		})
		_ = templates.Delete(ctx, "far-"+name, metav1.DeleteOptions{})
	})
	// The manager has taken it on once it reports the nodes it observes.
	waitFor(t, time.Minute, "NodeHealthCheck "+name+" observed by node-healthcheck-operator", func() bool {
		u, err := nhcs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
		return phase == "Enabled"
	})
	return created
}

// waitFAR waits for the FenceAgentsRemediation of node, other than one with the UID
// not, whose Succeeded condition has the status want, and returns it.
func waitFAR(t *testing.T, node string, not types.UID, want string) *unstructured.Unstructured {
	t.Helper()
	res := env.Dynamic.Resource(fencing.FenceAgentsRemediations).Namespace(stretched.Medik8sNamespace)
	var far *unstructured.Unstructured
	waitFor(t, 2*time.Minute, "the FenceAgentsRemediation of "+node+" with Succeeded="+want, func() bool {
		u, err := res.Get(context.Background(), node, metav1.GetOptions{})
		if err != nil || u.GetUID() == not {
			return false
		}
		if c := farCondition(u, "Succeeded"); c != nil && string(c.Status) == want {
			far = u
			return true
		}
		return false
	})
	return far
}

func farCondition(u *unstructured.Unstructured, typ string) *metav1.Condition {
	raw, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, r := range raw {
		m, _ := r.(map[string]any)
		var c metav1.Condition
		if m != nil && runtime.DefaultUnstructuredConverter.FromUnstructured(m, &c) == nil && c.Type == typ {
			return &c
		}
	}
	return nil
}

// madeBy reports whether a remediation names the NodeHealthCheck as its owner.
func madeBy(u, nhc *unstructured.Unstructured) bool {
	return slices.ContainsFunc(u.GetOwnerReferences(), func(o metav1.OwnerReference) bool {
		return o.Kind == "NodeHealthCheck" && o.UID == nhc.GetUID()
	})
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
	fences, name := withFenceClasses(t, map[string]string{"ceph-unreachable": "rpc error: the Ceph cluster is unreachable", "ceph": ""})
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
	fences, name := withFenceClasses(t, map[string]string{"ceph": ""})
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
	stayedOnEdge(t, "after the fence was withdrawn", "w2", "w3")
	r := sitefail(t, "report", "-o", "json")
	contains(t, r.stdout, "site "+edge+" fenced: NetworkFence "+name)
	contains(t, r.stdout, "no longer holds")
}

// withFenceClasses creates NetworkFenceClasses whose played storage driver fails each
// fence with its message ("" succeeds), and removes them and Edge's fence at the end. It
// returns the fences' client and the name of Edge's fence.
func withFenceClasses(t *testing.T, classes map[string]string) (dynamic.ResourceInterface, string) {
	t.Helper()
	ctx := context.Background()
	fences := env.Dynamic.Resource(fencing.NetworkFences)
	name := fencing.FenceName(edge)
	t.Cleanup(func() {
		_ = fences.Delete(ctx, name, metav1.DeleteOptions{})
		for class := range classes {
			_ = env.Dynamic.Resource(fencing.NetworkFenceClasses).Delete(ctx, class, metav1.DeleteOptions{})
		}
	})
	for class, fail := range classes {
		if err := env.CreateNetworkFenceClass(ctx, class, fail); err != nil {
			t.Fatal(err)
		}
	}
	return fences, name
}
