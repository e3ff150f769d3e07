package plugin

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/record"
)

// rtoObjectives is --rto: one objective for every tier ("15m"), or per tier
// ("1=5m,2=15m"); tiers without one are reported, not judged.
type rtoObjectives struct {
	all     time.Duration
	perTier map[int]time.Duration
}

func parseRTO(s string) (*rtoObjectives, error) {
	if s == "" {
		return nil, nil
	}
	o := &rtoObjectives{perTier: map[int]time.Duration{}}
	if !strings.Contains(s, "=") {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("--rto %q: want a duration (15m) or per-tier objectives (1=5m,2=15m)", s)
		}
		o.all = d
		return o, nil
	}
	for _, part := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(part, "=")
		tier, err := strconv.Atoi(strings.TrimSpace(k))
		d, err2 := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || err2 != nil || tier < 1 || d <= 0 {
			return nil, fmt.Errorf("--rto %q: %q is not TIER=DURATION (1=5m)", s, part)
		}
		o.perTier[tier] = d
	}
	return o, nil
}

func (o *rtoObjectives) objective(tier int) (time.Duration, bool) {
	if o == nil {
		return 0, false
	}
	if d, ok := o.perTier[tier]; ok {
		return d, true
	}
	return o.all, o.all > 0
}

// drillTier is one tier's evidence.
type drillTier struct {
	Tier       int     `json:"tier"`
	Moved      int     `json:"moved"`
	Failed     int     `json:"failed"`
	RTOSeconds float64 `json:"rtoSeconds"`
	// ObjectiveSeconds is the --rto objective, 0 when none was given.
	ObjectiveSeconds float64 `json:"objectiveSeconds,omitempty"`
	// EstimatedRTOSeconds is the plan's estimate for the tier (plan.TierEstimate).
	EstimatedRTOSeconds float64 `json:"estimatedRtoSeconds"`
	// Result is pass, fail, or none (no objective).
	Result string `json:"result"`
}

// drillVM is one VM's evidence in one leg: what was done, when it started and when it
// was Ready on the target.
type drillVM struct {
	Leg     int         `json:"leg"`
	VM      string      `json:"vm"`
	Tier    int         `json:"tier"`
	Action  plan.Action `json:"action"`
	Started time.Time   `json:"started"`
	// Ready is zero when the VM did not get there (see failures).
	Ready   time.Time `json:"ready,omitempty"`
	Seconds float64   `json:"seconds,omitempty"`
	Result  string    `json:"result"`
}

// recorder turns a leg's progress events into per-VM evidence.
type recorder struct {
	leg int
	vms []drillVM
	idx map[string]int
}

func (r *recorder) event(e executor.Event) {
	if r.idx == nil {
		r.idx = map[string]int{}
	}
	key := fmt.Sprint(r.leg, "/", e.VM)
	switch e.Kind {
	case executor.StepStarted:
		r.idx[key] = len(r.vms)
		r.vms = append(r.vms, drillVM{Leg: r.leg, VM: e.VM, Tier: e.Tier, Action: e.Action, Started: e.Time, Result: "started"})
	case executor.StepDone, executor.StepFailed:
		i, ok := r.idx[key]
		if !ok {
			return
		}
		v := &r.vms[i]
		v.Result = "failed"
		if e.Kind == executor.StepDone {
			v.Result, v.Ready = "ready", e.Time
			v.Seconds = e.Time.Sub(v.Started).Round(time.Millisecond).Seconds()
		}
	}
}

// drillReport is report.json; its schema is versioned like the plan's.
type drillReport struct {
	APIVersion string             `json:"apiVersion"`
	Kind       string             `json:"kind"`
	Selection  string             `json:"selection"`
	To         string             `json:"to"`
	Kept       bool               `json:"kept"`
	Result     string             `json:"result"`
	Legs       []*executor.Report `json:"legs"`
	Tiers      []drillTier        `json:"tiers"`
	VMs        []drillVM          `json:"vms"`
	Failures   []executor.Failure `json:"failures"`
	// Records are the legs' MoveRecords, as 'kubectl sitefail report' shows them.
	Records []*record.Record `json:"records"`
}

// judge compares leg 1 (the failover rehearsal) with the objectives.
func judge(sel, to string, kept bool, legs []*executor.Report, o *rtoObjectives, est []plan.TierEstimate, vms []drillVM) *drillReport {
	r := &drillReport{APIVersion: "sitefail.io/v1alpha1", Kind: "DrillReport", Selection: sel, To: to, Kept: kept, Legs: legs, Result: "pass",
		Failures: []executor.Failure{}, VMs: vms, Records: []*record.Record{}}
	if r.VMs == nil {
		r.VMs = []drillVM{}
	}
	estimated := map[int]float64{}
	for _, e := range est {
		estimated[e.Tier] = e.RTOSeconds
	}
	for _, leg := range legs {
		if leg != nil {
			r.Failures = append(r.Failures, leg.Failures...)
		}
	}
	if len(legs) > 0 && legs[0] != nil {
		for _, t := range legs[0].Tiers {
			dt := drillTier{Tier: t.Tier, Moved: t.Moved, Failed: t.Failed, RTOSeconds: t.RTOSeconds, EstimatedRTOSeconds: estimated[t.Tier], Result: "none"}
			if d, ok := o.objective(t.Tier); ok {
				dt.ObjectiveSeconds = d.Seconds()
				dt.Result = "pass"
				if t.Failed > 0 || t.Pending > 0 || t.RTOSeconds > d.Seconds() {
					dt.Result = "fail"
					r.Result = "fail"
				}
			}
			r.Tiers = append(r.Tiers, dt)
		}
	}
	sort.Slice(r.Tiers, func(i, j int) bool { return tierSortKey(r.Tiers[i].Tier) < tierSortKey(r.Tiers[j].Tier) })
	if len(r.Failures) > 0 {
		r.Result = "fail"
	}
	return r
}

func tierSortKey(t int) int {
	if t == 0 {
		return int(^uint(0) >> 1)
	}
	return t
}

// write puts report.json and report.md into dir.
func (r *drillReport) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(data, '\n'), 0o644); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# DR drill: %s to %s\n\nResult: **%s**", r.Selection, r.To, strings.ToUpper(r.Result))
	if r.Kept {
		b.WriteString(" (the VMs were kept on " + r.To + ")")
	}
	b.WriteString("\n\n")
	for i, leg := range r.Legs {
		if leg != nil {
			fmt.Fprintf(&b, "- Leg %d: move %s to %s, %s\n", i+1, leg.MoveID, leg.To, leg.Elapsed)
		}
	}
	seconds := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)).Round(time.Second) }
	b.WriteString("\n| tier | moved | failed | RTO | estimated | objective | result |\n|---|---|---|---|---|---|---|\n")
	for _, t := range r.Tiers {
		obj := "-"
		if t.ObjectiveSeconds > 0 {
			obj = seconds(t.ObjectiveSeconds).String()
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %s | %s |\n", tierString(t.Tier), t.Moved, t.Failed,
			seconds(t.RTOSeconds), seconds(t.EstimatedRTOSeconds), obj, t.Result)
	}
	// Each leg as 'kubectl sitefail report' writes a move's record: a drill's evidence
	// and a real failover's read alike.
	var legs []*record.Record
	for i, rec := range r.Records {
		if rec == nil {
			fmt.Fprintf(&b, "\nLeg %d kept no record: it stopped before its first change.\n", i+1)
			continue
		}
		b.WriteString("\n")
		if err := record.Markdown(&b, rec, 2); err != nil {
			return err
		}
		legs = append(legs, rec)
	}
	if len(r.Failures) > 0 {
		b.WriteString("\n## Failures\n\n")
		for _, f := range r.Failures {
			fmt.Fprintf(&b, "- %s: %s\n", f.VM, f.Error)
		}
	}
	var page strings.Builder
	if err := record.HTML(&page, fmt.Sprintf("DR drill: %s to %s, %s", r.Selection, r.To, strings.ToUpper(r.Result)), legs...); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.html"), []byte(page.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(b.String()), 0o644)
}
