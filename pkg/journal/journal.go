// Package journal names the annotations a move writes on each VM before each step, so
// that a move killed at any instant is finished by running it again: the planner reads
// them to resume unfinished steps, the executor writes them, failback reads where a VM
// came from.
package journal

const (
	MoveID  = "sitefail.io/move-id"
	From    = "sitefail.io/move-from"
	To      = "sitefail.io/move-to"
	Phase   = "sitefail.io/move-phase"
	VMI     = "sitefail.io/move-vmi"
	Started = "sitefail.io/move-started"
	Updated = "sitefail.io/move-updated"
	Actor   = "sitefail.io/move-actor"
)

// Phases of a step.
const (
	PhasePatched    = "patched"
	PhaseMigrating  = "migrating"
	PhaseRestarting = "restarting"
	PhaseReleasing  = "releasing"
	PhaseStarting   = "starting"
	PhaseDone       = "done"
	PhaseFailed     = "failed"
)

// Entry is a VM's journal, read from its annotations.
type Entry struct {
	MoveID, From, To, Phase, VMI string
}

// Read extracts the journal from a VM's annotations.
func Read(annotations map[string]string) Entry {
	return Entry{MoveID: annotations[MoveID], From: annotations[From], To: annotations[To], Phase: annotations[Phase], VMI: annotations[VMI]}
}

// Known reports whether the phase is one this version writes (empty: no journal).
func (e Entry) Known() bool {
	switch e.Phase {
	case "", PhasePatched, PhaseMigrating, PhaseRestarting, PhaseReleasing, PhaseStarting, PhaseDone, PhaseFailed:
		return true
	}
	return false
}

// Unfinished reports whether a step towards to began and did not end: the VM may be
// restarting, booting, migrating or released and not yet started.
func (e Entry) Unfinished(to string) bool {
	if e.To != to {
		return false
	}
	switch e.Phase {
	case PhasePatched, PhaseMigrating, PhaseRestarting, PhaseReleasing, PhaseStarting:
		return true
	}
	return false
}
