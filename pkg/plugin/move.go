package plugin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
	"github.com/sitefail/kubectl-sitefail/pkg/lock"
	"github.com/sitefail/kubectl-sitefail/pkg/move"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/record"
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
	// --fence network's class, extra addresses and wait.
	networkFenceClass string
	fenceCIDRs        []string
	fenceTimeout      time.Duration
	unfenceSettle     time.Duration
	dryRun            string
	// drill: the move is a drill's leg, which never fails over (move.Config.NoFailover).
	drill bool
	// keep: a drill that leaves the VMs on the target (no second leg).
	keep bool
	// observe, when set, sees every progress event (a drill's evidence).
	observe       func(executor.Event)
	lockNamespace string
	takeOverLock  bool
	output        string
	progress      string
	// noPrompt is set when stdin belongs to someone else (the TUI).
	noPrompt bool
	// lastReport is the report of the last run, for drill.
	lastReport *executor.Report
	// keepRecords is --keep-records; rto the objectives a move records (--rto).
	keepRecords int
	rto         *rtoObjectives
	rtoFlag     string
	// drillLeg and drillFirst tie a drill's leg to its record (leg 2 names leg 1's).
	drillLeg   int
	drillFirst string
	// lastRecord is the record of the last run, for drill's report.
	lastRecord *record.Record
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

  # Primary is down: fence its storage first (csi-addons), then fail everything over
  kubectl sitefail move --all --to DR -A --fence network --fence-cidr 192.0.2.0/24

  # One VM, by restart, checking admission first
  kubectl sitefail move --to DR prod/db-0 --mode restart --dry-run=server`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f := cmd.Flags().Lookup("confirm-site-down"); f.Changed && (len(mo.confirmSiteDown) == 0 || slices.Contains(mo.confirmSiteDown, "")) {
				return errors.New("--confirm-site-down needs the dead site's name, e.g. --confirm-site-down=Primary (see 'kubectl sitefail sites')")
			}
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
	f.StringVar(&mo.fence, "fence", "pod", "how to release VMs from a dead site: pod (force-delete launcher pods), out-of-service (taint the dead nodes; remove the taint by hand once they are repaired) or network (first fence the site's storage with a csi-addons NetworkFence and wait for the driver's success; no --confirm-site-down needed)")
	f.StringVar(&mo.networkFenceClass, "network-fence-class", "", "NetworkFenceClass for --fence network (default: the cluster's only one)")
	f.StringSliceVar(&mo.fenceCIDRs, "fence-cidr", nil, "extra CIDR to fence with --fence network, beside the site's node addresses (its storage network); repeatable")
	f.DurationVar(&mo.fenceTimeout, "fence-timeout", 5*time.Minute, "how long --fence network waits for the storage driver's result")
	f.DurationVar(&mo.unfenceSettle, "unfence-settle", move.DefaultUnfenceSettle, "how long every node of a site this tool fenced must have been Ready before a move back lifts the fence (its kubelet first ends the guests the failover released)")
	f.StringVar(&mo.dryRun, "dry-run", "none", `"none", "client" (print the plan only) or "server" (send every patch with dryRun and report what admission rejects)`)
	f.Lookup("dry-run").NoOptDefVal = "client"
	f.BoolVar(&mo.takeOverLock, "take-over-stale-lock", false, "take over a lock whose holder stopped renewing it")
	f.StringVar(&mo.rtoFlag, "rto", "", "RTO objective for every tier (15m) or per tier (1=5m,2=15m), kept in the move's record beside each tier's RTO ('kubectl sitefail report'); a miss does not fail the move")
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
	f.IntVar(&mo.keepRecords, "keep-records", record.DefaultKeep, "move records kept in --lock-namespace: older records of finished moves are pruned (never one of an unfinished move)")
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
	switch {
	case mo.fence != "pod" && mo.fence != "out-of-service" && mo.fence != "network":
		return fmt.Errorf("--fence %q: want pod, out-of-service or network", mo.fence)
	case mo.fence != "network" && (mo.networkFenceClass != "" || len(mo.fenceCIDRs) > 0):
		return errors.New("--network-fence-class and --fence-cidr apply to --fence network only")
	case mo.fence == "network" && mo.fenceTimeout <= 0:
		return fmt.Errorf("--fence-timeout must be positive (got %s)", mo.fenceTimeout)
	}
	for _, c := range mo.fenceCIDRs {
		if _, _, err := net.ParseCIDR(c); err != nil {
			return fmt.Errorf("--fence-cidr %q: want a CIDR such as 192.0.2.0/24 (%v)", c, err)
		}
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
	if mo.keepRecords < 0 {
		return fmt.Errorf("--keep-records must not be negative (got %d)", mo.keepRecords)
	}
	if mo.rtoFlag != "" {
		o, err := parseRTO(mo.rtoFlag)
		if err != nil {
			return err
		}
		mo.rto = o
	}
	return nil
}

// failbackTarget points the request at the site the selected VMs' last move came
// from, as their journals say, and names the VMs it leaves out.
func (mo *moveOptions) failbackTarget(s *snapshot.Snapshot) error {
	mo.req.To = ""
	fb, err := plan.FailbackTarget(s, mo.req)
	if err != nil {
		return err
	}
	if len(fb.Dropped) > 0 {
		fmt.Fprintf(mo.ErrOut, "Not failed back (no finished move in their journal, or moved since by hand): %s\n", strings.Join(fb.Dropped, ", "))
	}
	mo.req.To, mo.req.VMs, mo.req.Tiers, mo.req.All = fb.To, fb.VMs, nil, false
	return nil
}

// config is the engine's configuration for this command's flags.
func (mo *moveOptions) config(c *Clients, req plan.Request) move.Config {
	cfg := move.Config{Kube: c.Kube, Dynamic: c.Dynamic, RESTConfig: c.Config, Keys: mo.Keys,
		Namespace: mo.snapshotScope(), LabelSelector: mo.labelSelector, Request: req, Force: mo.force,
		ConfirmedDown: mo.confirmSiteDown, Fence: move.Fence(mo.fence), DryRun: move.DryRunNone,
		NetworkFence: move.NetworkFence{Class: mo.networkFenceClass, ExtraCIDRs: mo.fenceCIDRs, Timeout: mo.fenceTimeout, Settle: mo.unfenceSettle},
		MaxPerNode:   mo.maxPerNode, Rate: mo.rate, NoBarrier: mo.noBarrier, ReadyTimeout: mo.readyTimeout,
		MaxFailures: mo.maxFailures, LockNamespace: mo.lockNamespace, TakeOverStale: mo.takeOverLock, NoFailover: mo.drill}
	if !mo.noPrompt {
		cfg.ConfirmSiteDown = mo.promptSiteDown
	}
	cfg.OnWarning = func(w string) { fmt.Fprintln(mo.ErrOut, "Warning: "+w) }
	cfg.Records = mo.records()
	return cfg
}

// records says what the move's record holds beyond the plan and the events.
func (mo *moveOptions) records() *move.Records {
	r := &move.Records{Command: commandLine(), Version: Version, Keep: mo.keepRecords, Objective: mo.rto.objective,
		OnRecord: func(r *record.Record) { mo.lastRecord = r }}
	switch {
	case mo.drill:
		r.Kind, r.Drill = record.KindDrill, &record.Drill{Leg: mo.drillLeg, First: mo.drillFirst}
	case mo.failback:
		r.Kind = record.KindFailback
	}
	return r
}

// commandLine is the command as the operator typed it, for the record.
func commandLine() string {
	parts := []string{"kubectl", "sitefail"}
	for _, a := range os.Args[1:] {
		if a == "" || strings.ContainsAny(a, " \t\"'$`\\|&;<>()*?[]#~!{}") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// engineError turns the engine's typed errors into exit codes (printing a blocked plan).
func (mo *moveOptions) engineError(err error) error {
	var blocked *move.BlockedError
	var lost *move.LockLostError
	switch {
	case errors.As(err, &blocked):
		if blocked.Plan != nil {
			PrintPlan(mo.ErrOut, blocked.Plan)
		}
		return &ExitCodeError{Code: ExitBlocked, Err: err}
	case errors.As(err, &lost):
		return &ExitCodeError{Code: ExitInterrupted, Err: err}
	}
	return err
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
	if err := move.ValidateConfirmations(mo.config(c, mo.req), s); err != nil {
		return err
	}
	p, err := plan.Build(s, mo.req)
	if err != nil {
		return err
	}
	if !p.Work() {
		if mo.output != "" {
			// A script that asked for a report gets one (empty), the sentence on stderr.
			fmt.Fprintf(mo.ErrOut, "Nothing to do: all %d selected VM(s) are already on %s.\n", len(p.Steps), p.Request.To)
			return mo.printReport(&executor.Report{To: p.Request.To, Tiers: []executor.TierReport{}, Failures: []executor.Failure{}, Elapsed: "0s"})
		}
		fmt.Fprintf(mo.Out, "Nothing to do: all %d selected VM(s) are already on %s.\n", len(p.Steps), p.Request.To)
		return nil
	}
	if mo.dryRun == "client" {
		PrintPlan(mo.Out, p)
		fences, err := move.DescribeFences(parent, mo.config(c, p.Request), s, p)
		if len(fences) > 0 {
			fmt.Fprintln(mo.Out, "\nStorage fences:")
			for _, f := range fences {
				fmt.Fprintln(mo.Out, "  "+f)
			}
		}
		if err != nil {
			fmt.Fprintln(mo.Out, "\n(dry run: nothing was changed)")
			return err
		}
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
	emit := prog.event
	if mo.observe != nil {
		emit = func(e executor.Event) {
			prog.event(e)
			mo.observe(e)
		}
	}
	rep, err := mo.execute(ctx, stop, c, s, p.Request, emit, progOut)
	prog.close()
	mo.lastReport = rep
	if err != nil {
		var lost *move.LockLostError
		if errors.As(err, &lost) && rep != nil {
			_ = mo.printReport(rep)
		}
		return mo.engineError(err)
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

// execute runs the move through the engine; the CLI, drill and the TUI share it.
func (mo *moveOptions) execute(ctx, stop context.Context, c *Clients, s *snapshot.Snapshot, req plan.Request, emit func(executor.Event), out io.Writer) (*executor.Report, error) {
	cfg := mo.config(c, req)
	cfg.Snapshot = s
	cfg.OnEvent = emit
	cfg.OnStart = func(moveID, actor string, p *plan.Plan) {
		fmt.Fprintf(out, "Move %s by %s: %s to %s, %d VM(s).\n", moveID, actor, p.Selection, p.Request.To, len(p.Steps))
		// On stderr, so that -o json stays one document: what releases without a typed
		// confirmation rest on.
		for _, site := range p.NeedsFailover() {
			if fs := p.Fencing[site]; fs.Proven && !slices.Contains(cfg.ConfirmedDown, site) {
				fmt.Fprintf(mo.ErrOut, "Site %s is proven down by fencing evidence, checked again before every release:\n", site)
				for _, ev := range fs.Nodes {
					fmt.Fprintf(mo.ErrOut, "  %s: %s\n", ev.Node, strongProofs(ev))
				}
			}
		}
	}
	return move.Run(ctx, stop, cfg)
}

// strongProofs names the proofs that count, each object with its UID and version.
func strongProofs(ev fencing.Evidence) string {
	var out []string
	for _, p := range ev.Proofs {
		if p.Strength == fencing.Strong {
			out = append(out, fmt.Sprintf("%s %s (uid %s, resourceVersion %s)", p.Kind, p.Name, p.UID, p.ResourceVersion))
		}
	}
	return strings.Join(out, "; ")
}

func stoppedSuffix(r *executor.Report) string {
	if r.Stopped == "" {
		return ""
	}
	return "; stopped: " + r.Stopped
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

// serverDryRun sends every template patch with dryRun=All and reports what admission
// rejects.
func (mo *moveOptions) serverDryRun(ctx context.Context, s *snapshot.Snapshot, c *Clients, p *plan.Plan) error {
	failed, n, err := move.ServerDryRun(ctx, mo.config(c, p.Request), s, p)
	if err != nil {
		return mo.engineError(err)
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

const defaultReadyTimeout = 10 * time.Minute
