package tui

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

// updating reports -update, which rewrites the golden screens; the flag is teatest's
// own (its golden package defines it), shared with ours.
func updating() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

func TestMain(m *testing.M) {
	// Golden screens are compared without colour, as NO_COLOR users see them.
	lipgloss.SetColorProfile(termenv.Ascii)
	os.Exit(m.Run())
}

func testSnapshot(primaryDown bool) *snapshot.Snapshot {
	state := snapshot.NodeReady
	if primaryDown {
		state = snapshot.NodeUnknown
	}
	s := &snapshot.Snapshot{Keys: selector.DefaultKeys()}
	for _, n := range []snapshot.Node{{Name: "p1", Site: "Primary", State: state}, {Name: "d1", Site: "DR", State: snapshot.NodeReady}} {
		n.CPUMilli, n.MemoryBytes = 16000, 64<<30
		n.Labels = map[string]string{selector.DefaultSiteKey: n.Site}
		n.Fence = fencing.Node{Name: n.Name, Ready: n.State == snapshot.NodeReady}
		s.Nodes = append(s.Nodes, n)
	}
	add := func(ns, name string, tier int, home, node string, ready, migrating bool) {
		vm := snapshot.VM{Namespace: ns, Name: name, Tier: tier, HomeSite: home, RunStrategy: kubevirtv1.RunStrategyAlways,
			NodeSelector: map[string]string{selector.DefaultSiteKey: home}, HasSelector: true, CPUMilli: 1000, MemoryBytes: 2 << 30,
			PrintableStatus: "Running", Ready: ready,
			Annotations: map[string]string{"sitefail.io/move-phase": "done", "sitefail.io/move-from": "Primary"}}
		if node != "" {
			vm.Instance = &snapshot.VMI{UID: types.UID("u-" + name), Phase: "Running", NodeName: node, Ready: ready, LiveMigratable: true, Migrating: migrating}
		} else {
			vm.RunStrategy, vm.PrintableStatus = kubevirtv1.RunStrategyHalted, "Stopped"
		}
		s.VMs = append(s.VMs, vm)
	}
	add("prod", "db-1", 1, "Primary", "p1", true, false)
	add("prod", "db-2", 1, "Primary", "p1", true, true)
	add("prod", "web-1", 2, "Primary", "p1", false, false)
	add("prod", "cold", 2, "Primary", "", false, false)
	add("prod", "moved", 1, "Primary", "d1", true, false)
	add("dev", "ci", 0, "DR", "d1", true, false)
	s.VMs[len(s.VMs)-1].GitOps = "argocd"
	s.Derive()
	return s
}

func newModel(w, h int, s *snapshot.Snapshot, o Options) *Model {
	o.Context = "test"
	m := New(o)
	m.Update(tea.WindowSizeMsg{Width: w, Height: h})
	m.Update(SnapshotMsg{Snapshot: s})
	return m
}

func keys(m *Model, ks ...string) {
	for _, k := range ks {
		switch k {
		case "enter":
			m.Update(tea.KeyMsg{Type: tea.KeyEnter})
		case "esc":
			m.Update(tea.KeyMsg{Type: tea.KeyEsc})
		case "right":
			m.Update(tea.KeyMsg{Type: tea.KeyRight})
		case "down":
			m.Update(tea.KeyMsg{Type: tea.KeyDown})
		default:
			m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(k)})
		}
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if updating() {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./pkg/tui -update to create it)", err)
	}
	if string(want) != got {
		t.Fatalf("screen %s differs from %s:\n--- got ---\n%s\n--- want ---\n%s", name, path, got, want)
	}
}

func checkSize(t *testing.T, screen string, w, h int) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(screen, "\n"), "\n")
	if len(lines) > h {
		t.Errorf("%d lines for a %d-line terminal", len(lines), h)
	}
	for i, l := range lines {
		if lipgloss.Width(l) > w {
			t.Errorf("line %d is %d wide for a %d-column terminal: %q", i, lipgloss.Width(l), w, l)
		}
	}
}

func TestScreens(t *testing.T) {
	// A dead Primary of two nodes as a full read holds it, on a fixed clock: lease ages
	// in a golden screen must not depend on when the test runs.
	at := time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)
	clock := Options{Now: func() time.Time { return at }}
	tests := []struct {
		name string
		w, h int
		down bool
		snap *snapshot.Snapshot
		opts Options
		keys []string
	}{
		{name: "states-80x24", w: 80, h: 24},
		{name: "narrow-50x16", w: 50, h: 16},
		{name: "detail-80x24", w: 80, h: 24, keys: []string{"right", "enter"}},
		{name: "readonly-80x24", w: 80, h: 24, opts: Options{ReadOnly: true}, keys: []string{"p"}},
		{name: "failover-confirm-80x24", w: 80, h: 24, down: true, keys: []string{"right", "1", "p", "m", "Prim"}},
		{name: "failover-confirm-fenced-80x24", w: 80, h: 24, snap: deadSite(at, false, 0, "p1", "p2"), opts: clock, keys: []string{"right", "1", "p", "m"}},
		{name: "nodes-dead-site-80x24", w: 80, h: 24, snap: deadSite(at, false, 0, "p1"), opts: clock, keys: []string{"right", "n"}},
		{name: "nodes-live-site-80x24", w: 80, h: 24, opts: clock, keys: []string{"n"}},
		{name: "nodes-dead-site-50x16", w: 50, h: 16, snap: deadSite(at, false, 0, "p1"), opts: clock, keys: []string{"right", "n"}},
		{name: "help-80x24", w: 80, h: 24, keys: []string{"?"}},
		{name: "filter-80x24", w: 80, h: 24, keys: []string{"/", "web", "enter"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.snap
			if s == nil {
				s = testSnapshot(tc.down)
			}
			m := newModel(tc.w, tc.h, s, tc.opts)
			keys(m, tc.keys...)
			screen := m.View()
			checkSize(t, screen, tc.w, tc.h)
			golden(t, tc.name, screen)
		})
	}
}

func TestStrandedFlagged(t *testing.T) {
	m := newModel(80, 24, testSnapshot(true), Options{})
	if !strings.Contains(m.View(), "✖ S prod/db-1") || !strings.Contains(m.View(), "Primary DOWN 0/1") {
		t.Fatalf("stranded VMs not flagged:\n%s", m.View())
	}
}

func TestFailoverNeedsTheSiteNameThenRuns(t *testing.T) {
	var got *plan.Plan
	var confirmed string
	run := func(ctx, stop context.Context, p *plan.Plan, confirm string, emit func(executor.Event)) (*executor.Report, error) {
		got, confirmed = p, confirm
		emit(executor.Event{Kind: executor.StepDone, VM: "prod/db-1", Action: plan.ActionFailover, Done: 1, Total: 3})
		return &executor.Report{Tiers: []executor.TierReport{{Tier: 1, Moved: 3, RTO: "5s"}}}, nil
	}
	m := newModel(80, 24, testSnapshot(true), Options{Run: run})
	var sent []tea.Msg
	m.Attach(func(msg tea.Msg) { sent = append(sent, msg) })
	keys(m, "right", "1", "p", "m", "yes")
	_, cmd := m.Update(tea.KeyMsg{Type: tea.KeyEnter})
	if cmd != nil || got != nil {
		t.Fatal("a failover ran without the dead site's name")
	}
	keys(m, "Primary")
	_, cmd = m.Update(tea.KeyMsg{Type: tea.KeyEnter})
	if cmd == nil {
		t.Fatalf("typing the site name did not start the move:\n%s", m.View())
	}
	m.Update(cmd())
	for _, msg := range sent {
		m.Update(msg)
	}
	if got == nil || confirmed != "Primary" || got.Summary.ByAction[plan.ActionFailover] != 2 {
		t.Fatalf("ran %+v confirmed %q", got, confirmed)
	}
	if v := m.View(); !strings.Contains(v, "DONE") || !strings.Contains(v, "prod/db-1 failover done") || !strings.Contains(v, "RTO 5s") {
		t.Fatalf("progress not shown:\n%s", v)
	}
}

func TestReadOnlyHidesActions(t *testing.T) {
	ran := false
	m := newModel(80, 24, testSnapshot(false), Options{ReadOnly: true, Run: func(context.Context, context.Context, *plan.Plan, string, func(executor.Event)) (*executor.Report, error) {
		ran = true
		return nil, nil
	}})
	keys(m, "1", "p", "m", "yes")
	m.Update(tea.KeyMsg{Type: tea.KeyEnter})
	if ran || strings.Contains(m.View(), "PLAN") {
		t.Fatal("read-only view planned or moved")
	}
}

func TestLargeClusterRendersOnlyVisibleRows(t *testing.T) {
	s := testSnapshot(false)
	base := s.VMs[0]
	for i := 0; i < 5000; i++ {
		vm := base
		vm.Name = "bulk-" + strings.Repeat("x", i%3) + string(rune('a'+i%26)) + "-" + itoa(i)
		s.VMs = append(s.VMs, vm)
	}
	s.Derive()
	m := newModel(80, 24, s, Options{})
	for i := 0; i < 3000; i++ {
		m.Update(tea.KeyMsg{Type: tea.KeyDown})
	}
	checkSize(t, m.View(), 80, 24)
}

func itoa(i int) string {
	const digits = "0123456789"
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{digits[i%10]}, b...)
	}
	return string(b)
}

// BenchmarkView5000 is the cost of one redraw with 5,000 VMs.
func BenchmarkView5000(b *testing.B) {
	s := testSnapshot(false)
	base := s.VMs[0]
	for i := 0; i < 5000; i++ {
		vm := base
		vm.Name = "bulk-" + itoa(i)
		s.VMs = append(s.VMs, vm)
	}
	s.Derive()
	m := newModel(120, 40, s, Options{})
	b.ReportAllocs()
	for b.Loop() {
		_ = m.View()
	}
}

func TestDetailShowsConditionsAndEvents(t *testing.T) {
	m := newModel(80, 30, testSnapshot(false), Options{Events: func(_ context.Context, ns, name string) ([]string, error) {
		return []string{"09:00:00 SitefailMoved live-migrate: now on Primary (" + ns + "/" + name + ")"}, nil
	}})
	keys(m, "right")
	_, cmd := m.Update(tea.KeyMsg{Type: tea.KeyEnter})
	if cmd == nil {
		t.Fatal("opening the detail pane did not fetch events")
	}
	m.Update(cmd())
	v := m.View()
	for _, want := range []string{"conditions: Ready=true LiveMigratable=true RestartRequired=false", "SitefailMoved live-migrate: now on Primary (prod/db-1)", "journal: move-from=Primary"} {
		if !strings.Contains(v, want) {
			t.Errorf("detail lacks %q:\n%s", want, v)
		}
	}
}

// A VM that Argo CD manages carries its mark, and the view refuses to move it unless the
// ui was started with --allow-gitops-drift.
func TestGitOpsManagedVMIsMarkedAndRefused(t *testing.T) {
	for _, allow := range []bool{false, true} {
		var ran *plan.Plan
		run := func(ctx, stop context.Context, p *plan.Plan, confirm string, emit func(executor.Event)) (*executor.Report, error) {
			ran = p
			return &executor.Report{}, nil
		}
		m := newModel(100, 30, testSnapshot(false), Options{Run: run, AllowGitOpsDrift: allow})
		if !strings.Contains(m.View(), "dev/ci [argocd]") {
			t.Fatalf("no GitOps mark:\n%s", m.View())
		}
		keys(m, "down", "0", "p")
		planned := m.View()
		keys(m, "m", "yes")
		_, cmd := m.Update(tea.KeyMsg{Type: tea.KeyEnter})
		if cmd != nil {
			m.Update(cmd())
		}
		switch {
		case !allow && (ran != nil || !strings.Contains(planned, "BLOCKER dev/ci: managed by argocd")):
			t.Fatalf("without --allow-gitops-drift the plan must be blocked and nothing run:\n%s", planned)
		case allow && (ran == nil || len(ran.Steps) != 1 || ran.Steps[0].Name != "ci"):
			t.Fatalf("with --allow-gitops-drift the move must run:\n%s\nran %+v", planned, ran)
		}
	}
}

// VMs marked by hand are planned and moved together; the marks go once the move starts.
func TestMarkedVMsMoveTogether(t *testing.T) {
	var ran *plan.Plan
	run := func(ctx, stop context.Context, p *plan.Plan, confirm string, emit func(executor.Event)) (*executor.Report, error) {
		ran = p
		return &executor.Report{}, nil
	}
	m := newModel(80, 24, testSnapshot(false), Options{Run: run})
	keys(m, "right", " ", "down", "down", " ")
	if v := m.View(); !strings.Contains(v, "✓● R prod/db-1") || !strings.Contains(v, "[2 marked → DR]") {
		t.Fatalf("marks not shown:\n%s", v)
	}
	keys(m, "p")
	if m.plan == nil || len(m.plan.Steps) != 2 || m.plan.Steps[0].Key() != "prod/db-1" || m.plan.Steps[1].Key() != "prod/cold" {
		t.Fatalf("plan of the marked VMs: %+v", m.plan)
	}
	keys(m, "m", "yes")
	_, cmd := m.Update(tea.KeyMsg{Type: tea.KeyEnter})
	if cmd == nil {
		t.Fatal("move did not start")
	}
	m.Update(cmd())
	if ran == nil || len(ran.Steps) != 2 || len(m.marked) != 0 {
		t.Fatalf("ran %+v, marks left %v", ran, m.marked)
	}
}

// The cursor stays on its VM when a new snapshot reorders the column.
func TestCursorFollowsItsVMAcrossSnapshots(t *testing.T) {
	m := newModel(80, 24, testSnapshot(false), Options{})
	keys(m, "right", "down", "down", "down")
	if vm := m.current(); vm == nil || vm.Key() != "prod/web-1" {
		t.Fatalf("cursor on %v", vm)
	}
	s := testSnapshot(false)
	s.VMs = append(s.VMs[:1], s.VMs[2:]...) // prod/db-2 is gone: web-1 moves up a row
	m.Update(SnapshotMsg{Snapshot: s})
	if vm := m.current(); vm == nil || vm.Key() != "prod/web-1" {
		t.Fatalf("after the snapshot the cursor is on %v", vm)
	}
}

// At 80x24 the footer always ends with help and quit, whatever else it has to cut.
func TestFooterAlwaysShowsHelpAndQuit(t *testing.T) {
	for _, tc := range []struct {
		w    int
		keys []string
	}{{80, nil}, {80, []string{"right", "1", "p"}}, {80, []string{"/", "prod", "enter"}}, {50, nil}, {80, []string{"right", "enter"}}} {
		m := newModel(tc.w, 24, testSnapshot(false), Options{})
		keys(m, tc.keys...)
		lines := strings.Split(m.View(), "\n")
		footer := lines[len(lines)-1]
		if !strings.HasSuffix(strings.TrimRight(footer, " "), "? help  q quit") || len(lines) != 24 {
			t.Errorf("%dx24 after %v: %d lines, footer %q", tc.w, tc.keys, len(lines), footer)
		}
	}
}

// Cutting a coloured string keeps its reset: the rest of the line is not painted.
func TestFitKeepsTheColourReset(t *testing.T) {
	lipgloss.SetColorProfile(termenv.ANSI)
	defer lipgloss.SetColorProfile(termenv.Ascii)
	styled := lipgloss.NewStyle().Foreground(lipgloss.Color("1")).Render("stranded-on-a-dead-site")
	got := fit(styled, 8)
	if !strings.HasSuffix(strings.TrimRight(got, " "), "\x1b[0m") || lipgloss.Width(got) != 8 {
		t.Fatalf("fit cut the reset or the width: %q", got)
	}
}

// The detail pane takes the whole screen: a VM's Events are not cut at half its height.
func TestDetailUsesTheWholeScreen(t *testing.T) {
	var events []string
	for i := 0; i < 30; i++ {
		events = append(events, "event-"+itoa(i))
	}
	m := newModel(80, 24, testSnapshot(false), Options{Events: func(context.Context, string, string) ([]string, error) { return events, nil }})
	keys(m, "right")
	_, cmd := m.Update(tea.KeyMsg{Type: tea.KeyEnter})
	m.Update(cmd())
	v := m.View()
	shown := strings.Count(v, "event-")
	if shown < 15 || !strings.Contains(v, "pgup/pgdn scroll") {
		t.Fatalf("%d events on a 24-line screen:\n%s", shown, v)
	}
	m.Update(tea.KeyMsg{Type: tea.KeyPgDown})
	m.Update(tea.KeyMsg{Type: tea.KeyPgDown})
	if !strings.Contains(m.View(), "event-29") {
		t.Fatalf("paging did not reach the last event:\n%s", m.View())
	}
}

// A plan in the view reads the whole cluster, as move does: a blocker that only the
// storage shows (a disk still importing) is on screen before the operator asks to move.
func TestPlanReadsTheWholeClusterForItsBlockers(t *testing.T) {
	full := testSnapshot(false)
	for i := range full.VMs {
		if full.VMs[i].Name == "db-1" {
			full.VMs[i].DataVolumes = []string{"db-1-root"}
		}
	}
	full.Storage = &snapshot.Storage{DataVolumePhases: map[string]string{"prod/db-1-root": "ImportInProgress"}}
	reads := 0
	m := newModel(100, 30, testSnapshot(false), Options{Read: func(context.Context) (*snapshot.Snapshot, error) {
		reads++
		return full, nil
	}})
	keys(m, "right", "1")
	_, cmd := m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("p")})
	if !strings.Contains(m.View(), "reading the cluster for the plan") || cmd == nil {
		t.Fatalf("no full read started:\n%s", m.View())
	}
	keys(m, "m")
	if m.stage != planning {
		t.Fatal("m moved on to confirming before the plan was read")
	}
	m.Update(cmd())
	if v := m.View(); reads != 1 || !strings.Contains(v, "BLOCKER prod/db-1: DataVolume db-1-root is ImportInProgress") {
		t.Fatalf("reads %d, plan:\n%s", reads, v)
	}
	// An answer to an earlier request is ignored.
	m.Update(PlanMsg{Err: errors.New("stale"), Seq: m.planSeq - 1})
	if m.planErr != nil {
		t.Fatal("a stale plan replaced the current one")
	}
}

// A watch error keeps the last snapshot on screen and says so, within the screen's size.
func TestWatchErrorKeepsTheScreenSize(t *testing.T) {
	m := newModel(80, 24, testSnapshot(false), Options{})
	m.Update(ErrMsg{Err: errors.New("connection refused")})
	v := m.View()
	checkSize(t, v, 80, 24)
	if !strings.Contains(v, "watch error") || !strings.Contains(v, "prod/db-1") || strings.Count(v, "\n") != 23 {
		t.Fatalf("after a watch error:\n%s", v)
	}
}

// A long Event wraps in the detail pane instead of losing its end.
func TestLongEventWraps(t *testing.T) {
	long := "14:26:59 SuccessfulCreate Started the virtual machine by creating the new virtual machine instance on a node of the target site"
	m := newModel(80, 24, testSnapshot(false), Options{Events: func(context.Context, string, string) ([]string, error) { return []string{long}, nil }})
	keys(m, "right")
	_, cmd := m.Update(tea.KeyMsg{Type: tea.KeyEnter})
	m.Update(cmd())
	if v := m.View(); !strings.Contains(v, "target site") {
		t.Fatalf("the end of the Event is lost:\n%s", v)
	}
}

// H lists the move records; enter opens one report in the viewport; esc goes back to
// the list, then to the sites.
func TestHistoryListsRecordsAndOpensOne(t *testing.T) {
	asked := ""
	m := newModel(100, 30, testSnapshot(false), Options{
		History: func(context.Context) ([]HistoryEntry, error) {
			return []HistoryEntry{{ID: "sf-2", Line: "sf-2  failover  Primary→DR  moved 40"}, {ID: "sf-1", Line: "sf-1  relocate  Primary→DR  moved 3"}}, nil
		},
		Report: func(_ context.Context, id string) (string, error) {
			asked = id
			return "# Move " + id + "\n\ntier 1: moved 3", nil
		},
	})
	_, cmd := m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("H")})
	if cmd == nil {
		t.Fatal("H did not read the records")
	}
	m.Update(cmd())
	v := m.View()
	for _, want := range []string{"> sf-2  failover", "sf-1  relocate", "move history: 2 record(s)"} {
		if !strings.Contains(v, want) {
			t.Errorf("history lacks %q:\n%s", want, v)
		}
	}
	checkSize(t, v, 100, 30)
	keys(m, "down")
	_, cmd = m.Update(tea.KeyMsg{Type: tea.KeyEnter})
	if cmd == nil {
		t.Fatal("enter did not read the record")
	}
	m.Update(cmd())
	if v := m.View(); asked != "sf-1" || !strings.Contains(v, "# Move sf-1") || !strings.Contains(v, "record sf-1") {
		t.Fatalf("opened %q:\n%s", asked, v)
	}
	keys(m, "esc")
	if v := m.View(); !strings.Contains(v, "move history") {
		t.Fatalf("esc from a report: want the list back:\n%s", v)
	}
	keys(m, "esc")
	if v := m.View(); strings.Contains(v, "move history") || !strings.Contains(v, "db-1") {
		t.Fatalf("esc from the list: want the sites back:\n%s", v)
	}
	// Without a record store, there is no history key.
	if v := newModel(100, 30, testSnapshot(false), Options{}).View(); strings.Contains(v, "history") {
		t.Fatalf("history shown without records:\n%s", v)
	}
}
