package record

import (
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"

	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
)

// HTML writes one self-contained page per call: the records' summaries, tiers, an inline
// SVG timeline (one row per VM, grouped by tier, coloured by action, with its time to
// Ready) and every run's table. It loads no script, style or font from anywhere, so it
// opens the same from an incident ticket years later. A drill passes both legs.
func HTML(w io.Writer, title string, recs ...*Record) error {
	page := htmlPage{Title: title}
	for _, r := range recs {
		if r != nil {
			page.Records = append(page.Records, view(r))
		}
	}
	for _, a := range actionOrder {
		page.Legend = append(page.Legend, legendItem{Class: actionClass(a), Name: string(a)})
	}
	return pageTemplate.Execute(w, page)
}

type htmlPage struct {
	Title   string
	Records []recordView
	Legend  []legendItem
}

type legendItem struct{ Class, Name string }

type recordView struct {
	Title   string
	Summary [][2]string
	Tiers   []TierTotal
	SVG     svgView
	Runs    []runView
}

type runView struct {
	N        int
	Run      Run
	Evidence []string
}

type svgView struct {
	Width, Height int
	Ticks         []svgTick
	RunLines      []svgTick
	Rows          []svgRow
}

type svgTick struct {
	X     int
	Label string
}

type svgRow struct {
	Y      int
	Label  string
	Header bool
	Bars   []svgBar
	Marks  []svgMark
	Text   string
	TextX  int
}

type svgBar struct {
	X, W   int
	Class  string
	Failed bool
	Title  string
}

type svgMark struct {
	X     int
	Class string
	Title string
}

const (
	labelWidth = 250
	chartWidth = 700
	textWidth  = 90
	rowHeight  = 18
	axisHeight = 28
)

func view(r *Record) recordView {
	v := recordView{Title: "Move " + r.Title()}
	t := r.Totals()
	v.Summary = [][2]string{{"Outcome", string(r.Outcome())}, {"Kind", string(r.MoveKind)}, {"Selection", r.Selection},
		{"From → to", strings.Join(r.From, ", ") + " → " + r.To}, {"Started", when(r.Started())}}
	if e := r.Ended(); e != nil {
		v.Summary = append(v.Summary, [2]string{"Ended", when(*e)})
	}
	actors := []string{}
	for _, run := range r.Runs {
		if !contains(actors, run.Actor) {
			actors = append(actors, run.Actor)
		}
	}
	v.Summary = append(v.Summary, [2]string{"By", strings.Join(actors, ", ")}, [2]string{"Runs", fmt.Sprint(len(r.Runs))},
		[2]string{"VMs", fmt.Sprintf("%d moved, %d failed, %d skipped, %d not started", t.Moved, t.Failed, t.Skipped, t.NotStarted)})
	if r.Integrity != nil && r.Integrity.SHA256 != "" {
		v.Summary = append(v.Summary, [2]string{"SHA-256", r.Integrity.SHA256})
		if r.Integrity.Verified != nil {
			v.Summary = append(v.Summary, [2]string{"Verified", r.Integrity.Detail})
		}
	}
	v.Tiers = r.TierTotals()
	v.SVG = timeline(r, v.Tiers)
	for i, run := range r.Runs {
		v.Runs = append(v.Runs, runView{N: i + 1, Run: run, Evidence: evidenceLines(run.Evidence)})
	}
	return v
}

// span is the record's time range: from the first plan to the last instant recorded.
func span(r *Record) (time.Time, time.Time) {
	start, end := r.Started(), r.Started()
	later := func(t *time.Time) {
		if t != nil && t.After(end) {
			end = *t
		}
	}
	for _, run := range r.Runs {
		later(run.Ended)
		for _, t := range run.Tiers {
			later(t.Finished)
		}
		for _, v := range run.VMs {
			for _, t := range []*time.Time{v.Started, v.Patched, v.MigrationCreated, v.Migrated, v.Released, v.StartRequested, v.Running, v.Ready, v.Finished} {
				later(t)
			}
		}
	}
	if !end.After(start) {
		end = start.Add(time.Second)
	}
	return start, end
}

func timeline(r *Record, tiers []TierTotal) svgView {
	start, end := span(r)
	total := end.Sub(start)
	x := func(t time.Time) int {
		return labelWidth + int(float64(chartWidth)*float64(t.Sub(start))/float64(total))
	}
	sv := svgView{Width: labelWidth + chartWidth + textWidth}
	step := tickStep(total)
	for t := time.Duration(0); t <= total; t += step {
		sv.Ticks = append(sv.Ticks, svgTick{X: x(start.Add(t)), Label: "+" + shortDuration(t)})
	}
	for i, run := range r.Runs {
		if i > 0 {
			sv.RunLines = append(sv.RunLines, svgTick{X: x(run.Decided), Label: fmt.Sprintf("run %d", i+1)})
		}
	}
	y := axisHeight
	for _, tt := range tiers {
		head := fmt.Sprintf("tier %s: RTO %s", selector.TierName(tt.Tier), seconds(tt.RTOSeconds))
		if tt.ObjectiveSeconds > 0 {
			head += fmt.Sprintf(", objective %s, %s", seconds(tt.ObjectiveSeconds), strings.Trim(met(tt.Met), "*"))
		}
		sv.Rows = append(sv.Rows, svgRow{Y: y, Label: head, Header: true})
		y += rowHeight
		var order []string
		entries := map[string][]struct {
			run Run
			vm  VM
		}{}
		for _, run := range r.Runs {
			for _, v := range run.VMs {
				if v.Tier != tt.Tier {
					continue
				}
				if _, ok := entries[v.VM]; !ok {
					order = append(order, v.VM)
				}
				entries[v.VM] = append(entries[v.VM], struct {
					run Run
					vm  VM
				}{run, v})
			}
		}
		for _, name := range order {
			row := svgRow{Y: y, Label: name}
			for _, e := range entries[name] {
				v := e.vm
				if v.Started == nil {
					continue
				}
				to := end
				for _, t := range []*time.Time{v.Ready, v.Finished, e.run.Ended} {
					if t != nil {
						to = *t
						break
					}
				}
				bx := x(*v.Started)
				row.Bars = append(row.Bars, svgBar{X: bx, W: max(x(to)-bx, 2), Class: actionClass(v.Action), Failed: v.Result == ResultFailed,
					Title: fmt.Sprintf("%s %s (run %s): %s, %s", v.VM, v.Action, e.run.MoveID, v.Result, dash(v.Error))})
				for _, m := range []struct {
					t    *time.Time
					kind string
				}{{v.Patched, "patched"}, {v.MigrationCreated, "migration created"}, {v.Migrated, "migrated"}, {v.Released, "released"}, {v.StartRequested, "start requested"}, {v.Running, "running"}} {
					if m.t != nil {
						row.Marks = append(row.Marks, svgMark{X: x(*m.t), Class: "m-" + strings.ReplaceAll(m.kind, " ", "-"), Title: m.kind + " " + clock(m.t)})
					}
				}
				row.Text = v.Result
				if v.Ready != nil {
					row.Text = toReady(v)
				}
			}
			row.TextX = labelWidth + chartWidth + 6
			sv.Rows = append(sv.Rows, row)
			y += rowHeight
		}
	}
	sv.Height = y + 4
	return sv
}

// tickStep picks a round step that gives the axis at most ten ticks.
func tickStep(total time.Duration) time.Duration {
	for _, s := range []time.Duration{time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute, 5 * time.Minute,
		10 * time.Minute, 30 * time.Minute, time.Hour, 6 * time.Hour} {
		if total/s <= 10 {
			return s
		}
	}
	return 24 * time.Hour
}

func shortDuration(d time.Duration) string {
	return strings.Replace(strings.Replace(d.String(), "m0s", "m", 1), "h0m", "h", 1)
}

func actionClass(a plan.Action) string { return "a-" + string(a) }

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"tier": selector.TierName, "clock": clock, "when": when, "seconds": seconds, "objective": objectiveText, "toReady": toReady,
	"met": func(m *bool) string { return strings.Trim(met(m), "*") },
	"ended": func(t *time.Time) string {
		if t == nil {
			return "did not record its end (the process died: a rerun completes the record)"
		}
		return "ended " + when(*t)
	},
	"add":  func(a, b int) int { return a + b },
	"dash": dash,
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{.Title}}</title>
<style>
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; margin-top: 1.5em; } h3 { font-size: 1.1em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
svg text { font: 11px system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; fill: #222; }
svg text.head { font-weight: bold; }
.axis { stroke: #ddd; } .run { stroke: #555; stroke-dasharray: 4 3; }
.a-live-migrate { fill: #2b7bb9; } .a-restart { fill: #e08a1e; } .a-failover { fill: #c0392b; } .a-start { fill: #8e44ad; }
.a-wait { fill: #16a085; } .a-patch-only { fill: #7f8c8d; } .a-skip { fill: #bdc3c7; }
rect.failed { stroke: #b00; stroke-width: 2; fill-opacity: .45; }
.m-patched, .m-migration-created, .m-migrated, .m-released, .m-start-requested, .m-running { fill: #fff; stroke: #222; stroke-width: 1; }
.m-running { fill: #2ecc71; } .m-released { fill: #000; } .m-migrated { fill: #f1c40f; }
.legend span { display: inline-block; margin-right: 1em; } .legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: middle; }
.legend i.a-live-migrate { background: #2b7bb9; } .legend i.a-restart { background: #e08a1e; } .legend i.a-failover { background: #c0392b; }
.legend i.a-start { background: #8e44ad; } .legend i.a-wait { background: #16a085; } .legend i.a-patch-only { background: #7f8c8d; } .legend i.a-skip { background: #bdc3c7; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
{{range .Records}}
<h2>{{.Title}}</h2>
<table>{{range .Summary}}<tr><th>{{index . 0}}</th><td>{{index . 1}}</td></tr>{{end}}</table>
<h3>Tiers</h3>
<table><tr><th>tier</th><th>started</th><th>last Ready</th><th>RTO</th><th>objective</th><th>result</th></tr>
{{range .Tiers}}<tr><td>{{tier .Tier}}</td><td>{{clock .Started}}</td><td>{{clock .LastReady}}</td><td class="num">{{seconds .RTOSeconds}}</td><td class="num">{{objective .ObjectiveSeconds}}</td><td>{{met .Met}}</td></tr>
{{end}}</table>
<h3>Timeline</h3>
<p class="legend">{{range $.Legend}}<span><i class="{{.Class}}"></i>{{.Name}}</span>{{end}}<span>○ patched, migration created · <b>●</b> released · green: running · yellow: migrated · red outline: failed</span></p>
{{$h := .SVG.Height}}<svg xmlns="http://www.w3.org/2000/svg" width="{{.SVG.Width}}" height="{{.SVG.Height}}" viewBox="0 0 {{.SVG.Width}} {{.SVG.Height}}" role="img">
{{range .SVG.Ticks}}<line class="axis" x1="{{.X}}" y1="16" x2="{{.X}}" y2="{{$h}}"/><text x="{{.X}}" y="12" text-anchor="middle">{{.Label}}</text>
{{end}}{{range .SVG.RunLines}}<line class="run" x1="{{.X}}" y1="16" x2="{{.X}}" y2="{{$h}}"/><text x="{{add .X 3}}" y="24">{{.Label}}</text>
{{end}}{{range .SVG.Rows}}{{$y := .Y}}{{if .Header}}<text class="head" x="4" y="{{add .Y 13}}">{{.Label}}</text>
{{else}}<text x="12" y="{{add .Y 13}}">{{.Label}}</text>{{range .Bars}}<rect class="{{.Class}}{{if .Failed}} failed{{end}}" x="{{.X}}" y="{{add $y 3}}" width="{{.W}}" height="12"><title>{{.Title}}</title></rect>{{end}}{{range .Marks}}<circle class="{{.Class}}" cx="{{.X}}" cy="{{add $y 9}}" r="3"><title>{{.Title}}</title></circle>{{end}}<text x="{{.TextX}}" y="{{add .Y 13}}">{{.Text}}</text>
{{end}}{{end}}</svg>
<h3>Runs</h3>
{{range .Runs}}<details{{if eq .N 1}} open{{end}}><summary>Run {{.N}}: {{.Run.MoveID}}, {{.Run.Outcome}}</summary>
<ul><li>By {{.Run.Actor}}, plugin {{dash .Run.Version}}: <code>{{dash .Run.Command}}</code></li>
<li>Plan decided {{when .Run.Decided}}; {{ended .Run.Ended}}</li>
{{if .Run.Stopped}}<li>Stopped because: {{.Run.Stopped}}</li>{{end}}{{range .Evidence}}<li>{{.}}</li>{{end}}</ul>
<table><tr><th>VM</th><th>tier</th><th>wave</th><th>action</th><th>reason</th><th>started</th><th>patched</th><th>migration</th><th>migrated</th><th>released</th><th>running</th><th>Ready</th><th>to Ready</th><th>result</th><th>error</th></tr>
{{range .Run.VMs}}<tr><td>{{.VM}}</td><td>{{tier .Tier}}</td><td>{{if .Wave}}{{.Wave}}{{else}}-{{end}}</td><td>{{.Action}}</td><td>{{.Reason}}</td><td>{{clock .Started}}</td><td>{{clock .Patched}}</td><td>{{clock .MigrationCreated}}</td><td>{{clock .Migrated}}</td><td>{{clock .Released}}</td><td>{{clock .Running}}</td><td>{{clock .Ready}}</td><td class="num">{{toReady .}}</td><td>{{.Result}}</td><td>{{.Error}}{{.Note}}</td></tr>
{{end}}</table></details>
{{end}}{{end}}</body>
</html>
`))
