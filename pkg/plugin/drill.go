package plugin

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sitefail/kubectl-sitefail/pkg/plan"
)

// newDrillCommand is a rehearsal: a relocate to the target and a failback, with both
// legs timed, while both sites are up.
func newDrillCommand(o *Options) *cobra.Command {
	mo := &moveOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "drill --to SITE (--tier N[-M] | --all | VM...)",
		Short: "Rehearse: move VMs to a site and back, timing both legs (both sites must be up)",
		Long: `A drill proves the process on a live system: it moves the selected VMs to the target
site exactly as 'move' does (throttled, tier by tier, journaled), then fails them back
to where they came from, and reports each leg's per-tier RTO. It refuses to start if
the plan needs a failover (a site is down): that is an incident, not a drill.

Interrupted, it can be finished with 'move' or 'failback' like any move.`,
		Example: `  kubectl sitefail drill --tier 1 --to DR -A
  kubectl sitefail drill --to DR -n prod db-0 --mode restart`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := mo.complete(args); err != nil {
				return err
			}
			if mo.dryRun != "none" {
				return errors.New("drill does not take --dry-run: use 'plan' to see the first leg")
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
			fmt.Fprintf(mo.Out, "Drill, leg 1 of 2: %s to %s\n", p.Selection, p.Request.To)
			if err := mo.run(cmd.Context()); err != nil {
				return fmt.Errorf("drill leg 1 (to %s): %w", p.Request.To, err)
			}
			fmt.Fprintf(mo.Out, "\nDrill, leg 2 of 2: back where they came from\n")
			mo.failback, mo.to = true, "(journal)"
			// Leg 2 selects the moved VMs by name; --from named where they were, not
			// where they are now.
			mo.req.VMs, mo.req.Tiers, mo.req.All, mo.tierOf, mo.toOther = moved, nil, false, "", false
			mo.from, mo.req.From = "", ""
			if err := mo.run(cmd.Context()); err != nil {
				return fmt.Errorf("drill leg 2 (failback): %w", err)
			}
			fmt.Fprintln(mo.Out, "\nDrill complete: both legs finished.")
			return nil
		},
	}
	mo.selection.addFlags(cmd, o)
	mo.addRunFlags(cmd)
	mo.fence, mo.dryRun = "pod", "none"
	return cmd
}
