package executor

import "time"

// Journal annotations written on each VM before each step, so that a move killed at any
// instant can be finished by running it again, and so failback knows where a VM came from.
const (
	AnnotationMoveID  = "sitefail.io/move-id"
	AnnotationFrom    = "sitefail.io/move-from"
	AnnotationTo      = "sitefail.io/move-to"
	AnnotationPhase   = "sitefail.io/move-phase"
	AnnotationVMI     = "sitefail.io/move-vmi"
	AnnotationStarted = "sitefail.io/move-started"
	AnnotationUpdated = "sitefail.io/move-updated"
	AnnotationActor   = "sitefail.io/move-actor"
)

// Journal phases.
const (
	PhasePatched    = "patched"
	PhaseMigrating  = "migrating"
	PhaseRestarting = "restarting"
	PhaseReleasing  = "releasing"
	PhaseDone       = "done"
	PhaseFailed     = "failed"
)

func timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
