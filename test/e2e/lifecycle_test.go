package e2e

import (
	"context"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/journal"
	"github.com/sitefail/kubectl-sitefail/pkg/kubecluster"
	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/test/cluster"
	"github.com/sitefail/kubectl-sitefail/test/faultproxy"
	"github.com/sitefail/kubectl-sitefail/test/stretched"
)

// Issue 19's lost-VM paths, on KubeVirt's own controllers (docs/safety.md).

func manualVM(v *stretched.VMSpec) { v.RunStrategy = kubevirtv1.RunStrategyManual }

func vmJournal(t *testing.T, name string) journal.Entry {
	t.Helper()
	u, err := env.Dynamic.Resource(kubevirt.VMs).Namespace(safetyNS).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return journal.Read(u.GetAnnotations())
}

func waitInstanceOver(t *testing.T, name string) {
	t.Helper()
	waitFor(t, 90*time.Second, "the released instance of "+name+" to end", func() bool {
		v, err := getVMI(context.Background(), safetyNS, name)
		return apierrors.IsNotFound(err) || err == nil && v.IsFinal()
	})
}

// C1: virt-api refuses the start of a released Manual VM for longer than the backoff.
// The move fails; the journal keeps "released" with the error beside it (it used to say
// "failed", and the rerun skipped the VM and exited 0); the rerun starts it on DR.
func TestLifecycleC1RefusedStartIsStartedByTheRerun(t *testing.T) {
	withEdge(t, []stretched.VMSpec{edgeVM("c1", 1, manualVM)})
	if err := env.StopSite(edge); err != nil {
		t.Fatal(err)
	}
	waitEdge(t, false)
	proxy, path := startFaultProxy(t, "refusing-start", faultproxy.Config{Seed: 19, Refuse: map[string]int{"PUT virtualmachines/start": 503}})
	r := sitefailEnv(t, []string{"KUBECONFIG=" + path}, "move", "-n", safetyNS, "c1", "--to", "DR", "--confirm-site-down="+edge, "--progress", "lines")
	if r.code == 0 || proxy.Counts().Refused == 0 {
		t.Fatalf("the refused start must fail the move (refused %d starts): %s", proxy.Counts().Refused, r)
	}
	if j := vmJournal(t, "c1"); !j.Released() || j.Error == "" {
		t.Fatalf("journal after the refused start: %+v; want the release kept and the error beside it", j)
	}
	waitInstanceOver(t, "c1")
	if a := planAction(t, "c1"); a != plan.ActionStart {
		t.Fatalf("rerun plans %q; want %q", a, plan.ActionStart)
	}
	var rep executor.Report
	mustJSON(t, sitefail(t, "move", "-n", safetyNS, "c1", "--to", "DR", "--confirm-site-down="+edge, "-o", "json"), &rep)
	if rep.Failed() || rep.Tiers[0].Moved != 1 || !vmiReady(context.Background(), safetyNS, "c1") || siteOf(t, safetyNS, "c1") != "DR" {
		t.Fatalf("rerun: %+v; the Manual VM must run on DR", rep)
	}
}

// C2, and an out-of-service failover end to end: the taint releases every tier at once;
// the process dies right after it. The tier-2 Manual VM's journal says it was released,
// so the rerun starts it (it used to say "patched", and the rerun skipped it, exit 0).
func TestLifecycleC2OutOfServiceThenCrashStartsTheManualVMOnTheRerun(t *testing.T) {
	withEdge(t, []stretched.VMSpec{edgeVM("oos-a", 1, nil), edgeVM("oos-m", 2, manualVM)})
	if err := env.StopSite(edge); err != nil {
		t.Fatal(err)
	}
	waitEdge(t, false)
	args := []string{"move", "-n", safetyNS, "--all", "--to", "DR", "--confirm-site-down=" + edge, "--fence", "out-of-service", "--progress", "lines"}
	r := sitefailEnv(t, []string{kubecluster.CrashEnv + "=after-fence:1"}, args...)
	if r.code != 137 {
		t.Fatalf("the crash point did not fire: %s", r)
	}
	// The taint alone: KubeVirt recreates the Always VM on DR from its patched template,
	// and the Manual VM's instance ends.
	waitFor(t, 3*time.Minute, "oos-a recreated on DR by the taint", func() bool {
		return vmiReady(context.Background(), safetyNS, "oos-a") && siteOf(t, safetyNS, "oos-a") == "DR"
	})
	waitInstanceOver(t, "oos-m")
	if j := vmJournal(t, "oos-m"); !j.Released() {
		t.Fatalf("journal of the Manual VM the taint released: %+v", j)
	}
	if a := planAction(t, "oos-m"); a != plan.ActionStart {
		t.Fatalf("rerun plans %q for the released Manual VM; want %q", a, plan.ActionStart)
	}
	var rep executor.Report
	mustJSON(t, sitefail(t, append(args[:len(args)-2], "-o", "json")...), &rep)
	if rep.Failed() {
		t.Fatalf("rerun: %+v", rep)
	}
	for _, name := range []string{"oos-a", "oos-m"} {
		if !vmiReady(context.Background(), safetyNS, name) || siteOf(t, safetyNS, name) != "DR" {
			t.Errorf("%s is not running on DR after the rerun", name)
		}
	}
	if c := env.Counts(safetyNS, "oos-a"); c.Starts != 2 {
		t.Errorf("oos-a: %d starts; want its first and the one on DR", c.Starts)
	}
}

// H2: the dead site's Node objects are deleted (as some runbooks do). The VM on a
// deleted node is planned as a failover of its site, refused without the confirmation,
// and moved with it.
func TestLifecycleH2VMOnADeletedNodeNeedsTheConfirmation(t *testing.T) {
	withEdge(t, []stretched.VMSpec{edgeVM("h2", 1, nil)})
	ctx := context.Background()
	if err := env.StopSite(edge); err != nil {
		t.Fatal(err)
	}
	waitEdge(t, false)
	vmi, err := getVMI(ctx, safetyNS, "h2")
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Kube.CoreV1().Nodes().Delete(ctx, vmi.Status.NodeName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var p plan.Plan
	mustJSON(t, sitefail(t, "plan", "-n", safetyNS, "h2", "--to", "DR", "-o", "json"), &p)
	if st := p.Steps[0]; st.Action != plan.ActionFailover || !st.NodeGone || st.From != edge {
		t.Fatalf("plan for a VM on a deleted node: %+v; want a failover of %s", st, edge)
	}
	if r := sitefail(t, "move", "-n", safetyNS, "h2", "--to", "DR"); r.code == 0 || templateSite(t, "h2") != edge {
		t.Fatalf("moved without the confirmation: %s", r)
	}
	var rep executor.Report
	mustJSON(t, sitefail(t, "move", "-n", safetyNS, "h2", "--to", "DR", "--confirm-site-down="+edge, "-o", "json"), &rep)
	if rep.Failed() || !vmiReady(ctx, safetyNS, "h2") || siteOf(t, safetyNS, "h2") != "DR" {
		t.Fatalf("with the confirmation: %+v", rep)
	}
}

// N20: the API server's answer to a write that carries the UID of a VM since deleted and
// recreated under the same name, as the plugin's cluster sees it: the VM is gone.
func TestLifecycleN20WriteToARecreatedVMIsRefused(t *testing.T) {
	ctx := context.Background()
	spec := stretched.VMSpec{Namespace: "recreated", Name: "vm", Tier: 1, Site: "Primary", RunStrategy: kubevirtv1.RunStrategyHalted}
	if err := env.CreateVMs(ctx, []stretched.VMSpec{spec}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Kube.CoreV1().Namespaces().Delete(ctx, "recreated", metav1.DeleteOptions{}) })
	vms := env.Dynamic.Resource(kubevirt.VMs).Namespace("recreated")
	old, err := vms.Get(ctx, "vm", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := vms.Delete(ctx, "vm", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the VM gone", func() bool {
		_, err := vms.Get(ctx, "vm", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	if err := env.CreateVMs(ctx, []stretched.VMSpec{spec}); err != nil {
		t.Fatal(err)
	}
	kc, err := kubecluster.New(kubecluster.Options{Config: env.ConfigFor(cluster.AdminToken), Kube: env.Kube, Dynamic: env.Dynamic, SiteKey: "topology.kubernetes.io/site"})
	if err != nil {
		t.Fatal(err)
	}
	st := plan.Step{Namespace: "recreated", Name: "vm", UID: string(old.GetUID()), To: "DR"}
	err = kc.PatchSite(ctx, st, map[string]string{journal.Phase: journal.PhaseDone})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("site patch with the old VM's UID: %v; want NotFound", err)
	}
	if err := kc.Annotate(ctx, st, map[string]string{journal.Phase: journal.PhaseDone}); !apierrors.IsNotFound(err) {
		t.Fatalf("journal write with the old VM's UID: %v; want NotFound", err)
	}
	now, _ := vms.Get(ctx, "vm", metav1.GetOptions{})
	if len(now.GetAnnotations()[journal.Phase]) != 0 {
		t.Fatalf("the recreated VM was written: %v", now.GetAnnotations())
	}
	// With its own UID the write goes through.
	st.UID = string(now.GetUID())
	if err := kc.Annotate(ctx, st, map[string]string{journal.Phase: journal.PhaseDone}); err != nil {
		t.Fatalf("journal write with the VM's own UID: %v", err)
	}
}
