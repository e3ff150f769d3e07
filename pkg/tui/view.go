package tui

import (
	"fmt"
	"sort"
	"strings"

	"github.com/charmbracelet/lipgloss"

	"github.com/sitefail/kubectl-sitefail/pkg/plan"
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
)

// glyph is a VM's state at a glance; the letter after it keeps the meaning readable
// without colour.
func glyph(vm *snapshot.VM) string {
	inst := vm.Instance
	switch {
	case vm.State == snapshot.StateStranded:
		return styleBad.Render("✖ S")
	case inst != nil && inst.Migrating:
		return styleMig.Render("⇄ M")
	case vm.State == snapshot.StatePendingMove:
		return styleMove.Render("→ P")
	case inst == nil || inst.Terminating:
		return styleDim.Render("○ -")
	case inst.Ready:
		return styleOK.Render("● R")
	default:
		return styleWarn.Render("◐ s")
	}
}

// managedMark flags a VM whose manifest another controller owns: a GitOps controller
// reverts a move at its next sync, an owner rewrites the template, so the plan refuses
// them; the mark says why before the plan does.
func managedMark(vm *snapshot.VM) string {
	switch {
	case vm.GitOps != "":
		return styleWarn.Render(" [" + vm.GitOps + "]")
	case vm.Owner != "":
		return styleWarn.Render(" [owned]")
	}
	return ""
}

func siteHeader(s *snapshot.Snapshot, site string) string {
	ready, total := 0, 0
	var cpu, mem, useCPU, useMem int64
	for _, n := range s.Nodes {
		if n.Site != site {
			continue
		}
		total++
		if n.State == snapshot.NodeReady {
			ready++
		}
		cpu += n.CPUMilli
		mem += n.MemoryBytes
	}
	for _, vm := range s.VMs {
		if vm.Instance != nil && vm.CurrentSite == site {
			useCPU += vm.CPUMilli
			useMem += vm.MemoryBytes
		}
	}
	health := styleOK.Render("UP")
	switch {
	case ready == 0:
		health = styleBad.Render("DOWN")
	case ready < total:
		health = styleWarn.Render("DEGRADED")
	}
	return fmt.Sprintf("%s %s %d/%d nodes cpu %s%% mem %s%%", styleTitle.Render(site), health, ready, total, pct(useCPU, cpu), pct(useMem, mem))
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
	sort.Slice(keys, func(i, j int) bool { return tierKey(keys[i]) < tierKey(keys[j]) })
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

func fit(s string, w int) string {
	if w <= 0 {
		return ""
	}
	if lipgloss.Width(s) > w {
		r := []rune(s)
		for len(r) > 0 && lipgloss.Width(string(r)) > w {
			r = r[:len(r)-1]
		}
		return string(r)
	}
	return s + strings.Repeat(" ", w-lipgloss.Width(s))
}

// View implements tea.Model.
func (m *Model) View() string {
	var b strings.Builder
	title := fmt.Sprintf("sitefail  context %s", m.opts.Context)
	if m.opts.ReadOnly {
		title += "  [read-only]"
	}
	b.WriteString(fit(styleTitle.Render(title), m.width) + "\n")
	if m.snap == nil {
		if m.err != nil {
			b.WriteString(styleBad.Render("error: "+m.err.Error()) + "\n")
		} else {
			b.WriteString("reading the cluster...\n")
		}
		return b.String()
	}
	if m.help {
		return b.String() + m.helpView()
	}
	sites := m.sites()
	if len(sites) == 0 {
		b.WriteString(fmt.Sprintf("No node carries the site label %s. Label nodes with 'kubectl sitefail sites label'.\n", m.snap.Keys.Site))
		return b.String()
	}
	colW := (m.width - (len(sites) - 1)) / len(sites)
	cols := make([][]string, len(sites))
	for i, site := range sites {
		vms := m.column(site)
		cols[i] = append(cols[i], fit(siteHeader(m.snap, site), colW), fit(styleDim.Render(tierCounts(vms)), colW))
		cols[i] = append(cols[i], m.rows(i, vms, colW)...)
	}
	bodyH := m.height - 2 - m.footerHeight()
	if m.detail || m.stage != browsing {
		bodyH = m.height/2 - 1
	}
	if bodyH < 4 {
		bodyH = 4
	}
	for r := 0; r < bodyH; r++ {
		line := make([]string, len(sites))
		for i := range sites {
			cell := ""
			if r < len(cols[i]) {
				cell = cols[i][r]
			}
			line[i] = fit(cell, colW)
		}
		b.WriteString(strings.Join(line, "│") + "\n")
	}
	b.WriteString(m.lower())
	return b.String()
}

// rows renders the visible part of one site column, scrolled to keep the cursor shown.
func (m *Model) rows(i int, vms []*snapshot.VM, w int) []string {
	type row struct {
		text string
		vm   int
	}
	var all []row
	lastTier := -1
	for j, vm := range vms {
		if vm.Tier != lastTier {
			lastTier = vm.Tier
			all = append(all, row{text: styleDim.Render("tier " + tierName(vm.Tier)), vm: -1})
		}
		all = append(all, row{text: glyph(vm) + " " + vm.Key() + managedMark(vm), vm: j})
	}
	h := m.height - 4 - m.footerHeight()
	if m.detail || m.stage != browsing {
		h = m.height/2 - 3
	}
	if h < 2 {
		h = 2
	}
	cur := -1
	if i < len(m.cursor) {
		cur = m.cursor[i]
	}
	start := 0
	for k, r := range all {
		if r.vm == cur && k >= h {
			start = k - h + 1
		}
	}
	var out []string
	for k := start; k < len(all) && len(out) < h; k++ {
		text := fit(" "+all[k].text, w)
		if i == m.col && all[k].vm == cur && all[k].vm >= 0 {
			text = styleSelected.Render(text)
		}
		out = append(out, text)
	}
	return out
}

func (m *Model) footerHeight() int { return 1 }

func (m *Model) lower() string {
	var b strings.Builder
	switch {
	case m.stage == planning || m.stage == confirming:
		b.WriteString(m.planView())
	case m.stage == moving || m.stage == finished:
		b.WriteString(m.progressView())
	case m.detail:
		b.WriteString(m.detailView())
	}
	b.WriteString(m.footer())
	return b.String()
}

func (m *Model) footer() string {
	sel := "vm under cursor"
	if m.tier > 0 {
		sel = fmt.Sprint("tier ", m.tier)
	}
	var hint string
	switch {
	case m.editing:
		hint = "filter: " + m.filter + "█  (enter apply, esc clear)"
	case m.opts.ReadOnly:
		hint = "←→ site ↑↓ vm  enter detail  / filter  ? help  q quit"
	case m.stage == moving:
		hint = "c cancel (no new starts)  ctrl+c stop"
	default:
		hint = fmt.Sprintf("[%s → %s] 1-9 tier 0 vm t target p plan m move  enter detail / filter ? help q quit", sel, m.defaultTarget())
	}
	if m.filter != "" && !m.editing {
		hint = "filter=" + m.filter + "  " + hint
	}
	return fit(styleDim.Render(hint), m.width)
}

func (m *Model) planView() string {
	var b strings.Builder
	if m.planErr != nil {
		b.WriteString(styleBad.Render("plan: "+m.planErr.Error()) + "\n")
		return b.String()
	}
	p := m.plan
	counts := make([]string, 0)
	for _, a := range []plan.Action{plan.ActionMigrate, plan.ActionRestart, plan.ActionFailover, plan.ActionPatch, plan.ActionSkip} {
		if n := p.Summary.ByAction[a]; n > 0 {
			counts = append(counts, fmt.Sprintf("%d %s", n, a))
		}
	}
	b.WriteString(styleTitle.Render(fmt.Sprintf("PLAN %s → %s: %s", p.Selection, p.Request.To, strings.Join(counts, ", "))) + "\n")
	lines := 0
	max := m.height/2 - 5
	for _, st := range p.Steps {
		if lines >= max {
			b.WriteString(styleDim.Render(fmt.Sprintf("  ... %d more", len(p.Steps)-lines)) + "\n")
			break
		}
		b.WriteString(fit(fmt.Sprintf("  t%s %-28s %s→%s %s", tierName(st.Tier), st.Key(), st.From, st.To, st.Action), m.width) + "\n")
		lines++
	}
	for _, i := range p.Blockers {
		b.WriteString(fit(styleBad.Render("  BLOCKER "+issueText(i)), m.width) + "\n")
	}
	for _, i := range p.Warnings {
		b.WriteString(fit(styleWarn.Render("  warning "+issueText(i)), m.width) + "\n")
	}
	switch {
	case m.stage == confirming:
		b.WriteString(styleBad.Render(fmt.Sprintf("Type %q and press enter to move (esc to go back): ", m.confirmWord())) + m.confirm + "█\n")
	case !p.Work():
		b.WriteString("Nothing to do: already on " + p.Request.To + ". esc to go back\n")
	case p.Blocked(false):
		b.WriteString(styleBad.Render("BLOCKED: resolve the blockers (the CLI's 'move --force' waives overridable ones). esc to go back") + "\n")
	default:
		b.WriteString("m to move, esc to go back\n")
	}
	return b.String()
}

func issueText(i plan.Issue) string {
	if i.VM != "" {
		return i.VM + ": " + i.Message
	}
	return i.Message
}

func (m *Model) progressView() string {
	var b strings.Builder
	state := "MOVING"
	if m.stage == finished {
		state = "DONE"
		if m.moveErr != nil || (m.report != nil && (m.report.Failed() || m.report.Interrupted)) {
			state = "FINISHED WITH PROBLEMS"
		}
	}
	b.WriteString(styleTitle.Render(fmt.Sprintf("%s %d/%d done, %d failed", state, m.done, m.total, m.failed)) + "\n")
	if m.moveErr != nil {
		b.WriteString(styleBad.Render(m.moveErr.Error()) + "\n")
	}
	if m.report != nil {
		for _, t := range m.report.Tiers {
			b.WriteString(fmt.Sprintf("  tier %s: moved %d failed %d skipped %d not started %d RTO %s\n", tierName(t.Tier), t.Moved, t.Failed, t.Skipped, t.Pending, t.RTO))
		}
	}
	n := m.height/2 - 3 - strings.Count(b.String(), "\n")
	start := len(m.log) - n
	if start < 0 {
		start = 0
	}
	for _, l := range m.log[start:] {
		b.WriteString(fit("  "+l, m.width) + "\n")
	}
	if m.stage == finished {
		b.WriteString("esc to go back\n")
	}
	return b.String()
}

func (m *Model) detailView() string {
	vm := m.current()
	if vm == nil {
		return ""
	}
	var b strings.Builder
	b.WriteString(styleTitle.Render(vm.Key()) + fmt.Sprintf("  tier %s  state %s  %s  ready %v\n", tierName(vm.Tier), vm.State, vm.PrintableStatus, vm.Ready))
	node, migr := "-", "-"
	if vm.Instance != nil {
		node = vm.Instance.NodeName
		migr = fmt.Sprint(vm.Instance.LiveMigratable)
		if vm.Instance.NotMigratable != "" {
			migr += " (" + vm.Instance.NotMigratable + ")"
		}
	}
	b.WriteString(fmt.Sprintf("  home %s  current %s  node %s  runStrategy %s\n", dashIf(vm.HomeSite), dashIf(vm.CurrentSite), node, vm.RunStrategy))
	ready := "-"
	if vm.Instance != nil {
		ready = fmt.Sprint(vm.Instance.Ready)
	}
	b.WriteString(fit(fmt.Sprintf("  conditions: Ready=%s LiveMigratable=%s RestartRequired=%v", ready, migr, vm.RestartRequired), m.width) + "\n")
	if vm.GitOps != "" {
		b.WriteString(fit(styleWarn.Render(fmt.Sprintf("  managed by %s: a move is reverted at its next sync; commit the delta (kubectl sitefail gitops) or pause the sync, then run ui --allow-gitops-drift", vm.GitOps)), m.width) + "\n")
	}
	if vm.Owner != "" {
		b.WriteString(fit(styleWarn.Render(fmt.Sprintf("  owned by %s: it rewrites the template; move the owner's template instead", vm.Owner)), m.width) + "\n")
	}
	var journal []string
	for k, v := range vm.Annotations {
		if strings.HasPrefix(k, "sitefail.io/") {
			journal = append(journal, strings.TrimPrefix(k, "sitefail.io/")+"="+v)
		}
	}
	sort.Strings(journal)
	if len(journal) > 0 {
		b.WriteString(fit("  journal: "+strings.Join(journal, " "), m.width) + "\n")
	}
	if m.eventsVM == vm.Key() {
		switch {
		case m.eventErr != nil:
			b.WriteString(fit(styleWarn.Render("  events: "+m.eventErr.Error()), m.width) + "\n")
		case len(m.events) > 0:
			b.WriteString("  recent events:\n")
			start := len(m.events) - (m.height/2 - 7)
			if start < 0 {
				start = 0
			}
			for _, e := range m.events[start:] {
				b.WriteString(fit("    "+e, m.width) + "\n")
			}
		}
	}
	return b.String()
}

func dashIf(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (m *Model) helpView() string {
	lines := []string{
		"Keys",
		"  left/right h/l tab  focus a site      up/down j/k  move the cursor",
		"  enter   details of the VM             /    filter by namespace/name",
		"  1-9     act on that tier              0    act on the VM under the cursor",
		"  t       cycle the target site         p    plan the move (changes nothing)",
		"  m       move, after the plan; a failover asks for the dead site's name",
		"  c       cancel a move: no new starts, steps in flight reach a safe point",
		"  esc     close the plan, details or filter      q  quit",
		"",
		"Glyphs",
		"  ● R running and ready   ◐ s starting   ⇄ M migrating",
		"  → P pending a move      ○ - stopped    ✖ S stranded on a dead site",
		"  [argocd] [flux] managed by GitOps, [owned] by a controller: refused by plans",
		"",
		"press any key",
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(fit(l, m.width) + "\n")
	}
	return b.String()
}
