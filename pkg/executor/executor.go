// Package executor carries out a plan: template patches, live migrations, restarts and
// releases from a dead site, tier by tier and throttled, with a journal on every VM so
// that an interrupted move finishes when run again. It owns the throttle, the tier
// barrier and the retries; it talks to the cluster only through the Cluster interface.
package executor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/client-go/util/retry"

	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
	"github.com/sitefail/kubectl-sitefail/pkg/journal"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
)

// Config tunes a run.
type Config struct {
	MoveID string
	Actor  string
	// MaxInFlight bounds VMs starting at once; MaxPerNode bounds starts per target node.
	MaxInFlight int
	// MaxMigrations bounds live migrations in flight: KubeVirt runs no more than its
	// parallelMigrationsPerCluster and leaves the rest Pending, which would only hold
	// throttle slots that restarts and failovers could use (0: no bound).
	MaxMigrations int
	MaxPerNode    int
	// Rate, when > 0, bounds starts per minute.
	Rate float64
	// NoBarrier lets tier N+1 start before tier N is Ready.
	NoBarrier bool
	// ReadyTimeout bounds each VM's wait for readiness on the target.
	ReadyTimeout time.Duration
	// MaxFailures stops the move when a tier has more failed VMs than this.
	MaxFailures int
	// TargetNodes are the Ready nodes of the target site, for the per-node throttle.
	TargetNodes []string
	// Fence, when "out-of-service", taints the dead site's nodes instead of
	// force-deleting launcher pods one VM at a time.
	Fence string
	// DeadNodes are the nodes of the dead source site(s), fenced before the first release.
	DeadNodes []string
	// Backoff for retriable API errors (409, 429, 5xx, timeouts).
	Backoff wait.Backoff
	// UnreachableRetry spaces the tries of a write while the API server cannot be
	// reached at all (a restart, a lost network path): they go on until ctx ends, which
	// losing the move's lock does (default 1 s).
	UnreachableRetry time.Duration
	// MaxWrites bounds the executor's API writes in flight (default DefaultMaxWrites).
	MaxWrites int
	// Now is the clock; tests replace it.
	Now func() time.Time
	// LockValid, when set, is asked at the instant of every write whether the move still
	// holds its lock (lock.Lock.Valid); a write it refuses is not sent, and the step is
	// interrupted, as when the lock's loss cancels the move.
	LockValid func() error
}

// ErrLockInvalid wraps LockValid's refusal of a write.
var ErrLockInvalid = errors.New("the move no longer holds its lock")

// DefaultMaxWrites is how many writes a move keeps in flight. More only queue in the
// API server, where the move's own lock renewals wait behind them: at 5,000 VMs a tier
// of 1,000 stopped VMs sent all at once had 870 PATCHes in flight and renewals taking
// 3 s, for the same throughput.
const DefaultMaxWrites = 50

// DefaultBackoff retries transient API errors for about six seconds.
var DefaultBackoff = wait.Backoff{Steps: 6, Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.2}

// EventKind names a progress event.
type EventKind string

const (
	TierStarted  EventKind = "TierStarted"
	TierFinished EventKind = "TierFinished"
	StepStarted  EventKind = "StepStarted"
	StepPhase    EventKind = "StepPhase"
	StepDone     EventKind = "StepDone"
	StepFailed   EventKind = "StepFailed"
	Stopping     EventKind = "Stopping"
)

// Event is one progress report; the CLI and the TUI render the same stream.
type Event struct {
	Time    time.Time   `json:"time"`
	Kind    EventKind   `json:"kind"`
	Tier    int         `json:"tier"`
	VM      string      `json:"vm,omitempty"`
	Action  plan.Action `json:"action,omitempty"`
	Phase   string      `json:"phase,omitempty"`
	Message string      `json:"message,omitempty"`
	// Done and Total count the plan's steps finished so far.
	Done     int `json:"done"`
	Total    int `json:"total"`
	InFlight int `json:"inFlight"`
}

// TierReport summarises one tier.
type TierReport struct {
	Tier     int           `json:"tier"`
	Moved    int           `json:"moved"`
	Failed   int           `json:"failed"`
	Skipped  int           `json:"skipped"`
	Pending  int           `json:"notStarted"`
	Started  time.Time     `json:"started"`
	Finished time.Time     `json:"finished"`
	Elapsed  time.Duration `json:"-"`
	// RTO is the wall time from the tier's start until its last VM was Ready on the target.
	RTO string `json:"rto"`
	// RTOSeconds is RTO as a number; 0 when no VM of the tier was started.
	RTOSeconds float64 `json:"rtoSeconds"`
}

// Failure names a VM that did not make it and why.
type Failure struct {
	VM    string `json:"vm"`
	Error string `json:"error"`
}

// Report is the final summary of a move.
type Report struct {
	MoveID      string       `json:"moveID"`
	To          string       `json:"to"`
	Tiers       []TierReport `json:"tiers"`
	Failures    []Failure    `json:"failures"`
	Interrupted bool         `json:"interrupted"`
	Stopped     string       `json:"stoppedBecause,omitempty"`
	Elapsed     string       `json:"elapsed"`
	// PeakInFlight is the most VMs that were starting at once.
	PeakInFlight int `json:"peakInFlight"`
	// Releases say, per dead site the move released VMs from, what that rested on.
	Releases []ReleaseBasis `json:"releases,omitempty"`
}

// ReleaseBasis is why a dead site's VMs could be released: the operator's typed
// confirmation ("manual", as RamenDR records ManuallyFenced), or the fencing evidence
// that proved every node of it down, naming each object.
type ReleaseBasis struct {
	Site     string             `json:"site"`
	Basis    string             `json:"basis"`
	Evidence []fencing.Evidence `json:"evidence,omitempty"`
}

// Failed reports whether any VM failed or the move stopped early.
func (r *Report) Failed() bool { return len(r.Failures) > 0 || r.Stopped != "" }

// Executor runs plans.
type Executor struct {
	cluster Cluster
	cfg     Config
	emit    func(Event)

	mu sync.Mutex
	// haltReason, once set, stops the move: no further VM starts (the release guard).
	haltReason string
	done       int
	total      int
	inFlight   map[string]*plan.Step
	peak       int
	starts     flowcontrol.RateLimiter
	// writeSlots holds a token per write in flight.
	writeSlots chan struct{}
	// freed is closed (and replaced) whenever a start leaves the throttle, so that the
	// next waits for no event and no poll to take its slot.
	freed chan struct{}
}

// New returns an executor. emit receives progress events from any goroutine, serialised.
func New(c Cluster, cfg Config, emit func(Event)) *Executor {
	if cfg.MaxInFlight < 1 {
		cfg.MaxInFlight = 1
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Backoff.Steps == 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.UnreachableRetry == 0 {
		cfg.UnreachableRetry = time.Second
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 10 * time.Minute
	}
	if cfg.MaxWrites < 1 {
		cfg.MaxWrites = DefaultMaxWrites
	}
	e := &Executor{cluster: c, cfg: cfg, inFlight: map[string]*plan.Step{}, writeSlots: make(chan struct{}, cfg.MaxWrites), freed: make(chan struct{})}
	var mu sync.Mutex
	e.emit = func(ev Event) {
		if emit == nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		emit(ev)
	}
	if cfg.Rate > 0 {
		e.starts = flowcontrol.NewTokenBucketRateLimiter(float32(cfg.Rate/60), 1)
	}
	return e
}

type result struct {
	step *plan.Step
	err  error
	// interrupted: stopped at a safe point before the VM was Ready; a rerun finishes it.
	interrupted bool
	// gone: the VM was deleted during the move.
	gone    bool
	readyAt time.Time
}

// Run carries out the plan. stop, when cancelled, stops starting new work and lets
// steps in flight reach a safe point; ctx, when cancelled, aborts at once. Either way
// the journal lets a rerun finish the move.
func (e *Executor) Run(ctx, stop context.Context, p *plan.Plan) (*Report, error) {
	start := e.cfg.Now()
	rep := &Report{MoveID: e.cfg.MoveID, To: p.Request.To, Failures: []Failure{}}
	tiers := groupByTier(p.Steps)
	for _, t := range tiers {
		e.total += len(t.steps)
	}

	if len(e.cfg.DeadNodes) > 0 && e.cfg.Fence == "out-of-service" && len(p.NeedsFailover()) > 0 {
		if err := e.fenceOutOfService(ctx, p); err != nil {
			return rep, err
		}
	}

	var pending []chan tierOutcome
	for _, t := range tiers {
		if stop.Err() != nil || ctx.Err() != nil {
			rep.Tiers = append(rep.Tiers, TierReport{Tier: t.tier, Pending: len(t.steps), RTO: "-"})
			continue
		}
		ch := make(chan tierOutcome, 1)
		go func(t tierSteps) { ch <- e.runTier(ctx, stop, t) }(t)
		if !e.cfg.NoBarrier {
			out := <-ch
			rep.add(out)
			if out.stopReason != "" {
				rep.Stopped = out.stopReason
				e.emit(Event{Time: e.cfg.Now(), Kind: Stopping, Tier: t.tier, Message: out.stopReason})
				stopRest(rep, tiers, t.tier)
				break
			}
			continue
		}
		pending = append(pending, ch)
	}
	for _, ch := range pending {
		out := <-ch
		rep.add(out)
		if out.stopReason != "" && rep.Stopped == "" {
			rep.Stopped = out.stopReason
		}
	}
	sort.Slice(rep.Tiers, func(i, j int) bool { return selector.TierLess(rep.Tiers[i].Tier, rep.Tiers[j].Tier) })
	rep.Interrupted = stop.Err() != nil || ctx.Err() != nil
	rep.Elapsed = e.cfg.Now().Sub(start).Round(time.Second).String()
	rep.PeakInFlight = e.peak
	return rep, nil
}

func stopRest(rep *Report, tiers []tierSteps, after int) {
	for _, t := range tiers {
		if selector.TierLess(after, t.tier) {
			rep.Tiers = append(rep.Tiers, TierReport{Tier: t.tier, Pending: len(t.steps), RTO: "-"})
		}
	}
}

type tierSteps struct {
	tier  int
	steps []*plan.Step
}

type tierOutcome struct {
	report     TierReport
	failures   []Failure
	stopReason string
}

func (r *Report) add(o tierOutcome) {
	r.Tiers = append(r.Tiers, o.report)
	r.Failures = append(r.Failures, o.failures...)
}

func groupByTier(steps []plan.Step) []tierSteps {
	var out []tierSteps
	for i := range steps {
		st := &steps[i]
		if len(out) == 0 || out[len(out)-1].tier != st.Tier {
			out = append(out, tierSteps{tier: st.Tier})
		}
		out[len(out)-1].steps = append(out[len(out)-1].steps, st)
	}
	return out
}

// sem is the cluster-wide in-flight limit, shared by overlapping tiers.
func (e *Executor) admit(ctx context.Context, st *plan.Step) error {
	for {
		e.mu.Lock()
		freed := e.freed
		ok := len(e.inFlight) < e.cfg.MaxInFlight && e.nodeSlotsLocked() > 0 &&
			(st.Action != plan.ActionMigrate || e.cfg.MaxMigrations < 1 || e.migrationsLocked() < e.cfg.MaxMigrations)
		if ok {
			e.inFlight[st.Key()] = st
			e.peak = max(e.peak, len(e.inFlight))
		}
		e.mu.Unlock()
		if ok {
			return nil
		}
		// A placement (per-node slots) shows in the cluster; a slot freed by a finished
		// step shows in freed. The poll is a backstop only.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-freed:
		case <-e.cluster.Changed():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (e *Executor) migrationsLocked() int {
	n := 0
	for _, st := range e.inFlight {
		if st.Action == plan.ActionMigrate {
			n++
		}
	}
	return n
}

// nodeSlotsLocked counts the starts the per-node limit still allows. A start whose
// instance is not placed yet could land on any target node, so it takes a slot from
// the pool without knowing which node it will be.
func (e *Executor) nodeSlotsLocked() int {
	if e.cfg.MaxPerNode < 1 || len(e.cfg.TargetNodes) == 0 {
		return 1
	}
	placed := map[string]int{}
	unplaced := 0
	for _, st := range e.inFlight {
		inst := e.cluster.Instance(st.Namespace, st.Name)
		// A new instance already scheduled on the target counts against its node; a
		// migration's target node is known only when it completes.
		if inst != nil && inst.UID != st.VMIUID && inst.Site == st.To && inst.NodeName != "" {
			placed[inst.NodeName]++
		} else {
			unplaced++
		}
	}
	slots := 0
	for _, n := range e.cfg.TargetNodes {
		if free := e.cfg.MaxPerNode - placed[n]; free > 0 {
			slots += free
		}
	}
	return slots - unplaced
}

func (e *Executor) freeSlot(st *plan.Step) {
	e.mu.Lock()
	delete(e.inFlight, st.Key())
	close(e.freed)
	e.freed = make(chan struct{})
	e.mu.Unlock()
}

func (e *Executor) runTier(ctx, stop context.Context, t tierSteps) tierOutcome {
	start := e.cfg.Now()
	e.emit(Event{Time: start, Kind: TierStarted, Tier: t.tier, Message: fmt.Sprintf("%d VM(s)", len(t.steps)), Done: e.doneCount(), Total: e.total})
	out := tierOutcome{report: TierReport{Tier: t.tier, Started: start}}
	results := make(chan result, len(t.steps))
	launched := 0
	var lastReady time.Time
	failed := 0

	collect := func(r result) {
		switch {
		case r.interrupted:
			out.report.Pending++
		case r.err != nil:
			failed++
			out.report.Failed++
			out.failures = append(out.failures, Failure{VM: r.step.Key(), Error: r.err.Error()})
		case r.step.Action == plan.ActionSkip, r.gone:
			out.report.Skipped++
		default:
			out.report.Moved++
			if r.readyAt.After(lastReady) {
				lastReady = r.readyAt
			}
		}
	}

	for _, st := range t.steps {
		// Drain finished steps so failures stop the tier early.
	drain:
		for {
			select {
			case r := <-results:
				launched--
				collect(r)
			default:
				break drain
			}
		}
		if e.cfg.MaxFailures >= 0 && failed > e.cfg.MaxFailures {
			out.stopReason = e.tooManyFailures(t.tier, failed)
			out.report.Pending++
			continue
		}
		if reason := e.halted(); reason != "" {
			out.stopReason = reason
			out.report.Pending++
			continue
		}
		if stop.Err() != nil || ctx.Err() != nil {
			out.report.Pending++
			continue
		}
		if st.Action == plan.ActionSkip {
			r := result{step: st}
			if st.JournalMoveID != "" {
				// An interrupted move's step took effect; its journal says so now.
				if err := e.mark(ctx, st, journal.PhaseDone); err != nil {
					r.err = fmt.Errorf("write journal: %w", err)
				}
			}
			collect(r)
			e.finish(Event{Kind: StepDone, Tier: st.Tier, VM: st.Key(), Action: st.Action, Message: st.Reason})
			continue
		}
		if st.Starts() {
			if e.starts != nil {
				if err := e.starts.Wait(stop); err != nil {
					out.report.Pending++
					continue
				}
			}
			if err := e.admit(stop, st); err != nil {
				out.report.Pending++
				continue
			}
		}
		launched++
		go func(st *plan.Step) {
			r := e.runStep(ctx, stop, st)
			if st.Starts() {
				e.freeSlot(st)
			}
			results <- r
		}(st)
	}
	for ; launched > 0; launched-- {
		collect(<-results)
	}
	if out.stopReason == "" && e.cfg.MaxFailures >= 0 && failed > e.cfg.MaxFailures {
		out.stopReason = e.tooManyFailures(t.tier, failed)
	}
	// The guard's reason says more than the failure count it caused.
	if reason := e.halted(); reason != "" {
		out.stopReason = reason
	}
	out.report.Finished = e.cfg.Now()
	out.report.Elapsed = out.report.Finished.Sub(start)
	out.report.RTO = "-"
	if !lastReady.IsZero() {
		out.report.RTO = lastReady.Sub(start).Round(time.Second).String()
		out.report.RTOSeconds = lastReady.Sub(start).Seconds()
	}
	e.emit(Event{Time: e.cfg.Now(), Kind: TierFinished, Tier: t.tier,
		Message: fmt.Sprintf("moved %d, failed %d, skipped %d, not started %d, RTO %s", out.report.Moved, out.report.Failed, out.report.Skipped, out.report.Pending, out.report.RTO),
		Done:    e.doneCount(), Total: e.total})
	return out
}

// halt stops the move with a reason; the first reason wins.
func (e *Executor) halt(reason string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.haltReason == "" {
		e.haltReason = reason
	}
}

func (e *Executor) halted() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.haltReason
}

// fenceOutOfService taints the dead nodes, which releases every VM on them at once, so
// the templates of every failover step are patched first: KubeVirt then recreates each
// VM on the target, never from a template that still selects the dead site.
func (e *Executor) fenceOutOfService(ctx context.Context, p *plan.Plan) error {
	sites := map[string]bool{}
	for i := range p.Steps {
		st := &p.Steps[i]
		if st.Action != plan.ActionFailover {
			continue
		}
		sites[st.From] = true
		if err := e.checkRelease(ctx, st, st.Node); err != nil {
			return err
		}
		// The journal says "releasing" ahead of the taint, which releases this VM whatever
		// its tier: a stop before its tier must leave a rerun that knows.
		if err := e.retry(ctx, func() error { return e.cluster.PatchSite(ctx, *st, e.journal(st, journal.PhaseReleasing)) }); err != nil {
			return fmt.Errorf("patch nodeSelector of %s before fencing: %w", st.Key(), err)
		}
	}
	for site := range sites {
		if err := e.retry(ctx, func() error { return e.cluster.FenceNodes(ctx, site, e.cfg.DeadNodes) }); err != nil {
			e.haltIfSiteAlive(err)
			return fmt.Errorf("fence nodes %s: %w", strings.Join(e.cfg.DeadNodes, ", "), err)
		}
	}
	return nil
}

func (e *Executor) tooManyFailures(tier, failed int) string {
	return fmt.Sprintf("tier %s: %d VM(s) failed, more than --max-failures=%d", selector.TierName(tier), failed, e.cfg.MaxFailures)
}

func (e *Executor) doneCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.done
}

func (e *Executor) finish(ev Event) {
	e.mu.Lock()
	e.done++
	ev.Done, ev.Total, ev.InFlight = e.done, e.total, len(e.inFlight)
	e.mu.Unlock()
	ev.Time = e.cfg.Now()
	e.emit(ev)
}

func (e *Executor) phase(st *plan.Step, phase, msg string) {
	e.mu.Lock()
	ev := Event{Time: e.cfg.Now(), Kind: StepPhase, Tier: st.Tier, VM: st.Key(), Action: st.Action, Phase: phase, Message: msg, Done: e.done, Total: e.total, InFlight: len(e.inFlight)}
	e.mu.Unlock()
	e.emit(ev)
}

// retriable are the API errors worth another try: conflicts, throttling, server errors
// and timeouts.
func retriable(err error) bool {
	return apierrors.IsConflict(err) || apierrors.IsTooManyRequests(err) || apierrors.IsInternalError(err) ||
		apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsServiceUnavailable(err) ||
		apierrors.IsUnexpectedServerError(err) || isStatus5xx(err)
}

func isStatus5xx(err error) bool {
	var s apierrors.APIStatus
	if errors.As(err, &s) {
		return s.Status().Code >= 500
	}
	return false
}

// retry runs a write with backoff for transient API errors. While the API server cannot
// be reached at all it keeps trying, for as long as ctx lives: the lock's renewal fails
// too and cancels ctx after its deadline, so the move stops at a safe point (exit 4, and
// a rerun finishes it) instead of reporting VMs failed that were never refused.
func (e *Executor) retry(ctx context.Context, fn func() error) error {
	// Each try holds a write slot; the backoff between tries does not.
	try := func() error {
		select {
		case e.writeSlots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		defer func() { <-e.writeSlots }()
		if e.cfg.LockValid != nil {
			if err := e.cfg.LockValid(); err != nil {
				return fmt.Errorf("%w: %v", ErrLockInvalid, err)
			}
		}
		return fn()
	}
	for {
		err := retry.OnError(e.cfg.Backoff, func(err error) bool {
			return ctx.Err() == nil && !errors.Is(err, ErrLockInvalid) && (retriable(err) || unreachable(err) || timedOut(err))
		}, try)
		if timedOut(err) && ctx.Err() == nil {
			return fmt.Errorf("%w: no answer in time, %d tries (raise --request-timeout, or look for a slow admission webhook)", err, e.cfg.Backoff.Steps)
		}
		if err == nil || !unreachable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(e.cfg.UnreachableRetry):
		}
	}
}

// unreachable reports that the API server could not be reached at all: a refused or
// reset connection. Those are waited out while the lock holds (a control-plane restart).
func unreachable(err error) bool {
	if err == nil {
		return false
	}
	return utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err) || utilnet.IsProbableEOF(err)
}

// timedOut reports a request that got no answer in time (--request-timeout, a slow
// webhook): worth the backoff's tries, but not waiting for as long as the lock holds,
// since the lock's renewals going through show the server is there.
func timedOut(err error) bool {
	var nerr net.Error
	return err != nil && errors.As(err, &nerr) && nerr.Timeout()
}
