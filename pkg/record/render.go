package record

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
)

// Title names the record in a line: what moved where, and how it ended.
func (r *Record) Title() string {
	from := strings.Join(r.From, ", ")
	if from == "" {
		from = "-"
	}
	kind := string(r.MoveKind)
	if r.Drill != nil {
		kind = fmt.Sprintf("drill leg %d", r.Drill.Leg)
	}
	return fmt.Sprintf("%s %s: %s, %s to %s", kind, r.ID, r.Selection, from, r.To)
}

// Markdown writes the record for an incident ticket: a summary, each tier's RTO against
// its objective, a mermaid gantt of tiers and waves (GitHub and GitLab draw it), and
// every VM of every run with its timestamps. level is the heading level of its title,
// so that a drill can put its legs under its own.
func Markdown(w io.Writer, r *Record, level int) error {
	if level < 1 {
		level = 1
	}
	h := func(n int) string { return strings.Repeat("#", level+n-1) }
	var b strings.Builder
	fmt.Fprintf(&b, "%s Move %s\n\n", h(1), mdEscape(r.Title()))
	b.WriteString("| | |\n|---|---|\n")
	row := func(k, v string) { fmt.Fprintf(&b, "| %s | %s |\n", k, v) }
	row("Outcome", "**"+string(r.Outcome())+"**")
	row("Kind", string(r.MoveKind))
	if r.Drill != nil && r.Drill.First != "" {
		row("Drill", fmt.Sprintf("leg %d, after %s", r.Drill.Leg, r.Drill.First))
	}
	row("Selection", mdEscape(r.Selection))
	row("From → to", mdEscape(strings.Join(r.From, ", ")+" → "+r.To))
	row("Started", when(r.Started()))
	if e := r.Ended(); e != nil {
		row("Ended", when(*e))
	}
	row("Runs", fmt.Sprint(len(r.Runs)))
	t := r.Totals()
	row("VMs", fmt.Sprintf("%d moved, %d failed, %d skipped, %d not started", t.Moved, t.Failed, t.Skipped, t.NotStarted))
	if r.Integrity != nil && r.Integrity.SHA256 != "" {
		row("SHA-256", "`"+r.Integrity.SHA256+"`")
		if r.Integrity.Verified != nil {
			row("Verified", mdEscape(r.Integrity.Detail))
		}
	}

	fmt.Fprintf(&b, "\n%s Tiers\n\n| tier | started | last Ready | RTO | objective | result |\n|---|---|---|---|---|---|\n", h(2))
	for _, tt := range r.TierTotals() {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", selector.TierName(tt.Tier), clock(tt.Started), clock(tt.LastReady), seconds(tt.RTOSeconds), objectiveText(tt.ObjectiveSeconds), met(tt.Met))
	}

	fmt.Fprintf(&b, "\n%s Timeline\n\n", h(2))
	gantt(&b, r)

	for i, run := range r.Runs {
		fmt.Fprintf(&b, "\n%s Run %d: %s\n\n", h(2), i+1, run.MoveID)
		fmt.Fprintf(&b, "- By %s, plugin %s: `%s`\n", mdEscape(run.Actor), mdEscape(dash(run.Version)), strings.ReplaceAll(dash(run.Command), "`", "'"))
		ended := "did not record its end (the process died: a rerun completes the record)"
		if run.Ended != nil {
			ended = "ended " + when(*run.Ended)
		}
		fmt.Fprintf(&b, "- Plan decided %s; %s; outcome **%s**\n", when(run.Decided), ended, run.Outcome)
		if run.Stopped != "" {
			fmt.Fprintf(&b, "- Stopped because: %s\n", mdEscape(run.Stopped))
		}
		for _, line := range evidenceLines(run.Evidence) {
			fmt.Fprintf(&b, "- %s\n", mdEscape(line))
		}
		b.WriteString("\n| VM | tier | wave | action | reason | started | patched | migration | migrated | released | running | Ready | to Ready | result |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, v := range run.VMs {
			wave := "-"
			if v.Wave > 0 {
				wave = fmt.Sprint(v.Wave)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", mdEscape(v.VM), selector.TierName(v.Tier), wave, v.Action, mdEscape(v.Reason),
				clock(v.Started), clock(v.Patched), clock(v.MigrationCreated), clock(v.Migrated), clock(v.Released), clock(v.Running), clock(v.Ready), toReady(v), v.Result)
		}
		first := true
		for _, v := range run.VMs {
			if v.Error == "" && v.Note == "" {
				continue
			}
			if first {
				b.WriteString("\nFailures and notes:\n\n")
				first = false
			}
			msg := v.Error
			if msg == "" {
				msg = v.Note
			}
			fmt.Fprintf(&b, "- %s (%s): %s\n", mdEscape(v.VM), v.Result, mdEscape(msg))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// gantt draws each run's tiers and their waves: a section per tier, a bar for the tier
// from its start to its end, and one per wave from its first start to its last Ready.
func gantt(b *strings.Builder, r *Record) {
	const layout = "2006-01-02 15:04:05"
	b.WriteString("```mermaid\ngantt\n")
	fmt.Fprintf(b, "    title %s\n", mermaidText(r.ID+", "+r.Selection+" to "+r.To))
	b.WriteString("    dateFormat YYYY-MM-DD HH:mm:ss\n    axisFormat %H:%M:%S\n")
	bar := func(name string, tag string, from, to time.Time) {
		// Mermaid draws nothing for a bar that ends where it starts.
		if !to.After(from.Add(time.Second - time.Nanosecond)) {
			to = from.Add(time.Second)
		}
		if tag != "" {
			tag += ", "
		}
		fmt.Fprintf(b, "    %s :%s%s, %s\n", mermaidText(name), tag, from.UTC().Format(layout), to.UTC().Format(layout))
	}
	for i, run := range r.Runs {
		for _, t := range run.Tiers {
			if t.Started == nil {
				continue
			}
			fmt.Fprintf(b, "    section Run %d tier %s\n", i+1, selector.TierName(t.Tier))
			end := *t.Started
			if t.Finished != nil {
				end = *t.Finished
			}
			tag := "done"
			if t.Failed > 0 {
				tag = "crit"
			} else if t.Finished == nil {
				tag = "active"
			}
			bar(fmt.Sprintf("tier %s RTO %s", selector.TierName(t.Tier), seconds(t.RTOSeconds)), tag, *t.Started, end)
			for _, w := range runWaves(run, t.Tier) {
				bar(fmt.Sprintf("wave %d (%d VMs)", w.n, w.vms), "", w.from, w.to)
			}
		}
	}
	b.WriteString("```\n")
}

type wave struct {
	n, vms   int
	from, to time.Time
}

// runWaves spans each throttle wave of a tier in a run: from its first start to its last
// Ready (or end).
func runWaves(run Run, tier int) []wave {
	var out []wave
	idx := map[int]int{}
	for _, v := range run.VMs {
		if v.Tier != tier || v.Wave == 0 || v.Started == nil {
			continue
		}
		end := *v.Started
		for _, t := range []*time.Time{v.Ready, v.Finished} {
			if t != nil {
				end = *t
				break
			}
		}
		i, ok := idx[v.Wave]
		if !ok {
			idx[v.Wave] = len(out)
			out = append(out, wave{n: v.Wave, from: *v.Started, to: end})
			i = len(out) - 1
		}
		w := &out[i]
		w.vms++
		if v.Started.Before(w.from) {
			w.from = *v.Started
		}
		if end.After(w.to) {
			w.to = end
		}
	}
	return out
}

func evidenceLines(ev Evidence) []string {
	var out []string
	if len(ev.Confirmed) > 0 {
		out = append(out, "Confirmed down by the operator: "+strings.Join(ev.Confirmed, ", "))
	}
	if len(ev.Proven) > 0 {
		out = append(out, "Proven down by fencing evidence: "+strings.Join(ev.Proven, ", "))
	}
	for _, site := range sortedKeys(ev.Fencing) {
		f := ev.Fencing[site]
		for _, n := range f.Nodes {
			out = append(out, fmt.Sprintf("Fencing of %s, node %s: %s", site, n.Node, evidenceText(n)))
		}
		if len(f.Unread) > 0 {
			out = append(out, fmt.Sprintf("Fencing of %s: could not read %s", site, strings.Join(f.Unread, ", ")))
		}
	}
	if ev.Fence != "" {
		out = append(out, "Released with --fence "+ev.Fence)
	}
	for _, f := range ev.StorageFences {
		out = append(out, "Storage fence: "+f)
	}
	return out
}

func toReady(v VM) string {
	if v.Started == nil || v.Ready == nil {
		return "-"
	}
	return v.Ready.Sub(*v.Started).Round(100 * time.Millisecond).String()
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func clock(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format("15:04:05")
}

func seconds(s float64) string {
	if s <= 0 {
		return "-"
	}
	return time.Duration(s * float64(time.Second)).Round(time.Second).String()
}

func objectiveText(s float64) string {
	if s <= 0 {
		return "-"
	}
	return seconds(s)
}

func met(m *bool) string {
	switch {
	case m == nil:
		return "-"
	case *m:
		return "met"
	}
	return "**missed**"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// mdEscape keeps a value inside its table cell.
func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ", "<", "&lt;", ">", "&gt;").Replace(s)
}

// mermaidText drops what mermaid's gantt grammar reads as syntax: a task's name ends at
// its colon, and its data is split at commas.
func mermaidText(s string) string {
	return strings.NewReplacer(":", " ", "#", " ", ";", " ", ",", " ", "\n", " ").Replace(s)
}

// actionOrder lists the actions as the legend shows them.
var actionOrder = []plan.Action{plan.ActionMigrate, plan.ActionRestart, plan.ActionFailover, plan.ActionStart, plan.ActionWait, plan.ActionPatch, plan.ActionSkip}

func evidenceText(e fencing.Evidence) string {
	if len(e.Proofs) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(e.Proofs))
	for _, p := range e.Proofs {
		parts = append(parts, fmt.Sprintf("%s %s (%s: %s)", p.Kind, p.Name, dash(p.StrengthName), p.Detail))
	}
	return strings.Join(parts, "; ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
