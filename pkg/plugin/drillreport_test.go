package plugin

import (
	"encoding/json"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/record"
)

func TestParseRTO(t *testing.T) {
	o, err := parseRTO("1=5m,2=15m")
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := o.objective(1); !ok || d != 5*time.Minute {
		t.Errorf("tier 1: %s %v", d, ok)
	}
	if _, ok := o.objective(3); ok {
		t.Error("tier 3 has no objective")
	}
	o, _ = parseRTO("15m")
	if d, ok := o.objective(7); !ok || d != 15*time.Minute {
		t.Errorf("every tier: %s %v", d, ok)
	}
	for _, bad := range []string{"soon", "1=", "x=5m", "0=5m", "-5m"} {
		if _, err := parseRTO(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestDrillJudgesAndWritesEvidence(t *testing.T) {
	leg1 := &executor.Report{MoveID: "sf-1", To: "DR", Elapsed: "2m", Failures: []executor.Failure{},
		Tiers: []executor.TierReport{{Tier: 1, Moved: 3, RTOSeconds: 240}, {Tier: 2, Moved: 5, RTOSeconds: 1000}}}
	leg2 := &executor.Report{MoveID: "sf-2", To: "Primary", Elapsed: "3m", Failures: []executor.Failure{}}
	o, _ := parseRTO("1=5m,2=15m")
	rec := &recorder{leg: 1}
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	rec.event(executor.Event{Time: t0, Kind: executor.StepStarted, Tier: 1, VM: "prod/db-1", Action: plan.ActionMigrate})
	rec.event(executor.Event{Time: t0.Add(42 * time.Second), Kind: executor.StepDone, Tier: 1, VM: "prod/db-1", Action: plan.ActionMigrate})
	rec.event(executor.Event{Time: t0, Kind: executor.StepStarted, Tier: 2, VM: "prod/web-1", Action: plan.ActionRestart})
	rec.event(executor.Event{Time: t0.Add(time.Minute), Kind: executor.StepFailed, Tier: 2, VM: "prod/web-1", Action: plan.ActionRestart})
	est := []plan.TierEstimate{{Tier: 1, RTOSeconds: 180}, {Tier: 2, RTOSeconds: 600}}
	r := judge("all", "DR", false, []*executor.Report{leg1, leg2}, o, est, rec.vms)
	// Leg 1's record, as move.Run hands it over; leg 2 stopped before it kept one.
	p := &plan.Plan{Selection: "all VMs", Request: plan.Request{To: "DR"}, SourceSites: []string{"Primary"}, Steps: []plan.Step{
		{Namespace: "prod", Name: "db-1", Tier: 1, From: "Primary", To: "DR", Action: plan.ActionMigrate, Reason: "running and live-migratable"}}}
	leg1Record := record.NewRecorder(nil, record.RunInfo{MoveID: "sf-1", Actor: "alice", Kind: record.KindDrill, Drill: &record.Drill{Leg: 1}, Objective: o.objective}, p, t0)
	leg1Record.Event(executor.Event{Time: t0, Kind: executor.TierStarted, Tier: 1})
	leg1Record.Event(executor.Event{Time: t0, Kind: executor.StepStarted, Tier: 1, VM: "prod/db-1", Action: plan.ActionMigrate})
	leg1Record.Event(executor.Event{Time: t0.Add(42 * time.Second), Kind: executor.StepDone, Tier: 1, VM: "prod/db-1", Action: plan.ActionMigrate})
	leg1Record.Finish(leg1, nil, t0.Add(time.Minute), false)
	r.Records = []*record.Record{leg1Record.Snapshot(), nil}
	if r.Result != "fail" || r.Tiers[0].Result != "pass" || r.Tiers[1].Result != "fail" {
		t.Fatalf("judged %+v", r)
	}
	dir := t.TempDir()
	if err := r.write(dir); err != nil {
		t.Fatal(err)
	}
	var back drillReport
	data, _ := os.ReadFile(filepath.Join(dir, "report.json"))
	if err := json.Unmarshal(data, &back); err != nil || back.APIVersion != "sitefail.io/v1alpha1" || len(back.Legs) != 2 || back.Legs[1].MoveID != "sf-2" {
		t.Fatalf("report.json: %v %s", err, data)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "report.md"))
	if back.Tiers[0].EstimatedRTOSeconds != 180 || len(back.VMs) != 2 || back.VMs[0].Seconds != 42 || back.VMs[0].Result != "ready" || back.VMs[1].Result != "failed" {
		t.Fatalf("report.json lacks the estimate or the per-VM evidence: %s", data)
	}
	if !strings.Contains(string(md), "**FAIL**") || !strings.Contains(string(md), "| 2 | 5 | 0 | 16m40s | 10m0s | 15m0s | fail |") ||
		!strings.Contains(string(md), "## Move drill leg 1 sf-1: all VMs, Primary to DR") || !strings.Contains(string(md), "```mermaid") ||
		!strings.Contains(string(md), "| prod/db-1 | 1 | - | live-migrate | running and live-migratable | 10:00:00 | - | - | - | - | - | 10:00:42 | 42s | done |") ||
		!strings.Contains(string(md), "Leg 2 kept no record") {
		t.Fatalf("report.md must render each leg as 'report' does:\n%s", md)
	}
	page, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil || !strings.Contains(string(page), "<svg") || !strings.Contains(string(page), "prod/db-1") {
		t.Fatalf("report.html: %v\n%s", err, page)
	}
}

// FuzzParseRTO: an accepted objective is positive for every tier it covers.
func FuzzParseRTO(f *testing.F) {
	for _, s := range []string{"15m", "1=5m,2=15m", "0", "-5m", "1=", "x=5m", "1=5m,,2=1h", "=", "1=5m,1=6m", "9999999999=1s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := parseRTO(s)
		if err != nil || o == nil {
			return
		}
		if o.all < 0 {
			t.Fatalf("%q: negative objective %s", s, o.all)
		}
		for tier, d := range o.perTier {
			if tier < 1 || d <= 0 {
				t.Fatalf("%q: tier %d objective %s", s, tier, d)
			}
		}
	})
}
