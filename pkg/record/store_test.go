package record

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
)

var t0 = time.Date(2026, 11, 26, 9, 12, 3, 0, time.UTC)

// testPlan is a failover of n VMs over three tiers, with batches of five.
func testPlan(n int) *plan.Plan {
	p := &plan.Plan{Selection: "all VMs", SourceSites: []string{"Primary"}, Request: plan.Request{To: "DR"}}
	for i := 0; i < n; i++ {
		tier := i%3 + 1
		action := plan.ActionMigrate
		switch i % 4 {
		case 1:
			action = plan.ActionRestart
		case 2:
			action = plan.ActionPatch
		}
		p.Steps = append(p.Steps, plan.Step{Namespace: "prod", Name: fmt.Sprintf("vm-%05d", i), Tier: tier, From: "Primary", To: "DR",
			Action: action, Reason: "running and live-migratable"})
	}
	for tier := 1; tier <= 3; tier++ {
		var b *plan.Batch
		for _, st := range p.Steps {
			if st.Tier != tier || !st.Starts() {
				continue
			}
			if b == nil || len(b.VMs) == 5 {
				p.Batches = append(p.Batches, plan.Batch{Tier: tier})
				b = &p.Batches[len(p.Batches)-1]
			}
			b.VMs = append(b.VMs, st.Key())
		}
	}
	return p
}

// play feeds the recorder what the executor would emit for the plan, every VM Ready
// some seconds after its tier starts.
func play(rec *Recorder, p *plan.Plan, start time.Time) *executor.Report {
	rep := &executor.Report{MoveID: rec.ID(), To: "DR", Failures: []executor.Failure{}}
	at := start
	for tier := 1; tier <= 3; tier++ {
		tstart := at
		rec.Event(executor.Event{Time: tstart, Kind: executor.TierStarted, Tier: tier})
		moved := 0
		last := tstart
		for i, st := range p.Steps {
			if st.Tier != tier {
				continue
			}
			// Jittered to the millisecond, as real events are: regular times would
			// compress better than any real move's.
			s := tstart.Add(time.Duration(i%7)*time.Second + time.Duration(i*7919%997)*time.Millisecond)
			rec.Event(executor.Event{Time: s, Kind: executor.StepStarted, Tier: tier, VM: st.Key(), Action: st.Action})
			rec.Event(executor.Event{Time: s.Add(200 * time.Millisecond), Kind: executor.StepPhase, Tier: tier, VM: st.Key(), Phase: "patched"})
			if st.Action == plan.ActionMigrate {
				rec.Event(executor.Event{Time: s.Add(time.Second), Kind: executor.StepPhase, Tier: tier, VM: st.Key(), Phase: "migrating"})
				rec.Event(executor.Event{Time: s.Add(9 * time.Second), Kind: executor.StepPhase, Tier: tier, VM: st.Key(), Phase: "migrated"})
			}
			if st.Action.Starts() {
				rec.Event(executor.Event{Time: s.Add(10 * time.Second), Kind: executor.StepPhase, Tier: tier, VM: st.Key(), Phase: "running"})
			}
			done := s.Add(12*time.Second + time.Duration(i*104729%9973)*time.Millisecond)
			rec.Event(executor.Event{Time: done, Kind: executor.StepDone, Tier: tier, VM: st.Key(), Action: st.Action})
			if done.After(last) {
				last = done
			}
			moved++
		}
		rec.Event(executor.Event{Time: last, Kind: executor.TierFinished, Tier: tier})
		rep.Tiers = append(rep.Tiers, executor.TierReport{Tier: tier, Moved: moved, Started: tstart, Finished: last, RTOSeconds: last.Sub(tstart).Seconds()})
		at = last
	}
	return rep
}

func newStore() (*Store, *fake.Clientset) {
	kube := fake.NewSimpleClientset()
	return &Store{Kube: kube, Namespace: "kube-system", Now: func() time.Time { return t0 }}, kube
}

func TestRecorderKeepsEveryVMsTimestamps(t *testing.T) {
	p := testPlan(12)
	rec := NewRecorder(nil, RunInfo{MoveID: "sf-1", Actor: "alice", Command: "kubectl sitefail move --all --to DR", Version: "v1",
		Objective: func(tier int) (time.Duration, bool) { return time.Minute, tier == 1 }}, p, t0)
	rep := play(rec, p, t0)
	rec.Finish(rep, nil, t0.Add(time.Hour), false)
	r := rec.Snapshot()
	if r.ID != "sf-1" || r.MoveKind != KindRelocate || r.Outcome() != OutcomeSucceeded || len(r.Runs) != 1 {
		t.Fatalf("record: %+v", r)
	}
	for _, v := range r.Runs[0].VMs {
		if v.Started == nil || v.Patched == nil || v.Result != ResultDone {
			t.Errorf("%s: %+v", v.VM, v)
		}
		if starts := v.Action != plan.ActionPatch; starts != (v.Ready != nil) || starts != (v.Running != nil) || starts != (v.Wave > 0) {
			t.Errorf("%s (%s): Ready, Running and its wave must be there exactly when it starts: %+v", v.VM, v.Action, v)
		}
		if (v.Action == plan.ActionMigrate) != (v.MigrationCreated != nil && v.Migrated != nil) {
			t.Errorf("%s: migration times %+v", v.VM, v)
		}
	}
	tt := r.TierTotals()
	if len(tt) != 3 || tt[0].ObjectiveSeconds != 60 || tt[0].Met == nil || !*tt[0].Met || tt[0].RTOSeconds != rep.Tiers[0].RTOSeconds || tt[0].RTOSeconds == 0 {
		t.Fatalf("tier totals: %+v", tt)
	}
	if s := r.Summarize(); s.Moved != 12 || s.Failed != 0 || s.Met == nil || !*s.Met || s.Actor != "alice" {
		t.Fatalf("summary: %+v", s)
	}
}

func TestFailureKeepsKubeVirtsReasonAndResumeAddsARun(t *testing.T) {
	p := testPlan(3)
	rec := NewRecorder(nil, RunInfo{MoveID: "sf-1", Actor: "alice"}, p, t0)
	rec.Event(executor.Event{Time: t0, Kind: executor.TierStarted, Tier: 1})
	rec.Event(executor.Event{Time: t0, Kind: executor.StepStarted, Tier: 1, VM: "prod/vm-00000"})
	rec.Event(executor.Event{Time: t0.Add(time.Second), Kind: executor.StepPhase, Tier: 1, VM: "prod/vm-00000", Phase: "migrating"})
	rec.Event(executor.Event{Time: t0.Add(5 * time.Second), Kind: executor.StepFailed, Tier: 1, VM: "prod/vm-00000",
		Message: "migration sitefail-vm-00000-1 failed: MigrationFailed: target domain did not start"})
	rec.Event(executor.Event{Time: t0, Kind: executor.StepStarted, Tier: 2, VM: "prod/vm-00001"})
	rec.Finish(&executor.Report{Interrupted: true}, nil, t0.Add(time.Minute), false)
	first := rec.Snapshot()
	if first.Outcome() != OutcomeInterrupted {
		t.Fatalf("outcome %s", first.Outcome())
	}
	vms := first.Runs[0].VMs
	if vms[0].Result != ResultFailed || !strings.Contains(vms[0].Error, "MigrationFailed: target domain did not start") || vms[1].Result != ResultInterrupted || vms[2].Result != ResultNotStarted {
		t.Fatalf("VMs: %+v", vms)
	}

	rerun := NewRecorder(first, RunInfo{MoveID: "sf-2", Actor: "bob"}, p, t0.Add(2*time.Minute))
	play(rerun, p, t0.Add(2*time.Minute))
	rerun.Finish(&executor.Report{}, nil, t0.Add(3*time.Minute), false)
	r := rerun.Snapshot()
	if r.ID != "sf-1" || len(r.Runs) != 2 || r.Runs[1].MoveID != "sf-2" || r.Outcome() != OutcomeSucceeded || r.Runs[0].Outcome != OutcomeInterrupted {
		t.Fatalf("resumed record: %+v", r)
	}
	if got := r.Totals(); got.Moved != 3 || got.Failed != 0 {
		t.Fatalf("totals after the rerun: %+v", got)
	}
	// The first run's record is unchanged by the second.
	if first.Runs[0].VMs[0].Result != ResultFailed || len(first.Runs) != 1 {
		t.Fatal("the rerun changed the record it copied")
	}
}

func TestSaveGetAndTheEventStatingTheHash(t *testing.T) {
	s, kube := newStore()
	p := testPlan(9)
	rec := NewRecorder(nil, RunInfo{MoveID: "sf-20261126-091203-a1b2c3", Actor: "alice"}, p, t0)
	rec.Finish(play(rec, p, t0), nil, t0.Add(time.Hour), false)
	r := rec.Snapshot()
	hash, err := s.Save(context.Background(), r, "end")
	if err != nil {
		t.Fatal(err)
	}
	cm, err := kube.CoreV1().ConfigMaps("kube-system").Get(context.Background(), "sitefail-move-sf-20261126-091203-a1b2c3", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{LabelMoveID: r.ID, LabelKind: "relocate", LabelFrom: "Primary", LabelTo: "DR", LabelOutcome: "succeeded", LabelRecord: "move"}
	for k, v := range want {
		if cm.Labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, cm.Labels[k], v)
		}
	}
	if cm.Annotations[AnnotationHash] != hash || len(cm.Data) != 0 || len(cm.BinaryData[DataKey]) == 0 {
		t.Fatalf("configmap: %v", cm.Annotations)
	}
	evs, _ := kube.CoreV1().Events("kube-system").List(context.Background(), metav1.ListOptions{})
	if len(evs.Items) != 1 || !strings.Contains(evs.Items[0].Message, hash) || evs.Items[0].InvolvedObject.Name != cm.Name {
		t.Fatalf("events: %+v", evs.Items)
	}
	got, err := s.Get(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	canon, _ := Canonical(r)
	if got.Computed != hash || !bytes.Equal(got.Raw, canon) || got.Record.Runs[0].VMs[4].Ready == nil {
		t.Fatalf("read back: %s vs %s", got.Computed, hash)
	}
	if _, err := s.Get(context.Background(), "sf-nope"); err == nil || !strings.Contains(err.Error(), "history") {
		t.Fatalf("a missing record must name the fix: %v", err)
	}
}

// TestFiveThousandVMsStayFarBelowTheObjectLimit: a 5,000-VM failover whose every VM has
// every timestamp, over two runs, fits one ConfigMap with room to spare.
func TestFiveThousandVMsStayFarBelowTheObjectLimit(t *testing.T) {
	s, kube := newStore()
	p := testPlan(5000)
	rec := NewRecorder(nil, RunInfo{MoveID: "sf-20261126-091203-a1b2c3", Actor: "system:serviceaccount:dr:operator", Command: "kubectl sitefail move --all -A --to DR"}, p, t0)
	rec.Finish(play(rec, p, t0), nil, t0.Add(time.Hour), false)
	rerun := NewRecorder(rec.Snapshot(), RunInfo{MoveID: "sf-20261126-101203-d4e5f6", Actor: "alice"}, p, t0.Add(time.Hour))
	rerun.Finish(play(rerun, p, t0.Add(time.Hour)), nil, t0.Add(2*time.Hour), false)
	r := rerun.Snapshot()
	raw, _ := Canonical(r)
	if _, err := s.Save(context.Background(), r, "end"); err != nil {
		t.Fatal(err)
	}
	list, _ := kube.CoreV1().ConfigMaps("kube-system").List(context.Background(), metav1.ListOptions{})
	if len(list.Items) != 1 {
		t.Fatalf("%d ConfigMaps for 5,000 VMs; want one", len(list.Items))
	}
	size := objectSize(t, &list.Items[0])
	t.Logf("5,000 VMs, 2 runs: %d bytes of JSON, a ConfigMap of %d bytes", len(raw), size)
	if size > 512<<10 {
		t.Fatalf("a ConfigMap of %d bytes: not far below the 1 MiB limit", size)
	}
	got, err := s.Get(context.Background(), r.ID)
	if err != nil || len(got.Record.Runs[1].VMs) != 5000 || got.Computed != got.Hash {
		t.Fatalf("read back: %v", err)
	}
}

// objectSize is the object's size as the API server stores it, near enough: its JSON.
func objectSize(t *testing.T, cm *corev1.ConfigMap) int {
	t.Helper()
	data, err := json.Marshal(cm)
	if err != nil {
		t.Fatal(err)
	}
	return len(data)
}

func TestLargeRecordsSplitIntoPartsAndShrinkBack(t *testing.T) {
	s, kube := newStore()
	s.PartSize = 1 << 10
	p := testPlan(600)
	rec := NewRecorder(nil, RunInfo{MoveID: "sf-big", Actor: "alice"}, p, t0)
	rec.Finish(play(rec, p, t0), nil, t0.Add(time.Hour), false)
	r := rec.Snapshot()
	if _, err := s.Save(context.Background(), r, "end"); err != nil {
		t.Fatal(err)
	}
	list, _ := kube.CoreV1().ConfigMaps("kube-system").List(context.Background(), metav1.ListOptions{})
	if len(list.Items) < 3 {
		t.Fatalf("%d ConfigMaps; want the record split into parts", len(list.Items))
	}
	for _, cm := range list.Items {
		if n := len(cm.BinaryData[DataKey]); n > s.PartSize {
			t.Errorf("%s holds %d bytes, over the part size", cm.Name, n)
		}
	}
	got, err := s.Get(context.Background(), "sf-big")
	if err != nil || got.Computed != got.Hash || len(got.Record.Runs[0].VMs) != 600 || got.Parts != len(list.Items) {
		t.Fatalf("reassembled: %v", err)
	}
	if listed, _ := s.List(context.Background()); len(listed) != 1 {
		t.Fatalf("history must list one record, not its parts: %+v", listed)
	}
	// Smaller again: the parts it no longer needs go.
	s.PartSize = DefaultPartSize
	if _, err := s.Save(context.Background(), r, "end"); err != nil {
		t.Fatal(err)
	}
	list, _ = kube.CoreV1().ConfigMaps("kube-system").List(context.Background(), metav1.ListOptions{})
	if len(list.Items) != 1 {
		t.Fatalf("%d ConfigMaps after shrinking; want 1", len(list.Items))
	}
}

// editRecord rewrites the stored document the way someone with kubectl and gzip would.
func editRecord(t *testing.T, kube *fake.Clientset, id string, edit func(string) string, rehash bool) {
	t.Helper()
	cms := kube.CoreV1().ConfigMaps("kube-system")
	cm, err := cms.Get(context.Background(), Name(id), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	zr, _ := gzip.NewReader(bytes.NewReader(cm.BinaryData[DataKey]))
	raw, _ := io.ReadAll(zr)
	edited := edit(string(raw))
	if edited == string(raw) {
		t.Fatal("the edit changed nothing")
	}
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	_, _ = w.Write([]byte(edited))
	_ = w.Close()
	cm.BinaryData[DataKey] = b.Bytes()
	if rehash {
		cm.Annotations[AnnotationHash] = Hash([]byte(edited))
	}
	if _, err := cms.Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyFailsARecordEditedByHand(t *testing.T) {
	s, kube := newStore()
	p := testPlan(6)
	rec := NewRecorder(nil, RunInfo{MoveID: "sf-1", Actor: "alice"}, p, t0)
	rec.Finish(play(rec, p, t0), nil, t0.Add(time.Hour), false)
	if _, err := s.Save(context.Background(), rec.Snapshot(), "end"); err != nil {
		t.Fatal(err)
	}
	v, _, err := s.Verify(context.Background(), "sf-1")
	if err != nil || !v.OK || !strings.Contains(v.Detail, "an Event states it") {
		t.Fatalf("untouched record: %+v %v", v, err)
	}
	// The actor rewritten: the document no longer matches its hash.
	editRecord(t, kube, "sf-1", func(s string) string { return strings.Replace(s, `"actor":"alice"`, `"actor":"mallory"`, 1) }, false)
	v, _, err = s.Verify(context.Background(), "sf-1")
	if err != nil || v.OK || !strings.Contains(v.Detail, "EDITED") {
		t.Fatalf("edited record passed: %+v %v", v, err)
	}
	// The hash on the ConfigMap rewritten too: the Event still states the first one.
	editRecord(t, kube, "sf-1", func(s string) string { return strings.Replace(s, `"actor":"mallory"`, `"actor":"eve"`, 1) }, true)
	v, _, err = s.Verify(context.Background(), "sf-1")
	if err != nil || v.OK || !strings.Contains(v.Detail, "no Event states that hash") {
		t.Fatalf("record and hash edited passed: %+v %v", v, err)
	}
	// Whitespace is an edit too: only the canonical form is the record.
	s2, kube2 := newStore()
	if _, err := s2.Save(context.Background(), rec.Snapshot(), "end"); err != nil {
		t.Fatal(err)
	}
	_ = kube2.CoreV1().Events("kube-system").DeleteCollection(context.Background(), metav1.DeleteOptions{}, metav1.ListOptions{})
	editRecord(t, kube2, "sf-1", func(s string) string { return strings.Replace(s, `{"apiVersion"`, `{ "apiVersion"`, 1) }, true)
	v, _, _ = s2.Verify(context.Background(), "sf-1")
	if v.OK || !strings.Contains(v.Detail, "canonical") {
		t.Fatalf("a re-encoded record passed: %+v", v)
	}
}

func saved(t *testing.T, s *Store, id, selection string, outcome Outcome, start time.Time) {
	t.Helper()
	p := testPlan(2)
	p.Selection = selection
	rec := NewRecorder(nil, RunInfo{MoveID: id, Actor: "alice"}, p, start)
	if outcome != OutcomeRunning {
		rep := &executor.Report{Interrupted: outcome == OutcomeInterrupted}
		if outcome == OutcomeFailed {
			rep.Failures = []executor.Failure{{VM: "prod/vm-00000", Error: "boom"}}
		}
		rec.Finish(rep, nil, start.Add(time.Minute), false)
	}
	if _, err := s.Save(context.Background(), rec.Snapshot(), "end"); err != nil {
		t.Fatal(err)
	}
}

func TestPruneKeepsTheNewestAndEveryUnfinishedMove(t *testing.T) {
	s, _ := newStore()
	saved(t, s, "sf-1", "tier 1", OutcomeRunning, t0)
	saved(t, s, "sf-2", "tier 1", OutcomeSucceeded, t0.Add(time.Hour))
	saved(t, s, "sf-3", "tier 1", OutcomeInterrupted, t0.Add(2*time.Hour))
	saved(t, s, "sf-4", "tier 1", OutcomeFailed, t0.Add(3*time.Hour))
	saved(t, s, "sf-5", "tier 1", OutcomeSucceeded, t0.Add(4*time.Hour))
	saved(t, s, "sf-6", "tier 1", OutcomeSucceeded, t0.Add(5*time.Hour))
	pruned, err := s.Prune(context.Background(), 2, "")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(pruned, ",") != "sf-4,sf-2" {
		t.Fatalf("pruned %v; want the finished moves beyond the newest two (sf-4, sf-2)", pruned)
	}
	list, _ := s.List(context.Background())
	var left []string
	for _, l := range list {
		left = append(left, l.ID)
	}
	if strings.Join(left, ",") != "sf-6,sf-5,sf-3,sf-1" {
		t.Fatalf("left %v", left)
	}
	if pruned, _ := s.Prune(context.Background(), 0, "sf-6"); strings.Join(pruned, ",") != "sf-5" {
		t.Fatalf("--keep-records 0 must still keep the record being written and unfinished ones: pruned %v", pruned)
	}
}

func TestResumedFindsTheRecordARerunCompletes(t *testing.T) {
	s, _ := newStore()
	saved(t, s, "sf-1", "tier 1", OutcomeSucceeded, t0)
	saved(t, s, "sf-2", "tier 2", OutcomeRunning, t0.Add(time.Hour))
	saved(t, s, "sf-3", "tier 3", OutcomeSucceeded, t0.Add(2*time.Hour))
	ctx := context.Background()
	if st, _ := s.Resumed(ctx, "DR", "tier 2", nil); st == nil || st.Record.ID != "sf-2" {
		t.Fatalf("the same command again must resume sf-2: %+v", st)
	}
	if st, _ := s.Resumed(ctx, "DR", "all VMs", []string{"sf-2"}); st == nil || st.Record.ID != "sf-2" {
		t.Fatalf("a VM journaled by sf-2 must resume it: %+v", st)
	}
	for _, c := range []struct {
		to, sel string
		ids     []string
	}{{"DR", "tier 1", nil}, {"Primary", "tier 2", []string{"sf-2"}}, {"DR", "all VMs", []string{"sf-1"}}, {"DR", "tier 3", nil}} {
		if st, _ := s.Resumed(ctx, c.to, c.sel, c.ids); st != nil {
			t.Errorf("%+v resumed %s, which it must not", c, st.Record.ID)
		}
	}
}

func TestCanWriteNamesWhatIsMissing(t *testing.T) {
	s, kube := newStore()
	kube.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview)
		r.Status.Allowed = r.Spec.ResourceAttributes.Resource == "events"
		return true, r, nil
	})
	missing, err := s.CanWrite(context.Background())
	if err != nil || strings.Join(missing, "; ") != "create configmaps in namespace kube-system; update configmaps in namespace kube-system" {
		t.Fatalf("missing %v %v", missing, err)
	}
}

// Found by review (issue 22): a prune the lost lock cancelled deletes nothing more,
// whatever the client does with its context (a fake ignores it).
func TestCancelledPruneDeletesNothing(t *testing.T) {
	s, _ := newStore()
	saved(t, s, "sf-1", "tier 1", OutcomeSucceeded, t0)
	saved(t, s, "sf-2", "tier 1", OutcomeSucceeded, t0.Add(time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if pruned, _ := s.Prune(ctx, 0, ""); len(pruned) != 0 {
		t.Fatalf("a cancelled prune deleted %v", pruned)
	}
	if list, _ := s.List(context.Background()); len(list) != 2 {
		t.Fatalf("%d records left; want both", len(list))
	}
}
