package executor

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/journal"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
)

// failoverFake has three tiers of two running VMs on Primary, which is down.
func failoverFake() *fakeCluster {
	f := newFake(delay)
	populate(f, 3, 2)
	f.down["Primary"] = true
	return f
}

func planActions(t *testing.T, f *fakeCluster) map[string]plan.Action {
	t.Helper()
	out := map[string]plan.Action{}
	for _, st := range planFor(t, f, 1).Steps {
		out[st.Key()] = st.Action
	}
	return out
}

// Scenario 1: the site comes back during tier 1 of a 3-tier failover. The guard checked
// at plan time is checked again at every release: nothing of tiers 2-3 is released and
// the move stops, failed.
func TestSiteBackMidFailoverReleasesNothingMore(t *testing.T) {
	f := failoverFake()
	f.onRelease = func() { f.down["Primary"] = false }
	rep := run(t, f, config("sf-back-000001", 1))
	f.mu.Lock()
	defer f.mu.Unlock()
	released := 0
	for k, n := range f.releases {
		released += n
		if !strings.HasPrefix(k, "ns/t1-") {
			t.Errorf("%s released after the site came back", k)
		}
	}
	if released != 1 {
		t.Errorf("%d releases, want exactly the one before the site came back", released)
	}
	if !rep.Failed() || !strings.Contains(rep.Stopped, "Ready again") {
		t.Fatalf("report must stop the move and say why: %+v", rep)
	}
	for _, tr := range rep.Tiers {
		if tr.Tier > 1 && tr.Moved+tr.Failed > 0 {
			t.Errorf("tier %d ran: %+v", tr.Tier, tr)
		}
	}
	// Tier 2 and 3 templates were not patched either: the live site keeps them.
	for k, vm := range f.vms {
		if !strings.HasPrefix(k, "ns/t1-") && vm.home != "Primary" {
			t.Errorf("%s: template moved to %s after the site came back", k, vm.home)
		}
	}
}

// Scenario 7: a Manual VM released in a failover, with the process killed before its
// explicit start. The rerun must start it (never plan "skip" and exit 0).
// manualReleasedThenCrashed fails over a Manual VM from the dead Primary and kills the
// move right after the release, before the explicit start.
func manualReleasedThenCrashed(t *testing.T, moveID string) *fakeCluster {
	t.Helper()
	f := newFake(delay)
	f.add("ns", "manual", 1, "Primary", true, false)
	f.vms["ns/manual"].strategy = kubevirtv1.RunStrategyManual
	f.down["Primary"] = true
	// Writes: patch, journal "releasing", release (applied, then the crash).
	f.crashAt, f.applyCrash = 3, true
	runUntilCrash(t, f, config(moveID, 1))
	f.mu.Lock()
	f.crashed, f.crashAt = false, 0
	f.mu.Unlock()
	return f
}

func TestManualVMReleasedThenCrashIsStartedByTheRerun(t *testing.T) {
	f := manualReleasedThenCrashed(t, "sf-manual-000001")
	f.mu.Lock()
	released := f.releases["ns/manual"]
	f.mu.Unlock()
	if released != 1 {
		t.Fatalf("the crash point missed the release: %d releases", released)
	}
	if a := planActions(t, f)["ns/manual"]; a != plan.ActionStart {
		t.Fatalf("rerun plans %q for a released, never started Manual VM; want %q", a, plan.ActionStart)
	}
	rep := run(t, f, config("sf-manual-000002", 1))
	if rep.Failed() || rep.Tiers[0].Moved != 1 {
		t.Fatalf("rerun: %+v", rep)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if vm := f.vms["ns/manual"]; vm.inst == nil || !vm.inst.Ready || vm.inst.Site != "DR" || f.starts["ns/manual"] != 1 {
		t.Fatalf("manual VM: instance %+v, %d starts", vm.inst, f.starts["ns/manual"])
	}
}

// The start of a released Manual VM is a release too: if the site came back meanwhile,
// the rerun does not start it.
func TestManualStartWaitsForTheSiteToStayDown(t *testing.T) {
	f := manualReleasedThenCrashed(t, "sf-manual-000003")
	p := planFor(t, f, 1)
	f.mu.Lock()
	f.down["Primary"] = false
	f.mu.Unlock()
	rep, err := New(f, config("sf-manual-000004", 1), nil).Run(t.Context(), t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Failed() || f.starts["ns/manual"] != 0 {
		t.Fatalf("started a VM whose old site is back: %+v, %d starts", rep, f.starts["ns/manual"])
	}
}

// Scenario 8: a rerun while restarts are still booting. "skip" must not mean Ready, a
// booting instance must not be restarted again, and it counts against --max-in-flight.
func TestRerunWhileRestartsBootWaitsWithoutRestartingAgain(t *testing.T) {
	f := newFake(400 * time.Millisecond)
	for _, n := range []string{"a", "b", "c"} {
		f.add("ns", n, 1, "Primary", true, false) // not migratable: restart
	}
	// Each VM: patch (with the journal's "restarting"), restart. Crash after the third
	// VM's restart.
	f.crashAt, f.applyCrash = 6, true
	cfg := config("sf-boot-000001", 3)
	runUntilCrash(t, f, cfg)
	f.mu.Lock()
	f.crashed, f.crashAt = false, 0
	booting := len(f.starting)
	f.mu.Unlock()
	if booting == 0 {
		t.Fatal("nothing was booting at the rerun: the test proves nothing")
	}
	for k, a := range planActions(t, f) {
		if a != plan.ActionWait {
			t.Errorf("%s: rerun plans %q while its restart boots; want %q", k, a, plan.ActionWait)
		}
	}
	var peak int
	cfg = config("sf-boot-000002", 1)
	rep, err := New(f, cfg, func(ev Event) { peak = max(peak, ev.InFlight) }).Run(t.Context(), t.Context(), planFor(t, f, 1))
	if err != nil || rep.Failed() {
		t.Fatalf("rerun: %v %+v", err, rep)
	}
	if rep.Tiers[0].Moved != 3 || rep.Tiers[0].Skipped != 0 {
		t.Fatalf("rerun must report the booting VMs moved once Ready, not skipped: %+v", rep.Tiers[0])
	}
	if peak > 1 {
		t.Errorf("booting VMs exceeded --max-in-flight=1: peak %d", peak)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, vm := range f.vms {
		if vm.restarts != 1 || !vm.inst.Ready || vm.inst.Site != "DR" {
			t.Errorf("%s: %d restarts, instance %+v", k, vm.restarts, vm.inst)
		}
	}
}

// Scenario 7b: a runStrategy Once VM is never released: KubeVirt would neither recreate
// nor start it.
func TestOnceVMFailoverIsBlocked(t *testing.T) {
	f := newFake(delay)
	f.add("ns", "once", 1, "Primary", true, true)
	f.vms["ns/once"].strategy = kubevirtv1.RunStrategyOnce
	f.down["Primary"] = true
	p, err := plan.Build(f.snapshot(), plan.Request{To: "DR", All: true, Mode: plan.ModeAuto, MaxInFlight: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Blocked(true) || p.Blockers[0].Code != "ReleaseLosesVM" {
		t.Fatalf("blockers: %+v", p.Blockers)
	}
}

// Scenario 13: a Halted VM whose instance is still terminating is planned patch-only; it
// will not come back by itself, so the step must not wait for readiness.
func TestHaltedVMStillTerminatingDoesNotWaitForReady(t *testing.T) {
	f := newFake(delay)
	f.add("ns", "halting", 1, "Primary", true, true)
	f.vms["ns/halting"].strategy = kubevirtv1.RunStrategyHalted
	f.vms["ns/halting"].inst.Terminating = true
	cfg := config("sf-halt-000001", 1)
	cfg.ReadyTimeout = 300 * time.Millisecond
	rep := run(t, f, cfg)
	if rep.Failed() || rep.Tiers[0].Moved != 1 {
		t.Fatalf("patch-only of a terminating Halted VM: %+v", rep)
	}
}

// KubeVirt runs at most parallelMigrationsPerCluster migrations; the throttle never holds
// more in flight, leaving its other slots to restarts.
func TestMigrationsBoundedByKubeVirtsLimit(t *testing.T) {
	f := newFake(delay)
	for i := 0; i < 8; i++ {
		f.add("ns", fmt.Sprintf("m%d", i), 1, "Primary", true, true)
	}
	cfg := config("sf-mig-000001", 6)
	cfg.MaxMigrations = 2
	peak := 0
	ex := New(f, cfg, func(ev Event) {
		if ev.Kind == StepPhase && ev.Phase == journal.PhaseMigrating {
			f.mu.Lock()
			n := 0
			for _, m := range f.migs {
				if !m.Done {
					n++
				}
			}
			f.mu.Unlock()
			peak = max(peak, n)
		}
	})
	rep, err := ex.Run(t.Context(), t.Context(), planFor(t, f, 6))
	if err != nil || rep.Failed() {
		t.Fatalf("%v %+v", err, rep)
	}
	if peak > 2 || rep.PeakInFlight > 2 {
		t.Fatalf("%d migrations in flight (peak in flight %d); KubeVirt's limit is 2", peak, rep.PeakInFlight)
	}
}

// The guard holds at the instant of the release write, not only when the step began:
// the site comes back while the step writes its journal ("releasing"), after the step's
// first check; the release that follows must not go out. Before every write waited for
// a slot in the write pool, that gap was one request; now it can be many.
func TestSiteBackBetweenTheCheckAndTheReleaseWrite(t *testing.T) {
	f := newFake(delay)
	f.add("ns", "vm", 1, "Primary", true, false)
	f.down["Primary"] = true
	// The step's template write carries "releasing"; the site comes back while it goes.
	f.onWrite = func(call string) {
		if call == "patch" {
			f.down["Primary"] = false
		}
	}
	rep := run(t, f, config("sf-gap-000001", 1))
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := f.releases["ns/vm"]; n != 0 {
		t.Fatalf("released %d time(s) after the site came back", n)
	}
	if !rep.Failed() || !strings.Contains(rep.Stopped, "Ready again") {
		t.Fatalf("the move must stop and say why: %+v", rep)
	}
}

// A Manual VM's explicit start after its release is guarded at the instant of the start
// write: the site comes back while the step writes its journal ("starting"), after the
// step's check, and the start must not go out. With the write pool, that gap is a
// wait for two write slots, not one request.
func TestSiteBackBetweenTheCheckAndTheManualStart(t *testing.T) {
	f := newFake(delay)
	f.add("ns", "manual", 1, "Primary", true, false)
	f.vms["ns/manual"].strategy = kubevirtv1.RunStrategyManual
	f.down["Primary"] = true
	f.onWrite = func(call string) {
		if call == "annotate" && f.releases["ns/manual"] > 0 {
			f.down["Primary"] = false
		}
	}
	rep := run(t, f, config("sf-gap-000002", 1))
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := f.starts["ns/manual"]; n != 0 {
		t.Fatalf("started %d time(s) after the site came back", n)
	}
	if !rep.Failed() {
		t.Fatalf("the move must not report the VM moved: %+v", rep)
	}
}

// Found by review (issue 21, the real NHC and FAR in the test cluster): somebody let an
// earlier instance go on dead Primary (a force delete, a remediation deleting the
// node's pods) and KubeVirt shows a new instance on no node. Its restart on DR is a
// release of Primary: planned with ReleasedFrom, it needs Primary still down at the
// write; a site back before the first write leaves the VM untouched.
func TestStartOfAVMWhoseEarlierInstanceMayRunOnADeadSiteIsGuarded(t *testing.T) {
	f := newFake(delay)
	f.add("ns", "pend", 1, "Primary", true, false)
	vm := f.vms["ns/pend"]
	vm.inst.NodeName, vm.inst.Site, vm.inst.Phase, vm.inst.Ready = "", "", "Pending", false
	f.down["Primary"] = true
	p := planFor(t, f, 1)
	if st := p.Steps[0]; st.Action != plan.ActionRestart || st.ReleasedFrom != "Primary" {
		t.Fatalf("plan %s, released from %q; want a restart guarded by Primary", st.Action, st.ReleasedFrom)
	}
	if g := p.GuardedSites(); len(g) != 1 || g[0] != "Primary" {
		t.Fatalf("guarded sites %v; want Primary, whose confirmation the move asks for", g)
	}
	f.mu.Lock()
	f.down["Primary"] = false
	f.mu.Unlock()
	rep, err := New(f, config("sf-guard-000001", 1), nil).Run(context.Background(), context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if vm.restarts != 0 || vm.home != "Primary" || !rep.Failed() {
		t.Fatalf("site back before the write: %d restarts, template on %s, report failed %v", vm.restarts, vm.home, rep.Failed())
	}
}
