package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sitefail/kubectl-sitefail/pkg/gitops"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
)

type gitopsOptions struct {
	*Options
	selection
	dir    string
	check  string
	output string
}

func newGitOpsCommand(o *Options) *cobra.Command {
	g := &gitopsOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "gitops --to SITE (--tier N[-M] | --all | VM...) | gitops --check FILE",
		Short: "Print the DR state as a Kustomize component (a delta of the normal state for Git), or check the cluster against one",
		Long: `Prints a Kustomize Component (kustomization.yaml) whose inline JSON patches move the
selected VMs' template nodeSelector site key to the target site, and nothing else. Keep
it next to the normal manifests and add it to the overlay under 'components:' when
failing over, so that a GitOps controller (Argo CD, Flux) converges on the DR state
instead of reverting a direct 'move'. VMs already homed on the target are left out.

The patch uses a JSON patch "replace", so each VM's manifest in Git must already carry
the site key. Changes nothing in the cluster.

--check FILE compares a component (a file, or a directory holding kustomization.yaml)
with the cluster and lists the drift: VMs the delta places elsewhere than their template
does now, VMs it lists that are gone, and VMs a move took to one of its sites that it
does not list (the controller moves those back at its next sync). --to adds a site to
look for when the delta lists none yet.

Exit codes: 0 written, or no drift; 5 drift found; 1 any other error.`,
		Example: `  kubectl sitefail gitops --all --to DR -A > overlays/dr/kustomization.yaml
  kubectl sitefail gitops --all --to DR -A --dir components/dr   # kustomization.yaml and README.md
  kubectl sitefail gitops --tier 1 --to DR -n prod
  kubectl sitefail gitops --check components/dr -A                # drift between Git and the cluster`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if g.check != "" {
				return g.runCheck(cmd.Context(), args)
			}
			if g.output != "" {
				return errors.New("-o applies to --check; the component itself is YAML")
			}
			if err := g.selection.complete(o, args); err != nil {
				return err
			}
			p, _, _, err := o.buildPlan(cmd.Context(), &g.selection)
			if err != nil {
				return err
			}
			if g.dir == "" {
				return gitops.WriteComponent(g.Out, p)
			}
			return writeComponentDir(g.dir, p)
		},
	}
	g.selection.addFlags(cmd, o)
	cmd.Flags().StringVar(&g.dir, "dir", "", "write kustomization.yaml and a README.md that says how to use it into this directory")
	cmd.Flags().StringVar(&g.check, "check", "", "compare this component (file or directory) with the cluster and list the drift")
	cmd.Flags().StringVarP(&g.output, "output", "o", "", "with --check: json or yaml")
	return cmd
}

// runCheck compares a committed component with the cluster.
func (g *gitopsOptions) runCheck(ctx context.Context, args []string) error {
	switch {
	case g.tier != "" || g.all || len(args) > 0 || g.tierOf != "":
		return errors.New("--check compares the whole component: drop --tier, --tier-of, --all and VM names (narrow with -n or -l)")
	case g.dir != "":
		return errors.New("--check and --dir exclude each other: pick one")
	}
	if err := outputFormat(g.output, "", "json", "yaml"); err != nil {
		return err
	}
	if err := g.scope.complete(g.Options); err != nil {
		return err
	}
	path := g.check
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, "kustomization.yaml")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--check: %w", err)
	}
	delta, err := gitops.Parse(data, g.Keys.Site)
	if err != nil {
		return fmt.Errorf("--check %s: %w", g.check, err)
	}
	s, _, err := g.readSnapshot(ctx, g.namespace, g.labelSelector)
	if err != nil {
		return err
	}
	drift := gitops.Compare(delta, s, g.namespace, g.to)
	if g.labelSelector != "" {
		// -l hides VMs from the snapshot; one the delta lists is not gone because of that.
		kept := drift[:0]
		for _, d := range drift {
			if d.Cluster != "" {
				kept = append(kept, d)
			}
		}
		drift = kept
	}
	switch {
	case g.output != "":
		if err := printStructured(g.Out, g.output, map[string]any{"drift": drift}); err != nil {
			return err
		}
	case len(drift) == 0:
		fmt.Fprintf(g.Out, "No drift: the cluster matches %s (%d VM(s) in the delta).\n", g.check, len(delta))
	default:
		rows := make([][]string, 0, len(drift))
		for _, d := range drift {
			rows = append(rows, []string{d.Namespace, d.Name, dash(d.Git), dash(d.Cluster), d.Reason})
		}
		if err := table(g.Out, []string{"NAMESPACE", "NAME", "GIT", "CLUSTER", "DRIFT"}, rows); err != nil {
			return err
		}
	}
	if len(drift) > 0 {
		return &ExitCodeError{Code: ExitDrift, Err: fmt.Errorf("%d VM(s) differ between %s and the cluster", len(drift), g.check)}
	}
	return nil
}

// writeComponentDir writes the component and a README that says how to use it, in the
// overlay and as a break glass when the GitOps controller itself is down.
func writeComponentDir(dir string, p *plan.Plan) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var b strings.Builder
	if err := gitops.WriteComponent(&b, p); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	readme := fmt.Sprintf(`# DR placement: %s to %s

Generated by kubectl sitefail gitops. A Kustomize Component that moves the site key
(%s) of each listed VM's template nodeSelector to %s, and changes nothing else.

## Fail over through GitOps

Add this directory under components: of the overlay your controller syncs, for example

    components:
    - ../../components/%s

and commit. Argo CD or Flux then converges on the DR placement, and the next
'kubectl sitefail move --to %s ... --allow-gitops-drift' is not reverted. The move is
still needed: Git holds the template, not the migration.

## Break glass (the GitOps controller is down)

    kubectl apply -k <the overlay that includes this component>

then run the move. Commit the same change afterwards, or the controller reverts it
when it comes back.
`, p.Selection, p.Request.To, p.SiteLabel, p.Request.To, filepath.Base(dir), p.Request.To)
	return os.WriteFile(filepath.Join(dir, "README.md"), []byte(readme), 0o644)
}
