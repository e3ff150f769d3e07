package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
	"github.com/sitefail/kubectl-sitefail/pkg/siteloss"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

// SiteReport is one site in `sites -o json|yaml`.
type SiteReport struct {
	Site   string `json:"site"`
	Health string `json:"health"`
	Nodes  struct {
		Total    int `json:"total"`
		Ready    int `json:"ready"`
		NotReady int `json:"notReady"`
		Unknown  int `json:"unknown"`
		Cordoned int `json:"cordoned"`
		// KubeVirtUnschedulable counts Ready nodes without kubevirt.io/schedulable=true.
		KubeVirtUnschedulable int `json:"kubevirtUnschedulable"`
	} `json:"nodes"`
	AllocatableCPUMilli    int64           `json:"allocatableCPUMillis"`
	AllocatableMemoryBytes int64           `json:"allocatableMemoryBytes"`
	RequestedCPUMilli      int64           `json:"requestedCPUMillis"`
	RequestedMemoryBytes   int64           `json:"requestedMemoryBytes"`
	VMs                    int             `json:"vms"`
	VMsByTier              map[string]int  `json:"vmsByTier"`
	NodeList               []snapshot.Node `json:"nodeList"`
	// Witness says why the site is a witness site, never a move's target; "" for a
	// data site.
	Witness string `json:"witness,omitempty"`
	// EtcdIfLost is the etcd arithmetic for the loss of the site (nil when the etcd
	// pods were not read).
	EtcdIfLost *siteloss.Quorum `json:"etcdIfLost,omitempty"`
	// RemediationIfLost says whether medik8s remediates the site's nodes if it is lost.
	RemediationIfLost *SiteRemediation `json:"remediationIfLost,omitempty"`
	// Fencing is the evidence that each node of a site with a node not Ready runs
	// nothing (a failover's proof, issue 21), judged as a move judges it.
	Fencing *fencing.Site `json:"fencing,omitempty"`
}

// SiteRemediation is the NodeHealthChecks' answer to the loss of one site.
type SiteRemediation struct {
	// Automatic is "will", "will not", "partly" or "unknown" (NHCs not read).
	Automatic        string                 `json:"automatic"`
	NodeHealthChecks []siteloss.Remediation `json:"nodeHealthChecks"`
	Unread           string                 `json:"unread,omitempty"`
}

// Unlabeled is the pseudo-site of nodes that carry no site label.
const Unlabeled = "(unlabeled)"

// SitesReport builds the per-site view of a snapshot. VMs count where they run, or at
// their home site when stopped.
func SitesReport(s *snapshot.Snapshot) []SiteReport {
	bySite := map[string]*SiteReport{}
	get := func(site string) *SiteReport {
		if site == "" {
			site = Unlabeled
		}
		r := bySite[site]
		if r == nil {
			r = &SiteReport{Site: site, VMsByTier: map[string]int{}, NodeList: []snapshot.Node{}}
			bySite[site] = r
		}
		return r
	}
	for _, n := range s.Nodes {
		r := get(n.Site)
		r.Nodes.Total++
		switch n.State {
		case snapshot.NodeReady:
			r.Nodes.Ready++
		case snapshot.NodeNotReady:
			r.Nodes.NotReady++
		default:
			r.Nodes.Unknown++
		}
		if n.Unschedulable {
			r.Nodes.Cordoned++
		}
		if n.State == snapshot.NodeReady && n.KubeVirtUnschedulable {
			r.Nodes.KubeVirtUnschedulable++
		}
		r.AllocatableCPUMilli += n.CPUMilli
		r.AllocatableMemoryBytes += n.MemoryBytes
		r.NodeList = append(r.NodeList, n)
	}
	for _, vm := range s.VMs {
		site := vm.HomeSite
		if vm.Instance != nil && vm.CurrentSite != "" {
			site = vm.CurrentSite
			r := get(site)
			r.RequestedCPUMilli += vm.CPUMilli
			r.RequestedMemoryBytes += vm.MemoryBytes
		}
		if site == "" {
			continue
		}
		r := get(site)
		r.VMs++
		r.VMsByTier[tierString(vm.Tier)]++
	}
	out := make([]SiteReport, 0, len(bySite))
	for _, r := range bySite {
		if r.Site != Unlabeled {
			r.Witness = s.Witness(r.Site)
			if s.Etcd != nil {
				q := siteloss.QuorumIfLost(s, r.Site)
				r.EtcdIfLost = &q
			}
			if s.NodeHealthChecks != nil {
				rs := siteloss.RemediationIfLost(s, r.Site)
				if rs == nil {
					rs = []siteloss.Remediation{}
				}
				r.RemediationIfLost = &SiteRemediation{Automatic: siteloss.Summary(s, rs), NodeHealthChecks: rs, Unread: s.NodeHealthChecks.Unread}
			}
		}
		if r.Site != Unlabeled && r.Nodes.Ready < r.Nodes.Total {
			fs := s.SiteFencing(r.Site)
			r.Fencing = &fs
		}
		switch {
		case r.Site == Unlabeled:
			r.Health = "-"
		case r.Nodes.Ready == 0:
			r.Health = "down"
		case r.Nodes.Ready < r.Nodes.Total:
			r.Health = "degraded"
		default:
			r.Health = "healthy"
		}
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		if (out[i].Site == Unlabeled) != (out[j].Site == Unlabeled) {
			return out[j].Site == Unlabeled
		}
		return out[i].Site < out[j].Site
	})
	return out
}

type sitesOptions struct {
	*Options
	output string
}

func newSitesCommand(o *Options) *cobra.Command {
	so := &sitesOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "sites",
		Short: "Show each site's nodes, health, capacity and VMs per tier",
		Example: `  kubectl sitefail sites
  kubectl sitefail sites -o wide
  kubectl sitefail sites label --site DR worker-5 worker-6`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := outputFormat(so.output, "", "wide", "json", "yaml"); err != nil {
				return err
			}
			return so.run(cmd.Context())
		},
	}
	cmd.Flags().StringVarP(&so.output, "output", "o", "", "output format: wide, json or yaml")
	cmd.AddCommand(newSitesLabelCommand(o))
	return cmd
}

func (so *sitesOptions) run(ctx context.Context) error {
	s, _, err := so.readSnapshot(ctx, "", "")
	if err != nil {
		return err
	}
	rep := SitesReport(s)
	if so.output == "json" || so.output == "yaml" {
		return printStructured(so.Out, so.output, map[string]any{"siteLabel": so.Keys.Site, "tierLabel": so.Keys.Tier, "witnessSites": so.Keys.Witnesses, "etcd": s.Etcd, "sites": rep})
	}
	if len(s.SiteNames()) == 0 {
		fmt.Fprintf(so.ErrOut, "No node carries the site label %s. Label them with 'kubectl sitefail sites label --site NAME NODE...'.\n", so.Keys.Site)
	}
	var rows [][]string
	for _, r := range rep {
		row := []string{r.Site, r.Health,
			fmt.Sprintf("%d/%d", r.Nodes.Ready, r.Nodes.Total),
			fmt.Sprint(r.Nodes.NotReady), fmt.Sprint(r.Nodes.Unknown), fmt.Sprint(r.Nodes.Cordoned),
			fmt.Sprintf("%s/%s", cores(r.RequestedCPUMilli), cores(r.AllocatableCPUMilli)),
			fmt.Sprintf("%s/%s", plan.HumanBytes(r.RequestedMemoryBytes), plan.HumanBytes(r.AllocatableMemoryBytes)),
			fmt.Sprint(r.VMs), tiersSummary(r.VMsByTier)}
		if so.output == "wide" {
			row = append(row, siteLossColumns(r)...)
		}
		rows = append(rows, row)
	}
	header := []string{"SITE", "HEALTH", "READY", "NOTREADY", "UNKNOWN", "CORDONED", "CPU(REQ/ALLOC)", "MEMORY(REQ/ALLOC)", "VMS", "TIERS"}
	if so.output == "wide" {
		header = append(header, "ROLE", "ETCD", "QUORUM-IF-LOST", "REMEDIATED-IF-LOST")
	}
	if err := table(so.Out, header, rows); err != nil {
		return err
	}
	for _, r := range rep {
		if n := r.Nodes.KubeVirtUnschedulable; n > 0 {
			fmt.Fprintf(so.Out, "Site %s: %d Ready node(s) without kubevirt.io/schedulable=true: KubeVirt starts no VM there (virt-handler down, or just came back).\n", r.Site, n)
		}
	}
	printSiteLossNotes(so.Out, s, rep)
	printFencingNotes(so.Out, rep)
	if so.output != "wide" {
		return nil
	}
	fmt.Fprintln(so.Out)
	rows = rows[:0]
	for _, r := range rep {
		for _, n := range r.NodeList {
			state := string(n.State)
			if n.Unschedulable {
				state += ",SchedulingDisabled"
			}
			if n.KubeVirtUnschedulable {
				state += ",KubeVirtUnschedulable"
			}
			rows = append(rows, []string{n.Name, r.Site, state, cores(n.CPUMilli), plan.HumanBytes(n.MemoryBytes), n.Fence.LeaseAge(time.Now()), nodeFencing(r.Fencing, n.Name)})
		}
	}
	return table(so.Out, []string{"NODE", "SITE", "STATUS", "CPU", "MEMORY", "LEASE-AGE", "FENCING"}, rows)
}

// siteLossColumns are the wide table's ROLE, ETCD (members on the site / all),
// QUORUM-IF-LOST and REMEDIATED-IF-LOST; "-" where nothing was read or nothing applies.
func siteLossColumns(r SiteReport) []string {
	if r.Site == Unlabeled {
		return []string{"-", "-", "-", "-"}
	}
	role, etcd, quorum, remediated := "data", "-", "-", "-"
	if r.Witness != "" {
		role = "witness"
	}
	if q := r.EtcdIfLost; q != nil && q.Known {
		etcd = fmt.Sprintf("%d/%d", q.Members, q.Total)
		quorum = map[bool]string{true: "lost", false: "kept"}[q.Lost]
	} else if q != nil && q.Unread != "" {
		etcd, quorum = "unread", "unknown"
	}
	if rem := r.RemediationIfLost; rem != nil {
		remediated = rem.Automatic
	}
	return []string{role, etcd, quorum, remediated}
}

// printSiteLossNotes says, under the table, which sites are witnesses, which site's loss
// costs the API server its quorum, and which site's loss no NodeHealthCheck remediates
// (only where the cluster has NodeHealthChecks: without them nothing is remediated
// automatically, and saying so for every site is noise).
func printSiteLossNotes(w io.Writer, s *snapshot.Snapshot, rep []SiteReport) {
	for _, r := range rep {
		if r.Witness != "" {
			fmt.Fprintf(w, "Site %s: witness (%s): never a move's target.\n", r.Site, r.Witness)
		}
	}
	for _, site := range s.Keys.Witnesses {
		if !s.HasSite(site) {
			fmt.Fprintf(w, "Witness site %s (declared) has no node.\n", site)
		}
	}
	if s.Etcd != nil && s.Etcd.Unread != "" {
		fmt.Fprintf(w, "etcd members not counted: %s.\n", s.Etcd.Unread)
	}
	for _, r := range rep {
		if q := r.EtcdIfLost; q != nil && q.Known && q.Lost {
			d := q.Describe(r.Site)
			fmt.Fprintf(w, "%s.\n", strings.ToUpper(d[:1])+d[1:])
		}
	}
	if s.NodeHealthChecks != nil && s.NodeHealthChecks.Unread != "" {
		fmt.Fprintf(w, "NodeHealthChecks not read: %s.\n", s.NodeHealthChecks.Unread)
	}
	if s.NodeHealthChecks == nil || len(s.NodeHealthChecks.Objects) == 0 {
		return
	}
	for _, r := range rep {
		rem := r.RemediationIfLost
		if rem == nil || r.Witness != "" {
			continue
		}
		var why []string
		for _, n := range rem.NodeHealthChecks {
			why = append(why, "NodeHealthCheck "+n.NodeHealthCheck+": "+n.Reason)
		}
		switch rem.Automatic {
		case "will":
			fmt.Fprintf(w, "Site %s: its loss will be remediated automatically.\n", r.Site)
		case "will not":
			if len(why) == 0 {
				why = append(why, "no NodeHealthCheck selects its nodes")
			}
			fmt.Fprintf(w, "Site %s: its loss will not be remediated automatically (%s).\n", r.Site, strings.Join(why, "; "))
		case "partly":
			fmt.Fprintf(w, "Site %s: its loss will be remediated automatically only in part (%s).\n", r.Site, strings.Join(why, "; "))
		}
	}
}

// nodeFencing is a node's strongest proof, for the wide node table: "-" on a site whose
// nodes are all Ready (nothing to prove) or for a node with no evidence.
func nodeFencing(fs *fencing.Site, node string) string {
	if fs == nil {
		return "-"
	}
	ev, _ := fs.Node(node)
	return ev.Summary()
}

// printFencingNotes says, for each site with no Ready node, whether a failover from it
// rests on evidence or needs the typed confirmation, and which nodes lack proof.
func printFencingNotes(w io.Writer, rep []SiteReport) {
	for _, r := range rep {
		if r.Fencing == nil || r.Nodes.Ready > 0 {
			continue
		}
		if r.Fencing.Partition != "" {
			fmt.Fprintf(w, "Site %s may be partitioned rather than powered off: %s.\n", r.Site, r.Fencing.Partition)
		}
		if r.Fencing.Proven {
			fmt.Fprintf(w, "Site %s is down and every node of it is fenced: a failover needs no --confirm-site-down (each release reads the evidence again).\n", r.Site)
			continue
		}
		fmt.Fprintf(w, "Site %s is down; no fencing evidence proves %s: a failover needs --confirm-site-down=%s, or use --fence network.\n",
			r.Site, strings.Join(fencing.Unproven(r.Fencing.Nodes), ", "), r.Site)
		if len(r.Fencing.Unread) > 0 {
			fmt.Fprintf(w, "Site %s: fencing evidence not read: %s.\n", r.Site, strings.Join(r.Fencing.Unread, "; "))
		}
	}
}

func cores(milli int64) string {
	if milli%1000 == 0 {
		return fmt.Sprint(milli / 1000)
	}
	return fmt.Sprintf("%.1f", float64(milli)/1000)
}

func tiersSummary(m map[string]int) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// In the order a move runs them: untiered last, as --all moves them.
	tier := func(k string) int { n, _ := strconv.Atoi(k); return n } // "-" is untiered, 0
	sort.Slice(keys, func(i, j int) bool { return selector.TierLess(tier(keys[i]), tier(keys[j])) })
	parts := make([]string, len(keys))
	for i, k := range keys {
		name := "t" + k
		if k == "-" {
			name = "untiered"
		}
		parts[i] = fmt.Sprintf("%s:%d", name, m[k])
	}
	return strings.Join(parts, " ")
}

type sitesLabelOptions struct {
	*Options
	site      string
	selector  string
	overwrite bool
	dryRun    string
	nodes     []string
}

func newSitesLabelCommand(o *Options) *cobra.Command {
	lo := &sitesLabelOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "label --site SITE (NODE... | -l SELECTOR)",
		Short: "Put nodes into a site by setting their site label",
		Long: `Sets the site label on nodes. A node that already belongs to another site is moved only
with --overwrite, because moving a node between sites changes where VMs may run.
Every node is checked before any is changed.`,
		Example: `  kubectl sitefail sites label --site Primary worker-1 worker-2
  kubectl sitefail sites label --site DR -l rack=dr
  kubectl sitefail sites label --site DR worker-3 --overwrite --dry-run`,
		RunE: func(cmd *cobra.Command, args []string) error {
			lo.nodes = args
			if err := lo.validate(); err != nil {
				return err
			}
			return lo.run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&lo.site, "site", "", "site to put the nodes in (required)")
	cmd.Flags().StringVarP(&lo.selector, "selector", "l", "", "label the nodes matching this selector")
	cmd.Flags().BoolVar(&lo.overwrite, "overwrite", false, "allow moving nodes that belong to another site")
	cmd.Flags().StringVar(&lo.dryRun, "dry-run", "none", `"none", "client" (print only) or "server" (send with dryRun)`)
	cmd.Flags().Lookup("dry-run").NoOptDefVal = "client"
	return cmd
}

func (lo *sitesLabelOptions) validate() error {
	if lo.site == "" {
		return fmt.Errorf("--site is required: name the site to put the nodes in, e.g. --site DR")
	}
	if errs := validateLabelValue(lo.site); errs != "" {
		return fmt.Errorf("--site %q is not a valid label value: %s", lo.site, errs)
	}
	if (len(lo.nodes) == 0) == (lo.selector == "") {
		return fmt.Errorf("name nodes as arguments or select them with -l, not both and not neither")
	}
	if lo.selector != "" {
		if _, err := labels.Parse(lo.selector); err != nil {
			return fmt.Errorf("-l %q: %v", lo.selector, err)
		}
	}
	switch lo.dryRun {
	case "none", "client", "server":
	default:
		return fmt.Errorf(`--dry-run %q: want "none", "client" or "server"`, lo.dryRun)
	}
	return nil
}

func (lo *sitesLabelOptions) run(ctx context.Context) error {
	c, err := lo.Factory.Clients()
	if err != nil {
		return err
	}
	var nodes []corev1.Node
	if lo.selector != "" {
		list, err := c.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: lo.selector})
		if err != nil {
			return clusterError(err, c)
		}
		if len(list.Items) == 0 {
			return fmt.Errorf("no node matches -l %s", lo.selector)
		}
		nodes = list.Items
	} else {
		for _, name := range lo.nodes {
			n, err := c.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("node %s: %w", name, clusterError(err, c))
			}
			nodes = append(nodes, *n)
		}
	}
	// Preflight every node before the first write.
	var conflicts []string
	for _, n := range nodes {
		if cur := n.Labels[lo.Keys.Site]; cur != "" && cur != lo.site && !lo.overwrite {
			conflicts = append(conflicts, fmt.Sprintf("%s (site %s)", n.Name, cur))
		}
	}
	if len(conflicts) > 0 {
		return fmt.Errorf("refusing to move nodes to site %s that belong to another site: %s; pass --overwrite to move them (nothing was changed)", lo.site, strings.Join(conflicts, ", "))
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{lo.Keys.Site: lo.site}}})
	suffix := ""
	switch lo.dryRun {
	case "client":
		suffix = " (dry run)"
	case "server":
		suffix = " (server dry run)"
	}
	for _, n := range nodes {
		if n.Labels[lo.Keys.Site] == lo.site {
			fmt.Fprintf(lo.Out, "node/%s already in site %s\n", n.Name, lo.site)
			continue
		}
		if lo.dryRun != "client" {
			opts := metav1.PatchOptions{}
			if lo.dryRun == "server" {
				opts.DryRun = []string{metav1.DryRunAll}
			}
			if _, err := c.Kube.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, patch, opts); err != nil {
				return fmt.Errorf("label node %s: %w", n.Name, clusterError(err, c))
			}
		}
		fmt.Fprintf(lo.Out, "node/%s labeled %s=%s%s\n", n.Name, lo.Keys.Site, lo.site, suffix)
	}
	return nil
}
