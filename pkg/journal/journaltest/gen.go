// Package journaltest draws the journals an earlier, interrupted move may have left on a
// VM: the fuzz target of package journal and the move simulator draw from the same
// generator, so that what one explores the other can meet.
package journaltest

import (
	"fmt"

	"github.com/sitefail/kubectl-sitefail/pkg/journal"
)

// Phases are the phases a journal may carry: none, every one a version wrote, and some
// no version writes (hand-edited, or a newer version's).
var Phases = []string{"", journal.PhasePatched, journal.PhaseMigrating, journal.PhaseRestarting, journal.PhaseReleasing,
	journal.PhaseStarting, journal.PhaseDone, journal.PhaseFailed, "paused", "DONE"}

// Draw returns a journal's annotations, each choice made by pick(n), which returns a
// number in [0, n). sites are the sites a move may name.
func Draw(pick func(n int) int, sites []string) map[string]string {
	site := func() string {
		if i := pick(len(sites) + 1); i < len(sites) {
			return sites[i]
		}
		return ""
	}
	a := map[string]string{}
	if pick(4) > 0 {
		a[journal.MoveID] = fmt.Sprintf("sf-20261201-000000-%06x", pick(1<<24))
	}
	if phase := Phases[pick(len(Phases))]; phase != "" {
		a[journal.Phase] = phase
	}
	if s := site(); s != "" {
		a[journal.From] = s
	}
	if s := site(); s != "" {
		a[journal.To] = s
	}
	if pick(2) == 0 {
		a[journal.VMI] = fmt.Sprintf("uid-%d", pick(8))
	}
	if pick(3) == 0 {
		a[journal.Error] = "an earlier try failed"
		a[journal.Attempts] = []string{"1", "3", "-1", "x", "99999999999999999999"}[pick(5)]
	}
	return a
}
