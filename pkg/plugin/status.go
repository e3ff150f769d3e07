package plugin

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sitefail/kubectl-sitefail/pkg/selector"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

type statusOptions struct {
	*Options
	scope
	tier   string
	site   string
	output string
	tiers  *selector.TierRange
}

func newStatusCommand(o *Options) *cobra.Command {
	so := &statusOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "status [VM...]",
		Short: "Show each VM's tier, home site, current site and state",
		Long: `Shows where each VM runs relative to its home site (the site key of its template
nodeSelector). States:
  aligned       runs on its home site
  pending-move  runs on another site than its template names (a move is under way or was interrupted)
  stranded      its node is not Ready and its whole site is down
  stopped       no instance
  unpinned      its template names no site
  unknown       its instance is not scheduled yet`,
		Example: `  kubectl sitefail status -A
  kubectl sitefail status -n prod --tier 1 -o wide
  kubectl sitefail status -A --site Primary -o json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := so.scope.complete(so.Options); err != nil {
				return err
			}
			if err := outputFormat(so.output, "", "wide", "json", "yaml"); err != nil {
				return err
			}
			t, err := parseTierFlag(so.tier)
			if err != nil {
				return err
			}
			so.tiers = t
			keys, err := so.vmKeys(args)
			if err != nil {
				return err
			}
			return so.run(cmd.Context(), keys)
		},
	}
	so.scope.addFlags(cmd)
	cmd.Flags().StringVar(&so.tier, "tier", "", "only VMs of this tier or range, e.g. 1 or 1-2")
	cmd.Flags().StringVar(&so.site, "site", "", "only VMs whose home or current site is this one")
	cmd.Flags().StringVarP(&so.output, "output", "o", "", "output format: wide, json or yaml")
	_ = cmd.RegisterFlagCompletionFunc("site", completeSites(o))
	_ = cmd.RegisterFlagCompletionFunc("tier", completeTiers(o))
	cmd.ValidArgsFunction = completeVMs(o, &so.scope)
	return cmd
}

// filterVMs keeps the VMs that match the status filters.
func filterVMs(vms []snapshot.VM, keys []string, tiers *selector.TierRange, site string) []snapshot.VM {
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	out := []snapshot.VM{}
	for _, vm := range vms {
		if len(want) > 0 && !want[vm.Key()] {
			continue
		}
		if tiers != nil && !tiers.Contains(vm.Tier) {
			continue
		}
		if site != "" && vm.HomeSite != site && vm.CurrentSite != site {
			continue
		}
		out = append(out, vm)
	}
	return out
}

func (so *statusOptions) run(ctx context.Context, keys []string) error {
	ns := so.namespace
	if len(keys) > 0 {
		ns = ""
	}
	s, _, err := so.readSnapshot(ctx, ns, so.labelSelector)
	if err != nil {
		return err
	}
	if so.site != "" && !s.HasSite(so.site) {
		return fmt.Errorf("unknown site %q (sites: %s)", so.site, sitesList(s))
	}
	vms := filterVMs(s.VMs, keys, so.tiers, so.site)
	if so.output == "json" || so.output == "yaml" {
		return printStructured(so.Out, so.output, map[string]any{"siteLabel": so.Keys.Site, "tierLabel": so.Keys.Tier, "vms": vms})
	}
	if len(vms) == 0 {
		fmt.Fprintln(so.ErrOut, "No VMs found.")
		return nil
	}
	header := []string{"NAMESPACE", "NAME", "TIER", "HOME", "CURRENT", "STATE", "STATUS", "READY"}
	if so.output == "wide" {
		header = append(header, "NODE", "RUNSTRATEGY", "MIGRATABLE", "NOTES")
	}
	rows := make([][]string, 0, len(vms))
	for _, vm := range vms {
		r := []string{vm.Namespace, vm.Name, tierString(vm.Tier), dash(vm.HomeSite), dash(vm.CurrentSite), string(vm.State), dash(vm.PrintableStatus), fmt.Sprint(vm.Ready)}
		if so.output == "wide" {
			node, migratable := "-", "-"
			if vm.Instance != nil {
				node = dash(vm.Instance.NodeName)
				migratable = fmt.Sprint(vm.Instance.LiveMigratable)
			}
			notes := vm.TierError
			if vm.GitOps != "" {
				notes = joinNonEmpty(notes, "managed by "+vm.GitOps)
			}
			if vm.RestartRequired {
				notes = joinNonEmpty(notes, "RestartRequired")
			}
			r = append(r, node, string(vm.RunStrategy), migratable, dash(notes))
		}
		rows = append(rows, r)
	}
	return table(so.Out, header, rows)
}

func joinNonEmpty(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func sitesList(s *snapshot.Snapshot) string {
	names := s.SiteNames()
	if len(names) == 0 {
		return "none labeled"
	}
	out := names[0]
	for _, n := range names[1:] {
		out += ", " + n
	}
	return out
}
