package plugin

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/record"
)

// keep stores a one-VM record of a move from Primary to to, started at start.
func keep(t *testing.T, kube *kubefake.Clientset, id, to string, start time.Time, failed bool) {
	t.Helper()
	from := "Primary"
	if to == "Primary" {
		from = "DR"
	}
	p := &plan.Plan{Selection: "tier 1", SourceSites: []string{from}, Request: plan.Request{To: to}, Steps: []plan.Step{
		{Namespace: "prod", Name: "db", Tier: 1, From: from, To: to, Action: plan.ActionMigrate, Reason: "running and live-migratable"}}}
	rec := record.NewRecorder(nil, record.RunInfo{MoveID: id, Actor: "alice", Objective: func(int) (time.Duration, bool) { return time.Minute, true }}, p, start)
	rec.Event(executor.Event{Time: start, Kind: executor.TierStarted, Tier: 1})
	rec.Event(executor.Event{Time: start, Kind: executor.StepStarted, Tier: 1, VM: "prod/db"})
	if failed {
		rec.Event(executor.Event{Time: start.Add(time.Minute), Kind: executor.StepFailed, Tier: 1, VM: "prod/db", Message: "migration failed: MigrationFailed"})
	} else {
		rec.Event(executor.Event{Time: start.Add(40 * time.Second), Kind: executor.StepDone, Tier: 1, VM: "prod/db", Action: plan.ActionMigrate})
	}
	rec.Event(executor.Event{Time: start.Add(time.Minute), Kind: executor.TierFinished, Tier: 1})
	rep := &executor.Report{}
	if failed {
		rep.Failures = []executor.Failure{{VM: "prod/db"}}
	}
	rec.Finish(rep, nil, start.Add(time.Minute), false)
	s := &record.Store{Kube: kube, Namespace: "kube-system"}
	if _, err := s.Save(context.Background(), rec.Snapshot(), "end"); err != nil {
		t.Fatal(err)
	}
}

func TestHistoryListsEveryMove(t *testing.T) {
	kube, objs := fixture(t)
	now := time.Now().UTC()
	keep(t, kube, "sf-old", "DR", now.Add(-48*time.Hour), true)
	keep(t, kube, "sf-new", "Primary", now.Add(-time.Hour), false)
	out, _, err := runCmd(t, kube, objs, "history")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "sf-new") || !strings.Contains(lines[1], "DR→Primary") || !strings.Contains(lines[1], "40s/1m0s") ||
		!strings.Contains(lines[2], "MISSED") || !strings.Contains(lines[2], "failed") || !strings.Contains(lines[0], "RTO/OBJECTIVE") {
		t.Fatalf("history:\n%s", out)
	}
	out, _, err = runCmd(t, kube, objs, "history", "--since", "24h", "-o", "json")
	var list struct {
		Kind  string          `json:"kind"`
		Items []record.Listed `json:"items"`
	}
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || list.Kind != "MoveRecordList" || len(list.Items) != 1 || list.Items[0].ID != "sf-new" || list.Items[0].Moved != 1 {
		t.Fatalf("history --since 24h -o json: %v\n%s", err, out)
	}
	out, _, _ = runCmd(t, kube, objs, "history", "--site", "Mars")
	if !strings.Contains(out, "No move records in namespace kube-system from or to Mars") {
		t.Fatalf("history --site Mars:\n%s", out)
	}
	if _, _, err := runCmd(t, kube, objs, "history", "-o", "wide"); err == nil {
		t.Fatal("-o wide accepted")
	}
}

func TestReportWritesTheLatestAndVerifies(t *testing.T) {
	kube, objs := fixture(t)
	now := time.Now().UTC()
	keep(t, kube, "sf-old", "DR", now.Add(-48*time.Hour), true)
	keep(t, kube, "sf-new", "Primary", now.Add(-time.Hour), false)
	out, _, err := runCmd(t, kube, objs, "report")
	if err != nil || !strings.Contains(out, "# Move relocate sf-new") || !strings.Contains(out, "```mermaid") {
		t.Fatalf("report (latest): %v\n%s", err, out)
	}
	out, _, err = runCmd(t, kube, objs, "report", "sf-old", "--html")
	if err != nil || !strings.HasPrefix(out, "<!DOCTYPE html>") || !strings.Contains(out, "<svg") || !strings.Contains(out, "sf-old") {
		t.Fatalf("report --html: %v\n%.300s", err, out)
	}
	out, _, err = runCmd(t, kube, objs, "report", "sf-old", "-o", "json")
	var r record.Record
	if err != nil || json.Unmarshal([]byte(out), &r) != nil || r.Kind != "MoveRecord" || r.Integrity == nil || len(r.Integrity.SHA256) != 64 {
		t.Fatalf("report -o json: %v\n%s", err, out)
	}
	_, errOut, err := runCmd(t, kube, objs, "report", "sf-old", "--verify")
	if err != nil || !strings.Contains(errOut, "Verified") {
		t.Fatalf("report --verify of an untouched record: %v\n%s", err, errOut)
	}

	// Someone rewrites the record (kept well-formed, its hash updated to match).
	cms := kube.CoreV1().ConfigMaps("kube-system")
	cm, _ := cms.Get(context.Background(), record.Name("sf-old"), metav1.GetOptions{})
	st, _ := (&record.Store{Kube: kube, Namespace: "kube-system"}).Get(context.Background(), "sf-old")
	st.Record.Runs[0].Actor = "mallory"
	gz, hash, _ := record.Encode(st.Record)
	cm.BinaryData[record.DataKey], cm.Annotations[record.AnnotationHash] = gz, hash
	if _, err := cms.Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	out, _, err = runCmd(t, kube, objs, "report", "sf-old", "--verify")
	if Code(err) != ExitEdited || !strings.Contains(err.Error(), "changed since the move wrote it") || !strings.Contains(out, "mallory") {
		t.Fatalf("report --verify of an edited record: exit %d %v", Code(err), err)
	}

	if _, _, err := runCmd(t, kube, objs, "report", "sf-none"); err == nil || !strings.Contains(err.Error(), "kubectl sitefail history") {
		t.Fatalf("a missing record must point at history: %v", err)
	}
	if _, _, err := runCmd(t, kube, objs, "report", "--html", "-o", "json"); err == nil {
		t.Fatal("--html with -o json accepted")
	}
}
