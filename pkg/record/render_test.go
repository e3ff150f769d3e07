package record

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./pkg/record -update to create it)", err)
	}
	if string(want) != got {
		t.Fatalf("%s differs from %s:\n--- got ---\n%s\n--- want ---\n%s", name, path, got, want)
	}
}

// failoverRecord is a failover killed in tier 2 and finished by its rerun: two runs,
// a migration KubeVirt failed, fencing evidence and objectives.
func failoverRecord() *Record {
	p := &plan.Plan{Selection: "all VMs", SourceSites: []string{"Primary"}, Request: plan.Request{To: "DR"},
		Steps: []plan.Step{
			{Namespace: "prod", Name: "db-1", Tier: 1, From: "Primary", To: "DR", Action: plan.ActionFailover, Reason: "site Primary is down"},
			{Namespace: "prod", Name: "ldap", Tier: 1, From: "Primary", To: "DR", Action: plan.ActionFailover, Reason: "site Primary is down"},
			{Namespace: "shop", Name: "web|1", Tier: 2, From: "Primary", To: "DR", Action: plan.ActionFailover, Reason: "site Primary is down"},
			{Namespace: "shop", Name: "cold", Tier: 2, From: "Primary", To: "DR", Action: plan.ActionPatch, Reason: "stopped"},
		},
		Batches: []plan.Batch{{Tier: 1, VMs: []string{"prod/db-1", "prod/ldap"}}, {Tier: 2, VMs: []string{"shop/web|1"}}},
		Fencing: map[string]fencing.Site{"Primary": {Proven: false, Nodes: []fencing.Evidence{{Node: "primary-1", Proofs: []fencing.Proof{
			{Kind: "FenceAgentsRemediation", Name: "primary-1", StrengthName: "strong", Detail: "action off, node NotReady since"}}}}}},
	}
	p.Steps[0].Action = plan.ActionFailover
	objectives := func(tier int) (time.Duration, bool) {
		return map[int]time.Duration{1: 2 * time.Minute, 2: 30 * time.Second}[tier], tier > 0
	}
	rec := NewRecorder(nil, RunInfo{MoveID: "sf-20261126-091203-a1b2c3", Actor: "alice@example.com", Command: "kubectl sitefail move --all -A --to DR --confirm-site-down=Primary",
		Version: "v1.2.3", Confirmed: []string{"Primary"}, Fence: "pod", Objective: objectives}, p, t0)
	ev := func(d time.Duration, kind executor.EventKind, tier int, vm, phase string, action plan.Action, msg string) {
		rec.Event(executor.Event{Time: t0.Add(d), Kind: kind, Tier: tier, VM: vm, Phase: phase, Action: action, Message: msg})
	}
	s := time.Second
	ev(1*s, executor.TierStarted, 1, "", "", "", "")
	for i, vm := range []string{"prod/db-1", "prod/ldap"} {
		o := time.Duration(i) * 1500 * time.Millisecond
		ev(1*s+o, executor.StepStarted, 1, vm, "", plan.ActionFailover, "")
		ev(2*s+o, executor.StepPhase, 1, vm, "patched", "", "")
		ev(3*s+o, executor.StepPhase, 1, vm, "releasing", "", "")
		ev(21*s+o, executor.StepPhase, 1, vm, "running", "", "")
		ev(34*s+o, executor.StepDone, 1, vm, "", plan.ActionFailover, "")
	}
	ev(36*s, executor.TierFinished, 1, "", "", "", "")
	ev(36*s, executor.TierStarted, 2, "", "", "", "")
	ev(36*s, executor.StepStarted, 2, "shop/web|1", "", plan.ActionFailover, "")
	ev(37*s, executor.StepPhase, 2, "shop/web|1", "patched", "", "")
	first := rec.Snapshot() // SIGKILL: the record stays as written after tier 1
	first.Runs[0].VMs[2] = VM{VM: "shop/web|1", Tier: 2, From: "Primary", Action: plan.ActionFailover, Reason: "site Primary is down", Wave: 1, Result: ResultPending}
	first.Runs[0].Tiers[1] = Tier{Tier: 2, ObjectiveSeconds: 30}

	p2 := &plan.Plan{Selection: "all VMs", SourceSites: []string{"Primary"}, Request: plan.Request{To: "DR"},
		Steps: []plan.Step{
			{Namespace: "prod", Name: "db-1", Tier: 1, From: "DR", To: "DR", Action: plan.ActionSkip, Reason: "Ready on DR"},
			{Namespace: "prod", Name: "ldap", Tier: 1, From: "DR", To: "DR", Action: plan.ActionSkip, Reason: "Ready on DR"},
			{Namespace: "shop", Name: "web|1", Tier: 2, From: "Primary", To: "DR", Action: plan.ActionFailover, Reason: "site Primary is down"},
			{Namespace: "shop", Name: "cold", Tier: 2, From: "Primary", To: "DR", Action: plan.ActionPatch, Reason: "stopped"},
		},
		Batches: []plan.Batch{{Tier: 2, VMs: []string{"shop/web|1"}}}}
	t1 := t0.Add(2 * time.Minute)
	rec = NewRecorder(first, RunInfo{MoveID: "sf-20261126-091403-d4e5f6", Actor: "bob", Command: "kubectl sitefail move --all -A --to DR --confirm-site-down=Primary",
		Version: "v1.2.3", Confirmed: []string{"Primary"}, Fence: "pod", Objective: objectives}, p2, t1)
	ev = func(d time.Duration, kind executor.EventKind, tier int, vm, phase string, action plan.Action, msg string) {
		rec.Event(executor.Event{Time: t1.Add(d), Kind: kind, Tier: tier, VM: vm, Phase: phase, Action: action, Message: msg})
	}
	ev(1*s, executor.TierStarted, 1, "", "", "", "")
	ev(1*s, executor.StepDone, 1, "prod/db-1", "", plan.ActionSkip, "")
	ev(1*s, executor.StepDone, 1, "prod/ldap", "", plan.ActionSkip, "")
	ev(1*s, executor.TierFinished, 1, "", "", "", "")
	ev(2*s, executor.TierStarted, 2, "", "", "", "")
	ev(2*s, executor.StepStarted, 2, "shop/web|1", "", plan.ActionFailover, "")
	ev(3*s, executor.StepPhase, 2, "shop/web|1", "patched", "", "")
	ev(4*s, executor.StepPhase, 2, "shop/web|1", "releasing", "", "")
	ev(64*s, executor.StepFailed, 2, "shop/web|1", "", plan.ActionFailover, "not Ready on the target within --ready-timeout=1m0s: its instance on dr-2 ended Failed (<kubectl describe vmi -n shop web|1>)")
	ev(2*s, executor.StepStarted, 2, "shop/cold", "", plan.ActionPatch, "")
	ev(3*s, executor.StepPhase, 2, "shop/cold", "patched", "", "")
	ev(3*s, executor.StepDone, 2, "shop/cold", "", plan.ActionPatch, "")
	ev(64*s, executor.TierFinished, 2, "", "", "", "")
	rec.Finish(&executor.Report{Stopped: "tier 2: 1 VM(s) failed, more than --max-failures=0", Failures: []executor.Failure{{VM: "shop/web|1", Error: "boom"}},
		Tiers: []executor.TierReport{{Tier: 1, Skipped: 2, Started: t1.Add(s), Finished: t1.Add(s)}, {Tier: 2, Moved: 1, Failed: 1, Started: t1.Add(2 * s), Finished: t1.Add(64 * s)}}}, nil, t1.Add(65*s), false)
	r := rec.Snapshot()
	raw, _ := Canonical(r)
	r.Integrity = &Integrity{SHA256: Hash(raw)}
	return r
}

func TestMarkdownGolden(t *testing.T) {
	var b bytes.Buffer
	if err := Markdown(&b, failoverRecord(), 1); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	golden(t, "failover.md", md)
	// What the golden file must hold whatever it is regenerated from.
	for _, want := range []string{"```mermaid\ngantt\n", "section Run 1 tier 1", "section Run 2 tier 2", "| 1 | 09:12:04 | 09:12:38 | 35s | 2m0s | met |",
		"| 2 | 09:14:05 | - | - | 30s | **missed** |", "tier 1 RTO 35s :done, 2026-11-26 09:12:04, 2026-11-26 09:12:39", "shop/web\\|1", "Confirmed down by the operator: Primary", "FenceAgentsRemediation primary-1"} {
		if !strings.Contains(md, want) {
			t.Errorf("the Markdown lacks %q", want)
		}
	}
}

func TestHTMLGoldenIsSelfContained(t *testing.T) {
	var b bytes.Buffer
	if err := HTML(&b, "Failover of all VMs to DR", failoverRecord()); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	golden(t, "failover.html", page)
	// Nothing loads from anywhere: the only URL is the SVG namespace, which is a name.
	urls := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+`).FindAllString(page, -1)
	for _, u := range urls {
		if u != "http://www.w3.org" {
			t.Errorf("the page refers to %s", u)
		}
	}
	for _, bad := range []string{"<script", "@import", "@font-face", "<link", "src="} {
		if strings.Contains(strings.ToLower(page), bad) {
			t.Errorf("the page has %s", bad)
		}
	}
	// One row per VM, grouped by tier, each bar coloured by its action.
	if n := strings.Count(page, `<rect class="a-failover`); n != 3 {
		t.Errorf("%d failover bars; want db-1, ldap and web|1's", n)
	}
	if !strings.Contains(page, `<rect class="a-failover failed"`) || !strings.Contains(page, "&lt;kubectl describe vmi") {
		t.Error("the failed VM is not outlined, or its error is not escaped")
	}
	if strings.Index(page, ">tier 1: RTO") > strings.Index(page, ">tier 2: RTO") {
		t.Error("tiers out of order")
	}
}

func TestAxisLabels(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0s", 30 * time.Second: "30s", time.Minute: "1m", 90 * time.Second: "1m30s", time.Hour: "1h", 90 * time.Minute: "1h30m"} {
		if got := shortDuration(d); got != want {
			t.Errorf("%s: %q, want %q", d, got, want)
		}
	}
}
