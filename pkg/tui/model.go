// Package tui is the incident view: VMs per site, live, and a move driven from the
// keyboard through the same planner and executor as the CLI. View is a pure function
// of the model; all I/O happens in commands and in the data source outside.
package tui

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

// RunFunc carries out a plan (lock, preflight, executor) and reports progress through
// emit. stop asks it to stop starting new work.
type RunFunc func(ctx, stop context.Context, p *plan.Plan, confirmSite string, emit func(executor.Event)) (*executor.Report, error)

// Options configure the model.
type Options struct {
	Context  string
	ReadOnly bool
	Run      RunFunc
	// Events lists a VM's recent Events, newest last; nil hides them.
	Events func(ctx context.Context, namespace, name string) ([]string, error)
	// MaxInFlight and Mode shape the plans the view makes.
	MaxInFlight int
	Mode        plan.Mode
	// AllowGitOpsDrift lets plans move VMs that Argo CD or Flux manage (ui --allow-gitops-drift).
	AllowGitOpsDrift bool
}

// Messages the model receives from outside.
type (
	// SnapshotMsg carries a fresh view of the cluster.
	SnapshotMsg struct{ Snapshot *snapshot.Snapshot }
	// ProgressMsg carries one executor event.
	ProgressMsg executor.Event
	// MoveDoneMsg ends a move.
	MoveDoneMsg struct {
		Report *executor.Report
		Err    error
	}
	// ErrMsg reports a data source error.
	ErrMsg struct{ Err error }
	// EventsMsg carries the recent Events of the VM in the detail pane.
	EventsMsg struct {
		VM     string
		Events []string
		Err    error
	}
)

type stage int

const (
	browsing stage = iota
	planning
	confirming
	moving
	finished
)

// Model is the bubbletea model.
type Model struct {
	opts   Options
	width  int
	height int
	snap   *snapshot.Snapshot
	err    error

	col     int
	cursor  []int
	filter  string
	editing bool
	help    bool
	detail  bool

	stage   stage
	tier    int // tier selected for actions; 0 means the VM under the cursor
	target  string
	plan    *plan.Plan
	planErr error
	confirm string

	log      []string
	done     int
	total    int
	failed   int
	report   *executor.Report
	moveErr  error
	stopMove context.CancelFunc
	send     func(tea.Msg)

	eventsVM string
	events   []string
	eventErr error
}

// New returns a model waiting for its first snapshot.
func New(o Options) *Model {
	if o.MaxInFlight == 0 {
		o.MaxInFlight = 5
	}
	if o.Mode == "" {
		o.Mode = plan.ModeAuto
	}
	return &Model{opts: o, width: 80, height: 24}
}

// Init implements tea.Model.
func (m *Model) Init() tea.Cmd { return nil }

func (m *Model) sites() []string {
	if m.snap == nil {
		return nil
	}
	return m.snap.SiteNames()
}

// displaySite is where a VM shows: where it runs, or its home when stopped.
func displaySite(vm *snapshot.VM) string {
	if vm.Instance != nil && vm.CurrentSite != "" {
		return vm.CurrentSite
	}
	return vm.HomeSite
}

// column lists the VMs shown under a site, filtered and ordered by tier.
func (m *Model) column(site string) []*snapshot.VM {
	var out []*snapshot.VM
	for i := range m.snap.VMs {
		vm := &m.snap.VMs[i]
		if displaySite(vm) != site {
			continue
		}
		if m.filter != "" && !strings.Contains(vm.Key(), m.filter) && !strings.Contains(fmt.Sprint("tier=", vm.Tier), m.filter) {
			continue
		}
		out = append(out, vm)
	}
	sort.SliceStable(out, func(i, j int) bool {
		ti, tj := tierKey(out[i].Tier), tierKey(out[j].Tier)
		if ti != tj {
			return ti < tj
		}
		return out[i].Key() < out[j].Key()
	})
	return out
}

func tierKey(t int) int {
	if t == 0 {
		return 1 << 30
	}
	return t
}

func (m *Model) current() *snapshot.VM {
	sites := m.sites()
	if len(sites) == 0 {
		return nil
	}
	vms := m.column(sites[m.col])
	if len(vms) == 0 {
		return nil
	}
	c := m.cursor[m.col]
	if c >= len(vms) {
		c = len(vms) - 1
	}
	return vms[c]
}

// Update implements tea.Model.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
	case SnapshotMsg:
		m.snap = msg.Snapshot
		m.err = nil
		if n := len(m.sites()); len(m.cursor) != n {
			m.cursor = make([]int, n)
			if m.col >= n {
				m.col = 0
			}
		}
	case ErrMsg:
		m.err = msg.Err
	case ProgressMsg:
		ev := executor.Event(msg)
		m.done, m.total = ev.Done, ev.Total
		if ev.Kind == executor.StepFailed {
			m.failed++
		}
		if line := eventLine(ev); line != "" {
			m.log = append(m.log, line)
			if len(m.log) > 200 {
				m.log = m.log[len(m.log)-200:]
			}
		}
	case EventsMsg:
		if msg.VM == m.eventsVM {
			m.events, m.eventErr = msg.Events, msg.Err
		}
	case MoveDoneMsg:
		m.stage, m.report, m.moveErr = finished, msg.Report, msg.Err
		m.stopMove = nil
	case tea.KeyMsg:
		return m.key(msg)
	}
	return m, nil
}

func eventLine(ev executor.Event) string {
	switch ev.Kind {
	case executor.TierStarted:
		return fmt.Sprintf("tier %s started: %s", tierName(ev.Tier), ev.Message)
	case executor.TierFinished:
		return fmt.Sprintf("tier %s finished: %s", tierName(ev.Tier), ev.Message)
	case executor.StepDone:
		return fmt.Sprintf("%s %s done", ev.VM, ev.Action)
	case executor.StepFailed:
		return fmt.Sprintf("%s FAILED: %s", ev.VM, ev.Message)
	case executor.Stopping:
		return "stopping: " + ev.Message
	}
	return ""
}

func tierName(t int) string {
	if t == 0 {
		return "untiered"
	}
	return fmt.Sprint(t)
}

func (m *Model) key(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	// Keys typed quickly (or pasted) arrive as one message; outside text entry each is
	// its own command.
	if k.Type == tea.KeyRunes && len(k.Runes) > 1 && !m.editing && m.stage != confirming {
		var cmds []tea.Cmd
		for _, r := range k.Runes {
			_, cmd := m.key(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}})
			cmds = append(cmds, cmd)
		}
		return m, tea.Batch(cmds...)
	}
	s := k.String()
	if s == "ctrl+c" {
		if m.stopMove != nil {
			m.stopMove()
			m.log = append(m.log, "stopping: no new VMs will start; run the move again to finish it")
			return m, nil
		}
		return m, tea.Quit
	}
	if m.editing {
		switch k.Type {
		case tea.KeyEnter:
			m.editing = false
		case tea.KeyEsc:
			m.editing, m.filter = false, ""
		case tea.KeyBackspace:
			if len(m.filter) > 0 {
				m.filter = m.filter[:len(m.filter)-1]
			}
		case tea.KeyRunes:
			m.filter += string(k.Runes)
		}
		return m, nil
	}
	if m.stage == confirming {
		switch k.Type {
		case tea.KeyEsc:
			m.stage, m.confirm = planning, ""
		case tea.KeyEnter:
			return m.startMove()
		case tea.KeyBackspace:
			if len(m.confirm) > 0 {
				m.confirm = m.confirm[:len(m.confirm)-1]
			}
		case tea.KeyRunes:
			m.confirm += string(k.Runes)
		}
		return m, nil
	}
	if m.help {
		m.help = false
		return m, nil
	}
	switch s {
	case "q":
		if m.stage == moving {
			return m, nil
		}
		return m, tea.Quit
	case "?":
		m.help = true
	case "esc":
		switch m.stage {
		case planning, finished:
			m.stage, m.plan, m.planErr = browsing, nil, nil
		}
		m.detail = false
	case "/":
		m.editing = true
	case "enter":
		m.detail = !m.detail
		if vm := m.current(); m.detail && vm != nil && m.opts.Events != nil {
			key, ns, name, list := vm.Key(), vm.Namespace, vm.Name, m.opts.Events
			m.eventsVM, m.events, m.eventErr = key, nil, nil
			return m, func() tea.Msg {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				ev, err := list(ctx, ns, name)
				return EventsMsg{VM: key, Events: ev, Err: err}
			}
		}
	case "up", "k":
		if len(m.cursor) > 0 && m.cursor[m.col] > 0 {
			m.cursor[m.col]--
		}
	case "down", "j":
		if len(m.cursor) > 0 {
			if n := len(m.column(m.sites()[m.col])); m.cursor[m.col] < n-1 {
				m.cursor[m.col]++
			}
		}
	case "left", "h", "shift+tab":
		if m.col > 0 {
			m.col--
		}
	case "right", "l", "tab":
		if m.col < len(m.sites())-1 {
			m.col++
		}
	case "0", "1", "2", "3", "4", "5", "6", "7", "8", "9":
		m.tier = int(s[0] - '0')
	case "t":
		if sites := m.sites(); len(sites) > 0 && !m.opts.ReadOnly {
			i := 0
			for j, site := range sites {
				if site == m.target {
					i = j + 1
				}
			}
			m.target = sites[i%len(sites)]
		}
	case "p":
		if !m.opts.ReadOnly && m.stage != moving {
			m.makePlan()
		}
	case "m":
		if !m.opts.ReadOnly && m.stage == planning && m.plan != nil && m.plan.Work() && !m.plan.Blocked(false) {
			m.stage, m.confirm = confirming, ""
		}
	case "c":
		if m.stopMove != nil {
			m.stopMove()
			m.log = append(m.log, "cancel: no new VMs will start; steps in flight reach a safe point")
		}
	}
	return m, nil
}

// defaultTarget is the other site of a two-site cluster, seen from the focused column.
func (m *Model) defaultTarget() string {
	sites := m.sites()
	if m.target != "" {
		return m.target
	}
	if len(sites) == 2 {
		return sites[1-m.col]
	}
	if len(sites) > 0 {
		return sites[0]
	}
	return ""
}

func (m *Model) makePlan() {
	m.plan, m.planErr = nil, nil
	if m.snap == nil {
		return
	}
	req := plan.Request{To: m.defaultTarget(), Mode: m.opts.Mode, MaxInFlight: m.opts.MaxInFlight, AllowGitOpsDrift: m.opts.AllowGitOpsDrift}
	if m.tier > 0 {
		req.Tiers = &selector.TierRange{Min: m.tier, Max: m.tier}
	} else if vm := m.current(); vm != nil {
		req.VMs = []string{vm.Key()}
	} else {
		m.planErr = fmt.Errorf("no VM under the cursor: pick a tier with 1-9")
		m.stage = planning
		return
	}
	m.plan, m.planErr = plan.Build(m.snap, req)
	m.stage = planning
}

// confirmWord is what the operator must type: the dead site's name for a failover,
// "yes" otherwise.
func (m *Model) confirmWord() string {
	if dead := m.plan.NeedsFailover(); len(dead) > 0 {
		return dead[0]
	}
	return "yes"
}

func (m *Model) startMove() (tea.Model, tea.Cmd) {
	if m.confirm != m.confirmWord() {
		m.confirm = ""
		return m, nil
	}
	if m.opts.Run == nil {
		m.stage, m.moveErr = finished, fmt.Errorf("moves are disabled in this view")
		return m, nil
	}
	ctx := context.Background()
	stop, cancel := context.WithCancel(ctx)
	m.stopMove = cancel
	m.stage, m.log, m.done, m.failed, m.total = moving, nil, 0, 0, len(m.plan.Steps)
	p, confirm, run, send := m.plan, "", m.opts.Run, m.send
	if len(p.NeedsFailover()) > 0 {
		confirm = m.confirm
	}
	return m, func() tea.Msg {
		rep, err := run(ctx, stop, p, confirm, func(ev executor.Event) {
			if send != nil {
				send(ProgressMsg(ev))
			}
		})
		return MoveDoneMsg{Report: rep, Err: err}
	}
}

// Attach lets the model send the executor's progress events to its program.
func (m *Model) Attach(send func(tea.Msg)) { m.send = send }
