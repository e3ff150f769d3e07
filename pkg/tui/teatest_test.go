package tui

import (
	"bytes"
	"context"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/exp/teatest"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
)

// The whole path as an operator drives it, through a real bubbletea program: pick
// tier 1, plan it, ask to move, type the word, and watch the move's progress arrive
// from another goroutine until it is done.
func TestPlanConfirmMoveInAProgram(t *testing.T) {
	ran := make(chan *plan.Plan, 1)
	run := func(ctx, stop context.Context, p *plan.Plan, confirm string, emit func(executor.Event)) (*executor.Report, error) {
		for i, st := range p.Steps {
			emit(executor.Event{Kind: executor.StepDone, VM: st.Key(), Action: st.Action, Done: i + 1, Total: len(p.Steps)})
		}
		ran <- p
		return &executor.Report{Tiers: []executor.TierReport{{Tier: 1, Moved: len(p.Steps), RTO: "7s"}}}, nil
	}
	m := New(Options{Context: "test", Run: run})
	tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(80, 24))
	m.Attach(tm.Send)
	tm.Send(SnapshotMsg{Snapshot: testSnapshot(false)})
	wait := func(what string) {
		t.Helper()
		teatest.WaitFor(t, tm.Output(), func(b []byte) bool { return bytes.Contains(b, []byte(what)) },
			teatest.WithDuration(10*time.Second), teatest.WithCheckInterval(20*time.Millisecond))
	}
	wait("prod/db-1")
	tm.Type("l1p")
	wait("PLAN tier 1")
	tm.Type("m")
	wait("Type \"yes\"")
	tm.Type("yes")
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	wait("RTO 7s")
	p := <-ran
	if len(p.Steps) != 3 || p.Request.To != "DR" {
		t.Fatalf("moved %+v", p.Request)
	}
	tm.Send(tea.KeyMsg{Type: tea.KeyEsc})
	tm.Type("q")
	fm := tm.FinalModel(t, teatest.WithFinalTimeout(5*time.Second)).(*Model)
	if fm.stage != browsing || fm.report == nil || fm.done != 3 {
		t.Fatalf("final stage %v, report %+v, done %d", fm.stage, fm.report, fm.done)
	}
}
