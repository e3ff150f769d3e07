// Package journal names the annotations a move writes on each VM before each step, so
// that a move killed at any instant is finished by running it again: the planner reads
// them to resume unfinished steps, the executor writes them, failback reads where a VM
// came from.
package journal

import "strconv"

const (
	MoveID  = "sitefail.io/move-id"
	From    = "sitefail.io/move-from"
	To      = "sitefail.io/move-to"
	Phase   = "sitefail.io/move-phase"
	VMI     = "sitefail.io/move-vmi"
	Started = "sitefail.io/move-started"
	Updated = "sitefail.io/move-updated"
	Actor   = "sitefail.io/move-actor"
	// Error and Attempts record a failed try beside the phase, never instead of it: the
	// phase says which effect was written ahead (a release, say), and a failure after it
	// must not hide that the effect happened.
	Error    = "sitefail.io/move-error"
	Attempts = "sitefail.io/move-attempts"
	// StaysDown marks a release of a VM that nothing starts again (it was being stopped,
	// or its run strategy never restarts it): a rerun must not start it. Its value is
	// the move's id, so that a marker a later move's writes did not clear (an older
	// version's merge patch) never speaks for that move.
	StaysDown = "sitefail.io/move-stays-down"
)

// Phases of a step.
const (
	PhasePatched    = "patched"
	PhaseMigrating  = "migrating"
	PhaseRestarting = "restarting"
	PhaseReleasing  = "releasing"
	PhaseStarting   = "starting"
	PhaseDone       = "done"
	// PhaseFailed is written by no current version: older ones overwrote the phase with
	// it, losing what the step had done. It is read as an unfinished step whose effect
	// is unknown.
	PhaseFailed = "failed"
)

// Entry is a VM's journal, read from its annotations.
type Entry struct {
	MoveID, From, To, Phase, VMI string
	// Error is the last failed try's error, if any; it says nothing about the phase.
	Error string
	// Attempts counts the failed tries recorded so far.
	Attempts int
	// StaysDown: the step released a VM that is to stay stopped.
	StaysDown bool
}

// Read extracts the journal from a VM's annotations.
func Read(annotations map[string]string) Entry {
	return Entry{MoveID: annotations[MoveID], From: annotations[From], To: annotations[To], Phase: annotations[Phase], VMI: annotations[VMI], Error: annotations[Error], Attempts: atoi(annotations[Attempts]), StaysDown: annotations[StaysDown] != "" && annotations[StaysDown] == annotations[MoveID]}
}

// atoi reads a count written by this package; anything else counts as none.
func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// Released reports whether the step wrote ahead a release (or the start that follows
// one), or, from an older version, a failure that may have come after one: the
// instance may have been let go on its site, and a VM that KubeVirt does not restart by
// itself (Manual) runs again only if a move starts it.
func (e Entry) Released() bool {
	return e.Phase == PhaseReleasing || e.Phase == PhaseStarting || e.Phase == PhaseFailed
}

// Known reports whether the phase is one this version writes (empty: no journal).
func (e Entry) Known() bool {
	switch e.Phase {
	case "", PhasePatched, PhaseMigrating, PhaseRestarting, PhaseReleasing, PhaseStarting, PhaseDone, PhaseFailed:
		return true
	}
	return false
}

// Open reports whether a step began and did not end, towards whatever site.
func (e Entry) Open() bool { return e.Unfinished(e.To) && e.To != "" }

// Unfinished reports whether a step towards to began and did not end: the VM may be
// restarting, booting, migrating or released and not yet started.
func (e Entry) Unfinished(to string) bool {
	if e.To != to {
		return false
	}
	switch e.Phase {
	case PhasePatched, PhaseMigrating, PhaseRestarting, PhaseReleasing, PhaseStarting, PhaseFailed:
		return true
	}
	return false
}
