package record

import (
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
)

// RunInfo is what the command knows about a run that the plan does not.
type RunInfo struct {
	MoveID, Actor, Command, Version string
	// Kind is failback or drill when the command says so; otherwise the plan decides
	// between relocate and failover.
	Kind  MoveKind
	Drill *Drill
	// Objective gives a tier's RTO objective (tier 0: untiered), if the command was
	// given one.
	Objective func(tier int) (time.Duration, bool)
	// Confirmed names the sites the operator confirmed down; Fence is how VMs are
	// released from them.
	Confirmed []string
	Fence     string
}

// Recorder builds the record of a run from the executor's progress events. It is safe
// for the executor's serialised emit and a writer's Snapshot at once.
type Recorder struct {
	mu     sync.Mutex
	rec    *Record
	vms    map[string]int
	tiers  map[int]int
	starts map[string]bool
	// tierDone is signalled when a tier finishes: the record is worth writing then.
	tierDone chan struct{}
	info     RunInfo
}

// NewRecorder starts a run. prev is the record this run resumes (nil for a new move),
// whose id it keeps.
func NewRecorder(prev *Record, info RunInfo, p *plan.Plan, now time.Time) *Recorder {
	r := &Recorder{vms: map[string]int{}, tiers: map[int]int{}, starts: map[string]bool{}, tierDone: make(chan struct{}, 1)}
	kind := info.Kind
	if kind == "" {
		kind = KindRelocate
		if len(p.NeedsFailover()) > 0 {
			kind = KindFailover
		}
	}
	if prev != nil {
		c := *prev
		c.Runs = append([]Run(nil), prev.Runs...)
		c.Integrity = nil
		// A relocate that a dead site turned into a failover on the rerun is a failover.
		if kind == KindFailover {
			c.MoveKind = kind
		}
		c.From = union(c.From, p.SourceSites)
		r.rec = &c
	} else {
		r.rec = &Record{APIVersion: APIVersion, Kind: Kind, ID: info.MoveID, MoveKind: kind, Drill: info.Drill,
			Selection: p.Selection, From: union(nil, p.SourceSites), To: p.Request.To}
	}
	r.info = info
	r.rec.Runs = append(r.rec.Runs, Run{MoveID: info.MoveID, Actor: info.Actor, Command: info.Command, Version: info.Version, Outcome: OutcomeRunning})
	r.plan(p, now)
	return r
}

// plan sets the run's VMs, tiers and evidence from p, decided at now. No event has
// reached the run yet.
func (r *Recorder) plan(p *plan.Plan, now time.Time) {
	run := r.run()
	fences := run.Evidence.StorageFences
	run.Decided, run.Evidence, run.Tiers, run.VMs = *stamp(now), evidence(r.info, p), []Tier{}, make([]VM, 0, len(p.Steps))
	run.Evidence.StorageFences = fences
	r.vms, r.tiers, r.starts = map[string]int{}, map[int]int{}, map[string]bool{}
	wave := waves(p)
	for _, st := range p.Steps {
		r.vms[st.Key()] = len(run.VMs)
		r.starts[st.Key()] = st.Starts() || st.Action == plan.ActionWait
		run.VMs = append(run.VMs, VM{VM: st.Key(), Tier: st.Tier, From: st.From, Action: st.Action, Reason: st.Reason, Wave: wave[st.Key()], Result: ResultPending})
		if _, ok := r.tiers[st.Tier]; !ok {
			r.tiers[st.Tier] = len(run.Tiers)
			t := Tier{Tier: st.Tier}
			if d, ok := objective(r.info.Objective, st.Tier); ok {
				t.ObjectiveSeconds = d.Seconds()
			}
			run.Tiers = append(run.Tiers, t)
		}
	}
}

// Replan replaces the run's plan with p, decided at now: the plan built again after
// --fence network's wait, before any VM was touched.
func (r *Recorder) Replan(p *plan.Plan, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.plan(p, now)
}

// StorageFence notes what the run did to a storage fence, before any VM was touched.
func (r *Recorder) StorageFence(note string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	run := r.run()
	run.Evidence.StorageFences = append(run.Evidence.StorageFences, note)
}

func objective(o func(int) (time.Duration, bool), tier int) (time.Duration, bool) {
	if o == nil {
		return 0, false
	}
	d, ok := o(tier)
	return d, ok && d > 0
}

func evidence(info RunInfo, p *plan.Plan) Evidence {
	ev := Evidence{Confirmed: append([]string(nil), info.Confirmed...)}
	sites := append(p.NeedsFailover(), p.GuardedSites()...)
	for _, site := range sites {
		if p.ProvenDown(site) && !contains(info.Confirmed, site) {
			ev.Proven = append(ev.Proven, site)
		}
		if f, ok := p.Fencing[site]; ok {
			if ev.Fencing == nil {
				ev.Fencing = map[string]fencing.Site{}
			}
			ev.Fencing[site] = f
		}
	}
	if len(p.NeedsFailover()) > 0 {
		ev.Fence = info.Fence
	}
	return ev
}

// waves numbers each VM's throttle batch within its tier, as the plan formed them.
func waves(p *plan.Plan) map[string]int {
	out := map[string]int{}
	n := map[int]int{}
	for _, b := range p.Batches {
		n[b.Tier]++
		for _, vm := range b.VMs {
			out[vm] = n[b.Tier]
		}
	}
	return out
}

func union(a, b []string) []string {
	out := append([]string(nil), a...)
	for _, s := range b {
		if !contains(out, s) {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	if out == nil {
		out = []string{}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TierDone is signalled (without blocking the move) each time a tier finishes.
func (r *Recorder) TierDone() <-chan struct{} { return r.tierDone }

// ID is the record's id: the first run's move id.
func (r *Recorder) ID() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rec.ID
}

func (r *Recorder) run() *Run { return &r.rec.Runs[len(r.rec.Runs)-1] }

// Event takes one progress event.
func (r *Recorder) Event(e executor.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	run := r.run()
	at := stamp(e.Time)
	switch e.Kind {
	case executor.TierStarted:
		if i, ok := r.tiers[e.Tier]; ok {
			run.Tiers[i].Started = at
		}
		return
	case executor.TierFinished:
		if i, ok := r.tiers[e.Tier]; ok {
			run.Tiers[i].Finished = at
			r.countTier(&run.Tiers[i])
		}
		select {
		case r.tierDone <- struct{}{}:
		default:
		}
		return
	}
	i, ok := r.vms[e.VM]
	if !ok {
		return
	}
	v := &run.VMs[i]
	set := func(p **time.Time) {
		if *p == nil {
			*p = at
		}
	}
	switch e.Kind {
	case executor.StepStarted:
		set(&v.Started)
		v.Result = ResultInFlight
	case executor.StepPhase:
		switch e.Phase {
		case "patched":
			set(&v.Patched)
		case "migrating":
			set(&v.MigrationCreated)
		case "migrated":
			set(&v.Migrated)
		case "releasing":
			set(&v.Released)
		case "starting":
			set(&v.StartRequested)
		case "running":
			set(&v.Running)
		case "restarting":
			if e.Message != "" {
				v.Note = e.Message
			}
		case "interrupted":
			v.Result = ResultInterrupted
		}
	case executor.StepDone:
		set(&v.Finished)
		switch {
		case e.Action == plan.ActionSkip && v.Action != plan.ActionSkip:
			// Deleted during the move.
			v.Result, v.Note = ResultSkipped, e.Message
		case e.Action == plan.ActionSkip:
			v.Result = ResultSkipped
		default:
			v.Result = ResultDone
			if r.starts[e.VM] {
				set(&v.Ready)
			}
		}
	case executor.StepFailed:
		set(&v.Finished)
		v.Result, v.Error = ResultFailed, e.Message
	}
}

// countTier counts a tier from its VMs, until the executor's report says it exactly.
func (r *Recorder) countTier(t *Tier) {
	t.Moved, t.Failed, t.Skipped, t.NotStarted = 0, 0, 0, 0
	var last *time.Time
	for _, v := range r.run().VMs {
		if v.Tier != t.Tier {
			continue
		}
		switch v.Result {
		case ResultDone:
			t.Moved++
		case ResultFailed:
			t.Failed++
		case ResultSkipped:
			t.Skipped++
		default:
			t.NotStarted++
		}
		if v.Ready != nil && (last == nil || v.Ready.After(*last)) {
			last = v.Ready
		}
	}
	if last != nil && t.Started != nil {
		t.RTOSeconds = last.Sub(*t.Started).Seconds()
	}
}

// Finish closes the run with the executor's report and the move's error, either of
// which may be nil.
func (r *Recorder) Finish(rep *executor.Report, runErr error, now time.Time, lockLost bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	run := r.run()
	run.Ended = stamp(now)
	for i := range run.VMs {
		v := &run.VMs[i]
		switch v.Result {
		case ResultInFlight:
			v.Result = ResultInterrupted
		case ResultPending:
			v.Result = ResultNotStarted
		}
	}
	if rep != nil {
		for _, tr := range rep.Tiers {
			i, ok := r.tiers[tr.Tier]
			if !ok {
				continue
			}
			t := &run.Tiers[i]
			t.Moved, t.Failed, t.Skipped, t.NotStarted, t.RTOSeconds = tr.Moved, tr.Failed, tr.Skipped, tr.Pending, tr.RTOSeconds
			if !tr.Started.IsZero() {
				t.Started = stamp(tr.Started)
			}
			if !tr.Finished.IsZero() {
				t.Finished = stamp(tr.Finished)
			}
		}
		run.Stopped = rep.Stopped
	}
	sort.SliceStable(run.Tiers, func(i, j int) bool { return selector.TierLess(run.Tiers[i].Tier, run.Tiers[j].Tier) })
	for i, t := range run.Tiers {
		r.tiers[t.Tier] = i
	}
	switch {
	case lockLost || rep != nil && rep.Interrupted:
		run.Outcome = OutcomeInterrupted
	case runErr != nil || rep == nil || rep.Failed():
		run.Outcome = OutcomeFailed
	default:
		run.Outcome = OutcomeSucceeded
	}
	if run.Stopped == "" && runErr != nil {
		run.Stopped = firstLine(runErr)
	}
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// Snapshot copies the record as it stands, for a writer.
func (r *Recorder) Snapshot() *Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := *r.rec
	c.Runs = append([]Run(nil), r.rec.Runs...)
	last := &c.Runs[len(c.Runs)-1]
	// Only the last run changes; its times are replaced, never written through.
	last.VMs = append([]VM(nil), last.VMs...)
	last.Tiers = append([]Tier(nil), last.Tiers...)
	return &c
}

// ErrNoRecord is returned when no record matches.
var ErrNoRecord = errors.New("no move record")
