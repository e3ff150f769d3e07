package executor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/journal"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
)

// errStopped marks a wait abandoned because the operator asked to stop.
var errStopped = errors.New("stopped before the VM was Ready")

// ErrNotReleasable is wrapped by Cluster.CheckRelease, ForceDeleteLaunchers and
// FenceNodes when the guard refused one instance's release at the write.
var ErrNotReleasable = errors.New("not releasable")

// ErrSiteAlive is wrapped when a node of the confirmed-down site is Ready: the site may
// be alive, so the whole move stops releasing.
var ErrSiteAlive = errors.New("site is alive")

func (e *Executor) journal(st *plan.Step, phase string) map[string]string {
	now := timestamp(e.cfg.Now())
	j := map[string]string{
		journal.MoveID: e.cfg.MoveID, journal.To: st.To, journal.Phase: phase,
		journal.Updated: now, journal.VMI: st.VMIUID,
	}
	if st.From != "" && st.From != st.To {
		j[journal.From] = st.From
	}
	if e.cfg.Actor != "" {
		j[journal.Actor] = e.cfg.Actor
	}
	// Written with every phase, so that a later move's journal never inherits it.
	j[journal.StaysDown] = ""
	if st.StaysDown {
		j[journal.StaysDown] = e.cfg.MoveID
	}
	if phase == journal.PhasePatched {
		j[journal.Started] = now
	}
	if phase == journal.PhaseDone {
		// Done clears the last failure; the attempts stay as history.
		j[journal.Error] = ""
	}
	return j
}

// failure records a failed try: the move, the error and how many tries this VM has had,
// leaving the phase as it was.
func (e *Executor) failure(st *plan.Step, err error) map[string]string {
	msg := fmt.Sprintf("%s to %s: %v", e.cfg.MoveID, st.To, err)
	if len(msg) > 1024 {
		msg = msg[:1024]
	}
	return map[string]string{journal.Error: msg, journal.Attempts: fmt.Sprint(st.Attempts + 1), journal.Updated: timestamp(e.cfg.Now())}
}

func (e *Executor) mark(ctx context.Context, st *plan.Step, phase string) error {
	e.phase(st, phase, "")
	return e.retry(ctx, func() error { return e.cluster.Annotate(ctx, *st, e.journal(st, phase)) })
}

// runStep carries out one VM's action. Writes run under ctx so an operator's stop lets
// them finish; waits run under stop, and an abandoned wait is a safe point.
func (e *Executor) runStep(ctx, stop context.Context, st *plan.Step) result {
	e.emit(Event{Time: e.cfg.Now(), Kind: StepStarted, Tier: st.Tier, VM: st.Key(), Action: st.Action, Message: st.Reason})
	r := result{step: st}
	err := e.doStep(ctx, stop, st)
	switch {
	// A write cut short because the move was cancelled (its lock lost, or a second
	// Ctrl-C) was not refused: its outcome is in the cluster and the journal, and the
	// rerun plans from both.
	case errors.Is(err, errStopped), errors.Is(err, ErrLockInvalid), err != nil && ctx.Err() != nil:
		r.interrupted = true
		e.phase(st, "interrupted", "stopped at a safe point; run the move again to finish it")
		return r
	case vmGone(err):
		r.gone = true
		e.finish(Event{Kind: StepDone, Tier: st.Tier, VM: st.Key(), Action: plan.ActionSkip, Message: "deleted during the move: skipped"})
		return r
	case err != nil:
		r.err = err
		// The failure goes beside the phase, never over it: the phase was written ahead
		// of its effect, and "released, not started" must survive a failed start.
		_ = e.retry(ctx, func() error {
			return e.cluster.Annotate(ctx, *st, e.failure(st, err))
		})
		e.cluster.Record(st.Namespace, st.Name, "SitefailMoveFailed", fmt.Sprintf("move to %s failed: %v", st.To, err))
		e.finish(Event{Kind: StepFailed, Tier: st.Tier, VM: st.Key(), Action: st.Action, Message: err.Error()})
		return r
	}
	r.readyAt = e.cfg.Now()
	e.finish(Event{Kind: StepDone, Tier: st.Tier, VM: st.Key(), Action: st.Action, Message: "on " + st.To})
	return r
}

func (e *Executor) doStep(ctx, stop context.Context, st *plan.Step) error {
	switch st.Action {
	case plan.ActionWait:
		// An earlier move began this step: wait for it, writing nothing until it is done.
		if err := e.waitReadyOnTarget(stop, st, e.replacedInstance(st)); err != nil {
			return err
		}
		return e.finishStep(ctx, st)
	case plan.ActionStart:
		if err := e.startReleased(ctx, stop, st); err != nil {
			return err
		}
		return e.finishStep(ctx, st)
	case plan.ActionFailover:
		// Checked before the first write too: a site that is back keeps its templates.
		if err := e.checkRelease(ctx, st, st.Node); err != nil {
			return err
		}
	}

	// 1. The template: the journal and the new site land in one request. Its phase is
	// the step's next one where nothing else comes first, to save a request per VM: done
	// for a stopped VM (nothing more happens), restarting for a restart (a rerun restarts
	// only the instance it sees, never a new one twice).
	phase := journal.PhasePatched
	switch {
	case st.Action == plan.ActionPatch && !e.patchOnlyWaits(st):
		phase = journal.PhaseDone
	case st.Action == plan.ActionRestart:
		phase = journal.PhaseRestarting
	case st.Action == plan.ActionFailover:
		// Ahead of the release, and never back to "patched": an out-of-service taint may
		// have released it already, and a crash right after this write must leave a
		// rerun that knows (a Manual VM is started, not skipped).
		phase = journal.PhaseReleasing
	}
	err := e.retry(ctx, func() error {
		// A VM that an earlier instance may still hold on a dead site starts from this
		// patch (KubeVirt recreates it) or the restart after it: the site must still be
		// down, checked inside each try like a release.
		if st.Action != plan.ActionFailover && st.ReleasedFrom != "" {
			if err := e.checkStart(ctx, st); err != nil {
				return err
			}
		}
		return e.cluster.PatchSite(ctx, *st, e.journal(st, phase))
	})
	if err != nil {
		return fmt.Errorf("patch nodeSelector: %w", err)
	}
	e.phase(st, journal.PhasePatched, fmt.Sprintf("template now selects %s", st.To))
	if phase == journal.PhaseDone {
		return nil
	}

	// 2. The instance.
	switch st.Action {
	case plan.ActionPatch:
		if err := e.waitPatchOnly(stop, st); err != nil {
			return err
		}
	case plan.ActionMigrate:
		if err := e.migrate(ctx, stop, st); err != nil {
			return err
		}
	case plan.ActionRestart:
		if err := e.restart(ctx, stop, st); err != nil {
			return err
		}
	case plan.ActionFailover:
		if err := e.failover(ctx, stop, st); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown action %q", st.Action)
	}
	return e.finishStep(ctx, st)
}

// finishStep closes the journal. The Events an auditor reads are the disruptive ones
// (migrating, restarted, released, started) and failures; the journal on the VM says
// the rest, and one Event per step would double the writes of a large move.
func (e *Executor) finishStep(ctx context.Context, st *plan.Step) error {
	if err := e.mark(ctx, st, journal.PhaseDone); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	return nil
}

// replacedInstance is the instance an unfinished restart or release acted on: the VM is
// Ready again only with another one.
func (e *Executor) replacedInstance(st *plan.Step) string {
	if st.JournalVMI != "" {
		return st.JournalVMI
	}
	return ""
}

// checkRelease is the split-brain guard at the instant of a release: if the confirmed
// site shows a Ready node again, or the instance's node is not a dead node of it, no
// further VM is released in this move.
func (e *Executor) checkRelease(ctx context.Context, st *plan.Step, node string) error {
	if reason := e.halted(); reason != "" {
		return fmt.Errorf("not released: %s", reason)
	}
	if err := e.cluster.CheckRelease(ctx, st.From, node); err != nil {
		e.haltIfSiteAlive(err)
		// Wrapped, so that a transient error of the read is retried where the check runs
		// inside a write's tries; a refusal is not retriable.
		return fmt.Errorf("not released: %w", err)
	}
	return nil
}

func (e *Executor) haltIfSiteAlive(err error) {
	if errors.Is(err, ErrSiteAlive) {
		e.halt(fmt.Sprintf("releases stopped: %v; the site may be alive and its VMs running there, so nothing more is released (relocate instead, or fence the site and run the move again)", err))
	}
}

// startReleased starts a Manual VM that an interrupted or failed failover released. The
// template is patched to the target with the journal's "starting" in one request: a
// failback of such a VM starts it on its old site rather than leave it down.
func (e *Executor) startReleased(ctx, stop context.Context, st *plan.Step) error {
	if err := e.checkStart(ctx, st); err != nil {
		return err
	}
	err := e.retry(ctx, func() error { return e.cluster.PatchSite(ctx, *st, e.journal(st, journal.PhaseStarting)) })
	if err != nil {
		return fmt.Errorf("patch nodeSelector: %w", err)
	}
	// KubeVirt refuses to start a VM whose instance is still terminating.
	if err := e.waitFor(stop, st, func(i *Instance) (bool, error) { return i == nil || i.Final(), nil }); err != nil {
		return err
	}
	if err := e.start(ctx, st, st.ReleasedFrom); err != nil {
		return err
	}
	return e.waitReadyOnTarget(stop, st, e.replacedInstance(st))
}

// checkStart guards the start of a released VM: on any site but the one it was
// released from, the start is a release too, and that site must still be down.
func (e *Executor) checkStart(ctx context.Context, st *plan.Step) error {
	if st.ReleasedFrom == "" || st.ReleasedFrom == st.To {
		if reason := e.halted(); reason != "" {
			return fmt.Errorf("not started: %s", reason)
		}
		return nil
	}
	released := *st
	released.From = st.ReleasedFrom
	return e.checkRelease(ctx, &released, "")
}

// start starts a released Manual VM, released from site from. The guard is checked
// inside each try, after it holds its write slot: the step's own check came before its
// journal write and the wait for slots, during which the site may have come back.
func (e *Executor) start(ctx context.Context, st *plan.Step, from string) error {
	guarded := *st
	guarded.ReleasedFrom = from
	err := e.retry(ctx, func() error {
		if err := e.checkStart(ctx, &guarded); err != nil {
			return err
		}
		err := e.cluster.Start(ctx, st.Namespace, st.Name)
		if apierrors.IsConflict(err) {
			// KubeVirt's 409 when it already runs or starts; anything else is worth
			// another try.
			if i := e.cluster.Instance(st.Namespace, st.Name); i != nil && i.UID != st.VMIUID && i.UID != st.JournalVMI && !i.Final() {
				return nil
			}
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	e.cluster.Record(st.Namespace, st.Name, "SitefailStarted", "started on "+st.To+" after its release from "+dashed(st.From))
	return nil
}

func dashed(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// waitPatchOnly waits for readiness only where KubeVirt is already (re)starting the VM:
// a stopped VM stays stopped.
func (e *Executor) waitPatchOnly(stop context.Context, st *plan.Step) error {
	if !e.patchOnlyWaits(st) {
		return nil
	}
	// A new instance: the one the plan saw is over or going.
	return e.waitReadyOnTarget(stop, st, st.VMIUID)
}

// patchOnlyWaits: the plan decided that KubeVirt recreates the VM from the patched
// template (Always, RerunOnFailure, with an instance over or going), unless it is
// already Ready on the target. A Halted, Manual or Once VM will not come back by
// itself: there is no readiness to wait for.
func (e *Executor) patchOnlyWaits(st *plan.Step) bool {
	if !st.Recreated {
		return false
	}
	return !readyOnTarget(e.cluster.Instance(st.Namespace, st.Name), st, "")
}

func (e *Executor) migrate(ctx, stop context.Context, st *plan.Step) error {
	name := MigrationName(e.cfg.MoveID, st.Name)
	inst := e.cluster.Instance(st.Namespace, st.Name)
	if m, ok := e.ownMigration(st); ok {
		// An interrupted run of this move started it: follow it rather than migrate twice.
		name = m.Name
	} else if inst != nil && inst.Site == st.To {
		// Already there (a migration finished between the plan and now): never migrate a
		// VM onto the site it runs on.
		return e.waitReadyOnTarget(stop, st, "")
	} else {
		// A migration someone else started (a drain's evacuation) ends first: KubeVirt
		// refuses a second one, and LiveUpdate does not change the nodeSelector of a
		// migrating VMI, so the wait below would time out behind it.
		if err := e.waitOtherMigration(stop, st); err != nil {
			return err
		}
		// LiveUpdate must carry the new site into the VMI first: a migration's target pod
		// follows the VMI's own nodeSelector.
		e.phase(st, "waiting-liveupdate", "waiting for the instance's nodeSelector to show "+st.To)
		// LiveUpdate takes moments; a bounded wait keeps a Stage cluster (where it never
		// comes) from costing a full --ready-timeout before the migration's own wait.
		if err := e.waitUntilWithin(stop, min(e.cfg.ReadyTimeout, liveUpdateTimeout), func() (bool, error) {
			i := e.cluster.Instance(st.Namespace, st.Name)
			if i == nil {
				return false, fmt.Errorf("the instance disappeared before migrating")
			}
			return i.SelectorSite == st.To, nil
		}); err != nil {
			if errors.Is(err, errStopped) {
				return err
			}
			return fmt.Errorf("LiveUpdate did not carry the new nodeSelector into the instance (is the KubeVirt CR's vmRolloutStrategy Stage, or RestartRequired set? move it with --mode restart): %w", err)
		}
		there, err := e.createMigration(ctx, stop, st, name)
		if err != nil || there {
			if err == nil {
				err = e.waitReadyOnTarget(stop, st, "")
			}
			return err
		}
		e.cluster.Record(st.Namespace, st.Name, "SitefailMigrating", fmt.Sprintf("live migration %s to %s started", name, st.To))
	}
	e.phase(st, journal.PhaseMigrating, "migration "+name)
	var failed MigrationState
	if err := e.waitUntil(stop, func() (bool, error) {
		m := e.cluster.Migration(st.Namespace, name)
		if m.Done && !m.Success {
			failed = m
			return true, nil
		}
		if !m.Exists {
			// Not in the cache yet, or already garbage-collected: the instance's site tells.
			i := e.cluster.Instance(st.Namespace, st.Name)
			return i != nil && i.Site == st.To, nil
		}
		return m.Done, nil
	}); err != nil {
		return err
	}
	if failed.Done {
		return e.migrationFailed(ctx, stop, st, name, failed)
	}
	// The audit record tells KubeVirt's hand-off apart from the guest's readiness.
	e.phase(st, "migrated", "migration "+name+" succeeded")
	return e.waitHandedOver(ctx, stop, st, fmt.Sprintf("migration %s succeeded", name))
}

// waitHandedOver waits for a migrated instance to be Ready on the target, like
// waitReadyOnTarget, but an instance that ends there first is not waited for until the
// timeout: the guest died after the hand-off (its domain never ran on the target), and
// diedAfterHandOff decides by run strategy.
func (e *Executor) waitHandedOver(ctx, stop context.Context, st *plan.Step, why string) error {
	var died *Instance
	err := e.waitUntilWithin(stop, e.cfg.ReadyTimeout, func() (bool, error) {
		i := e.cluster.Instance(st.Namespace, st.Name)
		if i != nil && i.Site == st.To && i.Final() && i.UID == st.VMIUID {
			died = i
			return true, nil
		}
		return readyOnTarget(i, st, ""), nil
	})
	if died != nil {
		return e.diedAfterHandOff(ctx, stop, st, why, died)
	}
	if errors.Is(err, errTimeout) {
		return e.notReadyInTime(st, "")
	}
	if err != nil {
		return err
	}
	// The same wait as every other step's, for the progress and record phases.
	return e.waitReadyOnTarget(stop, st, "")
}

// readyOnTarget is what a step waits for: an instance other than oldUID Ready on the
// target (a paused guest that migrated counts once it runs there), and never one that
// is final, going, or handed over by a migration whose domain never ran there, whatever
// its Ready condition still says (virt-controller copies it from the pod).
func readyOnTarget(i *Instance, st *plan.Step, oldUID string) bool {
	return liveOnTarget(i, st, oldUID) && (i.Ready || st.Paused && i.Paused && i.Phase == "Running")
}

// liveOnTarget: an instance other than oldUID on the target that may turn Ready there.
func liveOnTarget(i *Instance, st *plan.Step, oldUID string) bool {
	return i != nil && (oldUID == "" || i.UID != oldUID) && i.Site == st.To && !i.Terminating && !i.Final() && !i.DomainNeverRan
}

// createMigration creates the move's migration once no other migration of the VMI runs:
// KubeVirt refuses a second one ("in-flight migration detected"), and a drain's
// evacuation may have started since the plan. there reports that the VM reached the
// target meanwhile, so that no migration is needed.
func (e *Executor) createMigration(ctx, stop context.Context, st *plan.Step, name string) (there bool, err error) {
	for refused := 0; ; {
		if err := e.waitOtherMigration(stop, st); err != nil {
			return false, err
		}
		// Checked again right before the create: another migration may have landed it
		// on the target.
		if i := e.cluster.Instance(st.Namespace, st.Name); i != nil && i.Site == st.To {
			return true, nil
		}
		// No journal write of its own: the migration carries the move's id and target in
		// its labels, and a rerun follows it by them (ownMigration).
		vmi := st.Name
		err := e.retry(ctx, func() error { return e.cluster.Migrate(ctx, st.Namespace, vmi, name, st.To) })
		if err != nil && strings.Contains(err.Error(), "in-flight migration detected") && refused < 5 {
			// One started between the look and the create, not in the cache yet: wait
			// for the watch to show it, then for it to end.
			refused++
			if werr := e.waitUntilWithin(stop, 5*time.Second, func() (bool, error) {
				_, ok := e.cluster.UnfinishedMigration(st.Namespace, st.Name)
				return ok, nil
			}); errors.Is(werr, errStopped) {
				return false, werr
			}
			continue
		}
		if err != nil {
			return false, fmt.Errorf("create migration %s: %w", name, err)
		}
		return false, nil
	}
}

// waitOtherMigration waits until no unfinished migration of the VM's instance remains.
func (e *Executor) waitOtherMigration(stop context.Context, st *plan.Step) error {
	m, ok := e.cluster.UnfinishedMigration(st.Namespace, st.Name)
	if !ok {
		return nil
	}
	e.phase(st, "waiting-migration", fmt.Sprintf("waiting for migration %s, not this move's, to end", m.Name))
	if err := e.waitUntil(stop, func() (bool, error) {
		_, busy := e.cluster.UnfinishedMigration(st.Namespace, st.Name)
		return !busy, nil
	}); err != nil {
		return fmt.Errorf("migration %s of the VM, not this move's, did not end: %w", m.Name, err)
	}
	return nil
}

// migrationFailed handles a migration KubeVirt failed. The guest still runs on the
// source (a failed migration leaves it there), so a restart onto the target is safe
// where the VM allows one and --mode auto asked for whatever works; otherwise the step
// fails with KubeVirt's reason.
func (e *Executor) migrationFailed(ctx, stop context.Context, st *plan.Step, name string, m MigrationState) error {
	why := fmt.Sprintf("migration %s failed", name)
	if m.Reason != "" {
		why += ": " + m.Reason
	}
	inst := e.cluster.Instance(st.Namespace, st.Name)
	if inst != nil && inst.Site == st.To && !inst.Final() {
		// It failed after the hand-off, or a later migration landed it: it is there, or
		// its instance is about to fail there (the watches of migrations and instances
		// are apart, so the migration's end may arrive first).
		return e.waitHandedOver(ctx, stop, st, why)
	}
	if inst != nil && inst.Site == st.To {
		return e.diedAfterHandOff(ctx, stop, st, why, inst)
	}
	if !st.FallbackRestart || inst == nil || inst.UID != st.VMIUID || inst.Terminating || inst.Final() {
		return errors.New(why)
	}
	if !m.TargetPlaced {
		// The target site could not take it (KubeVirt deletes a target pod left
		// unschedulable past its timeout): a restart would stop the guest and meet the
		// same scheduler there.
		return fmt.Errorf("%s: its target pod was never scheduled on %s, so it was not restarted there either and still runs on %s; free capacity on %s or fix what keeps its pod off it (kubectl get events -n %s), then rerun",
			why, st.To, dashed(inst.Site), st.To, st.Namespace)
	}
	// A migration fails too when its source site goes down; a restart of an instance
	// there would hang on a dead node (and is no release). The release guard answers
	// whether the site is down, from the API server.
	if inst.Site != "" && e.cluster.CheckRelease(ctx, inst.Site, inst.NodeName) == nil {
		return fmt.Errorf("%s, and its site %s has no Ready node: fail the site over (--confirm-site-down=%s) instead of restarting it there", why, inst.Site, inst.Site)
	}
	e.cluster.Record(st.Namespace, st.Name, "SitefailMigrationFailed", why+"; restarting it onto "+st.To)
	e.phase(st, journal.PhaseRestarting, why+": restarting instead (--mode auto)")
	if err := e.mark(ctx, st, journal.PhaseRestarting); err != nil {
		return err
	}
	return e.restart(ctx, stop, st)
}

// diedAfterHandOff handles a migration that handed the instance over and then failed
// it: the target never ran the domain, and the source gave up on it (KubeVirt's
// hasTargetDetectedReadyDomain). The guest runs nowhere. KubeVirt starts an Always or
// RerunOnFailure VM again from its template, which already selects the target; nothing
// starts any other VM, so it is started here when --mode auto allows a restart, and the
// step fails naming the fix otherwise. A move never calls a stopped VM moved.
func (e *Executor) diedAfterHandOff(ctx, stop context.Context, st *plan.Step, why string, inst *Instance) error {
	why = fmt.Sprintf("%s after handing the instance to %s: it ended %s there", why, dashed(inst.NodeName), inst.Phase)
	rerunFailed := st.RunStrategy == kubevirtv1.RunStrategyRerunOnFailure && inst.Phase == "Failed"
	switch {
	case st.RunStrategy == kubevirtv1.RunStrategyAlways || rerunFailed:
		e.cluster.Record(st.Namespace, st.Name, "SitefailMigrationFailed", why+"; KubeVirt starts it again on "+st.To)
		return e.waitReadyOnTarget(stop, st, inst.UID)
	case st.RunStrategy == kubevirtv1.RunStrategyManual || st.RunStrategy == kubevirtv1.RunStrategyRerunOnFailure:
		// KubeVirt starts neither a Manual VM nor a RerunOnFailure VM whose instance
		// Succeeded (v1.8.0 vm.go); both accept a start.
		if !st.FallbackRestart {
			return fmt.Errorf("%s, and KubeVirt does not start a runStrategy %s VM again after that: it is stopped, its template on %s; start it (virtctl start -n %s %s), or rerun the move with --mode auto",
				why, st.RunStrategy, st.To, st.Namespace, st.Name)
		}
		e.cluster.Record(st.Namespace, st.Name, "SitefailMigrationFailed", why+"; starting it on "+st.To)
		e.phase(st, journal.PhaseStarting, why+": starting it (--mode auto)")
		if err := e.mark(ctx, st, journal.PhaseStarting); err != nil {
			return err
		}
		if err := e.start(ctx, st, ""); err != nil {
			return err
		}
		return e.waitReadyOnTarget(stop, st, inst.UID)
	default:
		// Once: KubeVirt ran it once, and that run is over. (Halted never runs, so it is
		// never migrated.)
		return fmt.Errorf("%s, and runStrategy %s does not start it again: it is stopped, its template on %s", why, st.RunStrategy, st.To)
	}
}

// MigrationName is unique per move and VM; a rerun finds an unfinished one through
// ActiveMigration instead of relying on the name.
func MigrationName(moveID, vm string) string {
	suffix := moveID
	if i := strings.LastIndex(moveID, "-"); i >= 0 {
		suffix = moveID[i+1:]
	}
	name := plan.MigrationPrefix + vm
	if len(name) > 200 {
		name = name[:200]
	}
	return name + "-" + suffix
}

func (e *Executor) restart(ctx, stop context.Context, st *plan.Step) error {
	// The template patch wrote the journal's restarting phase.
	inst := e.cluster.Instance(st.Namespace, st.Name)
	// Restart only the instance the plan saw, and only if it is not already going
	// away: a rerun after a crash must not restart the VM a second time.
	if inst != nil && inst.UID == st.VMIUID && !inst.Terminating && !inst.Final() {
		err := e.retry(ctx, func() error {
			// Each try looks again: an earlier one may have taken although its answer
			// was lost, and the new instance must not be restarted a second time.
			if i := e.cluster.Instance(st.Namespace, st.Name); i == nil || i.UID != st.VMIUID || i.Terminating || i.Final() {
				return nil
			}
			if st.ReleasedFrom != "" {
				if err := e.checkStart(ctx, st); err != nil {
					return err
				}
			}
			err := e.cluster.Restart(ctx, st.Namespace, st.Name)
			if apierrors.IsConflict(err) {
				// A restart already pending is KubeVirt's 409; if the instance is now
				// going away, our earlier request took.
				if i := e.cluster.Instance(st.Namespace, st.Name); i == nil || i.UID != st.VMIUID || i.Terminating {
					return nil
				}
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("restart: %w", err)
		}
		e.cluster.Record(st.Namespace, st.Name, "SitefailRestarted", "restarted to start on "+st.To)
	}
	return e.waitReadyOnTarget(stop, st, st.VMIUID)
}

// ownMigration finds an unfinished migration of the VMI that this move, or an
// interrupted one it resumes, created towards the same site. The target is what makes
// it ours: a journal can be overwritten by a later interrupted run before its migration
// ends, and a migration towards another site must never be followed.
func (e *Executor) ownMigration(st *plan.Step) (MigrationState, bool) {
	return e.cluster.ActiveMigration(st.Namespace, st.Name, st.To)
}

func (e *Executor) failover(ctx, stop context.Context, st *plan.Step) error {
	// The template patch wrote "releasing" in the journal; the guard is checked again
	// right before the release itself.
	if err := e.checkRelease(ctx, st, st.Node); err != nil {
		return err
	}
	e.phase(st, journal.PhaseReleasing, "releasing from "+dashed(st.From))
	if e.cfg.Fence != "out-of-service" {
		err := e.retry(ctx, func() error { return e.cluster.ForceDeleteLaunchers(ctx, st.Namespace, st.VMIUID, st.From) })
		if err != nil {
			e.haltIfSiteAlive(err)
			return fmt.Errorf("release from dead site: %w", err)
		}
	}
	e.cluster.Record(st.Namespace, st.Name, "SitefailReleased", fmt.Sprintf("released from dead site %s", st.From))
	if st.StaysDown {
		// Nothing starts it again: the step is over with the released instance.
		return e.waitFor(stop, st, func(i *Instance) (bool, error) {
			return i == nil || i.UID != st.VMIUID || i.Final(), nil
		})
	}
	if st.RunStrategy == kubevirtv1.RunStrategyManual && !st.StartPending {
		// Manual VMs are not restarted by KubeVirt once their instance fails: start them
		// when the old instance is over, if the site is still down. A restart in progress
		// (a start request pending) is KubeVirt's to finish.
		if err := e.waitFor(stop, st, func(i *Instance) (bool, error) {
			return i == nil || i.UID != st.VMIUID || i.Final(), nil
		}); err != nil {
			return err
		}
		if i := e.cluster.Instance(st.Namespace, st.Name); i == nil || i.UID == st.VMIUID {
			if err := e.checkRelease(ctx, st, st.Node); err != nil {
				return err
			}
			if err := e.mark(ctx, st, journal.PhaseStarting); err != nil {
				return err
			}
			if err := e.start(ctx, st, st.From); err != nil {
				return err
			}
		}
	}
	return e.waitReadyOnTarget(stop, st, st.VMIUID)
}

// waitReadyOnTarget waits until an instance other than oldUID is Ready on the target;
// for a paused guest that migrated, until it runs there, still paused.
func (e *Executor) waitReadyOnTarget(stop context.Context, st *plan.Step, oldUID string) error {
	e.phase(st, "waiting-ready", "waiting for Ready on "+st.To)
	running := false
	err := e.waitUntilWithin(stop, e.cfg.ReadyTimeout, func() (bool, error) {
		i := e.cluster.Instance(st.Namespace, st.Name)
		if !liveOnTarget(i, st, oldUID) {
			return false, nil
		}
		// Running and Ready are apart by the guest's boot and its probes: a review
		// asks which of the two took the time.
		if !running && (i.Phase == "Running" || i.Ready) {
			running = true
			e.phase(st, "running", "running on "+dashed(i.NodeName))
		}
		return readyOnTarget(i, st, oldUID), nil
	})
	if errors.Is(err, errTimeout) {
		return e.notReadyInTime(st, oldUID)
	}
	return err
}

// notReadyInTime is the step's error when --ready-timeout passed, with where it stands.
func (e *Executor) notReadyInTime(st *plan.Step, oldUID string) error {
	return fmt.Errorf("not Ready on the target within --ready-timeout=%s: %s", e.cfg.ReadyTimeout,
		whereStuck(e.cluster.Instance(st.Namespace, st.Name), st, oldUID))
}

// whereStuck says where a VM that did not turn Ready in time stands, and what to look
// at: an operator mid-incident needs the next command, not only the timeout.
func whereStuck(i *Instance, st *plan.Step, oldUID string) string {
	describe := fmt.Sprintf("kubectl describe vmi -n %s %s", st.Namespace, st.Name)
	switch {
	case i == nil:
		return fmt.Sprintf("it has no instance: KubeVirt has not started it (kubectl describe vm -n %s %s)", st.Namespace, st.Name)
	case oldUID != "" && i.UID == oldUID:
		return fmt.Sprintf("its old instance on %s has not gone away (%s)", dashed(i.NodeName), describe)
	case i.Terminating:
		return fmt.Sprintf("its instance on %s is still shutting down (%s)", dashed(i.NodeName), describe)
	case i.NodeName == "":
		return fmt.Sprintf("its instance is %s and on no node: its pod was not placed (kubectl get events -n %s)", i.Phase, st.Namespace)
	case i.Site != st.To:
		return fmt.Sprintf("its instance is on %s (site %s), not on %s (%s)", i.NodeName, dashed(i.Site), st.To, describe)
	case i.Final():
		return fmt.Sprintf("its instance on %s ended %s (%s)", i.NodeName, i.Phase, describe)
	case i.Phase == "Scheduled":
		// virt-controller placed the launcher; only the node's virt-handler starts the
		// guest, and a dead one leaves it Scheduled with its node still schedulable
		// until the heartbeat times out.
		return fmt.Sprintf("its instance is Scheduled on %s but the guest was never started: virt-handler on %s does not answer (kubectl get pods -A -l kubevirt.io=virt-handler -o wide)", i.NodeName, i.NodeName)
	case i.Phase == "Running":
		return fmt.Sprintf("its instance runs on %s but is not Ready: a readiness probe or a paused guest (%s)", i.NodeName, describe)
	default:
		return fmt.Sprintf("its instance is %s on %s (%s)", i.Phase, i.NodeName, describe)
	}
}

func (e *Executor) waitFor(stop context.Context, st *plan.Step, ok func(*Instance) (bool, error)) error {
	return e.waitUntil(stop, func() (bool, error) { return ok(e.cluster.Instance(st.Namespace, st.Name)) })
}

// liveUpdateTimeout bounds the wait for LiveUpdate to reach a running instance.
const liveUpdateTimeout = 2 * time.Minute

// waitUntil re-evaluates cond at every watch event, up to the ready timeout.
func (e *Executor) waitUntil(stop context.Context, cond func() (bool, error)) error {
	err := e.waitUntilWithin(stop, e.cfg.ReadyTimeout, cond)
	if errors.Is(err, errTimeout) {
		return fmt.Errorf("not Ready on the target within --ready-timeout=%s", e.cfg.ReadyTimeout)
	}
	return err
}

var errTimeout = errors.New("timed out")

func (e *Executor) waitUntilWithin(stop context.Context, d time.Duration, cond func() (bool, error)) error {
	timeout := time.NewTimer(d)
	defer timeout.Stop()
	for {
		changed := e.cluster.Changed()
		done, err := cond()
		if err != nil || done {
			return err
		}
		select {
		case <-stop.Done():
			return errStopped
		case <-timeout.C:
			return fmt.Errorf("%w after %s", errTimeout, d)
		case <-changed:
		}
	}
}

// vmGone reports that the VM itself no longer exists: someone deleted it while the move
// ran. Nothing is left to move, and nothing was lost by the move.
func vmGone(err error) bool {
	var status apierrors.APIStatus
	if !apierrors.IsNotFound(err) || !errors.As(err, &status) {
		return false
	}
	d := status.Status().Details
	return d != nil && d.Group == "kubevirt.io" && d.Kind == "virtualmachines"
}
