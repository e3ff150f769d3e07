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
	// Result is pass, fail, or none (no objective).
	Result string `json:"result"`
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
	Failures   []executor.Failure `json:"failures"`
}

// judge compares leg 1 (the failover rehearsal) with the objectives.
func judge(sel, to string, kept bool, legs []*executor.Report, o *rtoObjectives) *drillReport {
	r := &drillReport{APIVersion: "sitefail.io/v1alpha1", Kind: "DrillReport", Selection: sel, To: to, Kept: kept, Legs: legs, Result: "pass", Failures: []executor.Failure{}}
	for _, leg := range legs {
		if leg != nil {
			r.Failures = append(r.Failures, leg.Failures...)
		}
	}
	if len(legs) > 0 && legs[0] != nil {
		for _, t := range legs[0].Tiers {
			dt := drillTier{Tier: t.Tier, Moved: t.Moved, Failed: t.Failed, RTOSeconds: t.RTOSeconds, Result: "none"}
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
	b.WriteString("\n| tier | moved | failed | RTO | objective | result |\n|---|---|---|---|---|---|\n")
	for _, t := range r.Tiers {
		obj := "-"
		if t.ObjectiveSeconds > 0 {
			obj = (time.Duration(t.ObjectiveSeconds) * time.Second).String()
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %s |\n", tierString(t.Tier), t.Moved, t.Failed,
			(time.Duration(t.RTOSeconds * float64(time.Second))).Round(time.Second), obj, t.Result)
	}
	if len(r.Failures) > 0 {
		b.WriteString("\nFailures:\n\n")
		for _, f := range r.Failures {
			fmt.Fprintf(&b, "- %s: %s\n", f.VM, f.Error)
		}
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(b.String()), 0o644)
}
