package executor

import (
	"time"

	"github.com/sitefail/kubectl-sitefail/pkg/journal"
)

// The journal's annotations and phases (package journal), under the names the rest of
// the executor uses.
const (
	AnnotationMoveID  = journal.MoveID
	AnnotationFrom    = journal.From
	AnnotationTo      = journal.To
	AnnotationPhase   = journal.Phase
	AnnotationVMI     = journal.VMI
	AnnotationStarted = journal.Started
	AnnotationUpdated = journal.Updated
	AnnotationActor   = journal.Actor

	PhasePatched    = journal.PhasePatched
	PhaseMigrating  = journal.PhaseMigrating
	PhaseRestarting = journal.PhaseRestarting
	PhaseReleasing  = journal.PhaseReleasing
	PhaseStarting   = journal.PhaseStarting
	PhaseDone       = journal.PhaseDone
	PhaseFailed     = journal.PhaseFailed
)

func timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
