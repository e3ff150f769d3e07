package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

// selection holds the flags that say which VMs move where; plan and move share them.
type selection struct {
	scope
	to          string
	from        string
	tier        string
	all         bool
	mode        string
	maxInFlight int
	toOther     bool
	tierOf      string
	// allowGitOpsDrift: see plan.Request.AllowGitOpsDrift.
	allowGitOpsDrift bool
	expectStart      time.Duration
	args             []string
	req              plan.Request
}

func (s *selection) addFlags(cmd *cobra.Command, o *Options) {
	s.scope.addFlags(cmd)
	cmd.Flags().BoolVar(&s.toOther, "to-other", false, "target the other site of a two-site cluster (the one the selected VMs are not on)")
	cmd.Flags().StringVar(&s.tierOf, "tier-of", "", "move the whole tier of this VM (NAME or NAMESPACE/NAME)")
	defer func() {
		_ = cmd.RegisterFlagCompletionFunc("to", completeSites(o))
		_ = cmd.RegisterFlagCompletionFunc("from", completeSites(o))
		_ = cmd.RegisterFlagCompletionFunc("tier", completeTiers(o))
		_ = cmd.RegisterFlagCompletionFunc("tier-of", completeVMs(o, &s.scope))
		cmd.ValidArgsFunction = completeVMs(o, &s.scope)
	}()
	cmd.Flags().StringVar(&s.to, "to", "", "target site (required)")
	cmd.Flags().StringVar(&s.from, "from", "", "only VMs whose home or current site is this one")
	cmd.Flags().StringVar(&s.tier, "tier", "", "move this tier or range of tiers, e.g. 1 or 1-3")
	cmd.Flags().BoolVar(&s.all, "all", false, "move every selected VM, tiered ones first in tier order, untiered last")
	cmd.Flags().DurationVar(&s.expectStart, "expect-start", plan.DefaultExpectedStart, "for the RTO estimate: how long one VM takes from its start to Ready on the target (take it from a drill report)")
	cmd.Flags().StringVar(&s.mode, "mode", "auto", "how running VMs move: auto (live-migrate when possible, else restart), migrate, restart")
	cmd.Flags().IntVar(&s.maxInFlight, "max-in-flight", 5, "VMs starting on the target at once")
	cmd.Flags().BoolVar(&s.allowGitOpsDrift, "allow-gitops-drift", false, "move VMs that Argo CD or Flux manage (they revert the move at their next sync unless the delta is committed or the sync paused)")
}

// complete validates the selection flags into a plan request. It reads no cluster state.
func (s *selection) complete(o *Options, args []string) error {
	if err := s.scope.complete(o); err != nil {
		return err
	}
	s.args = args
	chosen := 0
	for _, set := range []bool{s.tier != "", s.all, len(args) > 0, s.tierOf != ""} {
		if set {
			chosen++
		}
	}
	switch {
	case chosen == 0:
		return errors.New("say which VMs move: --tier N, --tier N-M, --tier-of VM, --all, or VM names")
	case chosen > 1:
		return errors.New("--tier, --tier-of, --all and VM names exclude each other: pick one")
	}
	if s.toOther && s.to != "" {
		return errors.New("--to and --to-other exclude each other: pick one")
	}
	if s.to == "" && !s.toOther {
		return errors.New("--to is required: name the target site (see 'kubectl sitefail sites'), or use --to-other")
	}
	if s.maxInFlight < 1 {
		return fmt.Errorf("--max-in-flight must be at least 1 (got %d)", s.maxInFlight)
	}
	mode, err := plan.ParseMode(s.mode)
	if err != nil {
		return err
	}
	tiers, err := parseTierFlag(s.tier)
	if err != nil {
		return err
	}
	keys, err := s.vmKeys(args)
	if err != nil {
		return err
	}
	if s.expectStart <= 0 {
		return fmt.Errorf("--expect-start must be positive (got %s)", s.expectStart)
	}
	s.req = plan.Request{To: s.to, From: s.from, Tiers: tiers, All: s.all, VMs: keys, Mode: mode, MaxInFlight: s.maxInFlight,
		AllowGitOpsDrift: s.allowGitOpsDrift, ExpectedStart: s.expectStart}
	if s.tierOf != "" {
		k, err := s.vmKeys([]string{s.tierOf})
		if err != nil {
			return err
		}
		s.tierOf = k[0]
	}
	return nil
}

// resolve turns --tier-of and --to-other into a plain request, now that the cluster is read.
func (s *selection) resolve(snap *snapshot.Snapshot) error {
	if s.tierOf != "" {
		var found *snapshot.VM
		for i := range snap.VMs {
			if snap.VMs[i].Key() == s.tierOf {
				found = &snap.VMs[i]
			}
		}
		switch {
		case found == nil:
			return fmt.Errorf("--tier-of: no such VM %s in the selected namespaces (check -n/-A and -l)", s.tierOf)
		case found.Tier == 0:
			return fmt.Errorf("--tier-of: %s has no tier (label %s)", s.tierOf, snap.Keys.Tier)
		}
		s.req.Tiers = &selector.TierRange{Min: found.Tier, Max: found.Tier}
	}
	if !s.toOther {
		return nil
	}
	to, err := plan.OtherSite(snap, s.req)
	if err != nil {
		return err
	}
	s.req.To = to
	return nil
}

// snapshotScope is the namespace to read: VM names may reach across namespaces.
func (s *selection) snapshotScope() string {
	if len(s.req.VMs) > 0 {
		return ""
	}
	return s.namespace
}

// buildPlan reads the cluster and plans. Selection errors come back as plain errors.
func (o *Options) buildPlan(ctx context.Context, sel *selection) (*plan.Plan, *snapshot.Snapshot, *Clients, error) {
	s, c, err := o.readSnapshot(ctx, sel.snapshotScope(), sel.labelSelector)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := sel.resolve(s); err != nil {
		return nil, nil, nil, err
	}
	p, err := plan.Build(s, sel.req)
	if err != nil {
		return nil, nil, nil, err
	}
	return p, s, c, nil
}

type planOptions struct {
	*Options
	selection
	output string
}

func newPlanCommand(o *Options) *cobra.Command {
	po := &planOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "plan --to SITE (--tier N[-M] | --all | VM...)",
		Short: "Show exactly what a move would do, in order, with blockers and warnings; change nothing",
		Long: `Plans a move without changing anything: which VMs move, in which order (tier ascending,
untiered VMs last), by which action, in which throttled batches, and what blocks it.

Actions:
  patch-only    the VM is stopped (or already runs on the target): only its template changes
  live-migrate  running and live-migratable, source site healthy
  restart       running, not live-migratable (or --mode restart)
  failover      its site is down: release it after fencing so KubeVirt recreates it
  skip          already on the target

Exit codes: 0 the plan can run (or nothing to do), 2 the plan is blocked, 1 any other error.`,
		Example: `  kubectl sitefail plan --tier 1 --to DR -A
  kubectl sitefail plan --all --to Primary --from DR -n prod -o yaml
  kubectl sitefail plan --to DR prod/db-0 prod/db-1`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := po.selection.complete(o, args); err != nil {
				return err
			}
			if err := outputFormat(po.output, "", "json", "yaml"); err != nil {
				return err
			}
			return po.run(cmd.Context())
		},
	}
	po.selection.addFlags(cmd, o)
	cmd.Flags().StringVarP(&po.output, "output", "o", "", "output format: json or yaml (schema "+plan.APIVersion+" Plan)")
	return cmd
}

func (po *planOptions) run(ctx context.Context) error {
	p, _, _, err := po.buildPlan(ctx, &po.selection)
	if err != nil {
		return err
	}
	if po.output != "" {
		if err := printStructured(po.Out, po.output, p); err != nil {
			return err
		}
	} else {
		PrintPlan(po.Out, p)
	}
	if p.Blocked(false) {
		return &ExitCodeError{Code: ExitBlocked, Err: fmt.Errorf("the plan is blocked by %d blocker(s); nothing was changed", len(p.Blockers))}
	}
	return nil
}

// PrintPlan writes the human-readable plan.
func PrintPlan(w io.Writer, p *plan.Plan) {
	fmt.Fprintf(w, "Plan: move %s to %s (mode %s, at most %d starting at once)\n", p.Selection, p.Request.To, p.Request.Mode, p.Request.MaxInFlight)
	if len(p.SourceSites) > 0 {
		fmt.Fprintf(w, "From: %s\n", strings.Join(p.SourceSites, ", "))
	}
	fmt.Fprintln(w)
	if !p.Work() {
		fmt.Fprintf(w, "Nothing to do: all %d selected VM(s) are already on %s.\n", len(p.Steps), p.Request.To)
		return
	}
	rows := make([][]string, 0, len(p.Steps))
	for i, st := range p.Steps {
		rows = append(rows, []string{fmt.Sprint(i + 1), tierString(st.Tier), st.Namespace, st.Name, dash(st.From), st.To, string(st.Action), st.Reason})
	}
	_ = table(w, []string{"#", "TIER", "NAMESPACE", "NAME", "FROM", "TO", "ACTION", "REASON"}, rows)

	if len(p.Batches) > 0 {
		fmt.Fprintln(w, "\nThrottled batches (each starts when the previous has room; a tier starts when the one before is Ready):")
		n := 0
		for i, b := range p.Batches {
			if i == 0 || p.Batches[i-1].Tier != b.Tier {
				n = 0
			}
			n++
			fmt.Fprintf(w, "  tier %s batch %d: %s\n", tierString(b.Tier), n, strings.Join(b.VMs, ", "))
		}
	}
	if len(p.Estimate) > 0 {
		per := p.Request.ExpectedStart
		if per <= 0 {
			per = plan.DefaultExpectedStart
		}
		parts := make([]string, 0, len(p.Estimate))
		var total float64
		for _, e := range p.Estimate {
			parts = append(parts, fmt.Sprintf("tier %s %s (%d wave(s))", tierString(e.Tier), time.Duration(e.RTOSeconds*float64(time.Second)), e.Waves))
			total += e.RTOSeconds
		}
		fmt.Fprintf(w, "\nEstimated RTO at %s per start (--expect-start): %s; total %s.\n", per, strings.Join(parts, ", "), time.Duration(total*float64(time.Second)))
	}
	c := p.Capacity
	fmt.Fprintf(w, "\nCapacity on %s: %sm CPU and %s memory free on Ready nodes; this move starts %dm CPU and %s there.\n",
		c.Site, fmt.Sprint(c.FreeCPUMilli), plan.HumanBytes(c.FreeMemoryBytes), c.NeedCPUMilli, plan.HumanBytes(c.NeedMemoryBytes))
	printIssues(w, "Warnings", p.Warnings)
	printIssues(w, "Notes", p.Notes)
	printIssues(w, "Blockers", p.Blockers)

	actions := make([]string, 0, len(p.Summary.ByAction))
	for a, n := range p.Summary.ByAction {
		actions = append(actions, fmt.Sprintf("%d %s", n, a))
	}
	sort.Strings(actions)
	fmt.Fprintf(w, "\nSummary: %d VM(s) selected: %s.\n", p.Summary.Selected, strings.Join(actions, ", "))
	if p.Blocked(false) {
		fmt.Fprintln(w, "BLOCKED: resolve the blockers above (overridable ones can be waived with 'move --force').")
	}
}

func printIssues(w io.Writer, title string, issues []plan.Issue) {
	if len(issues) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s:\n", title)
	for _, i := range issues {
		who := ""
		if i.VM != "" {
			who = i.VM + ": "
		}
		extra := ""
		if i.Overridable {
			extra = " [overridable with --force]"
		}
		fmt.Fprintf(w, "  - %s%s (%s)%s\n", who, i.Message, i.Code, extra)
	}
}
