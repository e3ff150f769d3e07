package plan

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/journal"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

var updateTable = flag.Bool("update-table", false, "rewrite docs/lifecycle-table.md from the planner")

// The dimensions of a VM's decision (issue 19): run strategy, instance state, where the
// instance is, the journal, the source site's health, and the request.
var (
	cellStrategies = []kubevirtv1.VirtualMachineRunStrategy{kubevirtv1.RunStrategyAlways, kubevirtv1.RunStrategyRerunOnFailure,
		kubevirtv1.RunStrategyManual, kubevirtv1.RunStrategyHalted, kubevirtv1.RunStrategyOnce}
	cellInstances = []string{"none", "Pending", "Running", "Paused", "Terminating", "Failed", "Succeeded", "Migrating"}
	cellPlaces    = []string{"source", "target", "unlabeled-node", "deleted-node"}
	cellJournals  = []string{"none", "patched", "migrating", "restarting", "releasing", "starting", "done", "failed"}
	cellRequests  = []string{"relocate", "failover", "failback"}
)

type cell struct {
	strategy          kubevirtv1.VirtualMachineRunStrategy
	instance, place   string
	journal, request  string
	sourceAlive       bool
	running, readyOnT bool
	// startRequested: KubeVirt holds a start request (a restart in progress). Not a
	// column of the table: every cell is decided again with it and checked.
	startRequested bool
	// ownInstance: the journal names the instance there is now (the step acted on it:
	// its own release, say), not an earlier one. Checked like startRequested.
	ownInstance bool
	// deleting: the VM itself is being deleted (its namespace going, say). Checked like
	// startRequested.
	deleting bool
	// oldSelector: a Pending instance still selects the move's source, as one made
	// before the template's patch does. Checked like startRequested.
	oldSelector bool
}

// cellSnapshot builds the one-VM cluster of a cell. Sites: Primary (p1) and DR (d1), an
// unlabeled node u1. A relocate and a failover go Primary -> DR, the failover with
// Primary dead; a failback goes DR -> Primary, with the journal of the move to DR.
func cellSnapshot(c cell) (*snapshot.Snapshot, Request) {
	keys := selector.DefaultKeys()
	from, to := "Primary", "DR"
	if c.request == "failback" {
		from, to = "DR", "Primary"
	}
	primary := snapshot.NodeReady
	if !c.sourceAlive && c.request != "failback" {
		primary = snapshot.NodeNotReady
	}
	node := func(name, site string, st snapshot.NodeState) snapshot.Node {
		l := map[string]string{}
		if site != "" {
			l[keys.Site] = site
		}
		return snapshot.Node{Name: name, Site: site, State: st, CPUMilli: 64000, MemoryBytes: 256 << 30, Labels: l}
	}
	s := &snapshot.Snapshot{Keys: keys, ActiveMigrations: map[string]string{}, RolloutStrategy: "LiveUpdate",
		Nodes: []snapshot.Node{node("p1", "Primary", primary), node("d1", "DR", snapshot.NodeReady), node("u1", "", snapshot.NodeReady)}}
	vm := snapshot.VM{Namespace: "ns", Name: "vm", RunStrategy: c.strategy, HomeSite: from, NodeSelector: map[string]string{keys.Site: from}, HasSelector: true,
		CPUMilli: 100, MemoryBytes: 1 << 30, Annotations: map[string]string{}}
	if c.journal != "none" {
		// The journal of a move towards this request's target, from its source; for a
		// failback, the finished or unfinished move to DR it undoes.
		jf, jt := from, to
		if c.request == "failback" {
			jf, jt = "Primary", "DR"
		}
		vmi := "old"
		if c.ownInstance {
			vmi = "now"
		}
		vm.Annotations = map[string]string{journal.MoveID: "sf-1", journal.From: jf, journal.To: jt, journal.Phase: c.journal, journal.VMI: vmi}
		if jt == to || c.request == "failback" {
			vm.HomeSite, vm.NodeSelector[keys.Site] = jt, jt
		}
	}
	if c.instance != "none" {
		inst := &snapshot.VMI{UID: "now", Phase: "Running", Ready: true, LiveMigratable: true}
		switch c.place {
		case "source":
			inst.NodeName = map[string]string{"Primary": "p1", "DR": "d1"}[from]
		case "target":
			inst.NodeName = map[string]string{"Primary": "p1", "DR": "d1"}[to]
		case "unlabeled-node":
			inst.NodeName = "u1"
		case "deleted-node":
			inst.NodeName = "gone"
		}
		switch c.instance {
		case "Pending":
			inst.Phase, inst.NodeName, inst.Ready = "Scheduling", "", false
			if c.oldSelector {
				inst.NodeSelector = map[string]string{keys.Site: from}
			}
		case "Paused":
			// Paused by the operator (virtctl pause): never Ready until unpaused.
			inst.Paused, inst.PausedByUser, inst.Ready = true, true, false
		case "Terminating":
			inst.Terminating = true
		case "Failed", "Succeeded":
			inst.Phase, inst.Ready = c.instance, false
		case "Migrating":
			s.ActiveMigrations["ns/vm"] = MigrationPrefix + "vm-1"
		}
		vm.Instance = inst
	}
	vm.StartRequested = c.startRequested
	vm.Deleting = c.deleting
	s.VMs = []snapshot.VM{vm}
	s.Derive()
	return s, Request{To: to, All: true, Mode: ModeAuto, MaxInFlight: 1}
}

// TestDecisionTableIsComplete enumerates every cell of the per-VM decision and fails on
// any undecided or contradictory one: no action, a skip of a VM that is neither Ready on
// the target nor stopped by intent, a release from a live site or an unknown node that
// no blocker stops, a start of a running VM.
func TestDecisionTableIsComplete(t *testing.T) {
	var table strings.Builder
	cells := 0
	for _, req := range cellRequests {
		for _, alive := range []bool{true, false} {
			if req == "relocate" && !alive || req == "failover" && alive || req == "failback" && !alive {
				continue
			}
			fmt.Fprintf(&table, "\n## %s\n\n| run strategy | instance | on | %s |\n|---|---|---|%s\n", req, strings.Join(cellJournals, " | "), strings.Repeat("---|", len(cellJournals)))
			for _, rs := range cellStrategies {
				for _, inst := range cellInstances {
					places := cellPlaces
					if inst == "none" || inst == "Pending" {
						places = []string{"-"}
					}
					for _, place := range places {
						row := []string{string(rs), inst, place}
						for _, jp := range cellJournals {
							c := cell{strategy: rs, instance: inst, place: place, journal: jp, request: req, sourceAlive: alive}
							row = append(row, decideCell(t, c))
							c.startRequested = true
							decideCell(t, c)
							c.startRequested, c.ownInstance = false, true
							decideCell(t, c)
							c.ownInstance, c.deleting = false, true
							decideCell(t, c)
							if inst == "Pending" {
								c.deleting, c.oldSelector = false, true
								decideCell(t, c)
							}
							cells++
						}
						fmt.Fprintf(&table, "| %s |\n", strings.Join(row, " | "))
					}
				}
			}
		}
	}
	t.Logf("%d cells decided", cells)
	const path = "../../docs/lifecycle-table.md"
	got := lifecycleTableHeader + table.String()
	if *updateTable {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil || string(want) != got {
		t.Fatalf("docs/lifecycle-table.md is not what the planner decides (go test ./pkg/plan -run TestDecisionTableIsComplete -update-table): %v", err)
	}
}

const lifecycleTableHeader = `# The decision table

Generated by ` + "`go test ./pkg/plan -run TestDecisionTableIsComplete -update-table`" + ` from the
planner itself, and checked by the same test: every cell is the action ` + "`plan`" + ` takes
for one VM, ` + "`!`" + ` marking a cell that a blocker stops (the move does not start). Journal
columns are the phase an earlier move towards the same target left (for a failback: the
move to DR being undone). See docs/lifecycle.md for the rules behind them.
`

func decideCell(t *testing.T, c cell) string {
	t.Helper()
	s, req := cellSnapshot(c)
	p, err := Build(s, req)
	if err != nil {
		t.Fatalf("%+v: %v", c, err)
	}
	st := p.Steps[0]
	vm := &s.VMs[0]
	inst := vm.Instance
	running := inst != nil && !inst.Terminating && inst.Phase != "Succeeded" && inst.Phase != "Failed"
	readyOnTarget := running && vm.CurrentSite == req.To && (inst.Ready || inst.PausedByUser)
	blocked := p.Blocked(true)
	j := journal.Read(vm.Annotations)
	fail := func(why string) { t.Errorf("%+v: %s %s (%s): %s", c, st.Action, st.Reason, blockerCodes(p), why) }

	switch st.Action {
	case ActionPatch, ActionMigrate, ActionRestart, ActionFailover, ActionStart, ActionWait, ActionSkip:
	default:
		fail("no action decided")
	}
	// A VM being deleted gets no new instance from KubeVirt, wherever it goes: a move
	// of it would wait for ever (found in the e2e suite: a namespace being deleted held
	// a failover until --ready-timeout). Whatever its state, it is left alone, said.
	if c.deleting {
		if st.Action != ActionSkip || !strings.Contains(st.Reason, "being deleted") || !hasIssue(p.Warnings, "BeingDeleted", vm.Key()) {
			fail("a VM being deleted is moved, or left without a word")
		}
		return string(st.Action)
	}
	if st.Reason == "" {
		fail("no reason given")
	}
	for _, b := range p.Blockers {
		if b.Message == "" {
			fail("a blocker without a message")
		}
	}
	// skip only where the VM is Ready on the target or stopped there by intent: nothing
	// runs, and no unfinished step of a VM that ran is pending.
	// The move ended the instance when its journal records a release or a restart (or,
	// from an older version, "failed", or a step begun on a site that is dead now).
	// KubeVirt brings the VM back by itself when it is Always, or RerunOnFailure after a
	// failure or a stop of the move's; a Manual VM only a start brings back.
	if st.Action == ActionSkip && !readyOnTarget {
		open := j.MoveID != "" && j.Open()
		endedByMove := open && (j.Released() || j.Phase == journal.PhaseRestarting || !s.SiteAlive(j.From))
		failed := inst != nil && inst.Phase == "Failed"
		comesBack := c.strategy == kubevirtv1.RunStrategyAlways ||
			c.strategy == kubevirtv1.RunStrategyRerunOnFailure && (failed || endedByMove)
		if running || open && j.Unfinished(req.To) && comesBack || c.strategy == kubevirtv1.RunStrategyManual && endedByMove {
			fail("skipped, but neither Ready on the target nor stopped there by intent")
		}
		// KubeVirt starts an Always VM, and a RerunOnFailure VM after a failure, by
		// itself: whatever the journal says, it is not done until it is Ready there
		// (found by the simulator, seed 4382: a restarting instance, journal "done").
		if c.strategy == kubevirtv1.RunStrategyAlways || c.strategy == kubevirtv1.RunStrategyRerunOnFailure && failed || c.startRequested {
			fail("skipped a VM that KubeVirt starts by itself before it is Ready on the target")
		}
	}
	// A VM that KubeVirt starts by itself (Always, or a start request pending: a
	// restart in progress) from a patched template is a start on the target: throttled
	// and waited for, never a bare patch (found by the simulator with restarts drawn).
	if st.Action == ActionPatch && !st.Recreated && !running && (c.strategy == kubevirtv1.RunStrategyAlways || c.startRequested) {
		fail("a patch-only step of a VM that KubeVirt starts by itself is not waited for")
	}
	// No release or restart of an instance that may still run where nothing proves it
	// stopped, unless a blocker or the failover confirmation stands in the way.
	if (st.Action == ActionRestart || st.Action == ActionMigrate) && inst != nil && inst.NodeName != "" {
		n, ok := s.Node(inst.NodeName)
		if !ok && !blocked {
			fail("an instance on a deleted node is restarted or migrated without the failover proof")
		}
		if ok && n.Site != "" && !s.SiteAlive(n.Site) && !blocked {
			fail("an instance on a dead site is restarted or migrated without the failover proof")
		}
	}
	// An instance that is not over (running, or shutting down: a Terminating one on a
	// dead site or a deleted node may hang there for ever, or still run) holds its VM
	// there until it is released: patching around it, or waiting, never ends it.
	if inst != nil && inst.NodeName != "" && inst.Phase != "Succeeded" && inst.Phase != "Failed" && !blocked && st.Action != ActionFailover {
		if n, ok := s.Node(inst.NodeName); !ok || n.Site != "" && !s.SiteAlive(n.Site) {
			fail("an instance that may still run on a dead site or a deleted node is not released")
		}
	}
	// Somebody may have let an earlier instance go on a dead site (a force delete, a
	// remediation deleting the node's pods) while its guest still runs; KubeVirt then
	// shows a new instance on no node, or none. A start elsewhere is guarded like a
	// release of that site (found by review of the real NHC's FAR runs).
	if home := vm.HomeSite; st.Starts() && st.Action != ActionFailover && st.Action != ActionWait && !blocked && (inst == nil || inst.NodeName == "") &&
		home != "" && home != req.To && s.HasSite(home) && !s.SiteAlive(home) && st.ReleasedFrom != home {
		fail("a start of a VM whose template selects a dead site, with nothing showing its earlier instance over, is not guarded")
	}
	// An instance on no node that selects another site never schedules on the target:
	// waiting for it waits until --ready-timeout (found by review).
	if st.Action == ActionWait && inst != nil && inst.NodeName == "" && inst.NodeSelector[s.Keys.Site] != "" && inst.NodeSelector[s.Keys.Site] != req.To {
		fail("waits for an instance that selects another site")
	}
	if st.Action == ActionFailover && !blocked && (st.From == "" || s.SiteAlive(st.From)) {
		fail("a failover from a live or unnamed site that no blocker stops")
	}
	// A pending start request means KubeVirt starts the VM again once its instance is
	// gone: a release of it is no stop, and the move starts no second copy.
	if c.startRequested && st.StaysDown && c.strategy != kubevirtv1.RunStrategyHalted && c.strategy != kubevirtv1.RunStrategyOnce {
		fail("a VM with a start request pending is released as staying down")
	}
	if st.Action == ActionFailover && c.startRequested != st.StartPending {
		fail("a failover that does not record whether KubeVirt holds a start request")
	}
	// A Manual VM's instance that Failed (its guest crashed, or died with its site's
	// power) was not stopped by anyone, and KubeVirt starts it again only on request: a
	// move that takes it off the site it failed on starts it there, or it is left down
	// with exit 0 (found by the simulator with power-loss returns, seeds 237, 310, 312).
	if c.strategy == kubevirtv1.RunStrategyManual && inst != nil && inst.Phase == "Failed" && !inst.Terminating && !c.startRequested &&
		vm.CurrentSite != req.To && !blocked && st.Action != ActionStart && !(st.Action == ActionFailover && st.Starts()) {
		fail("a Manual VM whose instance failed is moved without a start: left down")
	}
	// virt-controller fails an instance whose launcher pod left the API (a deleted Node,
	// a force delete) while its guest may still run: a start of one off a node that is
	// not Ready is a release, and needs the failover proof (found by review).
	if st.Action == ActionStart && st.ReleasedFrom == "" && !blocked && inst != nil && inst.Phase == "Failed" && vm.CurrentSite != req.To {
		if n, ok := s.Node(inst.NodeName); !ok || n.State != snapshot.NodeReady {
			fail("a failed instance on a node that is not Ready or not in the cluster is started elsewhere without the failover proof")
		}
	}
	if st.Action == ActionStart && (running || c.strategy != kubevirtv1.RunStrategyManual) {
		fail("a start of a VM that runs, or that KubeVirt starts by itself")
	}
	out := string(st.Action)
	if blocked {
		out += "!"
	}
	return out
}

func blockerCodes(p *Plan) string {
	var out []string
	for _, b := range p.Blockers {
		out = append(out, b.Code)
	}
	return strings.Join(out, ",")
}

// N10: a failback ignored a sitefail migration still heading to the other site: it
// called the VM "already there", and the migration landed it on DR after the failback
// ended, with a template that selects Primary.
func TestN10FailbackIsBlockedByAMigrationToTheOtherSite(t *testing.T) {
	c := cell{strategy: kubevirtv1.RunStrategyAlways, instance: "Migrating", place: "target", journal: "patched", request: "failback", sourceAlive: true}
	s, req := cellSnapshot(c)
	s.ActiveMigrationTo = map[string]string{"ns/vm": "DR"}
	p, err := Build(s, req)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Blocked(true) || blockerCodes(p) != "MigrationToOtherSite" {
		t.Fatalf("failback with a migration to DR in flight: %s %s, blockers %q", p.Steps[0].Action, p.Steps[0].Reason, blockerCodes(p))
	}
	// Towards this move's own target it is followed, not blocked.
	s.ActiveMigrationTo["ns/vm"] = "Primary"
	if p, _ = Build(s, req); p.Blocked(true) {
		t.Fatalf("a migration towards the target itself is followed: %+v", p.Blockers)
	}
}

// N6: a restart of an instance that never started (Pending) was interrupted before it
// took: the rerun waited for that same instance to be Ready on the target, which it
// never is (it selects the old site), at every rerun.
func TestN6InterruptedRestartOfAPendingInstanceIsRestartedAgain(t *testing.T) {
	c := cell{strategy: kubevirtv1.RunStrategyAlways, instance: "Pending", place: "-", journal: "restarting", request: "relocate", sourceAlive: true}
	s, req := cellSnapshot(c)
	s.VMs[0].Instance.UID = "old" // the instance the journal's restart acted on
	p, err := Build(s, req)
	if err != nil {
		t.Fatal(err)
	}
	if st := p.Steps[0]; st.Action != ActionRestart || st.VMIUID != "old" {
		t.Fatalf("rerun plans %s (%s) for the instance the restart did not replace; want restart", st.Action, st.Reason)
	}
}

// Review finding: an instance on a deleted node that is not the one the journal's step
// acted on was created after the step, from a template that selects the target: its
// node may have been on the target. The source's confirmation does not cover it.
func TestNewInstanceOnADeletedNodeIsNotAFailoverOfTheJournalsSource(t *testing.T) {
	c := cell{strategy: kubevirtv1.RunStrategyAlways, instance: "Running", place: "deleted-node", journal: "releasing", request: "failover"}
	s, req := cellSnapshot(c) // the instance "now" is not the journal's "old"
	p, err := Build(s, req)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Blocked(true) || !strings.Contains(blockerCodes(p), "NodeNotFound") {
		t.Fatalf("a new instance on a deleted node: %s from %q, blockers %q; want NodeNotFound", p.Steps[0].Action, p.Steps[0].From, blockerCodes(p))
	}
	// The instance the release acted on, on a deleted node of the dead source: a failover.
	s.VMs[0].Instance.UID = "old"
	if p, _ = Build(s, req); p.Blocked(true) || p.Steps[0].Action != ActionFailover || p.Steps[0].From != "Primary" {
		t.Fatalf("the released instance on a deleted node: %s from %q, blockers %q", p.Steps[0].Action, p.Steps[0].From, blockerCodes(p))
	}
}

// Review finding: a Manual VM whose live migration was interrupted ("patched") and that
// then stopped while its site stayed up was stopped by someone, not by the move: it is
// not started, and certainly not through the release guard, which halted every rerun.
func TestManualVMStoppedAfterAnInterruptedMigrationIsNotStarted(t *testing.T) {
	c := cell{strategy: kubevirtv1.RunStrategyManual, instance: "Succeeded", place: "source", journal: "patched", request: "relocate", sourceAlive: true}
	s, req := cellSnapshot(c)
	p, err := Build(s, req)
	if err != nil {
		t.Fatal(err)
	}
	if st := p.Steps[0]; st.Action == ActionStart || st.ReleasedFrom != "" {
		t.Fatalf("planned %s (released from %q) for a VM the move did not stop", st.Action, st.ReleasedFrom)
	}
}

// Review finding: KubeVirt does not restart a RerunOnFailure VM whose instance
// Succeeded, so nothing is to be waited for.
func TestRerunOnFailureWithASucceededInstanceIsNotWaitedFor(t *testing.T) {
	for _, jp := range []string{"none", "patched"} {
		c := cell{strategy: kubevirtv1.RunStrategyRerunOnFailure, instance: "Succeeded", place: "source", journal: jp, request: "relocate", sourceAlive: true}
		s, req := cellSnapshot(c)
		p, err := Build(s, req)
		if err != nil {
			t.Fatal(err)
		}
		if st := p.Steps[0]; st.Action == ActionWait || st.Starts() {
			t.Fatalf("journal %s: planned %s (starts %v) for a VM KubeVirt will not restart", jp, st.Action, st.Starts())
		}
	}
}

// Review of issue 20: a Manual VM being stopped when its site died is released and
// stays down; the rerun after an interruption must not start it (the journal used to
// say only "releasing", which reads as "the move stopped it").
func TestReleasedStoppingManualVMIsNotStartedByTheRerun(t *testing.T) {
	s, req := cellSnapshot(cell{strategy: kubevirtv1.RunStrategyManual, instance: "none", place: "-", journal: "releasing", request: "failover"})
	s.VMs[0].Annotations[journal.StaysDown] = s.VMs[0].Annotations[journal.MoveID]
	s.Derive()
	p, err := Build(s, req)
	if err != nil {
		t.Fatal(err)
	}
	if st := p.Steps[0]; st.Action == ActionStart {
		t.Fatalf("rerun plans %q (%s) for a Manual VM released while it was being stopped", st.Action, st.Reason)
	}
	// A marker of another move (left by a version that did not clear it) does not
	// speak for this journal's move: the released Manual VM is started.
	s.VMs[0].Annotations[journal.StaysDown] = "sf-older"
	if p, err = Build(s, req); err != nil {
		t.Fatal(err)
	}
	if st := p.Steps[0]; st.Action != ActionStart {
		t.Fatalf("a stale stays-down marker: rerun plans %q (%s); want %q", st.Action, st.Reason, ActionStart)
	}
}

// A Terminating Manual or RerunOnFailure instance is a stop (stays down) or a restart
// (KubeVirt holds a start request and starts it again by itself): v1.8.0's restart
// queues a stop and a start. Only the first ends without waiting for Ready.
func TestTerminatingInstanceIsAStopOrARestartByItsStartRequest(t *testing.T) {
	for _, rs := range []kubevirtv1.VirtualMachineRunStrategy{kubevirtv1.RunStrategyManual, kubevirtv1.RunStrategyRerunOnFailure} {
		for _, restart := range []bool{false, true} {
			s, req := cellSnapshot(cell{strategy: rs, instance: "Terminating", place: "source", journal: "none", request: "failover"})
			s.VMs[0].StartRequested = restart
			p, err := Build(s, req)
			if err != nil {
				t.Fatal(err)
			}
			st := p.Steps[0]
			if st.Action != ActionFailover || st.StaysDown == restart || st.StartPending != restart || st.Starts() != restart {
				t.Errorf("%s, start requested %v: %q staysDown %v startPending %v starts %v", rs, restart, st.Action, st.StaysDown, st.StartPending, st.Starts())
			}
		}
	}
}

// Review of issue 20: a guest a user paused that is already on the target is where the
// move leaves it; a rerun used to wait for a Ready that never comes. A pause for an I/O
// error is not a state to carry over: waited for like any other.
func TestPausedGuestOnTheTargetIsThere(t *testing.T) {
	for _, byUser := range []bool{true, false} {
		s, req := cellSnapshot(cell{strategy: kubevirtv1.RunStrategyAlways, instance: "Paused", place: "target", journal: "patched", request: "relocate"})
		s.VMs[0].Instance.PausedByUser = byUser
		p, err := Build(s, req)
		if err != nil {
			t.Fatal(err)
		}
		want := ActionSkip
		if !byUser {
			want = ActionWait
		}
		if st := p.Steps[0]; st.Action != want {
			t.Errorf("paused by user %v on the target, journal patched: %q (%s); want %q", byUser, st.Action, st.Reason, want)
		}
	}
}

// A Manual VM this move released while it was being stopped (journal stays-down) and
// whose instance shows Failed is not started: it was meant to stay down. Without the
// stays-down check the failed-instance rule started it, unguarded (found reading the
// change again).
func TestFailedInstanceOfAStaysDownReleaseIsNotStarted(t *testing.T) {
	s, req := cellSnapshot(cell{strategy: kubevirtv1.RunStrategyManual, instance: "Failed", place: "source", journal: "releasing", request: "failover", ownInstance: true})
	s.VMs[0].Annotations[journal.StaysDown] = s.VMs[0].Annotations[journal.MoveID]
	s.Derive()
	p, err := Build(s, req)
	if err != nil {
		t.Fatal(err)
	}
	if st := p.Steps[0]; st.Action == ActionStart || st.Starts() {
		t.Fatalf("planned %q (%s, released from %q) for a VM released to stay down", st.Action, st.Reason, st.ReleasedFrom)
	}
}
