package plugin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/record"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

// newDrillCommand is a rehearsal: a relocate to the target and a failback, with both
// legs timed, while both sites are up.
func newDrillCommand(o *Options) *cobra.Command {
	mo := &moveOptions{Options: o, drill: true}
	var rto, reportDir string
	cmd := &cobra.Command{
		Use:   "drill --to SITE (--tier N[-M] | --all | VM...)",
		Short: "Rehearse: move VMs to a site and back, timing both legs (both sites must be up)",
		Long: `A drill proves the process on a live system: it moves the selected VMs to the target
site exactly as 'move' does (throttled, tier by tier, journaled), then fails them back
to where they came from, and reports each leg's per-tier RTO. It refuses to start if
the plan needs a failover (a site is down): that is an incident, not a drill.

Interrupted, it can be finished with 'move' or 'failback' like any move.

--dry-run=server checks the drill without disturbing anything: the plan and its guard,
every permission every step needs, and every template patch sent to the API server
with dryRun=All so that admission (KubeVirt's webhooks, policies) judges it. Cheap
enough to run daily from a CronJob (see deploy/rbac/sitefail-drill-check.yaml).`,
		Example: `  kubectl sitefail drill --tier 1 --to DR -A

  # Evidence for auditors: objectives per tier, a report, exit 3 when one is missed
  kubectl sitefail drill --all --to DR -A --rto 1=5m,2=15m --report ./drill-2026-11

  # Leave the VMs on DR (no second leg)
  kubectl sitefail drill --tier 1 --to DR -A --keep
  kubectl sitefail drill --to DR -n prod db-0 --mode restart

  # Would tonight's drill pass preflight, RBAC and admission? Nothing is changed.
  kubectl sitefail drill --all --to DR -A --dry-run=server`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := mo.complete(args); err != nil {
				return err
			}
			if mo.dryRun == "client" {
				return errors.New("drill takes --dry-run=server only (preflight, RBAC and admission, nothing changed): use 'plan' to see the first leg")
			}
			objectives, err := parseRTO(rto)
			if err != nil {
				return err
			}
			s, _, err := mo.readSnapshot(cmd.Context(), mo.snapshotScope(), mo.labelSelector)
			if err != nil {
				return err
			}
			if err := mo.resolve(s); err != nil {
				return err
			}
			p, err := plan.Build(s, mo.req)
			if err != nil {
				return err
			}
			if sites := p.NeedsFailover(); len(sites) > 0 {
				return &ExitCodeError{Code: ExitBlocked, Err: fmt.Errorf("site %s is down: this is an incident, not a drill; use 'move' (nothing was changed)", sites[0])}
			}
			if mo.dryRun == "server" {
				return mo.drillDryRun(cmd.Context(), s, p)
			}
			var moved []string
			for _, st := range p.Steps {
				if st.Action != plan.ActionSkip {
					moved = append(moved, st.Key())
				}
			}
			if len(moved) == 0 {
				fmt.Fprintf(mo.Out, "Nothing to rehearse: the selected VMs are already on %s.\n", p.Request.To)
				return nil
			}
			legs := 2
			if mo.keep {
				legs = 1
			}
			fmt.Fprintf(mo.Out, "Drill, leg 1 of %d: %s to %s\n", legs, p.Selection, p.Request.To)
			rec := &recorder{leg: 1}
			mo.observe = rec.event
			mo.rto, mo.drillLeg = objectives, 1
			leg1Err := mo.run(cmd.Context())
			reports := []*executor.Report{mo.lastReport}
			records := []*record.Record{mo.lastRecord}
			finish := func(runErr error) error {
				ev := judge(p.Selection, p.Request.To, mo.keep, reports, objectives, p.Estimate, rec.vms)
				ev.Records = records
				if reportDir != "" {
					if err := ev.write(reportDir); err != nil {
						return fmt.Errorf("write the drill report: %w", err)
					}
					fmt.Fprintf(mo.Out, "Report written to %s (report.md, report.html, report.json).\n", reportDir)
				}
				if runErr != nil {
					return runErr
				}
				for _, t := range ev.Tiers {
					if t.Result != "none" {
						fmt.Fprintf(mo.Out, "Tier %s: RTO %s, objective %s: %s\n", tierString(t.Tier),
							time.Duration(t.RTOSeconds*float64(time.Second)).Round(time.Second), time.Duration(t.ObjectiveSeconds*float64(time.Second)), strings.ToUpper(t.Result))
					}
				}
				if ev.Result == "fail" && objectives != nil {
					return &ExitCodeError{Code: ExitMoveFailed, Err: errors.New("the drill missed its RTO objectives")}
				}
				return nil
			}
			if leg1Err != nil {
				return finish(fmt.Errorf("drill leg 1 (to %s): %w; finish it with 'kubectl sitefail move --to %s' and the same selection, or bring the VMs back with 'kubectl sitefail failback'", p.Request.To, leg1Err, p.Request.To))
			}
			if mo.keep {
				fmt.Fprintf(mo.Out, "\nDrill complete: the VMs stay on %s (--keep); 'kubectl sitefail failback' brings them back.\n", p.Request.To)
				return finish(nil)
			}
			fmt.Fprintf(mo.Out, "\nDrill, leg 2 of 2: back where they came from\n")
			mo.failback, mo.to = true, "(journal)"
			// Leg 2 selects the moved VMs by name; --from named where they were, not
			// where they are now.
			mo.req.VMs, mo.req.Tiers, mo.req.All, mo.tierOf, mo.toOther = moved, nil, false, "", false
			mo.from, mo.req.From = "", ""
			mo.lastReport, mo.drillLeg = nil, 2
			if records[0] != nil {
				mo.drillFirst = records[0].ID
			}
			mo.lastRecord = nil
			rec.leg = 2
			leg2Err := mo.run(cmd.Context())
			reports = append(reports, mo.lastReport)
			records = append(records, mo.lastRecord)
			if leg2Err != nil {
				return finish(fmt.Errorf("drill leg 2 (failback): %w; finish it with 'kubectl sitefail failback' and the same selection", leg2Err))
			}
			fmt.Fprintln(mo.Out, "\nDrill complete: both legs finished.")
			return finish(nil)
		},
	}
	mo.selection.addFlags(cmd, o)
	mo.addRunFlags(cmd)
	cmd.Flags().BoolVar(&mo.keep, "keep", false, "leave the VMs on the target: no second leg")
	cmd.Flags().StringVar(&rto, "rto", "", "RTO objective for every tier (15m) or per tier (1=5m,2=15m); a miss exits 3")
	cmd.Flags().StringVar(&reportDir, "report", "", "write report.md, report.html (the legs' records, as 'kubectl sitefail report' writes them) and report.json (versioned schema) into this directory")
	cmd.Flags().StringVar(&mo.dryRun, "dry-run", "none", `"none" or "server" (check preflight, RBAC and every patch through admission; change nothing)`)
	cmd.Flags().Lookup("dry-run").NoOptDefVal = "server"
	mo.fence = "pod"
	return cmd
}

// drillDryRun checks what the drill would need without disturbing anything: the plan
// and its guard, every permission of every step, and every template patch of leg 1
// through admission (dryRun=All). Leg 2 writes the same objects with the same verbs,
// back to the templates admission holds now.
func (mo *moveOptions) drillDryRun(ctx context.Context, s *snapshot.Snapshot, p *plan.Plan) error {
	c, err := mo.Factory.Clients()
	if err != nil {
		return err
	}
	if err := mo.serverDryRun(ctx, s, c, p); err != nil {
		return err
	}
	if mo.keep {
		return nil
	}
	fmt.Fprintln(mo.Out, "Leg 2 (failback) patches the same VMs back to the site their templates select now, with the same permissions: nothing more to check.")
	return nil
}
