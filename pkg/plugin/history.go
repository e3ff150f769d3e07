package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/sitefail/kubectl-sitefail/pkg/lock"
	"github.com/sitefail/kubectl-sitefail/pkg/record"
)

// ExitEdited: report --verify found a record changed since it was written.
const ExitEdited = 6

type historyOptions struct {
	*Options
	lockNamespace string
	output        string
	since         time.Duration
	site          string
}

func newHistoryCommand(o *Options) *cobra.Command {
	ho := &historyOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "history",
		Short: "List the moves and drills recorded in the cluster, newest first",
		Long: `Every move, failover, failback, drill leg and move from the ui keeps a record in the lock
namespace (a ConfigMap sitefail-move-<id>). history lists them: who ran it, when, from
which site to which, how many VMs moved, failed or were skipped, the slowest tier's RTO
against its objective, and the outcome. An interrupted move that was run again is one
record with several runs. 'kubectl sitefail report ID' shows one in full.`,
		Example: `  kubectl sitefail history
  kubectl sitefail history --since 24h --site Primary
  kubectl sitefail history -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := outputFormat(ho.output, "", "json", "yaml"); err != nil {
				return err
			}
			if ho.since < 0 {
				return fmt.Errorf("--since must not be negative (got %s)", ho.since)
			}
			return ho.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&ho.lockNamespace, "lock-namespace", lock.DefaultNamespace, "namespace the records are kept in (the moves' --lock-namespace)")
	f.StringVarP(&ho.output, "output", "o", "", "output format: json or yaml")
	f.DurationVar(&ho.since, "since", 0, "only moves started within this long (24h)")
	f.StringVar(&ho.site, "site", "", "only moves from or to this site")
	return cmd
}

func (ho *historyOptions) run(ctx context.Context) error {
	store, err := recordStore(ho.Options, ho.lockNamespace)
	if err != nil {
		return err
	}
	list, err := store.List(ctx)
	if err != nil {
		return recordsError(err, ho.lockNamespace)
	}
	kept := list[:0]
	for _, l := range list {
		if ho.since > 0 && l.Started.Before(time.Now().Add(-ho.since)) {
			continue
		}
		if ho.site != "" && l.To != ho.site && !containsString(l.From, ho.site) {
			continue
		}
		kept = append(kept, l)
	}
	if ho.output != "" {
		return printStructured(ho.Out, ho.output, struct {
			APIVersion string          `json:"apiVersion"`
			Kind       string          `json:"kind"`
			Items      []record.Listed `json:"items"`
		}{record.APIVersion, "MoveRecordList", kept})
	}
	if len(kept) == 0 {
		fmt.Fprintf(ho.Out, "No move records in namespace %s%s.\n", ho.lockNamespace, filterSuffix(ho.since, ho.site))
		return nil
	}
	rows := make([][]string, 0, len(kept))
	for _, l := range kept {
		rows = append(rows, historyRow(l))
	}
	return table(ho.Out, historyHeader, rows)
}

var historyHeader = []string{"ID", "KIND", "BY", "STARTED", "FROM→TO", "MOVED", "FAILED", "SKIPPED", "RTO/OBJECTIVE", "OUTCOME"}

// historyRow is one record's line in history and in the ui's history view.
func historyRow(l record.Listed) []string {
	kind := string(l.Kind)
	if l.Leg > 0 {
		kind = fmt.Sprintf("drill/%d", l.Leg)
	}
	if l.Runs > 1 {
		kind += fmt.Sprintf(" (%d runs)", l.Runs)
	}
	from := strings.Join(l.From, ",")
	if from == "" {
		from = "-"
	}
	return []string{l.ID, kind, dashString(l.Actor), l.Started.Local().Format("2006-01-02 15:04"), from + "→" + l.To,
		fmt.Sprint(l.Moved), fmt.Sprint(l.Failed), fmt.Sprint(l.Skipped), rtoText(l.Summary), string(l.Outcome)}
}

func filterSuffix(since time.Duration, site string) string {
	var parts []string
	if since > 0 {
		parts = append(parts, "in the last "+since.String())
	}
	if site != "" {
		parts = append(parts, "from or to "+site)
	}
	if len(parts) == 0 {
		return ""
	}
	return " " + strings.Join(parts, " ")
}

// rtoText is the slowest tier's RTO, against its objective when one was given.
func rtoText(s record.Summary) string {
	rto := "-"
	if s.RTOSeconds > 0 {
		rto = time.Duration(s.RTOSeconds * float64(time.Second)).Round(time.Second).String()
	}
	if s.ObjectiveSeconds > 0 {
		rto += "/" + time.Duration(s.ObjectiveSeconds*float64(time.Second)).Round(time.Second).String()
	}
	if s.Met != nil && !*s.Met {
		rto += " MISSED"
	}
	return rto
}

func dashString(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func recordStore(o *Options, ns string) (*record.Store, error) {
	c, err := o.Factory.Clients()
	if err != nil {
		return nil, err
	}
	return &record.Store{Kube: c.Kube, Namespace: ns}, nil
}

// recordsError names the fix for what keeps a user from the records.
func recordsError(err error, ns string) error {
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("you may not read the move records in namespace %s (%v): bind the sitefail-records-reader Role of deploy/rbac there", ns, err)
	}
	return err
}

type reportOptions struct {
	*Options
	lockNamespace string
	output        string
	html          bool
	verify        bool
}

func newReportCommand(o *Options) *cobra.Command {
	ro := &reportOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "report [ID]",
		Short: "Write a move's record as Markdown, JSON or a self-contained HTML timeline",
		Long: `Writes the record of one move (the latest when no ID is given; see 'kubectl sitefail
history') to stdout:
  - Markdown (the default), with a mermaid gantt chart of its tiers and waves that GitHub
    and GitLab draw: ready to paste into an incident ticket;
  - JSON or YAML: the MoveRecord itself (apiVersion sitefail.io/v1alpha1);
  - HTML (--html or -o html): one file with an SVG timeline, a row per VM grouped by
    tier, coloured by action, with its time to Ready. It loads nothing from the network.

--verify recomputes the SHA-256 of the record's canonical JSON and compares it with the
hash the move wrote on the ConfigMap and stated in an Event: a record edited since
fails. The report is written either way, with the verdict.

Exit codes: 0 done, 1 error (no record, no access), 6 --verify found the record edited.`,
		Example: `  kubectl sitefail report > incident.md
  kubectl sitefail report --html > failover.html
  kubectl sitefail report sf-20261126-091203-a1b2c3 -o json
  kubectl sitefail report sf-20261126-091203-a1b2c3 --verify`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ro.html {
				if ro.output != "" && ro.output != "html" {
					return fmt.Errorf("--html and -o %s disagree: pass one of them", ro.output)
				}
				ro.output = "html"
			}
			if err := outputFormat(ro.output, "", "markdown", "md", "json", "yaml", "html"); err != nil {
				return err
			}
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			return ro.run(cmd.Context(), id)
		},
	}
	f := cmd.Flags()
	f.StringVar(&ro.lockNamespace, "lock-namespace", lock.DefaultNamespace, "namespace the records are kept in (the moves' --lock-namespace)")
	f.StringVarP(&ro.output, "output", "o", "", "output format: markdown (default), json, yaml or html")
	f.BoolVar(&ro.html, "html", false, "write a self-contained HTML page (the same as -o html)")
	f.BoolVar(&ro.verify, "verify", false, "check that the record is as the move wrote it (SHA-256 against its ConfigMap and Event)")
	return cmd
}

func (ro *reportOptions) run(ctx context.Context, id string) error {
	store, err := recordStore(ro.Options, ro.lockNamespace)
	if err != nil {
		return err
	}
	if id == "" {
		latest, err := store.Latest(ctx)
		if err != nil {
			return recordsError(err, ro.lockNamespace)
		}
		id = latest.Record.ID
	}
	var verdict *record.Verification
	var st *record.Stored
	if ro.verify {
		verdict, st, err = store.Verify(ctx, id)
	} else {
		st, err = store.Get(ctx, id)
	}
	if err != nil {
		return recordsError(err, ro.lockNamespace)
	}
	r := st.Record
	if verdict != nil {
		r.Integrity.Verified, r.Integrity.Detail = &verdict.OK, verdict.Detail
	}
	if err := Render(ro.Out, ro.output, r.Title(), r); err != nil {
		return err
	}
	if verdict == nil {
		return nil
	}
	if !verdict.OK {
		return &ExitCodeError{Code: ExitEdited, Err: fmt.Errorf("record %s was changed since the move wrote it: %s", r.ID, verdict.Detail)}
	}
	fmt.Fprintf(ro.ErrOut, "Verified: %s (sha256 %s).\n", verdict.Detail, verdict.Stored)
	return nil
}

// Render writes records in a report format; drill --report writes its legs through it.
func Render(w io.Writer, format, title string, recs ...*record.Record) error {
	switch format {
	case "", "markdown", "md":
		for i, r := range recs {
			if i > 0 {
				fmt.Fprintln(w)
			}
			if err := record.Markdown(w, r, 1); err != nil {
				return err
			}
		}
		return nil
	case "html":
		return record.HTML(w, title, recs...)
	case "json", "yaml":
		if len(recs) == 1 {
			return printStructured(w, format, recs[0])
		}
		return printStructured(w, format, recs)
	}
	return errors.New("unknown report format " + format)
}
