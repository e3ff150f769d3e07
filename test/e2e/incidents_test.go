package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/test/stretched"
	"github.com/sitefail/kubectl-sitefail/test/virthandler"
)

// Issue 20: incidents an operator meets, on KubeVirt v1.8.0's controllers with the fake
// virt-handler failing the way the real components fail.

func annotated(kv ...string) func(*stretched.VMSpec) {
	return func(v *stretched.VMSpec) {
		v.TemplateAnnotations = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.TemplateAnnotations[kv[i]] = kv[i+1]
		}
	}
}

// planFor reads the plan as JSON; a blocked plan exits 2 and still prints it.
func planFor(t *testing.T, ns string, args ...string) plan.Plan {
	t.Helper()
	r := sitefail(t, append([]string{"plan", "-n", ns, "-o", "json"}, args...)...)
	if r.code == 2 {
		r.code = 0
	}
	var p plan.Plan
	mustJSON(t, r, &p)
	return p
}

// Behaviour 1: the source site dies while the plugin live-migrates its VM. The
// migration's target pod on DR never took the VMI over; the failover's release refused
// the VM because of it ("not releasable": a pod on a live site). Now it goes with the
// release and the VM comes up on DR.
func TestIncidentSourceSiteDiesMidMigration(t *testing.T) {
	withEdge(t, []stretched.VMSpec{edgeVM("mid-mig", 1, annotated(virthandler.MigrationDelayAnnotation, "10m"))})
	ctx := context.Background()
	mover, out := startProcess(t, "move", "-n", safetyNS, "mid-mig", "--to", "DR", "--mode", "migrate", "--progress", "lines")
	t.Cleanup(func() { _ = mover.Process.Kill(); _ = mover.Wait() })
	waitFor(t, 2*time.Minute, "the migration's memory transfer to start", func() bool {
		v, err := getVMI(ctx, safetyNS, "mid-mig")
		return err == nil && v.Status.MigrationState != nil && v.Status.MigrationState.StartTimestamp != nil && v.Status.MigrationState.TargetPod != ""
	})
	if err := env.StopSite(edge); err != nil {
		t.Fatal(err)
	}
	// The operator gives up on the relocation: the site is gone.
	_ = mover.Process.Kill()
	_ = mover.Wait()
	t.Logf("relocation killed:\n%s", out.String())
	waitEdge(t, false)
	p := planFor(t, safetyNS, "--to", "DR", "mid-mig")
	if st := p.Steps[0]; st.Action != plan.ActionFailover {
		t.Fatalf("plan %q (%s); want a failover", st.Action, st.Reason)
	}
	var rep executor.Report
	r := sitefail(t, "move", "-n", safetyNS, "mid-mig", "--to", "DR", "--confirm-site-down="+edge, "--ready-timeout", "3m", "-o", "json")
	mustJSON(t, r, &rep)
	if rep.Failed() || !vmiReady(ctx, safetyNS, "mid-mig") || siteOf(t, safetyNS, "mid-mig") != "DR" {
		t.Fatalf("failover of a VM migrating off the dead site: %+v\n%s", rep, r)
	}
}

// Behaviour 2: the VM was shutting down (a restart whose guest ignores ACPI) when its
// site died. It was planned patch-only behind a wait, never released, and failed after
// --ready-timeout.
func TestIncidentVMShuttingDownWhenItsSiteDies(t *testing.T) {
	withEdge(t, []stretched.VMSpec{edgeVM("slow-stop", 1, nil)})
	ctx := context.Background()
	// On this instance only: the one KubeVirt starts on DR shuts down at once (the
	// test's cleanup deletes it).
	ann := `{"metadata":{"annotations":{"` + virthandler.ShutdownAnnotation + `":"10m"}}}`
	if _, err := env.Dynamic.Resource(kubevirt.VMIs).Namespace(safetyNS).Patch(ctx, "slow-stop", types.MergePatchType, []byte(ann), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if code, err := subresource(ctx, safetyNS, "slow-stop", "restart"); code != 202 {
		t.Fatalf("restart: %d %v", code, err)
	}
	waitFor(t, time.Minute, "the instance to be Terminating", func() bool {
		v, err := getVMI(ctx, safetyNS, "slow-stop")
		return err == nil && v.DeletionTimestamp != nil && !v.IsFinal()
	})
	if err := env.StopSite(edge); err != nil {
		t.Fatal(err)
	}
	waitEdge(t, false)
	p := planFor(t, safetyNS, "--to", "DR", "slow-stop")
	if st := p.Steps[0]; st.Action != plan.ActionFailover {
		t.Fatalf("a Terminating instance on a dead site is planned %q (%s); want a failover", st.Action, st.Reason)
	}
	var rep executor.Report
	mustJSON(t, sitefail(t, "move", "-n", safetyNS, "slow-stop", "--to", "DR", "--confirm-site-down="+edge, "--ready-timeout", "3m", "-o", "json"), &rep)
	if rep.Failed() || !vmiReady(ctx, safetyNS, "slow-stop") || siteOf(t, safetyNS, "slow-stop") != "DR" {
		t.Fatalf("%+v", rep)
	}
}

// Behaviour 3: DR's virt-handlers are down (stopped on purpose, so they labelled their
// nodes kubevirt.io/schedulable=false); the nodes stay Ready. The plan sees no target,
// and sites says why. Once the handlers are back the plan is clear again.
func TestIncidentTargetHandlersDown(t *testing.T) {
	ctx := context.Background()
	env.KubeVirt.StopHandlerGracefully(ctx, "DR")
	t.Cleanup(func() { _ = env.KubeVirt.StartHandler("DR") })
	nodes, err := env.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "topology.kubernetes.io/site=DR"})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		if n.Labels[kubevirtv1.NodeSchedulable] != "false" {
			t.Fatalf("node %s after its handler stopped: kubevirt.io/schedulable=%q", n.Name, n.Labels[kubevirtv1.NodeSchedulable])
		}
	}
	p := planFor(t, "prod", "--to", "DR", "--all")
	if !hasBlocker(p, "NoReadyTargetNode") {
		t.Fatalf("plan to a site whose handlers are down: blockers %+v", p.Blockers)
	}
	r := sitefail(t, "sites", "-o", "wide")
	contains(t, r.stdout, "KubeVirtUnschedulable")
	contains(t, r.stdout, "KubeVirt starts no VM there")
	if err := env.KubeVirt.StartHandler("DR"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "DR's nodes schedulable again", func() bool {
		return !hasBlocker(planFor(t, "prod", "--to", "DR", "--all"), "NoReadyTargetNode")
	})
}

func hasBlocker(p plan.Plan, code string) bool {
	for _, b := range p.Blockers {
		if b.Code == code {
			return true
		}
	}
	return false
}

// incidentVMs creates VMs homed on Primary in their own namespace, waits until they run,
// and deletes the namespace at the end.
func incidentVMs(t *testing.T, ns string, vms ...stretched.VMSpec) {
	t.Helper()
	ctx := context.Background()
	for i := range vms {
		vms[i].Namespace, vms[i].Site = ns, "Primary"
	}
	t.Cleanup(func() { _ = env.Kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}) })
	if err := env.CreateVMs(ctx, vms); err != nil {
		t.Fatal(err)
	}
	for _, v := range vms {
		// A Manual VM is created stopped; an incident finds it running.
		if v.RunStrategy == kubevirtv1.RunStrategyManual {
			if code, err := subresource(ctx, ns, v.Name, "start"); code != http.StatusAccepted {
				t.Fatalf("start %s: HTTP %d (%v)", v.Name, code, err)
			}
		}
	}
	for _, v := range vms {
		waitFor(t, 3*time.Minute, v.Name+" Ready on Primary", func() bool {
			return vmiReady(ctx, ns, v.Name) && siteOf(t, ns, v.Name) == "Primary"
		})
	}
}

// Behaviour 7: QEMU fails to start on DR for a tier-1 VM. --max-failures 0 stops the
// move before tier 2, the report names the VM, and after the fix a rerun finishes.
func TestIncidentBootFailureInTier1(t *testing.T) {
	const ns = "boot"
	incidentVMs(t, ns,
		stretched.VMSpec{Name: "b1", Tier: 1, TemplateAnnotations: map[string]string{virthandler.BootFailAnnotation: "DR"}},
		stretched.VMSpec{Name: "b2", Tier: 2})
	ctx := context.Background()
	r := sitefail(t, "move", "-n", ns, "--all", "--to", "DR", "--mode", "restart", "--max-failures", "0", "--ready-timeout", "30s", "--progress", "lines")
	if r.code == 0 {
		t.Fatalf("a tier-1 boot failure must fail the move: %s", r)
	}
	contains(t, r.stdout+r.stderr, "b1")
	if templateSiteIn(t, ns, "b2") != "Primary" || siteOf(t, ns, "b2") != "Primary" {
		t.Fatalf("tier 2 was touched after tier 1 failed: template %s, runs on %s", templateSiteIn(t, ns, "b2"), siteOf(t, ns, "b2"))
	}
	// The fix: whatever broke QEMU on DR is repaired (here, the fault is removed from the
	// template); KubeVirt's backoff starts it again from the template.
	patch := `[{"op":"remove","path":"/spec/template/metadata/annotations/sitefail.test~1boot-fail"}]`
	if _, err := env.Dynamic.Resource(kubevirt.VMs).Namespace(ns).Patch(ctx, "b1", types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	var rep executor.Report
	mustJSON(t, sitefail(t, "move", "-n", ns, "--all", "--to", "DR", "--mode", "restart", "--ready-timeout", "3m", "-o", "json"), &rep)
	if rep.Failed() {
		t.Fatalf("rerun after the fix: %+v", rep)
	}
	for _, name := range []string{"b1", "b2"} {
		if !vmiReady(ctx, ns, name) || siteOf(t, ns, name) != "DR" {
			t.Errorf("%s is not Ready on DR after the rerun", name)
		}
	}
}

// Behaviour 9: KubeVirt fails the migration (the source reports it). Under --mode
// migrate the move fails with KubeVirt's reason; under --mode auto the step falls back
// to a restart, which an Always VM allows, and the VM reaches DR.
func TestIncidentMigrationFails(t *testing.T) {
	const ns, reason = "migfail", "Live migration failed: unable to connect to the target"
	incidentVMs(t, ns, stretched.VMSpec{Name: "mf", Tier: 1, TemplateAnnotations: map[string]string{virthandler.MigrationFailAnnotation: reason}})
	ctx := context.Background()
	r := sitefail(t, "move", "-n", ns, "mf", "--to", "DR", "--mode", "migrate", "--ready-timeout", "2m", "--progress", "lines")
	if r.code == 0 {
		t.Fatalf("a failed migration under --mode migrate must fail the move: %s", r)
	}
	contains(t, r.stdout+r.stderr, "unable to connect to the target")
	if siteOf(t, ns, "mf") != "Primary" || !vmiReady(ctx, ns, "mf") {
		t.Fatal("a failed migration must leave the VM running on Primary")
	}
	before := env.Counts(ns, "mf")
	var rep executor.Report
	mustJSON(t, sitefail(t, "move", "-n", ns, "mf", "--to", "DR", "--mode", "auto", "--ready-timeout", "3m", "-o", "json"), &rep)
	if rep.Failed() || siteOf(t, ns, "mf") != "DR" || !vmiReady(ctx, ns, "mf") {
		t.Fatalf("--mode auto after a failed migration: %+v", rep)
	}
	// KubeVirt garbage-collects the failed VMIMs of a VMI that is gone, so the second
	// failure is read from the move's own Event.
	after := env.Counts(ns, "mf")
	if before.FailedMigrations != 1 || after.Starts != before.Starts+1 || after.Migrations != 0 {
		t.Fatalf("counts before %+v, after %+v; want one failed migration, then under auto one restart and no migration", before, after)
	}
	evs, err := env.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=SitefailMigrationFailed"})
	if err != nil || len(evs.Items) != 1 || !strings.Contains(evs.Items[0].Message, "unable to connect to the target") {
		t.Fatalf("the fallback's Event (SitefailMigrationFailed with KubeVirt's reason): %v %+v", err, evs)
	}
}

// A migration whose target never runs the domain: the target takes the hand-off, the
// source gives up waiting for the target's ready domain and fails the VMI itself
// (v1.8.0 hasTargetDetectedReadyDomain). The guest is gone from both sites: KubeVirt
// restarts an Always VM from its template, which already selects DR, but leaves a Manual
// VM stopped. The move must not call the Manual VM moved: it fails naming it and the
// fix, and a rerun that may restart starts it on DR.
func TestIncidentMigrationTargetNeverRuns(t *testing.T) {
	const ns = "tgtlost"
	lost := map[string]string{virthandler.MigrationTargetInactiveAnnotation: "10s"}
	incidentVMs(t, ns,
		stretched.VMSpec{Name: "ta", Tier: 1, TemplateAnnotations: lost},
		stretched.VMSpec{Name: "tm", Tier: 1, TemplateAnnotations: lost, RunStrategy: kubevirtv1.RunStrategyManual})
	ctx := context.Background()
	r := sitefail(t, "move", "-n", ns, "--all", "--to", "DR", "--mode", "migrate", "--ready-timeout", "2m", "--progress", "lines")
	if r.code == 0 {
		t.Fatalf("a Manual VM whose instance failed mid-migration was called moved: %s", r)
	}
	t.Logf("under --mode migrate: %s", r)
	contains(t, r.stdout+r.stderr, "tm")
	if !vmiReady(ctx, ns, "ta") || siteOf(t, ns, "ta") != "DR" {
		t.Fatalf("the Always VM, restarted by KubeVirt from its template, is not Ready on DR:\n%s", r)
	}
	if c := env.Counts(ns, "tm"); c.Starts != 1 {
		t.Fatalf("tm was started under --mode migrate: %+v", c)
	}
	var rep executor.Report
	r = sitefail(t, "move", "-n", ns, "--all", "--to", "DR", "--mode", "auto", "--ready-timeout", "2m", "-o", "json")
	mustJSON(t, r, &rep)
	if rep.Failed() || !vmiReady(ctx, ns, "tm") || siteOf(t, ns, "tm") != "DR" {
		t.Fatalf("the rerun under --mode auto did not start tm on DR: %+v\n%s", rep, r)
	}
	if c := env.Counts(ns, "tm"); c.Starts != 2 {
		t.Fatalf("tm's starts after the rerun: %+v; want the first and one on DR", c)
	}
}

// Behaviour 5: a drain's evacuation migration of the VM is running when the move
// reaches it. KubeVirt refuses a second migration; the move waits the drain's out, then
// migrates, instead of blocking or failing the VM.
func TestIncidentDrainMigrationIsWaitedOut(t *testing.T) {
	const ns = "drain"
	incidentVMs(t, ns, stretched.VMSpec{Name: "dr1", Tier: 1, EvictionStrategy: ptr.To(kubevirtv1.EvictionStrategyLiveMigrate),
		TemplateAnnotations: map[string]string{virthandler.MigrationDelayAnnotation: "40s"}})
	ctx := context.Background()
	// A drain of dr1's node: virt-api turns the eviction into an evacuation, and
	// virt-controller's evacuation controller creates the migration (to another
	// Primary node: the VM's selector pins the site).
	if err := evict(ctx, ns, launcherOf(t, ns, "dr1")); !apierrors.IsTooManyRequests(err) || !strings.Contains(err.Error(), "Eviction triggered evacuation") {
		t.Fatalf("drain's eviction of dr1's launcher: %v; want an evacuation", err)
	}
	waitFor(t, time.Minute, "the evacuation to be handed to the VMI", func() bool {
		v, err := getVMI(ctx, ns, "dr1")
		return err == nil && v.Status.MigrationState != nil && v.Status.MigrationState.MigrationUID != "" && !v.Status.MigrationState.Completed
	})
	p := planFor(t, ns, "--to", "DR", "dr1")
	if p.Steps[0].Action != plan.ActionMigrate || len(p.Blockers) != 0 {
		t.Fatalf("plan with a drain's migration running: %q, blockers %+v", p.Steps[0].Action, p.Blockers)
	}
	var rep executor.Report
	r := sitefail(t, "move", "-n", ns, "dr1", "--to", "DR", "--mode", "migrate", "--ready-timeout", "3m", "--progress", "lines", "-o", "json")
	mustJSON(t, r, &rep)
	if rep.Failed() || siteOf(t, ns, "dr1") != "DR" || !vmiReady(ctx, ns, "dr1") {
		t.Fatalf("move while a drain's migration runs: %+v\n%s", rep, r)
	}
	// The point: the move found the evacuation still running and waited it out.
	contains(t, r.stdout+r.stderr, "not this move's, to end")
	if c := env.Counts(ns, "dr1"); c.Migrations != 2 || c.Starts != 1 {
		t.Fatalf("counts %+v; want the drain's migration and the move's, and no restart", c)
	}
}

// Behaviour 6: an instance type that sets a nodeSelector. v1.8.0 refuses a VM whose
// template sets one too (pinned here with its answer), so such a VM carries no site key
// and the move's patch of one would be refused at the write. The plan blocks it, naming
// the fix, instead.
func TestIncidentInstancetypeWithANodeSelector(t *testing.T) {
	const ns = "itype"
	ctx := context.Background()
	itGVR := schema.GroupVersionResource{Group: "instancetype.kubevirt.io", Version: "v1beta1", Resource: "virtualmachineclusterinstancetypes"}
	it := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "instancetype.kubevirt.io/v1beta1", "kind": "VirtualMachineClusterInstancetype",
		"metadata": map[string]any{"name": "sf-kwok-small"},
		"spec": map[string]any{"cpu": map[string]any{"guest": int64(1)}, "memory": map[string]any{"guest": "1Gi"},
			"nodeSelector": map[string]any{"type": "kwok"}},
	}}
	if _, err := env.Dynamic.Resource(itGVR).Create(ctx, it, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Dynamic.Resource(itGVR).Delete(ctx, "sf-kwok-small", metav1.DeleteOptions{}) })
	if _, err := env.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}) })
	vmWith := func(name string, sel map[string]any) *unstructured.Unstructured {
		spec := map[string]any{"domain": map[string]any{"devices": map[string]any{}}}
		if sel != nil {
			spec["nodeSelector"] = sel
		}
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
			"metadata": map[string]any{"name": name, "namespace": ns, "labels": map[string]any{"sitefail.io/tier": "1"}},
			"spec": map[string]any{"runStrategy": "Always",
				"instancetype": map[string]any{"kind": "VirtualMachineClusterInstancetype", "name": "sf-kwok-small"},
				"template":     map[string]any{"spec": spec}},
		}}
	}
	_, err := env.Dynamic.Resource(kubevirt.VMs).Namespace(ns).Create(ctx, vmWith("both", map[string]any{"topology.kubernetes.io/site": "Primary"}), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "nodeSelector") {
		t.Fatalf("v1.8.0 accepted a template nodeSelector beside an instance type's: %v", err)
	}
	t.Logf("virt-api's answer to a template nodeSelector beside the instance type's: %v", err)
	if _, err := env.Dynamic.Resource(kubevirt.VMs).Namespace(ns).Create(ctx, vmWith("only", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Minute, "the instance-typed VM Ready", func() bool { return vmiReady(ctx, ns, "only") })
	p := planFor(t, ns, "--to", "DR", "--all")
	if !hasBlocker(p, "NodeSelectorInInstancetype") {
		t.Fatalf("plan of a VM whose instance type sets a nodeSelector: blockers %+v", p.Blockers)
	}
}

// Behaviour 4: a paused guest. A live migration keeps it paused and KubeVirt's Ready
// stays False, so the step used to wait for Ready until --ready-timeout and fail. The
// decision: the move carries the guest as the operator left it; the step is done when
// it runs on the target, still paused, and the plan says so.
func TestIncidentPausedGuestMovesPaused(t *testing.T) {
	const ns = "paused"
	ctx := context.Background()
	vms := []stretched.VMSpec{{Namespace: ns, Name: "pz", Tier: 1, Site: "Primary", TemplateAnnotations: map[string]string{virthandler.PausedAnnotation: "true"}}}
	t.Cleanup(func() { _ = env.Kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}) })
	if err := env.CreateVMs(ctx, vms); err != nil {
		t.Fatal(err)
	}
	paused := func() bool {
		v, err := getVMI(ctx, ns, "pz")
		if err != nil || !v.IsRunning() {
			return false
		}
		c, ok := kubevirt.VMICondition(v, kubevirtv1.VirtualMachineInstancePaused)
		return ok && c.Status == corev1.ConditionTrue && !vmiReady(ctx, ns, "pz")
	}
	waitFor(t, 3*time.Minute, "the guest running paused on Primary (not Ready)", func() bool { return paused() && siteOf(t, ns, "pz") == "Primary" })
	p := planFor(t, ns, "--to", "DR", "pz")
	if st := p.Steps[0]; st.Action != plan.ActionMigrate || !st.Paused {
		t.Fatalf("plan of a paused guest: %q (paused %v)", st.Action, st.Paused)
	}
	var rep executor.Report
	r := sitefail(t, "move", "-n", ns, "pz", "--to", "DR", "--mode", "migrate", "--ready-timeout", "2m", "-o", "json")
	mustJSON(t, r, &rep)
	if rep.Failed() || siteOf(t, ns, "pz") != "DR" {
		t.Fatalf("move of a paused guest: %+v\n%s", rep, r)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !paused() {
		if time.Now().After(deadline) {
			v, _ := getVMI(ctx, ns, "pz")
			pods, _ := env.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			var podConds []string
			for _, p := range pods.Items {
				podConds = append(podConds, fmt.Sprintf("%s on %s %s %+v", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.Conditions))
			}
			t.Fatalf("the guest is not paused on DR: phase %s node %s annotations %v conditions %+v\npods: %v", v.Status.Phase, v.Status.NodeName, v.Annotations, v.Status.Conditions, podConds)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Behaviour 9, the target's side: the scheduler cannot place the migration's target pod
// on DR (other workloads fill its nodes, which the plan's capacity, counted from VMs,
// does not see). virt-controller deletes the pod after its unschedulable timeout and
// fails the migration. Under --mode auto the step must not fall back to a restart, which
// would stop the guest and leave it Pending on the same full site.
func TestIncidentMigrationTargetUnschedulable(t *testing.T) {
	const ns = "unsched"
	incidentVMs(t, ns, stretched.VMSpec{Name: "us1", Tier: 1})
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		hog := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("hog-%d", i), Namespace: ns},
			Spec: corev1.PodSpec{NodeName: fmt.Sprintf("dr-node-%d", i), Containers: []corev1.Container{{Name: "hog", Image: "hog",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("16")}}}},
				Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}}},
		}
		if _, err := env.Kube.CoreV1().Pods(ns).Create(ctx, hog, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			zero := int64(0)
			_ = env.Kube.CoreV1().Pods(ns).Delete(ctx, hog.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		})
	}
	// v1.8.0 waits 5 minutes for an unschedulable target pod; its per-migration
	// annotation shortens that, set as the migration appears.
	watchCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		for watchCtx.Err() == nil {
			l, err := env.Dynamic.Resource(kubevirt.Migrations).Namespace(ns).List(watchCtx, metav1.ListOptions{})
			if err == nil {
				for _, m := range l.Items {
					if _, ok := m.GetAnnotations()[kubevirtv1.MigrationUnschedulablePodTimeoutSecondsAnnotation]; !ok {
						patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"5"}}}`, kubevirtv1.MigrationUnschedulablePodTimeoutSecondsAnnotation)
						_, _ = env.Dynamic.Resource(kubevirt.Migrations).Namespace(ns).Patch(watchCtx, m.GetName(), types.MergePatchType, []byte(patch), metav1.PatchOptions{})
					}
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	before := env.Counts(ns, "us1")
	r := sitefail(t, "move", "-n", ns, "us1", "--to", "DR", "--mode", "auto", "--ready-timeout", "2m", "--progress", "lines")
	if r.code == 0 {
		t.Fatalf("a migration whose target pod was never scheduled must fail the move: %s", r)
	}
	contains(t, r.stdout+r.stderr, "never scheduled")
	after := env.Counts(ns, "us1")
	if siteOf(t, ns, "us1") != "Primary" || !vmiReady(ctx, ns, "us1") || after.Starts != before.Starts || after.FailedMigrations != before.FailedMigrations+1 {
		t.Fatalf("counts before %+v, after %+v: want one failed migration, no restart, the guest still Ready on Primary", before, after)
	}
}

// A site comes back as after a power loss, before it was failed over: its handler finds
// the domains gone and fails their VMIs. A Manual VM that ran there is then down, and
// nobody stopped it: a move of it to DR must start it there. Planned patch-only, it
// stayed down while the move exited 0 (the simulator found it, seeds 237, 310, 312).
func TestIncidentSiteBackAfterPowerLoss(t *testing.T) {
	withEdge(t, []stretched.VMSpec{edgeVM("pl-manual", 1, func(v *stretched.VMSpec) { v.RunStrategy = kubevirtv1.RunStrategyManual })})
	ctx := context.Background()
	if err := env.StopSite(edge); err != nil {
		t.Fatal(err)
	}
	waitEdge(t, false)
	if err := env.StartSiteAfterPowerLoss(edge); err != nil {
		t.Fatal(err)
	}
	waitEdge(t, true)
	waitFor(t, time.Minute, "the instance to be Failed (its domain died with the power)", func() bool {
		v, err := getVMI(ctx, safetyNS, "pl-manual")
		return err == nil && v.Status.Phase == kubevirtv1.Failed
	})
	p := planFor(t, safetyNS, "--to", "DR", "pl-manual")
	if st := p.Steps[0]; st.Action != plan.ActionStart {
		t.Fatalf("a Manual VM whose instance died with its site's power is planned %q (%s); want a start on DR", st.Action, st.Reason)
	}
	var rep executor.Report
	mustJSON(t, sitefail(t, "move", "-n", safetyNS, "pl-manual", "--to", "DR", "--ready-timeout", "3m", "-o", "json"), &rep)
	if rep.Failed() || !vmiReady(ctx, safetyNS, "pl-manual") || siteOf(t, safetyNS, "pl-manual") != "DR" {
		t.Fatalf("after the power-loss return the move must start the Manual VM on DR: %+v", rep)
	}
}

// DR's virt-handlers crashed a moment ago (no graceful stop: their nodes still carry
// kubevirt.io/schedulable=true until virt-controller finds the heartbeat five minutes
// old). KubeVirt places the restarted VM there, and its instance stays Scheduled: no
// handler starts the guest. The move fails after --ready-timeout saying where the VM is
// stuck and what to look at; once the handlers are back the guest starts, and the rerun
// finishes without starting it a second time.
func TestIncidentTargetHandlersCrashed(t *testing.T) {
	const ns = "crashed"
	incidentVMs(t, ns, stretched.VMSpec{Name: "c1", Tier: 1})
	ctx := context.Background()
	env.KubeVirt.StopHandler("DR")
	t.Cleanup(func() { _ = env.KubeVirt.StartHandler("DR") })
	var rep executor.Report
	r := sitefail(t, "move", "-n", ns, "c1", "--to", "DR", "--mode", "restart", "--ready-timeout", "60s", "-o", "json")
	if r.code == 0 {
		t.Fatalf("a move onto crashed handlers must fail: %s", r)
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("decode the report: %v\n%s", err, r)
	}
	if len(rep.Failures) != 1 || !strings.Contains(rep.Failures[0].Error, "Scheduled on") || !strings.Contains(rep.Failures[0].Error, "virt-handler") {
		t.Fatalf("the failure must say the instance is stuck Scheduled and name virt-handler: %+v", rep.Failures)
	}
	if v := vmi(t, ns, "c1"); v.Status.Phase != kubevirtv1.Scheduled || siteOf(t, ns, "c1") != "DR" {
		t.Fatalf("c1 is %s on %s; want it Scheduled on DR with no handler to start it", v.Status.Phase, siteOf(t, ns, "c1"))
	}
	if err := env.KubeVirt.StartHandler("DR"); err != nil {
		t.Fatal(err)
	}
	// A starting handler keeps its nodes unschedulable until its device plugins are up.
	waitFor(t, time.Minute, "DR's nodes schedulable again", func() bool {
		return !hasBlocker(planFor(t, ns, "--to", "DR", "c1"), "NoReadyTargetNode")
	})
	// The guest starts once the handler is back; the rerun waits for it, or finds it there.
	var rerun executor.Report // a fresh one: decoding into the first report keeps its fields
	mustJSON(t, sitefail(t, "move", "-n", ns, "c1", "--to", "DR", "--mode", "restart", "--ready-timeout", "2m", "-o", "json"), &rerun)
	waitFor(t, time.Minute, "c1 Ready on DR", func() bool { return vmiReady(ctx, ns, "c1") })
	if rerun.Failed() || siteOf(t, ns, "c1") != "DR" {
		t.Fatalf("rerun once the handlers are back: %+v", rerun)
	}
	if c := env.Counts(ns, "c1"); c.Starts != 2 {
		t.Fatalf("counts %+v; want two starts in all (Primary's first, then DR's one)", c)
	}
}
