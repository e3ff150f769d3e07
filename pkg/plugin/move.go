package plugin

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/kubecluster"
	"github.com/sitefail/kubectl-sitefail/pkg/lock"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

type moveOptions struct {
	*Options
	selection
	failback        bool
	maxPerNode      int
	rate            float64
	noBarrier       bool
	readyTimeout    time.Duration
	maxFailures     int
	force           bool
	confirmSiteDown []string
	fence           string
	dryRun          string
	lockNamespace   string
	takeOverLock    bool
	output          string
	progress        string
	// noPrompt is set when stdin belongs to someone else (the TUI).
	noPrompt bool
}

func newMoveCommand(o *Options, failback bool) *cobra.Command {
	mo := &moveOptions{Options: o, failback: failback}
	cmd := &cobra.Command{
		Use:   "move --to SITE (--tier N[-M] | --all | VM...)",
		Short: "Move VMs to another site, tier by tier and throttled (relocate, failover)",
		Long: `Carries out exactly the plan that 'kubectl sitefail plan' shows with the same flags.

For each VM, in tier order: the site key of its template nodeSelector is patched (every
other key kept), then
  - a stopped VM is left stopped: it starts on the new site next time;
  - a running, live-migratable VM waits until LiveUpdate carries the selector into its
    instance, then live-migrates;
  - a running VM that cannot migrate (or with --mode restart) is restarted;
  - a VM on a dead site is released (its launcher pod force-deleted, or its nodes
    tainted out-of-service with --fence out-of-service) so KubeVirt recreates it on the
    target. This needs --confirm-site-down=SITE (or the site name typed at the prompt)
    and is refused while any node of that site is Ready: releasing a VM from a site that
    is only partitioned would run it twice on the same disks.

Starts are throttled (--max-in-flight, --max-per-node, --rate) and tier N+1 starts only
when tier N is Ready on the target (unless --no-barrier). Only one move runs per cluster
(a Lease in --lock-namespace). Every VM carries a journal in sitefail.io/move-*
annotations; a move interrupted at any point (Ctrl-C, SIGKILL, lost connection) is
finished by running the same command again. Ctrl-C once stops starting new VMs and lets
steps in flight reach a safe point; twice aborts at once.

Exit codes: 0 done, 1 error (nothing changed when it comes from validation or preflight),
2 blocked plan, 3 some VMs failed, 4 interrupted (run again to resume).`,
		Example: `  # Relocate tier 1 to DR while both sites are up
  kubectl sitefail move --tier 1 --to DR -A

  # Primary is down and fenced: fail everything over
  kubectl sitefail move --all --to DR -A --confirm-site-down=Primary

  # One VM, by restart, checking admission first
  kubectl sitefail move --to DR prod/db-0 --mode restart --dry-run=server`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := mo.complete(args); err != nil {
				return err
			}
			return mo.run(cmd.Context())
		},
	}
	if failback {
		cmd.Use = "failback (--tier N[-M] | --all | VM...)"
		cmd.Short = "Move VMs back to the site their last move took them from (from the journal)"
		cmd.Long = `Moves VMs back where their last move took them from, as recorded in the
sitefail.io/move-from annotation of each VM. It is a move like any other: planned,
throttled, tiered, journaled and resumable; all its flags apply.`
		cmd.Example = `  kubectl sitefail failback --all -A
  kubectl sitefail failback --tier 1 -A --dry-run`
	}
	mo.selection.addFlags(cmd, o)
	if failback {
		_ = cmd.Flags().MarkHidden("to")
	}
	mo.addRunFlags(cmd)
	f := cmd.Flags()
	f.BoolVar(&mo.force, "force", false, "run despite overridable blockers (insufficient capacity)")
	f.StringSliceVar(&mo.confirmSiteDown, "confirm-site-down", nil, "confirm that this site is down and fenced, allowing its VMs to be released")
	f.StringVar(&mo.fence, "fence", "pod", "how to release VMs from a dead site: pod (force-delete launcher pods) or out-of-service (taint the dead nodes; remove the taint by hand once they are repaired)")
	f.StringVar(&mo.dryRun, "dry-run", "none", `"none", "client" (print the plan only) or "server" (send every patch with dryRun and report what admission rejects)`)
	f.Lookup("dry-run").NoOptDefVal = "client"
	f.BoolVar(&mo.takeOverLock, "take-over-stale-lock", false, "take over a lock whose holder stopped renewing it")
	return cmd
}

// addRunFlags adds the flags that shape an execution; move, failback and drill share them.
func (mo *moveOptions) addRunFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.IntVar(&mo.maxPerNode, "max-per-node", 2, "VMs starting at once per target node")
	f.Float64Var(&mo.rate, "rate", 0, "at most this many VM starts per minute (0: no limit)")
	f.BoolVar(&mo.noBarrier, "no-barrier", false, "let tier N+1 start before tier N is Ready")
	f.DurationVar(&mo.readyTimeout, "ready-timeout", defaultReadyTimeout, "how long each VM may take to be Ready on the target")
	f.IntVar(&mo.maxFailures, "max-failures", 0, "failed VMs a tier may have before the move stops")
	f.StringVar(&mo.lockNamespace, "lock-namespace", lock.DefaultNamespace, "namespace of the Lease that allows one move at a time")
	f.StringVarP(&mo.output, "output", "o", "", "final report format: json or yaml")
	f.StringVar(&mo.progress, "progress", "auto", "progress display: auto, bar (live on a terminal) or lines")
}

func (mo *moveOptions) complete(args []string) error {
	if mo.failback {
		if mo.to != "" {
			return errors.New("failback takes no --to: each VM goes back to its journal's move-from site; use 'move --to' to choose")
		}
		mo.to = "(journal)"
	}
	if err := mo.selection.complete(mo.Options, args); err != nil {
		return err
	}
	switch {
	case mo.maxPerNode < 1:
		return fmt.Errorf("--max-per-node must be at least 1 (got %d)", mo.maxPerNode)
	case mo.rate < 0:
		return fmt.Errorf("--rate must not be negative (got %v)", mo.rate)
	case mo.readyTimeout <= 0:
		return fmt.Errorf("--ready-timeout must be positive (got %s)", mo.readyTimeout)
	case mo.maxFailures < 0:
		return fmt.Errorf("--max-failures must not be negative (got %d)", mo.maxFailures)
	}
	if mo.fence != "pod" && mo.fence != "out-of-service" {
		return fmt.Errorf("--fence %q: want pod or out-of-service", mo.fence)
	}
	switch mo.dryRun {
	case "none", "client", "server":
	default:
		return fmt.Errorf(`--dry-run %q: want "none", "client" or "server"`, mo.dryRun)
	}
	if err := outputFormat(mo.output, "", "json", "yaml"); err != nil {
		return err
	}
	if mo.progress != "auto" && mo.progress != "bar" && mo.progress != "lines" {
		return fmt.Errorf("--progress %q: want auto, bar or lines", mo.progress)
	}
	return nil
}

// failbackTarget reads the journal of the selected VMs and points the request at the
// site their last move came from.
func (mo *moveOptions) failbackTarget(s *snapshot.Snapshot) error {
	mo.req.To = ""
	froms := map[string][]string{}
	// Plan towards any site only to apply the selection rules; the target comes from
	// the journal below.
	probe := mo.req
	for _, site := range s.SiteNames() {
		if site != probe.From {
			probe.To = site
			break
		}
	}
	sel, err := plan.Build(s, probe)
	if err != nil {
		return err
	}
	byKey := map[string]*snapshot.VM{}
	for i := range s.VMs {
		byKey[s.VMs[i].Key()] = &s.VMs[i]
	}
	var keys, dropped []string
	for _, st := range sel.Steps {
		vm := byKey[st.Key()]
		from := vm.Annotations[executor.AnnotationFrom]
		if from == "" || vm.Annotations[executor.AnnotationTo] != vm.HomeSite {
			dropped = append(dropped, vm.Key())
			continue
		}
		froms[from] = append(froms[from], vm.Key())
		keys = append(keys, vm.Key())
	}
	if len(froms) == 0 {
		return errors.New("no selected VM carries a finished move in its journal (sitefail.io/move-from): nothing to fail back; use 'move --to SITE' instead")
	}
	if len(froms) > 1 {
		var parts []string
		for f, vms := range froms {
			parts = append(parts, fmt.Sprintf("%d from %s", len(vms), f))
		}
		sort.Strings(parts)
		return fmt.Errorf("the selected VMs came from different sites (%s): fail them back with 'move --to SITE' per site", strings.Join(parts, ", "))
	}
	for f := range froms {
		mo.req.To = f
	}
	if len(dropped) > 0 {
		sort.Strings(dropped)
		fmt.Fprintf(mo.ErrOut, "Not failed back (no finished move in their journal, or moved since by hand): %s\n", strings.Join(dropped, ", "))
	}
	sort.Strings(keys)
	mo.req.VMs, mo.req.Tiers, mo.req.All = keys, nil, false
	return nil
}

func (mo *moveOptions) run(parent context.Context) error {
	if parent == nil {
		parent = context.Background()
	}
	s, c, err := mo.readSnapshot(parent, mo.snapshotScope(), mo.labelSelector)
	if err != nil {
		return err
	}
	if err := mo.resolve(s); err != nil {
		return err
	}
	if mo.failback {
		if len(s.SiteNames()) == 0 {
			return errors.New("no node carries a site label")
		}
		if err := mo.failbackTarget(s); err != nil {
			return err
		}
	}
	if err := mo.validateConfirmations(s); err != nil {
		return err
	}
	p, err := plan.Build(s, mo.req)
	if err != nil {
		return err
	}
	if !p.Work() {
		fmt.Fprintf(mo.Out, "Nothing to do: all %d selected VM(s) are already on %s.\n", len(p.Steps), p.Request.To)
		return nil
	}
	if mo.dryRun == "client" {
		PrintPlan(mo.Out, p)
		fmt.Fprintln(mo.Out, "\n(dry run: nothing was changed)")
		if p.Blocked(mo.force) {
			return &ExitCodeError{Code: ExitBlocked, Err: errors.New("the plan is blocked")}
		}
		return nil
	}
	if p.Blocked(mo.force) {
		PrintPlan(mo.ErrOut, p)
		return &ExitCodeError{Code: ExitBlocked, Err: errors.New("the plan is blocked; nothing was changed (see the blockers above)")}
	}
	if mo.dryRun == "server" {
		return mo.serverDryRun(parent, s, c, p)
	}
	ctx, abort := context.WithCancel(parent)
	defer abort()
	stop, stopNew := context.WithCancel(ctx)
	defer stopNew()
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	go func() {
		select {
		case <-sig:
			fmt.Fprintln(mo.ErrOut, "\nStopping: no new VMs will start; steps in flight finish their current write. Ctrl-C again to abort at once.")
			stopNew()
		case <-ctx.Done():
			return
		}
		select {
		case <-sig:
			abort()
		case <-ctx.Done():
		}
	}()

	// With -o json|yaml, stdout carries only the report; progress goes to stderr.
	progOut := mo.Out
	if mo.output != "" {
		progOut = mo.ErrOut
	}
	prog := newProgress(progOut, mo.progress, len(p.Steps))
	rep, err := mo.execute(ctx, stop, s, c, p, prog.event, progOut)
	prog.close()
	if err != nil {
		return err
	}
	if err := mo.printReport(rep); err != nil {
		return err
	}
	switch {
	case rep.Interrupted:
		return &ExitCodeError{Code: ExitInterrupted, Err: fmt.Errorf("move interrupted: run the same command again to finish it")}
	case rep.Failed():
		return &ExitCodeError{Code: ExitMoveFailed, Err: fmt.Errorf("move finished with %d failed VM(s)%s", len(rep.Failures), stoppedSuffix(rep))}
	}
	return nil
}

// execute runs a plan that passed the blocker check. The lock comes first, then the
// snapshot is read again and the plan rebuilt under it (a move that finished meanwhile
// changed what this one must do), then the split-brain guard, the RBAC preflight and
// the executor. Losing the lock stops every further write. The CLI and the TUI share it.
func (mo *moveOptions) execute(ctx, stop context.Context, _ *snapshot.Snapshot, c *Clients, p *plan.Plan, emit func(executor.Event), out io.Writer) (*executor.Report, error) {
	actor := whoAmI(ctx, c)
	moveID := newMoveID(time.Now())
	lk, err := lock.Acquire(ctx, c.Kube, lock.Options{Namespace: mo.lockNamespace, Holder: actor + " (" + moveID + ")", MoveID: moveID, TakeOverStale: mo.takeOverLock})
	if err != nil {
		return nil, err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = lk.Release(rctx)
	}()
	ctx, cancelWrites := context.WithCancel(ctx)
	defer cancelWrites()
	stop, cancelStarts := context.WithCancel(stop)
	defer cancelStarts()
	go func() {
		select {
		case <-lk.Lost():
			cancelStarts()
			cancelWrites()
		case <-ctx.Done():
		}
	}()

	s, _, err := mo.readSnapshot(ctx, mo.snapshotScope(), mo.labelSelector)
	if err != nil {
		return nil, err
	}
	if p, err = plan.Build(s, p.Request); err != nil {
		return nil, err
	}
	if p.Blocked(mo.force) {
		PrintPlan(mo.ErrOut, p)
		return nil, &ExitCodeError{Code: ExitBlocked, Err: errors.New("the plan is blocked; nothing was changed (see the blockers above)")}
	}
	deadNodes, err := mo.guardFailover(s, p)
	if err != nil {
		return nil, err
	}
	if err := mo.checkAccess(ctx, c, p); err != nil {
		return nil, err
	}
	nodeSite := map[string]string{}
	var targetNodes []string
	for _, n := range s.Nodes {
		nodeSite[n.Name] = n.Site
		if n.Site == p.Request.To && n.Schedulable() {
			targetNodes = append(targetNodes, n.Name)
		}
	}
	kc, err := kubecluster.New(kubecluster.Options{Config: c.Config, Kube: c.Kube, Dynamic: c.Dynamic, Namespace: mo.snapshotScope(),
		SiteKey: mo.Keys.Site, NodeSite: nodeSite, DryRun: mo.dryRun == "server", Actor: actor, MoveID: moveID})
	if err != nil {
		return nil, err
	}
	if err := kc.Watch(ctx); err != nil {
		return nil, err
	}
	defer kc.Stop()
	fmt.Fprintf(out, "Move %s by %s: %s to %s, %d VM(s).\n", moveID, actor, p.Selection, p.Request.To, len(p.Steps))
	cluster, err := kubecluster.WithCrashPoint(kc, os.Getenv(kubecluster.CrashEnv))
	if err != nil {
		return nil, err
	}
	ex := executor.New(cluster, executor.Config{
		MoveID: moveID, Actor: actor, MaxInFlight: mo.maxInFlight, MaxPerNode: mo.maxPerNode, Rate: mo.rate,
		NoBarrier: mo.noBarrier, ReadyTimeout: mo.readyTimeout, MaxFailures: mo.maxFailures,
		TargetNodes: targetNodes, Fence: mo.fence, DeadNodes: deadNodes,
	}, emit)
	rep, err := ex.Run(ctx, stop, p)
	if lerr := lk.Err(); lerr != nil {
		if rep != nil {
			rep.Interrupted = true
			rep.Stopped = "lost the move lock: " + lerr.Error()
		}
		return rep, &ExitCodeError{Code: ExitInterrupted, Err: fmt.Errorf("%v; run the same command again once no other move runs", lerr)}
	}
	return rep, err
}

func stoppedSuffix(r *executor.Report) string {
	if r.Stopped == "" {
		return ""
	}
	return "; stopped: " + r.Stopped
}

// guardFailover is the split-brain guard before the first write: VMs are released from
// a site only when no node of it is Ready and the operator has named that site as down.
// The executor checks the same again at every release, against a live node watch.
func (mo *moveOptions) guardFailover(s *snapshot.Snapshot, p *plan.Plan) ([]string, error) {
	if err := mo.validateConfirmations(s); err != nil {
		return nil, err
	}
	sites := p.NeedsFailover()

	if len(sites) == 0 {
		return nil, nil
	}
	var dead []string
	for _, site := range sites {
		if site == "" {
			var vms []string
			for _, st := range p.Steps {
				if st.Action == plan.ActionFailover && st.From == "" {
					vms = append(vms, st.Key()+" (node "+st.Node+")")
				}
			}
			return nil, &ExitCodeError{Code: ExitBlocked, Err: fmt.Errorf("refusing to release %s: their nodes carry no %s label, so no site's confirmation covers them; label the nodes ('kubectl sitefail sites label') or handle these VMs by hand (nothing was changed)", strings.Join(vms, ", "), mo.Keys.Site)}
		}
		n := 0
		for _, node := range s.Nodes {
			if node.Site != site {
				continue
			}
			if node.State == snapshot.NodeReady {
				return nil, fmt.Errorf("refusing to fail over from %s: node %s is Ready, so the site may be alive and its VMs running; relocate instead, or fence the site first", site, node.Name)
			}
			dead = append(dead, node.Name)
			n++
		}
		if !contains(mo.confirmSiteDown, site) && (mo.noPrompt || !mo.promptSiteDown(site, n)) {
			return nil, &ExitCodeError{Code: ExitBlocked, Err: fmt.Errorf(
				"failover from %s needs confirmation: its %d node(s) are NotReady or Unknown, which is also what a network partition looks like. "+
					"If a partitioned node still runs a VM, releasing it starts a second copy on the same disks. "+
					"Make sure the site is powered off or fenced, then pass --confirm-site-down=%s (nothing was changed)", site, n, site)}
		}
	}
	if mo.fence == "out-of-service" {
		if err := coversDeadNodes(s, p, dead); err != nil {
			return nil, err
		}
	}
	return dead, nil
}

// validateConfirmations checks --confirm-site-down before anything is written: a
// confirmation must name a site that exists and looks dead. Confirming a live site is an
// operator error, whatever the plan needs.
func (mo *moveOptions) validateConfirmations(s *snapshot.Snapshot) error {
	for _, site := range mo.confirmSiteDown {
		if site == "" {
			return errors.New("--confirm-site-down needs a site name; an empty one confirms nothing (nothing was changed)")
		}
		if !s.HasSite(site) {
			return fmt.Errorf("--confirm-site-down=%s: no node carries %s=%s (sites: %s); nothing was changed", site, mo.Keys.Site, site, strings.Join(s.SiteNames(), ", "))
		}
		for _, n := range s.Nodes {
			if n.Site == site && n.State == snapshot.NodeReady {
				return fmt.Errorf("--confirm-site-down=%s, but node %s of that site is Ready: the site is not down. Relocate instead (no confirmation), or fence the site first; nothing was changed", site, n.Name)
			}
		}
	}
	return nil
}

// coversDeadNodes refuses out-of-service fencing when the dead nodes run VMs outside the
// plan: the taint releases every VM on them at once, and KubeVirt would recreate those
// from templates that still select the dead site.
func coversDeadNodes(s *snapshot.Snapshot, p *plan.Plan, dead []string) error {
	isDead := map[string]bool{}
	for _, n := range dead {
		isDead[n] = true
	}
	planned := map[string]bool{}
	for _, st := range p.Steps {
		if st.Action == plan.ActionFailover {
			planned[st.Key()] = true
		}
	}
	var outside []string
	for i := range s.VMs {
		vm := &s.VMs[i]
		if vm.Instance != nil && isDead[vm.Instance.NodeName] && !planned[vm.Key()] {
			outside = append(outside, vm.Key())
		}
	}
	if len(outside) == 0 {
		return nil
	}
	sort.Strings(outside)
	return &ExitCodeError{Code: ExitBlocked, Err: fmt.Errorf("--fence out-of-service releases every VM on the dead nodes at once, and %d of them are not failed over by this move (%s): "+
		"select them too (--all -A), or use --fence pod, which releases only the selected VMs, tier by tier (nothing was changed)", len(outside), strings.Join(outside, ", "))}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// promptSiteDown asks an operator at a terminal to type the dead site's name.
func (mo *moveOptions) promptSiteDown(site string, nodes int) bool {
	f, ok := mo.In.(*os.File)
	if !ok || !isTerminal(f) {
		return false
	}
	fmt.Fprintf(mo.ErrOut, "Site %s has %d node(s) and none is Ready. Releasing its VMs is safe only if the site is powered off or fenced.\nType the site name to confirm it is down: ", site, nodes)
	line, _ := bufio.NewReader(mo.In).ReadString('\n')
	return strings.TrimSpace(line) == site
}

// checkAccess asks the API server, before the first write, whether every verb the plan
// needs is allowed, and names all that are not.
func (mo *moveOptions) checkAccess(ctx context.Context, c *Clients, p *plan.Plan) error {
	type need struct{ verb, group, resource, sub, ns string }
	var needs []need
	namespaces := map[string]bool{}
	actions := map[plan.Action]bool{}
	for _, st := range p.Steps {
		if st.Action == plan.ActionSkip {
			continue
		}
		namespaces[st.Namespace] = true
		actions[st.Action] = true
	}
	for ns := range namespaces {
		needs = append(needs, need{"patch", "kubevirt.io", "virtualmachines", "", ns},
			need{"watch", "kubevirt.io", "virtualmachineinstances", "", ns},
			need{"create", "", "events", "", ns})
		if actions[plan.ActionRestart] {
			needs = append(needs, need{"update", "subresources.kubevirt.io", "virtualmachines", "restart", ns})
		}
		if actions[plan.ActionMigrate] {
			needs = append(needs, need{"create", "kubevirt.io", "virtualmachineinstancemigrations", "", ns},
				need{"watch", "kubevirt.io", "virtualmachineinstancemigrations", "", ns})
		}
		if actions[plan.ActionFailover] && mo.fence == "pod" {
			needs = append(needs, need{"delete", "", "pods", "", ns})
		}
		if actions[plan.ActionStart] || actions[plan.ActionFailover] && manualIn(p, ns) {
			needs = append(needs, need{"update", "subresources.kubevirt.io", "virtualmachines", "start", ns})
		}
	}
	if actions[plan.ActionFailover] && mo.fence == "out-of-service" {
		needs = append(needs, need{"update", "", "nodes", "", ""})
	}
	if mo.dryRun == "none" {
		needs = append(needs, need{"create", "coordination.k8s.io", "leases", "", mo.lockNamespace},
			need{"update", "coordination.k8s.io", "leases", "", mo.lockNamespace})
	}
	sort.Slice(needs, func(i, j int) bool { return fmt.Sprint(needs[i]) < fmt.Sprint(needs[j]) })
	var missing []string
	for _, n := range needs {
		r := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: n.verb, Group: n.group, Resource: n.resource, Subresource: n.sub, Namespace: n.ns}}}
		res, err := c.Kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, r, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("checking permissions: %w", clusterError(err, c))
		}
		if !res.Status.Allowed {
			res := n.resource
			if n.sub != "" {
				res += "/" + n.sub
			}
			if n.group != "" {
				res += "." + n.group
			}
			where := "cluster-wide"
			if n.ns != "" {
				where = "in namespace " + n.ns
			}
			missing = append(missing, fmt.Sprintf("%s %s %s", n.verb, res, where))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("forbidden: this move needs permissions you lack (nothing was changed):\n  - %s\nask a cluster admin for a Role or ClusterRole granting them", strings.Join(missing, "\n  - "))
	}
	return nil
}

// manualIn reports whether the plan fails over a Manual VM in ns, which it starts itself.
func manualIn(p *plan.Plan, ns string) bool {
	for _, st := range p.Steps {
		if st.Namespace == ns && st.Action == plan.ActionFailover && st.RunStrategy == "Manual" {
			return true
		}
	}
	return false
}

// serverDryRun sends every template patch with dryRun=All and reports what admission
// rejects.
func (mo *moveOptions) serverDryRun(ctx context.Context, s *snapshot.Snapshot, c *Clients, p *plan.Plan) error {
	if _, err := mo.guardFailover(s, p); err != nil {
		return err
	}
	if err := mo.checkAccess(ctx, c, p); err != nil {
		return err
	}
	kc, err := kubecluster.New(kubecluster.Options{Config: c.Config, Kube: c.Kube, Dynamic: c.Dynamic, SiteKey: mo.Keys.Site, DryRun: true})
	if err != nil {
		return err
	}
	var failed []string
	n := 0
	for _, st := range p.Steps {
		if st.Action == plan.ActionSkip {
			continue
		}
		n++
		if err := kc.PatchSite(ctx, st, map[string]string{executor.AnnotationPhase: "dry-run"}); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", st.Key(), err))
		}
	}
	PrintPlan(mo.Out, p)
	if len(failed) > 0 {
		fmt.Fprintf(mo.Out, "\nServer dry run: %d of %d patch(es) rejected:\n  - %s\n", len(failed), n, strings.Join(failed, "\n  - "))
		return &ExitCodeError{Code: ExitBlocked, Err: errors.New("admission would reject some patches; nothing was changed")}
	}
	fmt.Fprintf(mo.Out, "\nServer dry run: all %d patch(es) accepted by the API server and admission; nothing was changed.\n", n)
	return nil
}

func (mo *moveOptions) printReport(r *executor.Report) error {
	if mo.output != "" {
		return printStructured(mo.Out, mo.output, r)
	}
	fmt.Fprintf(mo.Out, "\nMove %s to %s finished in %s.\n", r.MoveID, r.To, r.Elapsed)
	rows := make([][]string, 0, len(r.Tiers))
	for _, t := range r.Tiers {
		rows = append(rows, []string{tierString(t.Tier), fmt.Sprint(t.Moved), fmt.Sprint(t.Failed), fmt.Sprint(t.Skipped), fmt.Sprint(t.Pending), t.RTO})
	}
	_ = table(mo.Out, []string{"TIER", "MOVED", "FAILED", "SKIPPED", "NOT-STARTED", "RTO"}, rows)
	for _, f := range r.Failures {
		fmt.Fprintf(mo.Out, "  failed %s: %s\n", f.VM, f.Error)
	}
	if r.Stopped != "" {
		fmt.Fprintf(mo.Out, "Stopped early: %s\n", r.Stopped)
	}
	if r.Interrupted {
		fmt.Fprintln(mo.Out, "Interrupted: run the same command again; it resumes from each VM's journal.")
	}
	return nil
}

func newMoveID(now time.Time) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return "sf-" + now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b)
}

// whoAmI names the operator for the lock, the journal and Events.
func whoAmI(ctx context.Context, c *Clients) string {
	res, err := c.Kube.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err == nil && res.Status.UserInfo.Username != "" {
		return res.Status.UserInfo.Username
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s@%s", os.Getenv("USER"), host)
}

const defaultReadyTimeout = 10 * time.Minute
