package tui

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"

	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

var (
	styleTitle    = lipgloss.NewStyle().Bold(true)
	styleDim      = lipgloss.NewStyle().Faint(true)
	styleOK       = lipgloss.NewStyle().Foreground(lipgloss.Color("2"))
	styleWarn     = lipgloss.NewStyle().Foreground(lipgloss.Color("3"))
	styleBad      = lipgloss.NewStyle().Foreground(lipgloss.Color("1")).Bold(true)
	styleMove     = lipgloss.NewStyle().Foreground(lipgloss.Color("5"))
	styleMig      = lipgloss.NewStyle().Foreground(lipgloss.Color("6"))
	styleSelected = lipgloss.NewStyle().Reverse(true)
	plain         = lipgloss.NewStyle()
)

// glyph is a VM's state at a glance; the letter after it keeps the meaning readable
// without colour. colour false draws it plain, for the selected row, whose reverse
// video a colour reset inside would cut short.
func glyph(vm *snapshot.VM, colour bool) string {
	inst := vm.Instance
	g, style := "◐ s", styleWarn
	switch {
	case vm.State == snapshot.StateStranded:
		g, style = "✖ S", styleBad
	case inst != nil && inst.Migrating:
		g, style = "⇄ M", styleMig
	case vm.State == snapshot.StatePendingMove:
		g, style = "→ P", styleMove
	case inst == nil || inst.Terminating:
		g, style = "○ -", styleDim
	case inst.Ready:
		g, style = "● R", styleOK
	}
	if !colour {
		return g
	}
	return style.Render(g)
}

// managedMark flags a VM whose manifest another controller owns: a GitOps controller
// reverts a move at its next sync, an owner rewrites the template, so the plan refuses
// them; the mark says why before the plan does.
func managedMark(vm *snapshot.VM, colour bool) string {
	text := ""
	switch {
	case vm.GitOps != "":
		text = " [" + vm.GitOps + "]"
	case vm.Owner != "":
		text = " [owned]"
	}
	if text == "" || !colour {
		return text
	}
	return styleWarn.Render(text)
}

// siteStat is one site's health and use, gathered in one pass over the snapshot.
type siteStat struct {
	ready, total             int
	cpu, mem, useCPU, useMem int64
}

func siteStats(s *snapshot.Snapshot) map[string]*siteStat {
	out := map[string]*siteStat{}
	get := func(site string) *siteStat {
		st := out[site]
		if st == nil {
			st = &siteStat{}
			out[site] = st
		}
		return st
	}
	for _, n := range s.Nodes {
		st := get(n.Site)
		st.total++
		if n.State == snapshot.NodeReady {
			st.ready++
		}
		st.cpu += n.CPUMilli
		st.mem += n.MemoryBytes
	}
	for i := range s.VMs {
		if vm := &s.VMs[i]; vm.Instance != nil && vm.CurrentSite != "" {
			st := get(vm.CurrentSite)
			st.useCPU += vm.CPUMilli
			st.useMem += vm.MemoryBytes
		}
	}
	return out
}

func (st *siteStat) header(site string) string {
	if st == nil {
		st = &siteStat{}
	}
	return fmt.Sprintf("%s %s %d/%d nodes cpu %s%% mem %s%%", styleTitle.Render(site), health(st.ready, st.total), st.ready, st.total, pct(st.useCPU, st.cpu), pct(st.useMem, st.mem))
}

func health(ready, total int) string {
	switch {
	case ready == 0:
		return styleBad.Render("DOWN")
	case ready < total:
		return styleWarn.Render("DEGRADED")
	}
	return styleOK.Render("UP")
}

func pct(a, b int64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprint(a * 100 / b)
}

func tierCounts(vms []*snapshot.VM) string {
	c := map[int]int{}
	for _, vm := range vms {
		c[vm.Tier]++
	}
	keys := make([]int, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return selector.TierLess(keys[i], keys[j]) })
	parts := make([]string, len(keys))
	for i, k := range keys {
		name := fmt.Sprint("t", k)
		if k == 0 {
			name = "t-"
		}
		parts[i] = fmt.Sprintf("%s:%d", name, c[k])
	}
	return strings.Join(parts, " ")
}

// fit cuts s to w cells, escape sequences and wide characters understood (a colour
// reset is never cut off), and pads it to exactly w.
func fit(s string, w int) string {
	if w <= 0 {
		return ""
	}
	s = ansi.Truncate(s, w, "…")
	if pad := w - ansi.StringWidth(s); pad > 0 {
		s += strings.Repeat(" ", pad)
	}
	return s
}

// Layout: a title line and a footer line around the body. The body holds the site
// columns; a plan or a move shares it with the pane below them; the detail pane and
// the help take all of it.
func (m *Model) bodyHeight() int { return max(m.height-2, 4) }

func (m *Model) paneOpen() bool { return m.detail || m.nodes || m.history || m.stage != browsing }

// columnsHeight is the lines the site columns get, their two title lines included.
func (m *Model) columnsHeight() int {
	if m.stage != browsing {
		return max(m.bodyHeight()/2, 4)
	}
	return m.bodyHeight()
}

// bodyRows is how many VM rows a column shows.
func (m *Model) bodyRows() int { return max(m.columnsHeight()-2, 1) }

// layoutPane sizes the pane and fills it with what the stage shows. A progress log
// that was scrolled to its end follows new lines.
func (m *Model) layoutPane() {
	if !m.paneOpen() {
		return
	}
	h := m.bodyHeight() - 1 // the pane's status or prompt line
	if m.stage != browsing {
		h = m.bodyHeight() - m.columnsHeight() - 1
	}
	follow := m.pane.AtBottom()
	m.pane.Width, m.pane.Height = m.width, max(h, 1)
	var content string
	switch {
	case m.stage == planning || m.stage == confirming:
		content = m.planContent()
	case m.stage == moving || m.stage == finished:
		content = m.progressContent()
	case m.history:
		content = m.historyContent()
	case m.nodes:
		content = m.nodesContent()
	default:
		content = m.detailContent()
	}
	m.pane.SetContent(content)
	if follow && (m.stage == moving || m.stage == finished) {
		m.pane.GotoBottom()
	}
}

// View implements tea.Model.
func (m *Model) View() string {
	var b strings.Builder
	title := fmt.Sprintf("sitefail  context %s", m.opts.Context)
	if m.opts.ReadOnly {
		title += "  [read-only]"
	}
	title = styleTitle.Render(title)
	if m.err != nil && m.snap != nil {
		// The last snapshot stays on screen; the title says it may be stale.
		title += "  " + styleBad.Render("watch error, the view may be stale: "+m.err.Error())
	}
	b.WriteString(fit(title, m.width) + "\n")
	switch {
	case m.snap == nil && m.err != nil:
		b.WriteString(fit(styleBad.Render("error: "+m.err.Error()), m.width) + "\n")
		return b.String()
	case m.snap == nil:
		b.WriteString("reading the cluster...\n")
		return b.String()
	case m.showHelp:
		b.WriteString(m.helpView())
		return b.String()
	case len(m.cols) == 0:
		b.WriteString(fit(fmt.Sprintf("No node carries the site label %s. Label nodes with 'kubectl sitefail sites label'.", m.snap.Keys.Site), m.width) + "\n")
		b.WriteString(m.footer())
		return b.String()
	}
	if m.history && m.stage == browsing {
		b.WriteString(m.paneView(m.bodyHeight()-1, m.historyStatus()))
	} else if m.detail && m.stage == browsing {
		b.WriteString(m.paneView(m.bodyHeight()-1, m.detailStatus()))
	} else if m.nodes && m.stage == browsing {
		b.WriteString(m.paneView(m.bodyHeight()-1, m.nodesStatus()))
	} else {
		b.WriteString(m.columnsView(m.columnsHeight()))
		if m.stage != browsing {
			b.WriteString(m.paneView(m.bodyHeight()-m.columnsHeight()-1, m.paneStatus()))
		}
	}
	b.WriteString(m.footer())
	return b.String()
}

// paneView draws the pane's viewport at h lines, padded, then its status line.
func (m *Model) paneView(h int, status string) string {
	lines := strings.Split(m.pane.View(), "\n")
	var b strings.Builder
	for i := 0; i < h; i++ {
		l := ""
		if i < len(lines) {
			l = lines[i]
		}
		b.WriteString(fit(l, m.width) + "\n")
	}
	b.WriteString(fit(status, m.width) + "\n")
	return b.String()
}

func (m *Model) columnsView(h int) string {
	n := len(m.cols)
	colW := (m.width - (n - 1)) / n
	cols := make([][]string, n)
	for i := range m.cols {
		c := &m.cols[i]
		cols[i] = append(cols[i], fit(c.header, colW), fit(styleDim.Render(c.tiers), colW))
		cols[i] = append(cols[i], m.rows(i, max(h-2, 1), colW)...)
	}
	var b strings.Builder
	line := make([]string, n)
	for r := 0; r < h; r++ {
		for i := range cols {
			cell := ""
			if r < len(cols[i]) {
				cell = cols[i][r]
			}
			line[i] = fit(cell, colW)
		}
		b.WriteString(strings.Join(line, "│") + "\n")
	}
	return b.String()
}

// rows renders the visible part of one site column, scrolled to keep the cursor shown.
// Only the rows on screen are drawn: the cost of a frame does not grow with the VMs.
func (m *Model) rows(i, h, w int) []string {
	c := &m.cols[i]
	if len(c.vms) == 0 {
		return nil
	}
	cur := min(m.cursor[i], len(c.vms)-1)
	curRow := c.rowOf[cur]
	start := 0
	if curRow >= h {
		start = curRow - h + 1
	}
	out := make([]string, 0, h)
	for k := start; k < len(c.rows) && len(out) < h; k++ {
		r := c.rows[k]
		if r.vm < 0 {
			out = append(out, fit(" "+styleDim.Render("tier "+selector.TierName(r.tier)), w))
			continue
		}
		vm := c.vms[r.vm]
		sel := i == m.col && r.vm == cur
		mark := " "
		if m.marked[vm.Key()] {
			mark = "✓"
		}
		text := mark + glyph(vm, !sel) + " " + vm.Key() + managedMark(vm, !sel)
		if sel {
			text = styleSelected.Render(fit(text, w))
		}
		out = append(out, fit(text, w))
	}
	return out
}

// footer is one line: what an action would apply to, the keys that work now, and
// always help and quit, however narrow the terminal.
func (m *Model) footer() string {
	if m.editing {
		return fit(m.filter.View()+styleDim.Render("  (enter apply, esc clear)"), m.width)
	}
	h := m.help
	always := h.ShortHelpView([]key.Binding{m.keys.Help, m.keys.Quit})
	left := ""
	if !m.opts.ReadOnly && m.stage != moving {
		sel := "cursor vm"
		switch {
		case m.tier > 0:
			sel = fmt.Sprint("tier ", m.tier)
		case len(m.marked) > 0:
			sel = fmt.Sprintf("%d marked", len(m.marked))
		}
		left = fmt.Sprintf("[%s → %s] ", sel, m.defaultTarget())
	}
	if f := m.filter.Value(); f != "" {
		left = "filter=" + f + " " + left
	}
	room := m.width - ansi.StringWidth(left) - ansi.StringWidth(always) - 3
	h.Width = max(room, 0)
	middle := ""
	if room > 4 {
		middle = h.ShortHelpView(m.keys.ShortHelp())
	}
	line := left + middle
	if pad := m.width - ansi.StringWidth(line) - ansi.StringWidth(always); pad > 0 {
		line += strings.Repeat(" ", pad)
	} else {
		line = ansi.Truncate(line, max(m.width-ansi.StringWidth(always)-1, 0), "…") + " "
	}
	return fit(line+always, m.width)
}

func (m *Model) planContent() string {
	var b strings.Builder
	if m.planPending {
		return "reading the cluster for the plan (storage, devices, instance types, networks)..."
	}
	if m.planErr != nil {
		b.WriteString(styleBad.Render("plan: " + m.planErr.Error()))
		return b.String()
	}
	p := m.plan
	counts := make([]string, 0)
	for _, a := range []plan.Action{plan.ActionMigrate, plan.ActionRestart, plan.ActionFailover, plan.ActionPatch, plan.ActionSkip} {
		if n := p.Summary.ByAction[a]; n > 0 {
			counts = append(counts, fmt.Sprintf("%d %s", n, a))
		}
	}
	b.WriteString(styleTitle.Render(fmt.Sprintf("PLAN %s → %s: %s", p.Selection, p.Request.To, strings.Join(counts, ", "))))
	// Blockers and warnings wrap: their fix is at the end of the sentence.
	for _, i := range p.Blockers {
		b.WriteString("\n" + wrapIndent("BLOCKER "+issueText(i), m.width, "  ", styleBad))
	}
	// What a failover rests on comes before the warnings, so that the confirmation
	// shows it without scrolling.
	for _, site := range releasedSites(p) {
		b.WriteString("\n" + m.evidence(site, p.Fencing[site], m.planSnap, m.planAt))
	}
	for _, i := range p.Warnings {
		if evidenceSays[i.Code] {
			continue
		}
		b.WriteString("\n" + wrapIndent("warning "+issueText(i), m.width, "  ", styleWarn))
	}
	for _, st := range p.Steps {
		fmt.Fprintf(&b, "\n  t%s %-28s %s→%s %s", selector.TierName(st.Tier), st.Key(), st.From, st.To, st.Action)
	}
	return b.String()
}

// evidenceSays are the plan's warnings that the FENCING lines say in the view's terms,
// from the same judgement (the warnings name the CLI's --confirm-site-down): the
// confirmation has the room for one of the two.
var evidenceSays = map[string]bool{"FailoverNeedsConfirmation": true, "FailoverProvenByFencing": true, "PossiblyPartitioned": true}

// paneStatus is the line under the plan or progress pane: what to do next.
func (m *Model) paneStatus() string {
	switch {
	case m.stage == confirming && m.pane.TotalLineCount() > m.pane.Height:
		// The evidence may push the rest below the pane: the operator must know there
		// is more before typing.
		return styleBad.Render(fmt.Sprintf("Type %q and press enter to move (esc back, pgup/pgdn more): ", m.confirmWord())) + m.confirm.View()
	case m.stage == confirming:
		return styleBad.Render(fmt.Sprintf("Type %q and press enter to move (esc to go back): ", m.confirmWord())) + m.confirm.View()
	case m.stage == planning && (m.planErr != nil || m.planPending):
		return "esc to go back"
	case m.stage == planning && !m.plan.Work():
		return "Nothing to do: already on " + m.plan.Request.To + ". esc to go back"
	case m.stage == planning && m.plan.Blocked(false):
		return styleBad.Render("BLOCKED: resolve the blockers (the CLI's 'move --force' waives overridable ones). esc to go back")
	case m.stage == planning:
		return "m to move, esc to go back" + m.scrollHint()
	case m.stage == moving:
		return "c cancel (no new starts), ctrl+c stop" + m.scrollHint()
	}
	return "esc to go back" + m.scrollHint()
}

func (m *Model) scrollHint() string {
	if m.pane.TotalLineCount() <= m.pane.Height {
		return ""
	}
	return fmt.Sprintf("  (pgup/pgdn scroll, %d%%)", int(m.pane.ScrollPercent()*100))
}

// wrapIndent wraps plain text to w cells, each line indented and styled on its own so
// that no escape sequence spans a line break.
func wrapIndent(text string, w int, indent string, style lipgloss.Style) string {
	lines := wrapWords(text, max(w-2*len(indent), 10))
	for i, l := range lines {
		pre := indent
		if i > 0 {
			pre += indent
		}
		lines[i] = pre + style.Render(l)
	}
	return strings.Join(lines, "\n")
}

// wrapWords breaks plain text into lines of at most limit cells, at spaces only: a flag
// like --confirm-site-down=DR stays whole.
func wrapWords(text string, limit int) []string {
	var lines []string
	for _, word := range strings.Fields(text) {
		if n := len(lines); n > 0 && ansi.StringWidth(lines[n-1])+1+ansi.StringWidth(word) <= limit {
			lines[n-1] += " " + word
		} else {
			lines = append(lines, word)
		}
	}
	return lines
}

func issueText(i plan.Issue) string {
	if i.VM != "" {
		return i.VM + ": " + i.Message
	}
	return i.Message
}

func (m *Model) progressContent() string {
	var b strings.Builder
	state := "MOVING"
	if m.stage == finished {
		state = "DONE"
		if m.moveErr != nil || (m.report != nil && (m.report.Failed() || m.report.Interrupted)) {
			state = "FINISHED WITH PROBLEMS"
		}
	}
	b.WriteString(styleTitle.Render(fmt.Sprintf("%s %d/%d done, %d failed", state, m.done, m.total, m.failed)))
	if m.moveErr != nil {
		b.WriteString("\n" + styleBad.Render(m.moveErr.Error()))
	}
	if m.report != nil {
		for _, t := range m.report.Tiers {
			fmt.Fprintf(&b, "\n  tier %s: moved %d failed %d skipped %d not started %d RTO %s", selector.TierName(t.Tier), t.Moved, t.Failed, t.Skipped, t.Pending, t.RTO)
		}
	}
	for _, l := range m.log {
		b.WriteString("\n  " + l)
	}
	return b.String()
}

func (m *Model) detailStatus() string { return "esc or enter to close" + m.scrollHint() }

func (m *Model) detailContent() string {
	vm := m.current()
	if vm == nil {
		return "no VM under the cursor"
	}
	var b strings.Builder
	b.WriteString(styleTitle.Render(vm.Key()) + fmt.Sprintf("  tier %s  state %s  %s  ready %v\n", selector.TierName(vm.Tier), vm.State, vm.PrintableStatus, vm.Ready))
	node, migr, ready := "-", "-", "-"
	if vm.Instance != nil {
		node = vm.Instance.NodeName
		migr = fmt.Sprint(vm.Instance.LiveMigratable)
		if vm.Instance.NotMigratable != "" {
			migr += " (" + vm.Instance.NotMigratable + ")"
		}
		ready = fmt.Sprint(vm.Instance.Ready)
	}
	fmt.Fprintf(&b, "  home %s  current %s  node %s  runStrategy %s\n", dashIf(vm.HomeSite), dashIf(vm.CurrentSite), node, vm.RunStrategy)
	fmt.Fprintf(&b, "  conditions: Ready=%s LiveMigratable=%s RestartRequired=%v\n", ready, migr, vm.RestartRequired)
	if vm.GitOps != "" {
		b.WriteString(styleWarn.Render(fmt.Sprintf("  managed by %s: a move is reverted at its next sync; commit the delta (kubectl sitefail gitops) or pause the sync, then run ui --allow-gitops-drift", vm.GitOps)) + "\n")
	}
	if vm.Owner != "" {
		b.WriteString(styleWarn.Render(fmt.Sprintf("  owned by %s: it rewrites the template; move the owner's template instead", vm.Owner)) + "\n")
	}
	var journal []string
	for k, v := range vm.Annotations {
		if strings.HasPrefix(k, "sitefail.io/") {
			journal = append(journal, strings.TrimPrefix(k, "sitefail.io/")+"="+v)
		}
	}
	sort.Strings(journal)
	if len(journal) > 0 {
		b.WriteString("  journal: " + strings.Join(journal, " ") + "\n")
	}
	if m.eventsVM == vm.Key() {
		switch {
		case m.eventErr != nil:
			b.WriteString(styleWarn.Render("  events: "+m.eventErr.Error()) + "\n")
		case len(m.events) > 0:
			b.WriteString("  recent events:\n")
			// Wrapped, not cut: an Event's message is the part that explains.
			for _, e := range m.events {
				b.WriteString(wrapIndent(e, m.width, "    ", plain) + "\n")
			}
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

func dashIf(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (m *Model) helpView() string {
	h := m.help
	h.Width = m.width
	var b strings.Builder
	b.WriteString(fit("Keys (those that work now)", m.width) + "\n")
	for _, l := range strings.Split(h.FullHelpView(m.keys.FullHelp()), "\n") {
		b.WriteString(fit("  "+l, m.width) + "\n")
	}
	for _, l := range []string{
		"",
		"  A plan acts on the tier picked with 1-9; with 0, on the VMs marked with space,",
		"  or the one under the cursor. A failover asks for the dead site's name.",
		"  n reads the site's nodes afresh: lease ages, and the fencing evidence that",
		"  proves a dead site's nodes off, or its absence (the plan shows it too).",
		"",
		"Glyphs",
		"  ● R running and ready   ◐ s starting   ⇄ M migrating",
		"  → P pending a move      ○ - stopped    ✖ S stranded on a dead site",
		"  ✓ marked   [argocd] [flux] managed by GitOps, [owned] by a controller: refused",
		"",
		"press any key",
	} {
		b.WriteString(fit(l, m.width) + "\n")
	}
	return b.String()
}

// historyContent is the list of move records, the cursor's marked, or the opened one's
// report.
func (m *Model) historyContent() string {
	switch {
	case m.historyErr != nil:
		return styleBad.Render("history: " + m.historyErr.Error())
	case m.recordID != "" && m.recordText == "":
		return "reading record " + m.recordID + "..."
	case m.recordID != "":
		return m.recordText
	case m.records == nil:
		return "reading the move records..."
	case len(m.records) == 0:
		return "No move records yet: every move, failover, failback and drill leg keeps one."
	}
	var b strings.Builder
	for i, r := range m.records {
		line := "  " + r.Line
		if i == m.recCursor {
			line = styleSelected.Render("> " + r.Line)
		}
		b.WriteString(line + "\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func (m *Model) historyStatus() string {
	if m.recordID != "" {
		return "record " + m.recordID + m.scrollHint()
	}
	return fmt.Sprintf("move history: %d record(s); enter opens one", len(m.records))
}

func (m *Model) nodesStatus() string {
	return "esc or n to close (n reopens it with a fresh read)" + m.scrollHint()
}

// nodesContent is the focused site's nodes, as sites -o wide shows them, from the read
// made when the pane opened: for a dead site, first what a failover of it would rest
// on.
func (m *Model) nodesContent() string {
	switch {
	case m.nodesErr != nil:
		return styleBad.Render(m.nodesErr.Error())
	case m.nodesSnap == nil:
		return "reading the cluster for the nodes' leases and fencing evidence..."
	case m.col >= len(m.cols):
		return ""
	}
	s, site := m.nodesSnap, m.cols[m.col].site
	var names []string
	ready := 0
	for _, n := range s.Nodes {
		if n.Site == site {
			names = append(names, n.Name)
			if n.State == snapshot.NodeReady {
				ready++
			}
		}
	}
	var b strings.Builder
	b.WriteString(fmt.Sprintf("%s %s %d/%d nodes Ready, read at %s", styleTitle.Render(site), health(ready, len(names)), ready, len(names), m.nodesAt.Format("15:04:05")))
	switch {
	case ready == 0 && len(names) > 0:
		b.WriteString("\n" + m.evidence(site, s.SiteFencing(site), s, m.nodesAt))
	case ready < len(names):
		// A failover needs the whole site down; the nodes' evidence still says which
		// are fenced.
		fs := s.SiteFencing(site)
		b.WriteString("\n" + nodeRows(names, s, &fs, m.nodesAt, m.width, "  "))
	default:
		b.WriteString("\n" + nodeRows(names, s, nil, m.nodesAt, m.width, "  "))
	}
	return b.String()
}

// evidence says what a failover of the dead site rests on, in the words of the
// judgement it was given (the plan's, or snapshot.SiteFencing's, as sites shows it):
// every node proven off by strong evidence, or which nodes only the typed name stands
// for; a possible partition; evidence that could not be read; then each node's
// strongest proof and lease age as of at, when s was read.
func (m *Model) evidence(site string, fs fencing.Site, s *snapshot.Snapshot, at time.Time) string {
	var lines []string
	if fs.Proven {
		lines = append(lines, wrapIndent(fmt.Sprintf("FENCING %s PROVEN down: every node has strong evidence", site), m.width, "  ", styleOK))
	} else {
		lines = append(lines, wrapIndent(fmt.Sprintf("FENCING %s NOT PROVEN down: no strong evidence for %s. Type its name only once you know its nodes are off: a site still running its VMs would corrupt their disks",
			site, strings.Join(fencing.Unproven(fs.Nodes), ", ")), m.width, "  ", styleBad))
	}
	if fs.Partition != "" {
		lines = append(lines, wrapIndent("POSSIBLY PARTITIONED rather than powered off: "+fs.Partition+". Its VMs may still run there: fence its nodes before you type its name", m.width, "  ", styleBad))
	}
	if len(fs.Unread) > 0 {
		lines = append(lines, wrapIndent("fencing evidence not read: "+strings.Join(fs.Unread, "; "), m.width, "  ", styleWarn))
	}
	names := make([]string, len(fs.Nodes))
	for i, e := range fs.Nodes {
		names[i] = e.Node
	}
	lines = append(lines, nodeRows(names, s, &fs, at, m.width, "    "))
	return strings.Join(lines, "\n")
}

// nodeRows is the node table of sites -o wide, narrowed to what a failover needs: each
// node's state, its kubelet's lease age as of at, and its strongest proof (fs nil: no
// node of the site is down, nothing to prove). A node the judgement names that s does
// not hold was deleted. A proof's explanation wraps under its column rather than being
// cut: it is the part that says why a FAR does not count.
func nodeRows(names []string, s *snapshot.Snapshot, fs *fencing.Site, at time.Time, w int, indent string) string {
	type row struct {
		name, state, lease, proof string
		best                      fencing.Strength
	}
	rows := []row{{name: "NODE", state: "STATUS", lease: "LEASE-AGE", proof: "FENCING"}}
	for _, name := range names {
		r := row{name: name, state: "-", lease: "-", proof: "-"}
		if s != nil {
			r.state = "deleted"
			if n, ok := s.Node(name); ok {
				r.state, r.lease = string(n.State), n.Fence.LeaseAge(at)
			}
		}
		if fs != nil {
			ev, _ := fs.Node(name)
			r.proof, r.best = ev.Summary(), ev.Best()
		}
		rows = append(rows, r)
	}
	var wName, wState, wLease int
	for _, r := range rows {
		wName, wState, wLease = max(wName, len(r.name)), max(wState, len(r.state)), max(wLease, len(r.lease))
	}
	var lines []string
	for i, r := range rows {
		prefix := fmt.Sprintf("%s%-*s  %-*s  %-*s  ", indent, wName, r.name, wState, r.state, wLease, r.lease)
		style := plain
		switch {
		case i == 0:
			style = styleDim
		case fs == nil:
		case r.best == fencing.Strong:
			style = styleOK
		case r.best > fencing.None:
			style = styleWarn
		default:
			style = styleBad
		}
		// Too narrow a column for a proof's words: they go under the row instead.
		under := strings.Repeat(" ", len(prefix))
		if w-len(prefix) < 24 && i > 0 {
			under = indent + "  "
			lines = append(lines, strings.TrimRight(prefix, " "))
			prefix = under
		}
		if i == 0 {
			prefix = styleDim.Render(prefix)
		}
		for j, c := range wrapWords(r.proof, max(w-len(under), 10)) {
			if j > 0 {
				prefix = under
			}
			lines = append(lines, prefix+style.Render(c))
		}
	}
	return strings.Join(lines, "\n")
}
