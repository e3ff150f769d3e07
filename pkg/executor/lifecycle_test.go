package executor

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/journal"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
)

// manualOnDeadPrimary is one running Manual VM on Primary, which is down.
func manualOnDeadPrimary() *fakeCluster {
	f := newFake(delay)
	f.add("ns", "manual", 1, "Primary", true, false)
	f.vms["ns/manual"].strategy = kubevirtv1.RunStrategyManual
	f.down["Primary"] = true
	return f
}

func journalOf(f *fakeCluster, key string) journal.Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return journal.Read(f.vms[key].annotations)
}

// C1: a released Manual VM whose start is refused (any 4xx) must keep "released" in its
// journal: the old code overwrote it with "failed", and the rerun then planned "skip:
// already on DR" and exited 0 with the VM down.
func TestC1ReleasedManualVMWhoseStartFailsIsStartedByTheRerun(t *testing.T) {
	f := manualOnDeadPrimary()
	f.failures["start"] = []error{apierrors.NewForbidden(schema.GroupResource{Group: "subresources.kubevirt.io", Resource: "virtualmachines"}, "manual", errForbidden)}
	rep := run(t, f, config("sf-c1-000001", 1))
	if !rep.Failed() {
		t.Fatalf("a refused start must fail the move: %+v", rep)
	}
	if j := journalOf(f, "ns/manual"); !j.Released() || j.Error == "" {
		t.Fatalf("journal after a refused start: %+v; want the release kept, with the error beside it", j)
	}
	if a := planActions(t, f)["ns/manual"]; a != plan.ActionStart {
		t.Fatalf("rerun plans %q for a released Manual VM that never started; want %q", a, plan.ActionStart)
	}
	rep = run(t, f, config("sf-c1-000002", 1))
	if rep.Failed() || rep.Tiers[0].Moved != 1 {
		t.Fatalf("rerun: %+v", rep)
	}
	assertRunsOn(t, f, "ns/manual", "DR")
}

// C1, the failback that follows: the site came back, so the rerun cannot start the VM on
// DR; the failback must start it on Primary rather than patch its template and call it
// done with the VM down.
func TestC1FailbackStartsAReleasedManualVMThatNeverStarted(t *testing.T) {
	f := manualOnDeadPrimary()
	f.failures["start"] = []error{apierrors.NewBadRequest("the server rejected our request")}
	run(t, f, config("sf-c1-000003", 1))
	f.mu.Lock()
	f.down["Primary"] = false
	f.mu.Unlock()
	fb, err := plan.FailbackTarget(f.snapshot(), plan.Request{All: true})
	if err != nil || fb.To != "Primary" {
		t.Fatalf("failback target: %+v %v", fb, err)
	}
	p, err := plan.Build(f.snapshot(), plan.Request{To: "Primary", VMs: fb.VMs, Mode: plan.ModeAuto, MaxInFlight: 1})
	if err != nil {
		t.Fatal(err)
	}
	if a := p.Steps[0].Action; a != plan.ActionStart {
		t.Fatalf("failback plans %q for a released Manual VM that never started; want %q", a, plan.ActionStart)
	}
	rep, err := New(f, config("sf-c1-000004", 1), nil).Run(context.Background(), context.Background(), p)
	if err != nil || rep.Failed() {
		t.Fatalf("failback: %v %+v", err, rep)
	}
	assertRunsOn(t, f, "ns/manual", "Primary")
}

// C2: --fence out-of-service releases every tier at once. A stop before the Manual VM's
// tier (here Ctrl-C right after the taint) left its journal "patched", and the rerun
// planned "skip (finishes the journal)" and exited 0 with the VM down.
func TestC2OutOfServiceThenStopBeforeTheManualTierStartsItOnTheRerun(t *testing.T) {
	f := newFake(delay)
	f.add("ns", "always", 1, "Primary", true, false)
	f.add("ns", "manual", 2, "Primary", true, false)
	f.vms["ns/always"].strategy = kubevirtv1.RunStrategyAlways
	f.vms["ns/manual"].strategy = kubevirtv1.RunStrategyManual
	f.down["Primary"] = true
	stop, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.onWrite = func(call string) {
		if call == "fence" {
			cancel()
		}
	}
	cfg := config("sf-c2-000001", 1)
	cfg.Fence, cfg.DeadNodes = "out-of-service", f.nodes["Primary"]
	if _, err := New(f, cfg, nil).Run(context.Background(), stop, planFor(t, f, 1)); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.onWrite = nil
	released := f.releases["ns/manual"]
	f.mu.Unlock()
	if released != 1 {
		t.Fatalf("the taint did not release the tier-2 VM (%d releases): the test proves nothing", released)
	}
	if j := journalOf(f, "ns/manual"); !j.Released() {
		t.Fatalf("journal of a VM the taint released: %+v; want it to say released", j)
	}
	if a := planActions(t, f)["ns/manual"]; a != plan.ActionStart {
		t.Fatalf("rerun plans %q for the released Manual VM; want %q", a, plan.ActionStart)
	}
	cfg.MoveID = "sf-c2-000002"
	rep := run(t, f, cfg)
	if rep.Failed() {
		t.Fatalf("rerun: %+v", rep)
	}
	assertRunsOn(t, f, "ns/manual", "DR")
	assertRunsOn(t, f, "ns/always", "DR")
}

// H2: a VM whose Node object was deleted (a runbook deletes an unreachable site's
// nodes) is not "healthy somewhere": its old instance may still run. It needs the same
// proof as a failover of its site, never a plain restart or migration.
func TestH2VMOnADeletedNodeNeedsTheFailoverProof(t *testing.T) {
	f := newFake(delay)
	f.add("ns", "vm", 1, "Primary", true, true)
	f.down["Primary"] = true
	f.deleted[f.vms["ns/vm"].inst.NodeName] = true
	p, err := plan.Build(f.snapshot(), plan.Request{To: "DR", All: true, Mode: plan.ModeAuto, MaxInFlight: 1})
	if err != nil {
		t.Fatal(err)
	}
	st := p.Steps[0]
	if st.Action != plan.ActionFailover || st.From != "Primary" {
		t.Fatalf("a VM on a deleted node of the dead site is planned %q from %q; want a failover from Primary, which needs --confirm-site-down", st.Action, st.From)
	}

	// Its site alive: blocked, whatever --force says.
	f.down["Primary"] = false
	p, err = plan.Build(f.snapshot(), plan.Request{To: "DR", All: true, Mode: plan.ModeAuto, MaxInFlight: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Blocked(true) || !hasBlocker(p, "NodeNotFound") {
		t.Fatalf("a VM on a deleted node of a live site: action %q, blockers %+v; want NodeNotFound", p.Steps[0].Action, p.Blockers)
	}
}

// H2 at the write: the release of an instance whose node is gone is refused unless the
// node was seen in the confirmed site.
func TestH2ReleaseOffAnUnknownNodeIsRefusedAtTheWrite(t *testing.T) {
	f := newFake(delay)
	f.add("ns", "vm", 1, "Primary", true, false)
	f.down["Primary"] = true
	p := planFor(t, f, 1)
	f.mu.Lock()
	f.vms["ns/vm"].inst.NodeName = "elsewhere"
	f.mu.Unlock()
	p.Steps[0].Node = "elsewhere"
	rep, err := New(f, config("sf-h2-000001", 1), nil).Run(context.Background(), context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if f.releases["ns/vm"] != 0 || !rep.Failed() {
		t.Fatalf("released an instance on a node outside the confirmed site: %+v", rep)
	}
}

var errForbidden = &forbiddenError{}

type forbiddenError struct{}

func (*forbiddenError) Error() string { return "admission webhook denied the request" }

func hasBlocker(p *plan.Plan, code string) bool {
	for _, b := range p.Blockers {
		if b.Code == code {
			return true
		}
	}
	return false
}

func assertRunsOn(t *testing.T, f *fakeCluster, key, site string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	vm := f.vms[key]
	if vm.inst == nil || vm.inst.Final() || !vm.inst.Ready || vm.inst.Site != site {
		t.Fatalf("%s: instance %+v; want Ready on %s", key, vm.inst, site)
	}
	if !strings.Contains(vm.annotations[journal.Phase], journal.PhaseDone) {
		t.Fatalf("%s: journal phase %q; want done", key, vm.annotations[journal.Phase])
	}
}

// N9: the patch-only step of an Always VM whose instance is over did not wait: KubeVirt
// recreated it from the patched template unthrottled, across the tier barrier, and the
// move reported it moved before it was anywhere.
func TestN9AlwaysVMWithAFinishedInstanceIsAThrottledStart(t *testing.T) {
	f := newFake(delay)
	f.add("ns", "a", 1, "Primary", true, false)
	f.add("ns", "b", 2, "Primary", true, false)
	f.vms["ns/a"].inst.Phase, f.vms["ns/a"].inst.Ready = "Failed", false
	f.recreateLater(f.vms["ns/a"], f.vms["ns/a"].inst)
	p := planFor(t, f, 1)
	if st := p.Steps[0]; st.Action != plan.ActionPatch || !st.Starts() {
		t.Fatalf("step %+v: want a patch-only that counts as a start", st)
	}
	if len(p.Batches) != 2 {
		t.Fatalf("batches %+v: the recreated VM must be in one", p.Batches)
	}
	rep := run(t, f, config("sf-n9-000001", 1))
	if rep.Failed() {
		t.Fatalf("%+v", rep)
	}
	assertRunsOn(t, f, "ns/a", "DR")
	// The barrier: tier 2 started only after tier 1's VM was Ready.
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.tierStarts[2]) == 0 || len(f.tierReady[1]) == 0 || f.tierStarts[2][0].Before(f.tierReady[1][0]) {
		t.Fatalf("tier 2 started at %v, tier 1 Ready at %v", f.tierStarts[2], f.tierReady[1])
	}
}

// N15: a restart whose first try took effect although its answer was a 5xx must not be
// sent again to the new instance: every try re-checks the instance first.
func TestN15RestartRetriesRecheckTheInstance(t *testing.T) {
	f := newFake(delay)
	f.add("ns", "vm", 1, "Primary", true, false)
	f.failures["restart"] = []error{serverError()}
	calls := 0
	f.onWrite = func(call string) {
		if call == "restart" {
			calls++
			if calls == 1 {
				// The first request landed; its answer was lost in a 500.
				vm := f.vms["ns/vm"]
				vm.restarts++
				f.startOn(vm, vm.home)
			}
		}
	}
	rep := run(t, f, config("sf-n15-000001", 1))
	if rep.Failed() {
		t.Fatalf("%+v", rep)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := f.vms["ns/vm"].restarts; n != 1 {
		t.Fatalf("%d restarts; the retry restarted the new instance again", n)
	}
}

// N16: "already on the target" is checked right before the migration's create, not only
// before the wait for LiveUpdate, during which another migration may have landed it.
func TestN16NoMigrationOfAVMThatReachedTheTargetDuringTheLiveUpdateWait(t *testing.T) {
	f := newFake(delay)
	f.add("ns", "vm", 1, "Primary", true, true)
	f.onWrite = func(call string) {
		if call == "patch" {
			time.AfterFunc(delay/8, func() {
				f.mu.Lock()
				defer f.mu.Unlock()
				inst := f.vms["ns/vm"].inst
				inst.Site, inst.NodeName = "DR", "d1"
				f.notifyLocked()
			})
		}
	}
	rep := run(t, f, config("sf-n16-000001", 1))
	if rep.Failed() {
		t.Fatalf("%+v", rep)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := f.vms["ns/vm"].migrations; n != 0 {
		t.Fatalf("%d migration(s) of a VM already on the target", n)
	}
}

// N18: with --request-timeout, a write whose every try times out on the client is a
// failure after the backoff, not an unreachable API server waited out for as long as the
// lock holds (forever, while renewals go through).
func TestN18ClientTimeoutsFailTheStepInsteadOfHanging(t *testing.T) {
	f := newFake(delay)
	f.add("ns", "vm", 1, "Primary", true, true)
	f.failures["patch"] = repeat(1<<20, func() error { return &url.Error{Op: "Patch", URL: "https://api/x", Err: timeoutError{}} })
	cfg := config("sf-n18-000001", 1)
	cfg.Backoff = wait.Backoff{Steps: 3, Duration: time.Millisecond, Factor: 1}
	cfg.UnreachableRetry = time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	rep, err := New(f, cfg, nil).Run(ctx, ctx, planFor(t, f, 1))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Interrupted || len(rep.Failures) != 1 || !strings.Contains(rep.Failures[0].Error, "--request-timeout") {
		t.Fatalf("want the step failed on its timeouts, not waited out: %+v", rep)
	}
}

type timeoutError struct{}

func (timeoutError) Error() string {
	return "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
}
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// N20: a VM deleted and recreated under the same name mid-move is another VM: the site
// patch and the journal carry the planned VM's UID, so the newcomer is neither moved nor
// given the old one's journal; the step reports it gone.
func TestN20VMRecreatedUnderTheSameNameIsNotPatched(t *testing.T) {
	f := newFake(delay)
	f.add("ns", "vm", 1, "Primary", false, false)
	p := planFor(t, f, 1)
	f.mu.Lock()
	f.vms["ns/vm"].uid = "recreated"
	f.mu.Unlock()
	rep, err := New(f, config("sf-n20-000001", 1), nil).Run(context.Background(), context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if vm := f.vms["ns/vm"]; vm.home != "Primary" || len(vm.annotations) != 0 {
		t.Fatalf("the recreated VM was written: home %s, annotations %v", vm.home, vm.annotations)
	}
	if rep.Failed() || rep.Tiers[0].Skipped != 1 {
		t.Fatalf("want the step skipped as deleted during the move: %+v", rep)
	}
}

// Review finding: nothing checked the lock at the write; after a pause of the process
// the waiting writes went out before the renewal loop noticed the lock was gone.
func TestNoWriteGoesOutOnceTheLockIsInvalid(t *testing.T) {
	f := newFake(delay)
	populate(f, 2, 2)
	cfg := config("sf-lock-000001", 2)
	var valid atomic.Bool
	valid.Store(true)
	cfg.LockValid = func() error {
		if valid.Load() {
			return nil
		}
		return errors.New("not renewed for 13s")
	}
	f.onWrite = func(string) {
		if f.writes == 0 {
			valid.Store(false) // the process pauses during its first write
		}
	}
	rep := run(t, f, cfg)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.writes != 1 {
		t.Fatalf("%d writes; want none after the lock went invalid", f.writes)
	}
	if len(rep.Failures) != 0 {
		t.Fatalf("steps cut short by the lock are interrupted, not failed: %+v", rep.Failures)
	}
}

// The progress shows a failover's release as its own phase, before it goes out (the
// operator's "t1: releasing" line; the e2e site-back test waits for it). Its journal
// write now rides on the template patch, and the event went with the old write.
func TestFailoverReportsItsReleasePhase(t *testing.T) {
	f := newFake(delay)
	f.add("ns", "vm", 1, "Primary", true, false)
	f.down["Primary"] = true
	var phases []string
	var mu sync.Mutex
	rep, err := New(f, config("sf-phase-000001", 1), func(ev Event) {
		mu.Lock()
		defer mu.Unlock()
		if ev.Kind == StepPhase {
			phases = append(phases, ev.Phase)
		}
	}).Run(context.Background(), context.Background(), planFor(t, f, 1))
	if err != nil || rep.Failed() {
		t.Fatalf("%v %+v", err, rep)
	}
	if !slices.Contains(phases, journal.PhaseReleasing) {
		t.Fatalf("phases %v: no %q", phases, journal.PhaseReleasing)
	}
}

// Issue 20, behaviour 2: an instance shutting down (Terminating) when its site dies
// cannot finish its shutdown there, and nothing shows the guest stopped. It was planned
// patch-only behind a wait that never ended (Always) or left alone, never released.
func TestTerminatingInstanceOnADeadSiteIsReleased(t *testing.T) {
	f := newFake(delay)
	f.add("ns", "vm", 1, "Primary", true, true)
	f.vms["ns/vm"].inst.Terminating = true
	f.down["Primary"] = true
	if a := planActions(t, f)["ns/vm"]; a != plan.ActionFailover {
		t.Fatalf("a Terminating instance on a dead site is planned %q; want %q (released, with the site's confirmation)", a, plan.ActionFailover)
	}
	rep := run(t, f, config("sf-term-000001", 1))
	if rep.Failed() {
		t.Fatalf("%+v", rep)
	}
	assertRunsOn(t, f, "ns/vm", "DR")
	if f.releases["ns/vm"] != 1 {
		t.Fatalf("releases %d; want 1", f.releases["ns/vm"])
	}
}

// A VM that nothing starts again after its release (Halted, or a Manual VM that
// was stopping; Once is a blocker) is released and done: the move used to wait for it to turn Ready on
// the target until --ready-timeout, and fail.
func TestReleasedVMThatStaysDownIsNotWaitedFor(t *testing.T) {
	for _, tc := range []struct {
		strategy    kubevirtv1.VirtualMachineRunStrategy
		terminating bool
	}{{kubevirtv1.RunStrategyHalted, false}, {kubevirtv1.RunStrategyManual, true}} {
		t.Run(string(tc.strategy), func(t *testing.T) {
			f := newFake(delay)
			f.add("ns", "vm", 1, "Primary", true, true)
			f.vms["ns/vm"].strategy = tc.strategy
			f.vms["ns/vm"].inst.Terminating = tc.terminating
			f.down["Primary"] = true
			p := planFor(t, f, 1)
			if st := p.Steps[0]; st.Action != plan.ActionFailover || !st.StaysDown || st.Starts() {
				t.Fatalf("planned %q (staysDown %v, starts %v); want a failover that starts nothing", st.Action, st.StaysDown, st.Starts())
			}
			runWithoutReady(t, f, p, "sf-down-000001")
			f.mu.Lock()
			defer f.mu.Unlock()
			if vm := f.vms["ns/vm"]; vm.inst != nil && !vm.inst.Final() || vm.home != "DR" || f.releases["ns/vm"] != 1 {
				t.Fatalf("instance %+v, template %s, releases %d; want released, template on DR, nothing running", vm.inst, vm.home, f.releases["ns/vm"])
			}
		})
	}
}

// Issue 20, behaviour 9: a migration that KubeVirt fails. Under --mode auto the step
// falls back to a restart, which the VM allows (Always), and the VM reaches the target.
func TestFailedMigrationFallsBackToARestartUnderModeAuto(t *testing.T) {
	f := newFake(delay)
	f.add("ns", "vm", 1, "Primary", true, true)
	f.migFails["ns/vm"] = "Live migration failed: unable to connect to the target"
	p := planFor(t, f, 1)
	if st := p.Steps[0]; st.Action != plan.ActionMigrate || !st.FallbackRestart {
		t.Fatalf("planned %q (fallback %v); want a migration that may fall back to a restart", st.Action, st.FallbackRestart)
	}
	rep, err := New(f, config("sf-mig-000001", 1), nil).Run(context.Background(), context.Background(), p)
	if err != nil || rep.Failed() {
		t.Fatalf("err %v: %+v", err, rep)
	}
	assertRunsOn(t, f, "ns/vm", "DR")
	f.mu.Lock()
	defer f.mu.Unlock()
	if vm := f.vms["ns/vm"]; vm.restarts != 1 || vm.migrations != 0 {
		t.Fatalf("restarts %d, migrations %d; want the failed migration followed by one restart", vm.restarts, vm.migrations)
	}
}

// A migration whose target pod the scheduler never placed: KubeVirt deletes the pod
// after its unschedulable timeout and fails the migration. A restart would stop the
// guest and meet the same scheduler on the target, so the step must not fall back to
// one: the VM stays running on the source and the step fails saying why.
func TestMigrationWithAnUnplacedTargetDoesNotFallBackToARestart(t *testing.T) {
	f := newFake(delay)
	f.add("ns", "vm", 1, "Primary", true, true)
	f.migUnplaced["ns/vm"] = true
	p := planFor(t, f, 1)
	if st := p.Steps[0]; st.Action != plan.ActionMigrate || !st.FallbackRestart {
		t.Fatalf("planned %q (fallback %v); want a migration that may fall back to a restart", st.Action, st.FallbackRestart)
	}
	rep, err := New(f, config("sf-mig-000003", 1), nil).Run(context.Background(), context.Background(), p)
	if err != nil || !rep.Failed() {
		t.Fatalf("err %v: %+v; want the step failed", err, rep)
	}
	if msg := journalOf(f, "ns/vm").Error; !strings.Contains(msg, "never scheduled") {
		t.Fatalf("journal error %q; want it to say the target pod was never scheduled", msg)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if vm := f.vms["ns/vm"]; vm.restarts != 0 || vm.inst == nil || vm.inst.Final() || vm.inst.Site != "Primary" {
		t.Fatalf("restarts %d, instance %+v; want none, the guest still running on Primary", vm.restarts, vm.inst)
	}
}

// A migration whose target never ran the domain: the instance was handed over and the
// migration finalized as Succeeded (KubeVirt v1.8.0 does not wait for a running domain
// to finalize), the instance Ready from its pod, then Failed. A Manual VM is then stopped, and nothing starts it again: under --mode migrate
// the step fails naming the fix at once; under --mode auto it starts the VM on the
// target. An Always VM comes back by itself from its template, which selects the target.
func TestMigrationWhoseTargetNeverRuns(t *testing.T) {
	for _, tc := range []struct {
		strategy  kubevirtv1.VirtualMachineRunStrategy
		mode      plan.Mode
		wantFail  bool
		wantStart int
	}{
		{kubevirtv1.RunStrategyManual, plan.ModeMigrate, true, 0},
		{kubevirtv1.RunStrategyManual, plan.ModeAuto, false, 1},
		{kubevirtv1.RunStrategyAlways, plan.ModeMigrate, false, 0},
		{kubevirtv1.RunStrategyAlways, plan.ModeAuto, false, 0},
	} {
		t.Run(string(tc.strategy)+"/"+string(tc.mode), func(t *testing.T) {
			f := newFake(delay)
			f.add("ns", "vm", 1, "Primary", true, true)
			f.vms["ns/vm"].strategy = tc.strategy
			f.migTargetDies["ns/vm"] = true
			p, err := plan.Build(f.snapshot(), plan.Request{To: "DR", All: true, Mode: tc.mode, MaxInFlight: 1})
			if err != nil {
				t.Fatal(err)
			}
			if p.Steps[0].Action != plan.ActionMigrate {
				t.Fatalf("planned %q; want a migration", p.Steps[0].Action)
			}
			cfg := config("sf-tgt-000001", 1)
			cfg.ReadyTimeout = time.Minute
			start := time.Now()
			rep, err := New(f, cfg, nil).Run(context.Background(), context.Background(), p)
			if err != nil || rep.Failed() != tc.wantFail {
				t.Fatalf("err %v, failed %v: %+v; want failed %v", err, rep.Failed(), rep, tc.wantFail)
			}
			if tc.wantFail {
				if msg := journalOf(f, "ns/vm").Error; !strings.Contains(msg, "start") || !strings.Contains(msg, "Manual") {
					t.Fatalf("journal error %q; want it to say the Manual VM is stopped and how to start it", msg)
				}
				if time.Since(start) > 30*time.Second {
					t.Fatalf("the step waited %s for a Ready that nothing brings", time.Since(start))
				}
			} else {
				assertRunsOn(t, f, "ns/vm", "DR")
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if got := f.starts["ns/vm"]; got != tc.wantStart {
				t.Fatalf("starts %d; want %d", got, tc.wantStart)
			}
		})
	}
}

// The start that follows a migration whose target never ran the domain is refused, and
// the move is run again: the guest died on the target, a live site, so the rerun's start
// is no release, and nothing may send it through the release guard of the source, which
// is alive too (every rerun would halt, "fence the site", and the VM stay down; found
// by review). The same for a --mode migrate move rerun under --mode auto.
func TestStartAfterTheTargetNeverRanIsNoRelease(t *testing.T) {
	for _, mode := range []plan.Mode{plan.ModeAuto, plan.ModeMigrate} {
		t.Run(string(mode), func(t *testing.T) {
			f := newFake(delay)
			f.add("ns", "vm", 1, "Primary", true, true)
			f.vms["ns/vm"].strategy = kubevirtv1.RunStrategyManual
			f.migTargetDies["ns/vm"] = true
			if mode == plan.ModeAuto {
				f.failures["start"] = []error{apierrors.NewBadRequest("refused once")}
			}
			p, err := plan.Build(f.snapshot(), plan.Request{To: "DR", All: true, Mode: mode, MaxInFlight: 1})
			if err != nil {
				t.Fatal(err)
			}
			if rep, err := New(f, config("sf-tgt-000002", 1), nil).Run(context.Background(), context.Background(), p); err != nil || !rep.Failed() {
				t.Fatalf("first run: err %v, %+v; want the step failed", err, rep)
			}
			f.migTargetDies["ns/vm"] = false
			p = planFor(t, f, 1)
			if st := p.Steps[0]; st.Action != plan.ActionStart || st.ReleasedFrom != "" {
				t.Fatalf("rerun planned %q (released from %q): %s; want a start with no release guard", st.Action, st.ReleasedFrom, st.Reason)
			}
			rep, err := New(f, config("sf-tgt-000003", 1), nil).Run(context.Background(), context.Background(), p)
			if err != nil || rep.Failed() {
				t.Fatalf("rerun: err %v, %+v", err, rep)
			}
			assertRunsOn(t, f, "ns/vm", "DR")
		})
	}
}

// Without the fallback (--mode migrate), the step fails with KubeVirt's own reason.
func TestFailedMigrationNamesKubeVirtsReason(t *testing.T) {
	f := newFake(delay)
	f.add("ns", "vm", 1, "Primary", true, true)
	f.migFails["ns/vm"] = "Live migration failed: unable to connect to the target"
	p, err := plan.Build(f.snapshot(), plan.Request{To: "DR", All: true, Mode: plan.ModeMigrate, MaxInFlight: 1})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := New(f, config("sf-mig-000002", 1), nil).Run(context.Background(), context.Background(), p)
	if err != nil || !rep.Failed() {
		t.Fatalf("err %v: %+v", err, rep)
	}
	if msg := journalOf(f, "ns/vm").Error; !strings.Contains(msg, "unable to connect to the target") {
		t.Fatalf("journal error %q; want KubeVirt's reason", msg)
	}
}

// Issue 20, behaviour 5: a drain's evacuation migration is running when the move reaches
// the VM. KubeVirt refuses a second migration ("in-flight migration detected"); the
// step waits for the drain's to end, then migrates.
func TestMigrationOfADrainIsWaitedFor(t *testing.T) {
	f := newFake(delay)
	f.add("ns", "vm", 1, "Primary", true, true)
	p := planFor(t, f, 1)
	f.drain("ns", "vm")
	var refused atomic.Int32
	f.onMigrate = func(ns, vmi string) error {
		if _, ok := f.unfinishedLocked(ns, vmi); ok {
			refused.Add(1)
			return apierrors.NewBadRequest("admission webhook \"migration-create-validator.kubevirt.io\" denied the request: in-flight migration detected. Active migration job (x) is currently already in progress for VMI vm.")
		}
		return nil
	}
	rep, err := New(f, config("sf-drain-000001", 1), nil).Run(context.Background(), context.Background(), p)
	if err != nil || rep.Failed() {
		t.Fatalf("err %v (refused %d): %+v", err, refused.Load(), rep)
	}
	assertRunsOn(t, f, "ns/vm", "DR")
}

// Issue 20, behaviour 4: a paused guest. A live migration keeps it paused, and KubeVirt's
// Ready stays False until someone unpauses it: the step used to wait for Ready until
// --ready-timeout and fail. It is done when the instance runs on the target, still
// paused, as the operator left it.
func TestPausedGuestMigratesAndStaysPaused(t *testing.T) {
	f := newFake(delay)
	f.add("ns", "vm", 1, "Primary", true, true)
	f.vms["ns/vm"].inst.Paused, f.vms["ns/vm"].inst.Ready = true, false
	p := planFor(t, f, 1)
	if st := p.Steps[0]; st.Action != plan.ActionMigrate || !st.Paused || st.FallbackRestart {
		t.Fatalf("planned %q (paused %v, fallback %v); want a migration of a paused guest, with no restart to fall back to", st.Action, st.Paused, st.FallbackRestart)
	}
	runWithoutReady(t, f, p, "sf-paused-000001")
	f.mu.Lock()
	defer f.mu.Unlock()
	if i := f.vms["ns/vm"].inst; i.Site != "DR" || !i.Paused || i.Ready {
		t.Fatalf("instance %+v; want it on DR, still paused", i)
	}
}

// runWithoutReady runs a plan whose VMs never turn Ready, with an hour's --ready-timeout:
// it must succeed well within the test's own 20 s, not by waiting for Ready.
func runWithoutReady(t *testing.T, f *fakeCluster, p *plan.Plan, moveID string) {
	t.Helper()
	cfg := config(moveID, 1)
	cfg.ReadyTimeout = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rep, err := New(f, cfg, nil).Run(ctx, ctx, p)
	if err != nil || rep.Failed() || ctx.Err() != nil {
		t.Fatalf("err %v, ctx %v: %+v", err, ctx.Err(), rep)
	}
}

// Review of issue 20: a migration that failed because its source site went down is not
// "restarted" there (the restart would hang on a dead node until --ready-timeout): the
// step fails, naming the failover.
func TestFailedMigrationOffADeadSiteIsNotRestarted(t *testing.T) {
	f := newFake(delay)
	f.add("ns", "vm", 1, "Primary", true, true)
	f.migFails["ns/vm"] = "target pod is down"
	p := planFor(t, f, 1)
	f.mu.Lock()
	f.down["Primary"] = true
	f.mu.Unlock()
	rep, err := New(f, config("sf-mig-000003", 1), nil).Run(context.Background(), context.Background(), p)
	if err != nil || !rep.Failed() {
		t.Fatalf("err %v: %+v", err, rep)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if vm := f.vms["ns/vm"]; vm.restarts != 0 {
		t.Fatalf("restarted %d times on a dead site", vm.restarts)
	}
	if msg := journal.Read(f.vms["ns/vm"].annotations).Error; !strings.Contains(msg, "confirm-site-down") {
		t.Fatalf("journal error %q; want the way out named", msg)
	}
}

// A Manual VM whose instance Failed on a live site (a power-loss return) is started on
// the target. A first start that fails must not leave a journal that makes every rerun
// guard its start against the live source (it halted: "site is alive"): nothing was
// released (found by review).
func TestStartOfAFailedManualVMIsRerunAfterAFailedStart(t *testing.T) {
	f := newFake(delay)
	f.add("ns", "vm", 1, "Primary", true, true)
	f.vms["ns/vm"].strategy = kubevirtv1.RunStrategyManual
	f.vms["ns/vm"].inst.Phase, f.vms["ns/vm"].inst.Ready = "Failed", false
	p := planFor(t, f, 1)
	if st := p.Steps[0]; st.Action != plan.ActionStart || st.ReleasedFrom != "" {
		t.Fatalf("planned %q (released from %q); want an unguarded start", st.Action, st.ReleasedFrom)
	}
	f.failures["start"] = repeat(50, func() error { return apierrors.NewBadRequest("refused by an admission webhook") })
	rep, err := New(f, config("sf-fm-000001", 1), nil).Run(context.Background(), context.Background(), p)
	if err != nil || !rep.Failed() {
		t.Fatalf("err %v: %+v; want the start to fail", err, rep)
	}
	f.mu.Lock()
	f.failures["start"] = nil
	f.mu.Unlock()
	p = planFor(t, f, 1)
	if st := p.Steps[0]; st.Action != plan.ActionStart || st.ReleasedFrom != "" {
		t.Fatalf("rerun planned %q (released from %q); want an unguarded start again", st.Action, st.ReleasedFrom)
	}
	rep, err = New(f, config("sf-fm-000002", 1), nil).Run(context.Background(), context.Background(), p)
	if err != nil || rep.Failed() {
		t.Fatalf("rerun: err %v: %+v", err, rep)
	}
	assertRunsOn(t, f, "ns/vm", "DR")
}
