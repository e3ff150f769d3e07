package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/kubecluster"
	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/pkg/lock"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/test/cluster"
	"github.com/sitefail/kubectl-sitefail/test/stretched"
	"github.com/sitefail/kubectl-sitefail/test/virthandler"
)

// The DR promises at the instant of each write (docs/safety.md), on KubeVirt's own
// controllers. Each test runs on a third site of its own, "Edge", so that it can lose
// and regain that site without touching the two the other tests use.

const edge, safetyNS = "Edge", "safety"

// withEdge adds the Edge site (two nodes, its kwok and fake virt-handler) and the VMs,
// waits until they run, and removes all of it at the end.
func withEdge(t *testing.T, vms []stretched.VMSpec) {
	t.Helper()
	ctx := context.Background()
	nodes := []string{cluster.NodeName(edge, 1), cluster.NodeName(edge, 2)}
	for _, n := range nodes {
		if err := env.AddNode(ctx, n, edge, cluster.KwokGroup(edge)); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.StartSite(edge); err != nil {
		t.Fatal(err)
	}
	namespaces := map[string]bool{}
	for _, v := range vms {
		namespaces[v.Namespace] = true
	}
	t.Cleanup(func() {
		start := time.Now()
		// With the site up, its pods end at once and the namespaces go quickly.
		_ = env.StartSite(edge)
		// The VMs go first, and the namespace only once their launchers are gone: the
		// namespace controller, finding pods still terminating, looks again only after
		// their grace period (a launcher's is its VMI's plus 15 s), however soon they end.
		for ns := range namespaces {
			_ = env.Dynamic.Resource(kubevirt.VMs).Namespace(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
			_ = env.Dynamic.Resource(kubevirt.VMIs).Namespace(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		}
		for ns := range namespaces {
			waitFor(t, 3*time.Minute, "launchers in "+ns+" gone", func() bool {
				pods, err := env.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
				return err == nil && len(pods.Items) == 0
			})
		}
		stopped := time.Since(start)
		for ns := range namespaces {
			_ = env.Kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		}
		for ns := range namespaces {
			waitFor(t, 3*time.Minute, "namespace "+ns+" gone", func() bool {
				_, err := env.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
				return apierrors.IsNotFound(err)
			})
		}
		t.Logf("cleanup: launchers gone in %s, namespaces in %s", stopped.Round(time.Second), time.Since(start).Round(time.Second))
		_ = env.StopSite(edge)
		for _, n := range nodes {
			_ = env.Kube.CoreV1().Nodes().Delete(ctx, n, metav1.DeleteOptions{})
		}
	})
	waitEdge(t, true)
	if err := env.CreateVMs(ctx, vms); err != nil {
		t.Fatal(err)
	}
	for _, v := range vms {
		if v.RunStrategy == kubevirtv1.RunStrategyManual {
			if code, err := subresource(ctx, v.Namespace, v.Name, "start"); code != 202 {
				t.Fatalf("start %s: %d %v", v.Name, code, err)
			}
		}
	}
	for _, v := range vms {
		if v.RunStrategy == kubevirtv1.RunStrategyHalted {
			continue
		}
		v := v
		waitFor(t, 3*time.Minute, v.Name+" Ready on "+v.Site, func() bool { return vmiReady(ctx, v.Namespace, v.Name) && siteOf(t, v.Namespace, v.Name) == v.Site })
	}
}

func waitEdge(t *testing.T, ready bool) {
	t.Helper()
	err := env.WaitNodesMatching(context.Background(), 90*time.Second, "topology.kubernetes.io/site="+edge, func(n *corev1.Node) bool { return cluster.NodeReady(n) == ready })
	if err != nil {
		t.Fatal(err)
	}
}

func edgeVM(name string, tier int, mod func(*stretched.VMSpec)) stretched.VMSpec {
	v := stretched.VMSpec{Namespace: safetyNS, Name: name, Tier: tier, Site: edge}
	if mod != nil {
		mod(&v)
	}
	return v
}

// sitefailEnv runs the plugin binary with extra environment (a crash point).
func sitefailEnv(t *testing.T, extra []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "kubectl-sitefail"), args...)
	cmd.Env = append(append(os.Environ(), "KUBECONFIG="+env.Kubeconfig, "SITEFAIL_CONFIG=/nonexistent/none.yaml"), extra...)
	return runResult(t, cmd)
}

func templateSite(t *testing.T, name string) string {
	t.Helper()
	return templateSiteIn(t, safetyNS, name)
}

func launcherPods(t *testing.T, name string) int {
	t.Helper()
	pods, err := env.Kube.CoreV1().Pods(safetyNS).List(context.Background(), metav1.ListOptions{LabelSelector: "vm.kubevirt.io/name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	return len(pods.Items)
}

func planAction(t *testing.T, name string) plan.Action {
	t.Helper()
	var p plan.Plan
	mustJSON(t, sitefail(t, "plan", "-n", safetyNS, "--to", "DR", name, "-o", "json"), &p)
	return p.Steps[0].Action
}

// Scenario 1: the site comes back during tier 1 of a three-tier failover: nothing of
// tiers 2 and 3 is released, their templates still select Edge, and the move exits
// non-zero saying why.
func TestSafetySiteComesBackMidFailover(t *testing.T) {
	withEdge(t, []stretched.VMSpec{edgeVM("t1", 1, nil), edgeVM("t2", 2, nil), edgeVM("t3", 3, nil)})
	if err := env.StopSite(edge); err != nil {
		t.Fatal(err)
	}
	waitEdge(t, false)
	// --rate 2: a start every 30 s, so the site is back long before tier 2's turn.
	cmd, out := startProcess(t, "move", "-n", safetyNS, "--all", "--to", "DR", "--confirm-site-down="+edge,
		"--rate", "2", "--max-in-flight", "1", "--progress", "lines")
	waitFor(t, 60*time.Second, "tier 1's release", func() bool { return strings.Contains(out.String(), "t1: releasing") })
	if err := env.StartSite(edge); err != nil {
		t.Fatal(err)
	}
	waitEdge(t, true)
	err := cmd.Wait()
	t.Logf("move output:\n%s", out.String())
	if err == nil || !strings.Contains(out.String(), "Ready again") {
		t.Fatalf("the move went on after the site came back (%v)", err)
	}
	stayedOnEdge(t, "after the site came back", "t2", "t3")
}

// stayedOnEdge fails the test unless each VM's template still selects Edge and its
// launcher still runs there: nothing released it.
func stayedOnEdge(t *testing.T, when string, vms ...string) {
	t.Helper()
	for _, name := range vms {
		if s := templateSite(t, name); s != edge {
			t.Errorf("%s: template moved to %q %s", name, s, when)
		}
		if launcherPods(t, name) == 0 || siteOf(t, safetyNS, name) != edge {
			t.Errorf("%s was released %s", name, when)
		}
	}
}

// Scenario 6: a stale-lock takeover during a move stops the first holder before its next write.
func TestSafetyLockTakenOverMidMove(t *testing.T) {
	withEdge(t, []stretched.VMSpec{edgeVM("a", 1, nil), edgeVM("b", 1, nil), edgeVM("c", 1, nil)})
	cmd, out := startProcess(t, "move", "-n", safetyNS, "--all", "--to", "DR", "--rate", "2", "--max-in-flight", "1", "--progress", "lines")
	waitFor(t, 60*time.Second, "the first migration", func() bool { return strings.Contains(out.String(), "a: migrating") })
	// Another operator takes the Lease over.
	l, err := env.Kube.CoordinationV1().Leases(lock.DefaultNamespace).Get(context.Background(), lock.DefaultName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other := "someone-else"
	l.Spec.HolderIdentity = &other
	l.Annotations["sitefail.io/move-id"] = "sf-other"
	if _, err := env.Kube.CoordinationV1().Leases(lock.DefaultNamespace).Update(context.Background(), l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	taken := time.Now()
	err = cmd.Wait()
	t.Logf("move output:\n%s", out.String())
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 4 || !strings.Contains(out.String(), "taken over") {
		t.Fatalf("first holder after the takeover: %v", err)
	}
	if d := time.Since(taken); d > 15*time.Second {
		t.Errorf("the first holder went on for %s after the takeover", d)
	}
	for _, name := range []string{"b", "c"} {
		if s := templateSite(t, name); s != edge {
			t.Errorf("%s: patched by a move that had lost its lock", name)
		}
	}
	// Give the Lease back for the next tests.
	l, _ = env.Kube.CoordinationV1().Leases(lock.DefaultNamespace).Get(context.Background(), lock.DefaultName, metav1.GetOptions{})
	l.Spec.HolderIdentity = nil
	_, _ = env.Kube.CoordinationV1().Leases(lock.DefaultNamespace).Update(context.Background(), l, metav1.UpdateOptions{})
}

// Scenario 7: a Manual VM released in a failover, the process killed before its explicit
// start. The rerun plans a start, starts it, and it runs on DR.
func TestSafetyManualInterruptedBetweenReleaseAndStart(t *testing.T) {
	withEdge(t, []stretched.VMSpec{edgeVM("manual", 1, func(v *stretched.VMSpec) { v.RunStrategy = kubevirtv1.RunStrategyManual })})
	if err := env.StopSite(edge); err != nil {
		t.Fatal(err)
	}
	waitEdge(t, false)
	r := sitefailEnv(t, []string{kubecluster.CrashEnv + "=after-release:1"}, "move", "-n", safetyNS, "--all", "--to", "DR", "--confirm-site-down="+edge, "--progress", "lines")
	if r.code != 137 {
		t.Fatalf("the crash point did not fire: %s", r)
	}
	waitFor(t, 60*time.Second, "the released instance to end", func() bool {
		v, err := getVMI(context.Background(), safetyNS, "manual")
		return apierrors.IsNotFound(err) || err == nil && v.IsFinal()
	})
	if a := planAction(t, "manual"); a != plan.ActionStart {
		t.Fatalf("rerun plans %q for a released, never started Manual VM; want %q", a, plan.ActionStart)
	}
	var rep executor.Report
	mustJSON(t, sitefail(t, "move", "-n", safetyNS, "--all", "--to", "DR", "--confirm-site-down="+edge, "-o", "json"), &rep)
	if rep.Failed() || rep.Tiers[0].Moved != 1 {
		t.Fatalf("rerun: %+v", rep)
	}
	if !vmiReady(context.Background(), safetyNS, "manual") || siteOf(t, safetyNS, "manual") != "DR" {
		t.Fatal("the Manual VM is not running on DR after the rerun")
	}
}

// Scenario 8: a rerun while restarts are still booting neither skips them nor restarts
// them again; it waits, and reports them moved once Ready.
func TestSafetyRerunWhileRestartsBoot(t *testing.T) {
	// A boot slow enough that both restarts are still booting when the rerun plans:
	// the wait path is what this test is about (it used to pass without reaching it).
	slowBoot := func(v *stretched.VMSpec) {
		v.Disk = corev1.ReadWriteOnce
		v.TemplateAnnotations = map[string]string{virthandler.BootDelayAnnotation: "20s"}
	}
	withEdge(t, []stretched.VMSpec{edgeVM("r1", 1, slowBoot), edgeVM("r2", 1, slowBoot)})
	r := sitefailEnv(t, []string{kubecluster.CrashEnv + "=after-restart:2"}, "move", "-n", safetyNS, "--all", "--to", "DR", "--max-in-flight", "2", "--progress", "lines")
	if r.code != 137 {
		t.Fatalf("the crash point did not fire: %s", r)
	}
	var p plan.Plan
	mustJSON(t, sitefail(t, "plan", "-n", safetyNS, "--all", "--to", "DR", "-o", "json"), &p)
	booting := 0
	for _, st := range p.Steps {
		switch st.Action {
		case plan.ActionWait:
			booting++
		case plan.ActionSkip:
			if !vmiReady(context.Background(), safetyNS, st.Name) {
				t.Errorf("%s planned skip while not Ready", st.Key())
			}
		default:
			t.Errorf("%s: rerun plans %q after its restart was sent", st.Key(), st.Action)
		}
	}
	var rep executor.Report
	mustJSON(t, sitefail(t, "move", "-n", safetyNS, "--all", "--to", "DR", "-o", "json"), &rep)
	if rep.Failed() {
		t.Fatalf("rerun: %+v", rep)
	}
	if booting != 2 || rep.Tiers[0].Moved != booting {
		t.Errorf("rerun: %d VMs planned wait (want both, still booting), reported moved %d: %+v", booting, rep.Tiers[0].Moved, rep.Tiers[0])
	}
	for _, name := range []string{"r1", "r2"} {
		if c := env.Counts(safetyNS, name); c.Starts != 2 || siteOf(t, safetyNS, name) != "DR" {
			t.Errorf("%s: %d starts on %s; want the first start and exactly one restart, onto DR", name, c.Starts, siteOf(t, safetyNS, name))
		}
	}
}

// A third operator edits a VM while the move runs: its labels and another template key.
// The move's merge patch names only the site key and the journal, so nothing is lost.
func TestConcurrentEditIsKept(t *testing.T) {
	withEdge(t, []stretched.VMSpec{edgeVM("first", 1, nil), edgeVM("second", 1, nil)})
	cmd, out := startProcess(t, "move", "-n", safetyNS, "--all", "--to", "DR", "--rate", "2", "--max-in-flight", "1", "--progress", "lines")
	waitFor(t, 60*time.Second, "the first VM's move", func() bool { return strings.Contains(out.String(), "first: migrating") })
	for _, args := range [][]string{
		{"label", "vm", "-n", safetyNS, "second", "owner=team-b"},
		// A toleration: LiveUpdate carries it, and it does not change where the VM fits.
		{"patch", "vm", "-n", safetyNS, "second", "--type", "merge", "-p", `{"spec":{"template":{"spec":{"tolerations":[{"key":"sitefail.test/maintenance","operator":"Exists","effect":"NoSchedule"}]}}}}`},
	} {
		if b, err := exec.Command("kubectl", append([]string{"--kubeconfig", env.Kubeconfig}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("kubectl %v: %v %s", args, err, b)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("move: %v\n%s", err, out.String())
	}
	u, err := env.Dynamic.Resource(kubevirt.VMs).Namespace(safetyNS).Get(context.Background(), "second", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sel, _, _ := unstructured.NestedStringMap(u.Object, "spec", "template", "spec", "nodeSelector")
	tol, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "tolerations")
	if u.GetLabels()["owner"] != "team-b" || len(tol) != 1 || sel["topology.kubernetes.io/site"] != "DR" {
		t.Fatalf("the concurrent edit was lost: labels %v, tolerations %v, selector %v", u.GetLabels(), tol, sel)
	}
}
