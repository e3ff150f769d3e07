package e2e

import (
	"encoding/json"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/record"
	"github.com/sitefail/kubectl-sitefail/test/stretched"
	"github.com/sitefail/kubectl-sitefail/test/virthandler"
)

var moveIDLine = regexp.MustCompile(`Move (sf-\d{8}-\d{6}-[0-9a-f]{6}) by `)

// recordOf reads a move's record through `report -o json`, as an auditor would.
func recordOf(t *testing.T, id string) record.Record {
	t.Helper()
	var r record.Record
	mustJSON(t, sitefail(t, "report", id, "-o", "json"), &r)
	return r
}

// After a relocate, a move killed with SIGKILL and its rerun, and a failover, on the
// real stack: history lists the three moves, the killed one as one record of two runs,
// and report shows every VM's timestamps, verifies, and draws the HTML timeline.
func TestMoveRecordsHistoryAndReport(t *testing.T) {
	slowBoot := func(v *stretched.VMSpec) {
		v.Disk = corev1.ReadWriteOnce
		v.TemplateAnnotations = map[string]string{virthandler.BootDelayAnnotation: "10s"}
	}
	withEdge(t, []stretched.VMSpec{
		edgeVM("rel-1", 1, nil), edgeVM("rel-2", 1, nil),
		edgeVM("kill-1", 2, slowBoot), edgeVM("kill-2", 2, slowBoot), edgeVM("kill-3", 2, slowBoot),
		edgeVM("fo-1", 3, nil), edgeVM("fo-2", 3, func(v *stretched.VMSpec) { v.RunStrategy = kubevirtv1.RunStrategyManual }),
	})
	start := time.Now()

	// 1. A relocate.
	var rep executor.Report
	mustJSON(t, sitefail(t, "move", "-n", safetyNS, "--tier", "1", "--to", "DR", "--rto", "5m", "-o", "json"), &rep)
	relocate := rep.MoveID

	// 2. A move killed in its tier, then the same command again.
	args := []string{"move", "-n", safetyNS, "--tier", "2", "--to", "DR", "--mode", "restart", "--max-in-flight", "1", "--progress", "lines"}
	cmd, out := startProcess(t, args...)
	waitFor(t, 90*time.Second, "a restart under way", func() bool { return strings.Contains(out.String(), "waiting-ready") })
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	m := moveIDLine.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("the killed move did not name itself:\n%s", out.String())
	}
	killed := m[1]
	if r := recordOf(t, killed); r.Outcome() != record.OutcomeRunning || len(r.Runs) != 1 || len(r.Runs[0].VMs) != 3 {
		t.Fatalf("the killed move's record: outcome %s, %d runs; want running, written before its first change", r.Outcome(), len(r.Runs))
	}
	var rerun executor.Report
	mustJSON(t, sitefail(t, append(args[:len(args)-2], "-o", "json")...), &rerun)
	if rerun.Failed() {
		t.Fatalf("rerun: %+v", rerun)
	}

	// 3. A failover.
	if err := env.StopSite(edge); err != nil {
		t.Fatal(err)
	}
	waitEdge(t, false)
	mustJSON(t, sitefail(t, "move", "-n", safetyNS, "--tier", "3", "--to", "DR", "--confirm-site-down="+edge, "-o", "json"), &rep)
	failover := rep.MoveID

	// history lists them, newest first; the killed move and its rerun are one record.
	var list struct {
		Items []record.Listed `json:"items"`
	}
	mustJSON(t, sitefail(t, "history", "--site", edge, "--since", (time.Since(start)+time.Minute).Round(time.Second).String(), "-o", "json"), &list)
	got := map[string]record.Listed{}
	var order []string
	for _, l := range list.Items {
		// Earlier tests on Edge keep records too; --since may reach one of them.
		if l.Started.Before(start.Add(-time.Second)) {
			continue
		}
		got[l.ID] = l
		order = append(order, l.ID)
	}
	if strings.Join(order, ",") != strings.Join([]string{failover, killed, relocate}, ",") {
		t.Fatalf("history lists %v; want the failover, the killed move (with its rerun) and the relocate, newest first", order)
	}
	if l := got[relocate]; l.Kind != record.KindRelocate || l.Moved != 2 || l.Outcome != record.OutcomeSucceeded || l.ObjectiveSeconds != 300 || l.Met == nil || !*l.Met {
		t.Errorf("relocate: %+v", l)
	}
	if l := got[killed]; l.Runs != 2 || l.Moved != 3 || l.Outcome != record.OutcomeSucceeded || strings.Join(l.RunIDs, ",") != killed+","+rerun.MoveID {
		t.Errorf("killed and rerun: %+v", l)
	}
	if l := got[failover]; l.Kind != record.KindFailover || l.Moved != 2 || l.Outcome != record.OutcomeSucceeded || l.Actor == "" {
		t.Errorf("failover: %+v", l)
	}
	r := sitefail(t, "history", "--site", edge)
	if r.code != 0 || !strings.Contains(r.stdout, "relocate (2 runs)") || !strings.Contains(r.stdout, edge+"→DR") {
		t.Fatalf("history: %s", r)
	}

	// The killed move's record: two runs, and every VM Ready with its timestamps.
	rec := recordOf(t, killed)
	if len(rec.Runs) != 2 || rec.Runs[0].Outcome != record.OutcomeRunning || rec.Runs[1].Outcome != record.OutcomeSucceeded {
		t.Fatalf("runs: %+v", rec.Runs)
	}
	ready := map[string]bool{}
	for _, run := range rec.Runs {
		if run.Actor == "" || !strings.Contains(run.Command, "--tier 2") || run.Version == "" {
			t.Errorf("run %s: actor %q, command %q, version %q", run.MoveID, run.Actor, run.Command, run.Version)
		}
		for _, v := range run.VMs {
			if v.Ready != nil {
				ready[v.VM] = true
				// A wait for a restart the killed run sent patches nothing.
				if v.Started == nil || v.Patched == nil && v.Action != plan.ActionWait || v.Running == nil || v.Ready.Before(*v.Started) {
					t.Errorf("%s in %s: timestamps %+v", v.VM, run.MoveID, v)
				}
			}
		}
	}
	for _, name := range []string{"kill-1", "kill-2", "kill-3"} {
		if !ready[safetyNS+"/"+name] {
			t.Errorf("%s has no Ready time in either run", name)
		}
	}
	for _, v := range recordOf(t, failover).Runs[0].VMs {
		if v.Released == nil || v.Ready == nil {
			t.Errorf("failover %s: released %v, Ready %v", v.VM, v.Released, v.Ready)
		}
	}
	if fo := recordOf(t, failover); len(fo.Runs[0].Evidence.Confirmed) != 1 || fo.Runs[0].Evidence.Confirmed[0] != edge {
		t.Errorf("failover evidence: %+v", fo.Runs[0].Evidence)
	}

	// report: the latest by default, verified, and the HTML timeline.
	r = sitefail(t, "report")
	if r.code != 0 || !strings.Contains(r.stdout, "# Move failover "+failover) || !strings.Contains(r.stdout, "```mermaid") {
		t.Fatalf("report (latest): %s", r)
	}
	r = sitefail(t, "report", killed, "--verify")
	if r.code != 0 || !strings.Contains(r.stderr, "Verified") {
		t.Fatalf("report --verify: %s", r)
	}
	r = sitefail(t, "report", failover, "--html")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "<!DOCTYPE html>") || !strings.Contains(r.stdout, `<rect class="a-failover"`) || strings.Contains(r.stdout, "<script") {
		t.Fatalf("report --html: exit %d\n%.500s", r.code, r.stdout)
	}
	var asJSON map[string]any
	if err := json.Unmarshal([]byte(sitefail(t, "report", relocate, "-o", "json").stdout), &asJSON); err != nil || asJSON["kind"] != "MoveRecord" {
		t.Fatalf("report -o json: %v %v", err, asJSON["kind"])
	}
}
