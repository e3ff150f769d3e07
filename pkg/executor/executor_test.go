package executor

import (
	"context"
	"fmt"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/sitefail/kubectl-sitefail/pkg/journal"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
)

const delay = 40 * time.Millisecond

func planFor(t *testing.T, f *fakeCluster, maxInFlight int) *plan.Plan {
	t.Helper()
	p, err := plan.Build(f.snapshot(), plan.Request{To: "DR", All: true, Mode: plan.ModeAuto, MaxInFlight: maxInFlight})
	if err != nil {
		t.Fatal(err)
	}
	if p.Blocked(false) {
		t.Fatalf("blocked: %+v", p.Blockers)
	}
	return p
}

func config(moveID string, maxInFlight int) Config {
	return Config{MoveID: moveID, Actor: "test", MaxInFlight: maxInFlight, MaxPerNode: 0, ReadyTimeout: 5 * time.Second,
		Backoff: DefaultBackoff, TargetNodes: []string{"d1", "d2", "d3"}}
}

func run(t *testing.T, f *fakeCluster, cfg Config) *Report {
	t.Helper()
	rep, err := New(f, cfg, nil).Run(context.Background(), context.Background(), planFor(t, f, cfg.MaxInFlight))
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func populate(f *fakeCluster, tiers, perTier int) {
	for tier := 1; tier <= tiers; tier++ {
		for i := 0; i < perTier; i++ {
			f.add("ns", fmt.Sprintf("t%d-vm%d", tier, i), tier, "Primary", true, i%2 == 0)
		}
	}
}

func assertAllMovedOnce(t *testing.T, f *fakeCluster) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, vm := range f.vms {
		if vm.inst == nil || vm.inst.Site != "DR" || !vm.inst.Ready || vm.home != "DR" {
			t.Errorf("%s: home %s, instance %+v", k, vm.home, vm.inst)
		}
		if vm.restarts+vm.migrations != 1 {
			t.Errorf("%s: %d restarts and %d migrations; want exactly one of them", k, vm.restarts, vm.migrations)
		}
	}
}

func TestThrottleAndTierBarrier(t *testing.T) {
	f := newFake(delay)
	populate(f, 3, 6)
	rep := run(t, f, config("sf-a-000001", 2))
	if rep.Failed() || rep.Interrupted {
		t.Fatalf("report %+v", rep)
	}
	assertAllMovedOnce(t, f)
	if f.peak > 2 || rep.PeakInFlight > 2 {
		t.Fatalf("throttle exceeded: cluster saw %d starting at once, executor %d", f.peak, rep.PeakInFlight)
	}
	if f.peak < 2 {
		t.Fatalf("throttle never reached its limit (%d): the test would not notice a broken limit", f.peak)
	}
	for tier := 2; tier <= 3; tier++ {
		var lastReady, firstStart time.Time
		for _, r := range f.tierReady[tier-1] {
			if r.After(lastReady) {
				lastReady = r
			}
		}
		firstStart = f.tierStarts[tier][0]
		for _, s := range f.tierStarts[tier] {
			if s.Before(firstStart) {
				firstStart = s
			}
		}
		if firstStart.Before(lastReady) {
			t.Errorf("tier %d started at %s before tier %d was Ready at %s", tier, firstStart, tier-1, lastReady)
		}
	}
	if len(rep.Tiers) != 3 || rep.Tiers[0].Moved != 6 {
		t.Fatalf("tiers %+v", rep.Tiers)
	}
}

func TestNoBarrierLetsTiersOverlap(t *testing.T) {
	f := newFake(delay)
	populate(f, 2, 2)
	cfg := config("sf-a-000002", 10)
	cfg.NoBarrier = true
	rep := run(t, f, cfg)
	if rep.Failed() {
		t.Fatalf("%+v", rep)
	}
	if f.peak < 3 {
		t.Fatalf("with --no-barrier tier 2 should start while tier 1 runs; peak %d", f.peak)
	}
}

func TestPerNodeLimit(t *testing.T) {
	f := newFake(delay)
	f.nodes["DR"] = []string{"d1"}
	for i := 0; i < 6; i++ {
		f.add("ns", fmt.Sprintf("vm%d", i), 1, "Primary", true, false)
	}
	cfg := config("sf-a-000003", 5)
	cfg.MaxPerNode, cfg.TargetNodes = 2, []string{"d1"}
	rep := run(t, f, cfg)
	if rep.Failed() || f.peak > 2 {
		t.Fatalf("one target node with --max-per-node 2: peak %d, %+v", f.peak, rep)
	}
}

func TestRetriesTransientErrors(t *testing.T) {
	f := newFake(delay)
	populate(f, 1, 4)
	f.failures["patch"] = []error{tooMany(), conflict(), serverError()}
	f.failures["restart"] = []error{serverError(), tooMany()}
	f.failures["migrate"] = []error{conflict()}
	rep := run(t, f, config("sf-a-000004", 4))
	if rep.Failed() {
		t.Fatalf("%+v", rep)
	}
	assertAllMovedOnce(t, f)
}

func TestMaxFailuresStopsBeforeNextTier(t *testing.T) {
	f := newFake(delay)
	populate(f, 2, 2)
	f.failures["restart"] = []error{apierrors.NewBadRequest("refused")}
	rep := run(t, f, config("sf-a-000005", 1))
	if !rep.Failed() || rep.Stopped == "" || len(rep.Failures) != 1 {
		t.Fatalf("want a stop after one failure: %+v", rep)
	}
	if len(f.tierStarts[2]) != 0 {
		t.Fatalf("tier 2 started after tier 1 exceeded --max-failures")
	}
	if rep.Tiers[1].Pending != 2 {
		t.Fatalf("tier 2 should be reported as not started: %+v", rep.Tiers)
	}
}

func TestStopLetsStepsInFlightReachASafePoint(t *testing.T) {
	f := newFake(delay * 5)
	populate(f, 2, 3)
	stop, cancel := context.WithCancel(context.Background())
	ex := New(f, config("sf-a-000006", 2), func(e Event) {
		if e.Kind == StepPhase && (e.Phase == journal.PhaseRestarting || e.Phase == journal.PhaseMigrating) {
			cancel()
		}
	})
	rep, err := ex.Run(context.Background(), stop, planFor(t, f, 2))
	if err != nil || !rep.Interrupted {
		t.Fatalf("want an interrupted report: %v %+v", err, rep)
	}
	// Rerun finishes the move without moving anything twice.
	time.Sleep(delay * 6)
	rep = run(t, f, config("sf-a-000007", 2))
	if rep.Failed() {
		t.Fatalf("%+v", rep)
	}
	assertAllMovedOnce(t, f)
}

// TestCrashAtEveryWriteResumes kills the "process" at each write in turn, with the write
// applied or lost, then runs the move again from a fresh snapshot.
func TestCrashAtEveryWriteResumes(t *testing.T) {
	total := func() int {
		f := newFake(delay)
		populate(f, 2, 2)
		run(t, f, config("sf-count-000000", 2))
		return f.writes
	}()
	for k := 1; k <= total; k++ {
		for _, applied := range []bool{false, true} {
			t.Run(fmt.Sprintf("write%d-applied=%v", k, applied), func(t *testing.T) {
				f := newFake(delay)
				populate(f, 2, 2)
				f.crashAt, f.applyCrash = k, applied
				runUntilCrash(t, f, config("sf-crash-000001", 2))
				// The process is gone; the cluster goes on. Then the operator reruns it.
				time.Sleep(2 * delay)
				f.mu.Lock()
				f.crashed, f.crashAt = false, 0
				f.mu.Unlock()
				rep := run(t, f, config("sf-resume-000002", 2))
				if rep.Failed() {
					t.Fatalf("resume: %+v", rep)
				}
				assertAllMovedOnce(t, f)
			})
		}
	}
}

// runUntilCrash runs a move until the fake's crash point, as a process killed there.
func runUntilCrash(t *testing.T, f *fakeCluster, cfg Config) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = New(f, cfg, func(Event) {
			f.mu.Lock()
			crashed := f.crashed
			f.mu.Unlock()
			if crashed {
				cancel()
			}
		}).Run(ctx, ctx, planFor(t, f, cfg.MaxInFlight))
	}()
	for {
		f.mu.Lock()
		crashed := f.crashed
		f.mu.Unlock()
		if crashed {
			cancel()
			break
		}
		select {
		case <-done:
			f.mu.Lock()
			crashed := f.crashed
			f.mu.Unlock()
			if !crashed {
				t.Fatalf("the move finished without reaching write %d", f.crashAt)
			}
		case <-time.After(time.Millisecond):
		}
	}
	<-done
}

// An API server that is down (connection refused) for longer than the backoff for
// transient errors: the writes wait for it while the move holds its lock (losing the
// lock cancels ctx), and no VM is reported failed because the API was unreachable.
func TestWaitsOutAnUnreachableAPIServer(t *testing.T) {
	f := newFake(delay)
	populate(f, 1, 2)
	refused := func() error {
		return &url.Error{Op: "Patch", URL: "https://127.0.0.1:6443/apis/kubevirt.io/v1", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	}
	var outage []error
	for i := 0; i < 12; i++ {
		outage = append(outage, refused())
	}
	f.failures["patch"] = outage
	cfg := config("sf-a-000031", 2)
	cfg.Backoff = wait.Backoff{Steps: 3, Duration: time.Millisecond, Factor: 1}
	cfg.UnreachableRetry = time.Millisecond
	rep := run(t, f, cfg)
	if rep.Failed() {
		t.Fatalf("an unreachable API server failed the move instead of being waited for: %+v", rep)
	}
	assertAllMovedOnce(t, f)
}

// The wait ends when the lock is lost (ctx cancelled): the step stops at a safe point.
func TestUnreachableAPIServerStopsWhenTheMoveIsCancelled(t *testing.T) {
	f := newFake(delay)
	populate(f, 1, 1)
	var outage []error
	for i := 0; i < 100000; i++ {
		outage = append(outage, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})
	}
	f.failures["patch"] = outage
	cfg := config("sf-a-000032", 1)
	cfg.Backoff = wait.Backoff{Steps: 2, Duration: time.Millisecond, Factor: 1}
	cfg.UnreachableRetry = time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	rep, err := New(f, cfg, nil).Run(ctx, ctx, planFor(t, f, 1))
	if err != nil || !rep.Interrupted || len(rep.Failures) != 0 || rep.Tiers[0].Pending != 1 {
		t.Fatalf("want the VM interrupted (not failed) once ctx is cancelled: %v %+v", err, rep)
	}
}

// A VM deleted while the move runs (its owner removed it) is not a failure of the move
// and does not stop the tier: it is reported skipped, saying why.
func TestVMDeletedDuringTheMoveIsSkipped(t *testing.T) {
	f := newFake(delay)
	populate(f, 1, 3)
	f.failures["patch"] = []error{apierrors.NewNotFound(schema.GroupResource{Group: "kubevirt.io", Resource: "virtualmachines"}, "t1-vm0")}
	var events []Event
	var mu sync.Mutex
	rep, err := New(f, config("sf-a-000033", 1), func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() }).
		Run(context.Background(), context.Background(), planFor(t, f, 1))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed() || rep.Tiers[0].Skipped != 1 || rep.Tiers[0].Moved != 2 {
		t.Fatalf("want one VM skipped as deleted and the other two moved: %+v", rep)
	}
	found := false
	for _, e := range events {
		found = found || strings.Contains(e.Message, "deleted during the move")
	}
	if !found {
		t.Fatalf("no event says the VM was deleted during the move: %+v", events)
	}
}

// The target fills up during the move: a VM that never becomes Ready there fails after
// --ready-timeout, with that reason in the report and beside its phase in the journal, so no VM
// is left half-moved without a journal entry that says so.
func TestNotReadyInTimeFailsWithItsJournal(t *testing.T) {
	f := newFake(time.Second)
	f.add("ns", "t1-vm0", 1, "Primary", true, false) // restarted: boots for longer than allowed
	cfg := config("sf-a-000034", 1)
	cfg.ReadyTimeout = 50 * time.Millisecond
	rep := run(t, f, cfg)
	if len(rep.Failures) != 1 || !strings.Contains(rep.Failures[0].Error, "--ready-timeout") {
		t.Fatalf("want one failure naming --ready-timeout: %+v", rep)
	}
	// It also says where the instance is stuck and what to look at: the fake's new
	// instance stays Scheduled, as behind a dead virt-handler.
	for _, want := range []string{"Scheduled on d", "virt-handler on d"} {
		if !strings.Contains(rep.Failures[0].Error, want) {
			t.Errorf("failure %q lacks %q", rep.Failures[0].Error, want)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// The phase written ahead stays; the failure is beside it.
	ann := f.vms["ns/t1-vm0"].annotations
	if ph := ann[journal.Phase]; ph != journal.PhaseRestarting || !strings.Contains(ann[journal.Error], "--ready-timeout") || ann[journal.Attempts] != "1" {
		t.Fatalf("journal phase %q, error %q, attempts %q; want %q with the error and 1 attempt", ph, ann[journal.Error], ann[journal.Attempts], journal.PhaseRestarting)
	}
}

// The request budget of issue 13: a stopped VM costs one write (the template and its
// journal, done), a live migration or a restart three (the template with its journal,
// the migration or restart, the journal's done).
func TestWritesPerVM(t *testing.T) {
	for _, tc := range []struct {
		name                string
		running, migratable bool
		want                int
	}{
		{"patch-only", false, false, 1},
		{"live-migrate", true, true, 3},
		{"restart", true, false, 3},
	} {
		f := newFake(delay)
		f.add("ns", "vm", 1, "Primary", tc.running, tc.migratable)
		if rep := run(t, f, config("sf-w-000001", 1)); rep.Failed() {
			t.Fatalf("%s: %+v", tc.name, rep)
		}
		if f.writes != tc.want {
			t.Errorf("%s: %d writes, want %d", tc.name, f.writes, tc.want)
		}
	}
}

// A tier of stopped VMs is written by a bounded pool: a thousand PATCHes at once would
// queue behind each other in the API server's fair queuing, and the lock's own renewal
// with them (seen at 5,000 VMs: 870 in flight, renewals waiting 3 s, against a 12 s
// deadline).
func TestPatchOnlyWritesAreBounded(t *testing.T) {
	f := newFake(delay)
	f.writeLatency = 20 * time.Millisecond
	for i := 0; i < 300; i++ {
		f.add("ns", fmt.Sprint("vm-", i), 1, "Primary", false, false)
	}
	if rep := run(t, f, config("sf-w-000002", 5)); rep.Failed() || rep.Tiers[0].Moved != 300 {
		t.Fatalf("%+v", rep)
	}
	if p := f.peakWrites.Load(); p > DefaultMaxWrites || p < DefaultMaxWrites/2 {
		t.Fatalf("%d writes at once, want at most %d (and the pool used)", p, DefaultMaxWrites)
	}
}

// A slot is refilled the moment its VM is done, not at the next cluster event or the
// admission loop's 500 ms poll: the last write of a step (its journal) is on the VM,
// which the move does not watch, so no event follows it.
func TestSlotRefillsTheMomentAStepEnds(t *testing.T) {
	f := newFake(delay)
	e := New(f, config("sf-r-000001", 1), nil)
	first := &plan.Step{Namespace: "ns", Name: "a", Action: plan.ActionMigrate}
	second := &plan.Step{Namespace: "ns", Name: "b", Action: plan.ActionMigrate}
	if err := e.admit(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	admitted := make(chan time.Time, 1)
	go func() {
		if err := e.admit(context.Background(), second); err == nil {
			admitted <- time.Now()
		}
	}()
	time.Sleep(100 * time.Millisecond) // the second waits for the slot
	released := time.Now()
	e.freeSlot(first)
	select {
	case at := <-admitted:
		if wait := at.Sub(released); wait > 200*time.Millisecond {
			t.Fatalf("the free slot was taken %s after it was released", wait)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the free slot was never taken")
	}
}
