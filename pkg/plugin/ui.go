package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sort"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/spf13/cobra"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/lock"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/record"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
	"github.com/sitefail/kubectl-sitefail/pkg/tui"
)

type uiOptions struct {
	*Options
	scope
	readOnly    bool
	maxInFlight int
	maxPerNode  int
	mode        string
	interval    time.Duration
	lockNS      string
	readyTO     time.Duration
	allowGitOps bool
}

func newUICommand(o *Options) *cobra.Command {
	uo := &uiOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Interactive incident view: VMs per site, live, and moves from the keyboard",
		Long: `A live view of every VM per site, fed by watches, with each site's health. Pick a tier
(1-9) or the VM under the cursor, a target site (t), see the plan (p) with its blockers
and warnings, and move (m): the same planner and executor as 'plan' and 'move'. A
failover shows the dead site's fencing evidence node by node, as 'sites -o wide'
does, and asks you to type the site's name; n shows a site's nodes and their
evidence, read afresh. Press ? for the keys.

Works at 80x24 and honours NO_COLOR.`,
		Example: `  kubectl sitefail ui -A
  kubectl sitefail ui -n prod --read-only`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := uo.scope.complete(o); err != nil {
				return err
			}
			if uo.maxInFlight < 1 || uo.maxPerNode < 1 {
				return errors.New("--max-in-flight and --max-per-node must be at least 1")
			}
			mode, err := plan.ParseMode(uo.mode)
			if err != nil {
				return err
			}
			return uo.run(cmd.Context(), mode)
		},
	}
	uo.scope.addFlags(cmd)
	f := cmd.Flags()
	f.BoolVar(&uo.readOnly, "read-only", false, "hide the actions: watch only")
	f.IntVar(&uo.maxInFlight, "max-in-flight", 5, "VMs starting at once during a move")
	f.IntVar(&uo.maxPerNode, "max-per-node", 2, "VMs starting at once per target node")
	f.StringVar(&uo.mode, "mode", "auto", "how running VMs move: auto, migrate, restart")
	f.DurationVar(&uo.interval, "refresh", 500*time.Millisecond, "at most one redraw per interval while the cluster changes")
	f.StringVar(&uo.lockNS, "lock-namespace", lock.DefaultNamespace, "namespace of the move Lease")
	f.DurationVar(&uo.readyTO, "ready-timeout", 10*time.Minute, "how long each VM may take to be Ready on the target")
	f.BoolVar(&uo.allowGitOps, "allow-gitops-drift", false, "let plans move VMs that Argo CD or Flux manage (commit the delta first, or pause the sync)")
	return cmd
}

func (uo *uiOptions) run(ctx context.Context, mode plan.Mode) error {
	if ctx == nil {
		ctx = context.Background()
	}
	c, err := uo.Factory.Clients()
	if err != nil {
		return err
	}
	// Fail early and plainly (not inside the full-screen view) when the cluster is
	// unreachable or forbids reading; a full read would only delay the first screen.
	if err := snapshot.CanRead(ctx, snapshot.Source{Kube: c.Kube, Dynamic: c.Dynamic, Namespace: uo.namespace}); err != nil {
		return clusterError(err, c)
	}
	events := func(ctx context.Context, ns, name string) ([]string, error) {
		list, err := c.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			return nil, err
		}
		sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].LastTimestamp.Before(&list.Items[j].LastTimestamp) })
		out := make([]string, 0, len(list.Items))
		for _, e := range list.Items {
			out = append(out, fmt.Sprintf("%s %s %s", e.LastTimestamp.Format("15:04:05"), e.Reason, e.Message))
		}
		return out, nil
	}
	read := func(ctx context.Context) (*snapshot.Snapshot, error) {
		s, _, err := uo.readSnapshot(ctx, uo.namespace, uo.labelSelector)
		return s, err
	}
	store := &record.Store{Kube: c.Kube, Namespace: uo.lockNS}
	history := func(ctx context.Context) ([]tui.HistoryEntry, error) {
		list, err := store.List(ctx)
		if err != nil {
			return nil, recordsError(err, uo.lockNS)
		}
		out := make([]tui.HistoryEntry, 0, len(list))
		for _, l := range list {
			out = append(out, tui.HistoryEntry{ID: l.ID, Line: strings.Join(historyRow(l), "  ")})
		}
		return out, nil
	}
	report := func(ctx context.Context, id string) (string, error) {
		st, err := store.Get(ctx, id)
		if err != nil {
			return "", recordsError(err, uo.lockNS)
		}
		var b strings.Builder
		if err := record.Markdown(&b, st.Record, 1); err != nil {
			return "", err
		}
		return b.String(), nil
	}
	m := tui.New(tui.Options{Context: c.Context, ReadOnly: uo.readOnly, MaxInFlight: uo.maxInFlight, Mode: mode, Run: uo.runMove, Events: events,
		AllowGitOpsDrift: uo.allowGitOps, Read: read, History: history, Report: report})
	prog := tea.NewProgram(m, tea.WithAltScreen(), tea.WithContext(ctx), tea.WithInput(uo.In), tea.WithOutput(uo.Out))
	m.Attach(prog.Send)
	src, err := tui.NewSource(c.Kube, c.Dynamic, c.Config, uo.namespace, uo.Keys)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The screen comes up at once and says it is reading; the watches fill it.
	go src.Run(wctx, uo.interval, func(msg any) { prog.Send(msg) })
	_, err = prog.Run()
	return err
}

// uiConfirmations is what the name the operator typed confirms. A site the plan showed
// proven down by its fencing evidence is not confirmed by hand: its releases then rest
// on the evidence and read it again at each one, as a move without --confirm-site-down
// does, and evidence gone by the time of the lock stops the move instead of being
// overridden by a name typed for it.
func uiConfirmations(p *plan.Plan, confirm string) []string {
	if confirm == "" || p.ProvenDown(confirm) {
		return nil
	}
	return []string{confirm}
}

// moveOptions are the move command's options for a plan made in the view, confirmed
// with the site name the operator typed.
func (uo *uiOptions) moveOptions(p *plan.Plan, confirm string) *moveOptions {
	mo := &moveOptions{Options: uo.Options, maxPerNode: uo.maxPerNode, readyTimeout: uo.readyTO, fence: "pod",
		dryRun: "none", lockNamespace: uo.lockNS, noPrompt: true, keepRecords: record.DefaultKeep}
	mo.scope = uo.scope
	mo.maxInFlight = uo.maxInFlight
	mo.confirmSiteDown = uiConfirmations(p, confirm)
	return mo
}

// runMove executes a plan made in the view with the move command's machinery.
func (uo *uiOptions) runMove(ctx, stop context.Context, p *plan.Plan, confirm string, emit func(executor.Event)) (*executor.Report, error) {
	mo := uo.moveOptions(p, confirm)
	c, err := uo.Factory.Clients()
	if err != nil {
		return nil, err
	}
	if p.Blocked(false) {
		return nil, fmt.Errorf("the plan is blocked")
	}
	// The engine reads the cluster again under the lock and rebuilds the plan from the
	// same request.
	rep, err := mo.execute(ctx, stop, c, nil, p.Request, emit, io.Discard)
	return rep, mo.engineError(err)
}
