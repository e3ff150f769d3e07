// Package record keeps the audit record of every move in the cluster: a versioned
// MoveRecord document (who, what command, the plan, the proof a failover rested on, and
// when each tier and each VM reached each step) that outlives the operator's terminal.
// A Recorder builds it from the executor's progress events; a Store keeps it as a
// ConfigMap in the lock namespace, with the SHA-256 of its canonical JSON; the
// renderers turn it into Markdown, JSON or a self-contained HTML timeline.
package record

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"
	"time"

	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
)

const (
	APIVersion = "sitefail.io/v1alpha1"
	Kind       = "MoveRecord"
)

// MoveKind says what a move was for.
type MoveKind string

const (
	KindRelocate MoveKind = "relocate"
	KindFailover MoveKind = "failover"
	KindFailback MoveKind = "failback"
	KindDrill    MoveKind = "drill"
)

// Outcome is how a run, and so the record, ended.
type Outcome string

const (
	// OutcomeRunning: the run has not written its end. Read later, its process died (a
	// SIGKILL, a lost laptop): a rerun of the same command completes the record.
	OutcomeRunning     Outcome = "running"
	OutcomeSucceeded   Outcome = "succeeded"
	OutcomeFailed      Outcome = "failed"
	OutcomeInterrupted Outcome = "interrupted"
)

// Unfinished reports whether a move with this outcome still has work a rerun finishes.
func (o Outcome) Unfinished() bool { return o == OutcomeRunning || o == OutcomeInterrupted }

// Record is one move from its first run to its last. A rerun that resumes an
// interrupted or failed move adds a Run to the same record, so the audit trail of an
// incident is one document however many times the operator had to run the command.
type Record struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	ID         string   `json:"id"`
	MoveKind   MoveKind `json:"moveKind"`
	// Drill is set for a drill's leg.
	Drill     *Drill   `json:"drill,omitempty"`
	Selection string   `json:"selection"`
	From      []string `json:"from"`
	To        string   `json:"to"`
	Runs      []Run    `json:"runs"`
	// Integrity is filled in when the record is shown, never when it is hashed.
	Integrity *Integrity `json:"integrity,omitempty"`
}

// Drill ties a leg to its drill: leg 2 names the record of leg 1.
type Drill struct {
	Leg   int    `json:"leg"`
	First string `json:"first,omitempty"`
}

// Integrity is the hash the record was stored with and, after a verify, its verdict.
type Integrity struct {
	SHA256   string `json:"sha256"`
	Verified *bool  `json:"verified,omitempty"`
	Detail   string `json:"detail,omitempty"`
}

// Run is one invocation of the command.
type Run struct {
	MoveID  string `json:"moveID"`
	Actor   string `json:"actor"`
	Command string `json:"command"`
	Version string `json:"version"`
	// Decided is when the plan this run executed was built, under the lock: every VM's
	// action and reason below were decided then.
	Decided time.Time  `json:"decided"`
	Ended   *time.Time `json:"ended,omitempty"`
	Outcome Outcome    `json:"outcome"`
	Stopped string     `json:"stoppedBecause,omitempty"`
	// Evidence is what a failover rested on, as the guard saw it.
	Evidence Evidence `json:"evidence"`
	Tiers    []Tier   `json:"tiers"`
	VMs      []VM     `json:"vms"`
}

// Evidence is the confirmation and fencing proof of the sites a run released VMs from.
type Evidence struct {
	// Confirmed names the sites the operator confirmed down (flag or prompt).
	Confirmed []string `json:"confirmed,omitempty"`
	// Proven names the sites whose fencing evidence stood in for a confirmation.
	Proven  []string                `json:"proven,omitempty"`
	Fencing map[string]fencing.Site `json:"fencing,omitempty"`
	// Fence is how VMs were released: pod, out-of-service or network.
	Fence string `json:"fence,omitempty"`
	// StorageFences says what --fence network did to storage fences, in order: each
	// NetworkFence made or lifted, with its uid and the driver's answer, or why not.
	StorageFences []string `json:"storageFences,omitempty"`
}

// Tier is one tier of one run.
type Tier struct {
	Tier     int        `json:"tier"`
	Started  *time.Time `json:"started,omitempty"`
	Finished *time.Time `json:"finished,omitempty"`
	// RTOSeconds runs from the tier's start until its last VM was Ready on the target.
	RTOSeconds       float64 `json:"rtoSeconds"`
	ObjectiveSeconds float64 `json:"objectiveSeconds,omitempty"`
	Moved            int     `json:"moved"`
	Failed           int     `json:"failed"`
	Skipped          int     `json:"skipped"`
	NotStarted       int     `json:"notStarted"`
}

// VM results.
const (
	ResultPending     = "pending"
	ResultInFlight    = "in-flight"
	ResultDone        = "done"
	ResultSkipped     = "skipped"
	ResultFailed      = "failed"
	ResultInterrupted = "interrupted"
	ResultNotStarted  = "not-started"
)

// VM is one VM's step in one run, with the instant it reached each point. A point the
// step never reached (a stopped VM is never Ready) stays empty.
type VM struct {
	VM     string      `json:"vm"`
	Tier   int         `json:"tier"`
	From   string      `json:"from,omitempty"`
	Action plan.Action `json:"action"`
	Reason string      `json:"reason"`
	// Wave is the throttle batch of the plan the VM starts in (0: starts nothing).
	Wave             int        `json:"wave,omitempty"`
	Started          *time.Time `json:"started,omitempty"`
	Patched          *time.Time `json:"patched,omitempty"`
	MigrationCreated *time.Time `json:"migrationCreated,omitempty"`
	Migrated         *time.Time `json:"migrated,omitempty"`
	Released         *time.Time `json:"released,omitempty"`
	StartRequested   *time.Time `json:"startRequested,omitempty"`
	Running          *time.Time `json:"running,omitempty"`
	Ready            *time.Time `json:"ready,omitempty"`
	Finished         *time.Time `json:"finished,omitempty"`
	Result           string     `json:"result"`
	// Error is the failure as the executor reported it, KubeVirt's reason included.
	Error string `json:"error,omitempty"`
	// Note keeps what changed the step's course without failing it (a failed migration
	// that fell back to a restart).
	Note string `json:"note,omitempty"`
}

// Canonical is the record's canonical JSON: encoding/json of the document without its
// Integrity, which orders struct fields by declaration and map keys by value, and whose
// times the recorder keeps in UTC at millisecond precision.
func Canonical(r *Record) ([]byte, error) {
	c := *r
	c.Integrity = nil
	return json.Marshal(&c)
}

// Hash is the hex SHA-256 of data.
func Hash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Outcome is the last run's.
func (r *Record) Outcome() Outcome {
	if len(r.Runs) == 0 {
		return OutcomeRunning
	}
	return r.Runs[len(r.Runs)-1].Outcome
}

// Started is when the first run decided its plan.
func (r *Record) Started() time.Time {
	if len(r.Runs) == 0 {
		return time.Time{}
	}
	return r.Runs[0].Decided
}

// Ended is when the last run ended, if it did.
func (r *Record) Ended() *time.Time {
	if len(r.Runs) == 0 {
		return nil
	}
	return r.Runs[len(r.Runs)-1].Ended
}

// RunIDs lists the move ids of every run: a VM's journal names the run that last
// touched it, which is how a rerun finds the record it resumes.
func (r *Record) RunIDs() []string {
	ids := make([]string, 0, len(r.Runs))
	for _, run := range r.Runs {
		ids = append(ids, run.MoveID)
	}
	return ids
}

// Totals counts the VMs of the whole record: a VM moved by any run counts as moved,
// even when a later run skipped it as already there; a VM whose last attempt failed
// counts as failed.
type Totals struct {
	Moved, Failed, Skipped, NotStarted int
}

// Totals sums the record's VMs across its runs.
func (r *Record) Totals() Totals {
	type state struct{ moved, failed, skipped, started bool }
	seen := map[string]*state{}
	var order []string
	for _, run := range r.Runs {
		for _, v := range run.VMs {
			s := seen[v.VM]
			if s == nil {
				s = &state{}
				seen[v.VM] = s
				order = append(order, v.VM)
			}
			switch v.Result {
			case ResultDone:
				if v.Action == plan.ActionSkip {
					s.skipped = true
				} else {
					s.moved = true
				}
				s.failed, s.started = false, true
			case ResultSkipped:
				s.skipped, s.failed, s.started = true, false, true
			case ResultFailed:
				s.failed, s.started = true, true
			case ResultInterrupted, ResultInFlight, ResultPending:
				s.started = s.started || v.Started != nil
			}
		}
	}
	var t Totals
	for _, k := range order {
		s := seen[k]
		switch {
		case s.failed:
			t.Failed++
		case s.moved:
			t.Moved++
		case s.skipped:
			t.Skipped++
		default:
			t.NotStarted++
		}
	}
	return t
}

// TierTotal is one tier across every run: from its first start in any run until its
// last VM was Ready in any run. A crash between runs counts: it is part of the time the
// services were down.
type TierTotal struct {
	Tier             int        `json:"tier"`
	Started          *time.Time `json:"started,omitempty"`
	LastReady        *time.Time `json:"lastReady,omitempty"`
	RTOSeconds       float64    `json:"rtoSeconds"`
	ObjectiveSeconds float64    `json:"objectiveSeconds,omitempty"`
	// Met is nil without an objective.
	Met *bool `json:"met,omitempty"`
}

// TierTotals sums each tier across the runs, in tier order.
func (r *Record) TierTotals() []TierTotal {
	byTier := map[int]*TierTotal{}
	get := func(t int) *TierTotal {
		if byTier[t] == nil {
			byTier[t] = &TierTotal{Tier: t}
		}
		return byTier[t]
	}
	for _, run := range r.Runs {
		for _, t := range run.Tiers {
			tt := get(t.Tier)
			if t.Started != nil && (tt.Started == nil || t.Started.Before(*tt.Started)) {
				tt.Started = t.Started
			}
			if t.ObjectiveSeconds > 0 {
				tt.ObjectiveSeconds = t.ObjectiveSeconds
			}
		}
		for _, v := range run.VMs {
			tt := get(v.Tier)
			if v.Ready != nil && v.Action != plan.ActionSkip && (tt.LastReady == nil || v.Ready.After(*tt.LastReady)) {
				tt.LastReady = v.Ready
			}
		}
	}
	out := make([]TierTotal, 0, len(byTier))
	for _, tt := range byTier {
		if tt.Started != nil && tt.LastReady != nil {
			tt.RTOSeconds = tt.LastReady.Sub(*tt.Started).Seconds()
		}
		if tt.ObjectiveSeconds > 0 {
			met := tt.LastReady != nil && tt.RTOSeconds <= tt.ObjectiveSeconds
			tt.Met = &met
		}
		out = append(out, *tt)
	}
	sort.Slice(out, func(i, j int) bool { return selector.TierLess(out[i].Tier, out[j].Tier) })
	return out
}

// Summary is what `history` lists of a record; the store keeps it beside the document so
// that listing reads no record in full.
type Summary struct {
	ID         string     `json:"id"`
	Kind       MoveKind   `json:"kind"`
	Leg        int        `json:"leg,omitempty"`
	Actor      string     `json:"actor"`
	Started    time.Time  `json:"started"`
	Ended      *time.Time `json:"ended,omitempty"`
	From       []string   `json:"from"`
	To         string     `json:"to"`
	Selection  string     `json:"selection"`
	Runs       int        `json:"runs"`
	Moved      int        `json:"moved"`
	Failed     int        `json:"failed"`
	Skipped    int        `json:"skipped"`
	NotStarted int        `json:"notStarted"`
	// RTOSeconds is the slowest tier's, ObjectiveSeconds that tier's objective; Met is
	// nil when no tier had an objective, false when any tier missed its own.
	RTOSeconds       float64 `json:"rtoSeconds"`
	ObjectiveSeconds float64 `json:"objectiveSeconds,omitempty"`
	Met              *bool   `json:"objectiveMet,omitempty"`
	Outcome          Outcome `json:"outcome"`
}

// Summarize reduces the record to its history line.
func (r *Record) Summarize() Summary {
	t := r.Totals()
	s := Summary{ID: r.ID, Kind: r.MoveKind, Started: r.Started(), Ended: r.Ended(), From: r.From, To: r.To, Selection: r.Selection,
		Runs: len(r.Runs), Moved: t.Moved, Failed: t.Failed, Skipped: t.Skipped, NotStarted: t.NotStarted, Outcome: r.Outcome()}
	if r.Drill != nil {
		s.Leg = r.Drill.Leg
	}
	if len(r.Runs) > 0 {
		s.Actor = r.Runs[len(r.Runs)-1].Actor
	}
	for _, tt := range r.TierTotals() {
		if tt.RTOSeconds >= s.RTOSeconds {
			s.RTOSeconds, s.ObjectiveSeconds = tt.RTOSeconds, tt.ObjectiveSeconds
		}
		if tt.Met != nil {
			met := *tt.Met && (s.Met == nil || *s.Met)
			s.Met = &met
		}
	}
	return s
}

// stamp is how the record keeps an instant: UTC, to the millisecond, without Go's
// monotonic reading, so that the same record always encodes to the same bytes.
func stamp(t time.Time) *time.Time {
	u := t.UTC().Truncate(time.Millisecond)
	return &u
}
