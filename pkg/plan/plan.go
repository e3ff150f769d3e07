// Package plan decides, as a pure function of a snapshot and a request, which VMs move,
// in what order, by which action, and what stands in the way. `plan` prints the result
// and `move` executes exactly it.
package plan

import (
	"fmt"
	"github.com/sitefail/kubectl-sitefail/pkg/journal"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

// APIVersion and Kind identify the documented, stable -o json|yaml schema of a plan.
const (
	APIVersion = "sitefail.io/v1alpha1"
	Kind       = "Plan"
)

// Mode chooses how running VMs are moved.
type Mode string

const (
	ModeAuto    Mode = "auto"
	ModeMigrate Mode = "migrate"
	ModeRestart Mode = "restart"
)

// ParseMode validates a --mode value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAuto, ModeMigrate, ModeRestart:
		return m, nil
	}
	return "", fmt.Errorf("--mode %q: want one of auto, migrate, restart", s)
}

// Action is what happens to one VM.
type Action string

const (
	// ActionPatch changes only the template: the VM is stopped, or already runs on the target.
	ActionPatch Action = "patch-only"
	// ActionMigrate patches, waits for LiveUpdate to carry the selector into the VMI, then live-migrates.
	ActionMigrate Action = "live-migrate"
	// ActionRestart patches, then restarts through the restart subresource.
	ActionRestart Action = "restart"
	// ActionFailover patches, then releases the VM from its dead site so KubeVirt recreates it.
	ActionFailover Action = "failover"
	// ActionStart starts a VM released by an interrupted failover: its runStrategy
	// (Manual) keeps KubeVirt from starting it again by itself.
	ActionStart Action = "start"
	// ActionWait resumes a step an interrupted move began (a restart or release whose new
	// instance is still on its way): wait until it is Ready on the target, acting again
	// on nothing.
	ActionWait Action = "wait"
	// ActionSkip leaves the VM alone: it is already Ready on the target, or stopped there.
	ActionSkip Action = "skip"
)

// Starts reports whether the action starts the VM on the target, and so is throttled:
// a VM still booting from an interrupted move counts against --max-in-flight and holds
// its tier's barrier like one this move starts.
func (a Action) Starts() bool {
	return a == ActionMigrate || a == ActionRestart || a == ActionFailover || a == ActionStart || a == ActionWait
}

// Request is what the operator asked for.
type Request struct {
	To   string `json:"to"`
	From string `json:"from,omitempty"`
	// Tiers selects a tier range; All selects every VM; VMs names namespace/name keys.
	Tiers *selector.TierRange `json:"-"`
	All   bool                `json:"all,omitempty"`
	VMs   []string            `json:"vms,omitempty"`
	Mode  Mode                `json:"mode"`
	// MaxInFlight is the throttle's batch size.
	MaxInFlight int `json:"maxInFlight"`
	// AllowGitOpsDrift moves VMs that Argo CD or Flux manage, which they will revert at
	// their next sync unless the delta is committed or the sync paused.
	AllowGitOpsDrift bool `json:"allowGitOpsDrift,omitempty"`
	// ExpectedStart is how long one VM takes from its start (migration, restart,
	// release) to Ready on the target, for the RTO estimate (0: DefaultExpectedStart).
	ExpectedStart time.Duration `json:"expectedStart,omitempty"`
}

// DefaultExpectedStart is the estimate's time per start when the operator gives none.
const DefaultExpectedStart = time.Minute

// TierEstimate is a tier's estimated RTO: the waves the throttle and KubeVirt's
// migration limit allow, each taking the expected start time.
type TierEstimate struct {
	Tier       int     `json:"tier"`
	Starts     int     `json:"starts"`
	Migrations int     `json:"migrations"`
	Waves      int     `json:"waves"`
	RTOSeconds float64 `json:"rtoSeconds"`
}

// Issue is a blocker or a warning.
type Issue struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// VM is namespace/name when the issue concerns one VM.
	VM string `json:"vm,omitempty"`
	// Overridable blockers may be waived with --force.
	Overridable bool `json:"overridable,omitempty"`
}

// Step is one VM's part of the plan.
type Step struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Tier      int    `json:"tier"`
	// From is where the VM runs now, or its home site when it is stopped.
	From        string                               `json:"from"`
	To          string                               `json:"to"`
	Action      Action                               `json:"action"`
	Reason      string                               `json:"reason"`
	RunStrategy kubevirtv1.VirtualMachineRunStrategy `json:"runStrategy"`
	// UID is the VM's: every write to it is preconditioned on it.
	UID string `json:"uid,omitempty"`
	// VMIUID is the instance the action applies to; resume uses it to avoid acting twice.
	VMIUID string `json:"vmiUID,omitempty"`
	// Journal is the VM's journal when an earlier move towards To did not finish: its
	// move id (a migration it created is followed, no other) and, when that step replaces
	// the instance (a restart or a release), the instance it replaced.
	JournalMoveID string `json:"journalMoveID,omitempty"`
	JournalVMI    string `json:"journalVMI,omitempty"`
	Node          string `json:"node,omitempty"`
	// NodeGone: the instance's node is not in the cluster (deleted), so nothing shows
	// whether it still runs there; it is released only as a failover of From, with the
	// same confirmation.
	NodeGone bool `json:"nodeGone,omitempty"`
	// ReleasedFrom is the site an earlier failover released the instance from, or a dead
	// site where an earlier instance may still run, for a step that starts the VM:
	// starting it anywhere else is guarded like a release.
	ReleasedFrom string `json:"releasedFrom,omitempty"`
	// Attempts counts the failed tries the journal records for this VM.
	Attempts int `json:"attempts,omitempty"`
	// Recreated: a patch-only step of a VM whose instance is over or going, which
	// KubeVirt recreates by itself (Always, RerunOnFailure) from the patched template:
	// that is a start on the target, so it is throttled, holds the tier barrier and is
	// waited for.
	Recreated bool `json:"recreated,omitempty"`
	// StaysDown: a failover of a VM that nothing starts again once released (Halted,
	// Once, or a Manual or RerunOnFailure VM whose instance was stopping with no start
	// request pending: see staysDown). The step ends when the released instance is over;
	// it starts nothing, so it is not throttled as a start.
	StaysDown bool `json:"staysDown,omitempty"`
	// StoppedByMove names the move whose step this VM ran into, and that ended its
	// instance on the target (a migration whose target never ran it): a Once VM, which
	// KubeVirt neither starts again nor lets anyone start. A blocker names the fix.
	StoppedByMove string `json:"stoppedByMove,omitempty"`
	// StartPending: KubeVirt holds a start request for the VM (a restart in progress):
	// it starts the VM by itself once the released instance is gone, so a failover of a
	// Manual VM does not start it a second time.
	StartPending bool  `json:"startPending,omitempty"`
	CPUMilli     int64 `json:"requestCPUMillis"`
	MemoryBytes  int64 `json:"requestMemoryBytes"`
	// FallbackRestart: a migration under --mode auto of a VM that KubeVirt lets restart
	// (Always, RerunOnFailure, Manual); if KubeVirt fails the migration after placing
	// its target pod, the step restarts the VM onto the target instead of failing. A
	// target pod never scheduled says the target cannot take it: no restart then.
	FallbackRestart bool `json:"fallbackRestart,omitempty"`
	// Paused: a migration of (or a wait for) a guest a user paused, which a migration
	// keeps paused. KubeVirt's Ready stays False until someone unpauses it, so the step
	// is done when the instance runs on the target, still paused, as the operator left it.
	Paused bool `json:"paused,omitempty"`
	// OverheadBytes is KubeVirt's addition to the launcher's memory request.
	OverheadBytes int64 `json:"memoryOverheadBytes,omitempty"`
}

// Key returns namespace/name.
func (s *Step) Key() string { return s.Namespace + "/" + s.Name }

// Starts reports whether the step starts the VM on the target: its action does, or
// KubeVirt recreates it from the patched template.
func (s *Step) Starts() bool { return (s.Action.Starts() || s.Recreated) && !s.StaysDown }

// Batch is a group of starts the throttle releases together.
type Batch struct {
	Tier int      `json:"tier"`
	VMs  []string `json:"vms"`
}

// Summary counts the plan.
type Summary struct {
	Selected int            `json:"selected"`
	ByAction map[Action]int `json:"byAction"`
	// Tiers lists the tiers in execution order; 0 stands for untiered VMs.
	Tiers []int `json:"tiers"`
}

// Capacity compares what the target site has free with what the move will start there.
type Capacity struct {
	Site            string `json:"site"`
	FreeCPUMilli    int64  `json:"freeCPUMillis"`
	FreeMemoryBytes int64  `json:"freeMemoryBytes"`
	NeedCPUMilli    int64  `json:"needCPUMillis"`
	NeedMemoryBytes int64  `json:"needMemoryBytes"`
}

// Plan is the whole decision. Its JSON form is the stable schema of `plan -o json`.
type Plan struct {
	APIVersion  string      `json:"apiVersion"`
	Kind        string      `json:"kind"`
	Created     metav1.Time `json:"created"`
	SiteLabel   string      `json:"siteLabel"`
	TierLabel   string      `json:"tierLabel"`
	Request     Request     `json:"request"`
	Selection   string      `json:"selection"`
	SourceSites []string    `json:"sourceSites"`
	Steps       []Step      `json:"steps"`
	Batches     []Batch     `json:"batches"`
	// Estimate is each tier's estimated RTO, at Request.ExpectedStart per start.
	Estimate []TierEstimate `json:"estimate"`
	Capacity Capacity       `json:"capacity"`
	Blockers []Issue        `json:"blockers"`
	Warnings []Issue        `json:"warnings"`
	// Notes say what the plan found that asks nothing of the operator now (a source
	// site's loss would be remediated automatically, say).
	Notes   []Issue `json:"notes,omitempty"`
	Summary Summary `json:"summary"`
	// Fencing is the fencing evidence of each dead site the plan releases VMs from.
	Fencing map[string]fencing.Site `json:"fencing,omitempty"`
}

// ProvenDown reports whether every node of the dead site has strong fencing evidence:
// its failover needs no typed confirmation, and each release checks the evidence again.
func (p *Plan) ProvenDown(site string) bool {
	return p.Fencing[site].Proven
}

// Blocked reports whether any blocker stands, ignoring overridable ones when force is set.
func (p *Plan) Blocked(force bool) bool {
	for _, b := range p.Blockers {
		if !force || !b.Overridable {
			return true
		}
	}
	return false
}

// Work reports whether any step changes something.
func (p *Plan) Work() bool {
	for _, s := range p.Steps {
		if s.Action != ActionSkip {
			return true
		}
	}
	return false
}

// judgeFencing judges, and records in p.Fencing, the evidence for every node of a dead site, and for the deleted
// nodes its failover steps release from: a node gone from the cluster is never proven
// (nothing shows that it stayed down since a fence), so its site needs the typed
// confirmation (H2).
func (p *Plan) judgeFencing(s *snapshot.Snapshot, site string) fencing.Site {
	var nodes []fencing.Node
	seen := map[string]bool{}
	for _, n := range s.Nodes {
		if n.Site == site {
			nodes = append(nodes, n.Fence)
			seen[n.Name] = true
		}
	}
	for _, st := range p.Steps {
		if st.Action == ActionFailover && st.From == site && st.Node != "" && !seen[st.Node] {
			seen[st.Node] = true
			nodes = append(nodes, fencing.Node{Name: st.Node})
		}
	}
	if p.Fencing == nil {
		p.Fencing = map[string]fencing.Site{}
	}
	p.Fencing[site] = fencing.JudgeSite(nodes, s.Fencing, s.FencingUnread)
	return p.Fencing[site]
}

// strongest names the proof each node rests on, for the plan's message.
func strongest(fs fencing.Site) string {
	var out []string
	for _, e := range fs.Nodes {
		if len(e.Proofs) > 0 {
			out = append(out, e.Node+": "+e.Proofs[0].Kind+" "+e.Proofs[0].Name)
		}
	}
	return strings.Join(out, ", ")
}

// GuardedSites lists the sites that the plan's starts of released VMs are guarded by
// (the sites they were released from), apart from the sites it fails over: a start
// anywhere else is a release too, and needs the same proof that the site is down.
func (p *Plan) GuardedSites() []string {
	fails := map[string]bool{}
	for _, site := range p.NeedsFailover() {
		fails[site] = true
	}
	seen := map[string]bool{}
	var out []string
	for _, st := range p.Steps {
		if st.ReleasedFrom != "" && st.ReleasedFrom != st.To && !fails[st.ReleasedFrom] && !seen[st.ReleasedFrom] {
			seen[st.ReleasedFrom] = true
			out = append(out, st.ReleasedFrom)
		}
	}
	sort.Strings(out)
	return out
}

// NeedsFailover lists the dead sites the plan releases VMs from.
func (p *Plan) NeedsFailover() []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range p.Steps {
		if s.Action == ActionFailover && !seen[s.From] {
			seen[s.From] = true
			out = append(out, s.From)
		}
	}
	sort.Strings(out)
	return out
}

// SelectionError is bad input detected while planning: unknown site, no VM matched.
type SelectionError struct{ Msg string }

func (e *SelectionError) Error() string { return e.Msg }

// Build computes the plan. It reads nothing but its arguments.
func Build(s *snapshot.Snapshot, req Request) (*Plan, error) {
	if err := validate(s, req); err != nil {
		return nil, err
	}
	p := &Plan{
		APIVersion: APIVersion, Kind: Kind,
		SiteLabel: s.Keys.Site, TierLabel: s.Keys.Tier,
		Request: req, Selection: describeSelection(req),
		Steps: []Step{}, Batches: []Batch{}, Blockers: []Issue{}, Warnings: []Issue{},
		Summary: Summary{ByAction: map[Action]int{}},
	}

	selected, err := SelectVMs(s, req)
	if err != nil {
		return nil, err
	}

	if why := s.Witness(req.To); why != "" {
		p.Blockers = append(p.Blockers, Issue{Code: "WitnessTarget",
			Message: fmt.Sprintf("site %s is a witness site (%s): it holds a quorum witness or an arbiter, not VMs; move to a data site with --to (%s)%s", req.To, why, listOrNone(s.DataSites()), undeclare(s, req.To, why))})
	}
	targetNodes := targetNodes(s, req.To)
	if len(targetNodes) == 0 {
		p.Blockers = append(p.Blockers, Issue{Code: "NoReadyTargetNode",
			Message: fmt.Sprintf("site %s has no Ready node that KubeVirt schedules on (cordoned, or without kubevirt.io/schedulable=true: its virt-handlers are down or just came back): nothing could start there (check 'kubectl sitefail sites -o wide')", req.To)})
	}

	sources := map[string]bool{}
	for _, vm := range selected {
		st := stepFor(s, vm, req)
		p.Steps = append(p.Steps, st)
		if st.Action != ActionSkip && st.From != "" {
			sources[st.From] = true
		}
		p.Warnings = append(p.Warnings, vmWarnings(s, vm, st, req)...)
		p.Blockers = append(p.Blockers, vmBlockers(s, vm, &st, req, targetNodes)...)
		p.Blockers = append(p.Blockers, deviceIssues(s, vm, &st, req, targetNodes)...)
		sb, sw := storageIssues(s, vm, &st, req, targetNodes)
		p.Blockers, p.Warnings = append(p.Blockers, sb...), append(p.Warnings, sw...)
		p.Steps[len(p.Steps)-1] = st
	}
	if s.NetworksUnread != "" && p.Work() {
		p.Warnings = append(p.Warnings, Issue{Code: "NetworksUnchecked",
			Message: "Multus networks were not read (" + s.NetworksUnread + "): the device resources they need (SR-IOV) were not checked against " + req.To})
	}
	if s.InstancetypesUnread != "" && usesInstancetype(selected) {
		p.Warnings = append(p.Warnings, Issue{Code: "InstancetypesUnchecked",
			Message: "instance types were not read (" + s.InstancetypesUnread + "): the placement they set (nodeSelector, dedicated CPUs, devices) was not checked against " + req.To})
	}
	if s.Storage != nil && s.Storage.Unread != "" && p.Work() {
		p.Warnings = append(p.Warnings, Issue{Code: "StorageUnchecked",
			Message: "storage was not checked (" + s.Storage.Unread + "): a volume that only the source site reaches would keep a VM from starting on " + req.To + "; grant list on persistentvolumeclaims, persistentvolumes, storageclasses and datavolumes (deploy/rbac/sitefail-viewer.yaml)"})
	}
	for site := range sources {
		p.SourceSites = append(p.SourceSites, site)
	}
	sort.Strings(p.SourceSites)

	p.Capacity = capacity(s, req.To, p.Steps)
	if p.Capacity.NeedCPUMilli > p.Capacity.FreeCPUMilli || p.Capacity.NeedMemoryBytes > p.Capacity.FreeMemoryBytes {
		p.Blockers = append(p.Blockers, Issue{Code: "InsufficientCapacity", Overridable: true,
			Message: fmt.Sprintf("site %s has %dm CPU and %s memory free on Ready nodes; the VMs this move starts there request %dm CPU and %s",
				req.To, p.Capacity.FreeCPUMilli, HumanBytes(p.Capacity.FreeMemoryBytes), p.Capacity.NeedCPUMilli, HumanBytes(p.Capacity.NeedMemoryBytes))})
	}
	if starts := slices.ContainsFunc(p.Steps, func(st Step) bool { return st.Starts() }); starts {
		p.Blockers, p.Warnings = outOfServiceTarget(s, req.To, p.Blockers, p.Warnings)
		// A remediation still at work on a target node may yet reboot or fence it under
		// the VMs the move starts there (found by review).
		// Only nodes that may take a VM: a stale remediation of a NotReady node, which
		// gets none, must not stop a failover (found by review).
		var target []fencing.Node
		for _, n := range s.Nodes {
			if n.Site == req.To && n.Schedulable() {
				target = append(target, n.Fence)
			}
		}
		if at := fencing.Unfinished(target, s.Fencing); len(at) > 0 {
			p.Blockers = append(p.Blockers, Issue{Code: "RemediationInProgress",
				Message: fmt.Sprintf("site %s has nodes under remediation, which may reboot or fence them under the VMs this move starts there: %s", req.To, strings.Join(at, "; "))})
		}
	}
	if s.RolloutStrategy == "" && countAction(p.Steps, ActionMigrate) > 0 {
		p.Warnings = append(p.Warnings, Issue{Code: "RolloutStrategyUnknown",
			Message: "could not read the KubeVirt CR (vmRolloutStrategy): live migrations assume LiveUpdate; under Stage they would wait for a selector that never reaches the instance (grant list on kubevirts.kubevirt.io, or use --mode restart)"})
	}
	for _, site := range p.GuardedSites() {
		if !s.SiteAlive(site) {
			p.judgeFencing(s, site)
		}
	}
	for _, site := range p.NeedsFailover() {
		fs := p.judgeFencing(s, site)
		if fs.Partition != "" {
			p.Warnings = append(p.Warnings, Issue{Code: "PossiblyPartitioned",
				Message: fmt.Sprintf("site %s may be partitioned rather than powered off: %s. Its VMs may still run there: fence it (Fence Agents Remediation, or --fence network) before you confirm it down", site, fs.Partition)})
		}
		if fs.Proven {
			p.Warnings = append(p.Warnings, Issue{Code: "FailoverProvenByFencing",
				Message: fmt.Sprintf("site %s has no Ready node, and every node of it is fenced (%s): its VMs will be released without --confirm-site-down, and each release reads the evidence again", site, strongest(fs))})
			continue
		}
		p.Warnings = append(p.Warnings, Issue{Code: "FailoverNeedsConfirmation",
			Message: fmt.Sprintf("site %s has no Ready node: its VMs will be released only with --confirm-site-down=%s, after you have made sure its nodes are powered off or fenced (a partitioned site still running them would corrupt their disks)", site, site)})
	}

	siteLossIssues(s, p)

	p.Batches = batches(p.Steps, req.MaxInFlight, s.MigrationsPerCluster)
	p.Estimate = estimate(p.Steps, p.Batches, req)
	p.Summary.Selected = len(p.Steps)
	seenTier := map[int]bool{}
	for _, st := range p.Steps {
		p.Summary.ByAction[st.Action]++
		if !seenTier[st.Tier] {
			seenTier[st.Tier] = true
			p.Summary.Tiers = append(p.Summary.Tiers, st.Tier)
		}
	}
	return p, nil
}

func validate(s *snapshot.Snapshot, req Request) error {
	sites := s.SiteNames()
	if req.To == "" {
		return &SelectionError{fmt.Sprintf("no target site: pass --to SITE (sites: %s)", listOrNone(sites))}
	}
	if !s.HasSite(req.To) {
		return &SelectionError{fmt.Sprintf("unknown target site %q: no node carries %s=%s (sites: %s)", req.To, s.Keys.Site, req.To, listOrNone(sites))}
	}
	if req.From != "" && !s.HasSite(req.From) {
		return &SelectionError{fmt.Sprintf("unknown source site %q (sites: %s)", req.From, listOrNone(sites))}
	}
	if req.From != "" && req.From == req.To {
		return &SelectionError{fmt.Sprintf("--from and --to are both %q: pick a different target site", req.To)}
	}
	return nil
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none: label nodes with 'kubectl sitefail sites label'"
	}
	return strings.Join(s, ", ")
}

func describeSelection(req Request) string {
	switch {
	case len(req.VMs) > 0:
		return "vms " + strings.Join(req.VMs, ",")
	case req.Tiers != nil:
		return "tier " + req.Tiers.String()
	default:
		return "all"
	}
}

// SelectVMs applies the request's selection (names, tiers, --from) to the snapshot, in
// execution order. It does not need a target.
func SelectVMs(s *snapshot.Snapshot, req Request) ([]*snapshot.VM, error) {
	var out []*snapshot.VM
	want := map[string]bool{}
	for _, k := range req.VMs {
		want[k] = false
	}
	for i := range s.VMs {
		vm := &s.VMs[i]
		switch {
		case len(req.VMs) > 0:
			if _, ok := want[vm.Key()]; !ok {
				continue
			}
			want[vm.Key()] = true
		case req.Tiers != nil:
			if vm.Tier == 0 || !req.Tiers.Contains(vm.Tier) {
				continue
			}
		}
		if req.From != "" && vm.HomeSite != req.From && vm.CurrentSite != req.From {
			continue
		}
		out = append(out, vm)
	}
	var missing []string
	for k, found := range want {
		if !found {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, &SelectionError{fmt.Sprintf("no such VM: %s (name VMs as NAME in the current namespace, or NAMESPACE/NAME)", strings.Join(missing, ", "))}
	}
	if len(out) == 0 {
		return nil, &SelectionError{fmt.Sprintf("no VM matches %s%s: check -n/-A, -l and the %s label (see 'kubectl sitefail status')", describeSelection(req), fromSuffix(req), s.Keys.Tier)}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Tier != b.Tier {
			return selector.TierLess(a.Tier, b.Tier)
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return out, nil
}

func fromSuffix(req Request) string {
	if req.From == "" {
		return ""
	}
	return " on site " + req.From
}

func stepFor(s *snapshot.Snapshot, vm *snapshot.VM, req Request) Step {
	st := Step{Namespace: vm.Namespace, Name: vm.Name, UID: string(vm.UID), Tier: vm.Tier, To: req.To,
		From: vm.HomeSite, RunStrategy: vm.RunStrategy, CPUMilli: vm.CPUMilli, MemoryBytes: vm.MemoryBytes, OverheadBytes: vm.OverheadBytes}
	inst := vm.Instance
	if inst != nil {
		st.VMIUID = string(inst.UID)
		st.Node = inst.NodeName
		// Where it runs, not where its template says: a node without a site label is
		// site "", which no confirmation covers.
		if inst.NodeName != "" {
			st.From = vm.CurrentSite
		}
	}
	running := inst != nil && !inst.Terminating && inst.Phase != string(kubevirtv1.Succeeded) && inst.Phase != string(kubevirtv1.Failed)

	j := journal.Read(vm.Annotations)
	st.Attempts = j.Attempts
	if j.Unfinished(req.To) {
		st.JournalMoveID = j.MoveID
		// Only a restart or a release replaces the instance; a migration keeps it.
		if j.Phase == journal.PhaseRestarting || j.Released() {
			st.JournalVMI = j.VMI
		}
	}
	// A guest a user paused is never Ready until unpaused: running there, paused, is
	// where the move leaves it.
	readyOnTarget := running && vm.CurrentSite == req.To && (inst.Ready || inst.PausedByUser)
	// The template already selects the target and nothing runs elsewhere: the VM is
	// there, on its way there, or stopped there.
	homed := vm.HomeSite == req.To && (!running || vm.CurrentSite == req.To || vm.CurrentSite == "")
	// An instance that is not over holds the VM on its node, shutting down or not: on a
	// dead site or a deleted node, a Terminating one may hang there or still run.
	held := inst != nil && inst.NodeName != "" && inst.Phase != string(kubevirtv1.Succeeded) && inst.Phase != string(kubevirtv1.Failed)
	// A Manual VM whose instance Failed off the target: its guest crashed, or died with
	// its site's power (v1.8.0's handler fails the instances it finds dead when the site
	// returns). Nobody stopped it, and KubeVirt starts a Manual VM only on request: moved
	// by a bare patch it would stay down while the move exits 0. But virt-controller
	// also fails an instance whose launcher pod merely left the API (a deleted Node's
	// pods, a force delete) while its guest may still run: only a Ready node, whose
	// kubelet ends whatever of it is left, proves it over; on a dead site it is a
	// failover, on a deleted node the H2 rules, on a NotReady node of a live site a
	// blocker (NodeNotReady).
	// A release of it that the journal marks stays-down was of a VM being stopped: it
	// stays down.
	failedManual := vm.RunStrategy == kubevirtv1.RunStrategyManual && inst != nil && inst.Phase == string(kubevirtv1.Failed) &&
		!inst.Terminating && !vm.StartRequested && vm.CurrentSite != req.To && !(j.Open() && j.StaysDown)
	failedManualReason := func() string {
		return fmt.Sprintf("its instance Failed on node %s (its guest crashed, or died with its site's power: nobody stopped it) and runStrategy Manual: KubeVirt will not start it again: start it on %s", dashed(inst.NodeName), req.To)
	}
	// An instance whose node is not in the cluster may still run there.
	nodeGone := (held || failedManual && inst.NodeName != "") && !s.HasNode(inst.NodeName)
	// A Manual VM that a step began on while it ran (a release, a restart, a migration)
	// and that no longer runs: only a start brings it back, wherever it goes now. KubeVirt
	// starts no Manual VM by itself, so "skip" here would leave it down.
	releasedManual := !running && vm.RunStrategy == kubevirtv1.RunStrategyManual && j.MoveID != "" && stoppedByTheMove(s, j)

	switch {
	case vm.Deleting:
		// KubeVirt starts no instance of a VM being deleted, wherever its template
		// points: a move would wait for it until --ready-timeout. Its instance, if any,
		// goes with it; one on a dead site stays until that site returns.
		st.Action, st.Reason = ActionSkip, "being deleted (deletionTimestamp set): KubeVirt starts no instance of it, so there is nothing to move"
	case nodeGone:
		st.NodeGone = true
		st.From = goneFrom(s, vm, j, req.To)
		st.Action, st.Reason = ActionFailover, fmt.Sprintf("its node %s is not in the cluster (deleted): nothing shows whether the instance still runs; release it as a failover of %s, which needs the same confirmation", inst.NodeName, dashed(st.From))
	case held && inst.Terminating && vm.State == snapshot.StateStranded:
		// Its shutdown needs the dead site's node: nothing ends it, and nothing shows
		// that the guest stopped. Only a release lets KubeVirt go on.
		st.Action, st.Reason = ActionFailover, fmt.Sprintf("its instance was shutting down on node %s when site %s went down: nothing shows it stopped; release it so KubeVirt goes on from the template on %s", inst.NodeName, dashed(st.From), req.To)
	case failedManual && vm.State == snapshot.StateStranded && !(j.Released() && j.VMI == string(inst.UID)):
		// Unless this move's own release let it go (then its confirmation stands, and
		// the start below is guarded), nothing proves the guest stopped.
		st.Action, st.Reason = ActionFailover, fmt.Sprintf("its instance Failed on node %s while site %s is down: KubeVirt fails an instance once its launcher pod is gone from the API, not once its guest stopped; release it as a failover, then start it on %s (runStrategy Manual: KubeVirt will not)", inst.NodeName, dashed(st.From), req.To)
	case failedManual && nodeReady(s, inst.NodeName):
		// Its kubelet ends whatever of it is left: nothing to guard, whatever an earlier
		// step's journal says (a start of it that failed would otherwise be held by the
		// live source on every rerun, found by review).
		st.Action, st.Reason = ActionStart, failedManualReason()
	case releasedManual:
		// A start anywhere but the site it was released from is a release too: it must
		// wait until that site is still down.
		// Only a release (or, from an older version, a "patched" written before one on a
		// dead site) may have let an instance go on a dead site; a restart ended it on a
		// live one.
		if j.Released() || j.Phase == journal.PhasePatched {
			st.ReleasedFrom = j.From
		}
		// A Failed instance that no Ready node proves over (on a deleted Node, or a
		// dead site) may be a launcher pod that only left the API: the start is a
		// release of it, guarded like one (found by review).
		if inst != nil && inst.Phase == string(kubevirtv1.Failed) && !nodeReady(s, inst.NodeName) {
			if vm.CurrentSite != "" {
				st.ReleasedFrom = vm.CurrentSite
			} else if st.ReleasedFrom == "" {
				st.ReleasedFrom = j.From
			}
		}
		// The very instance the step began on, handed to the target by a migration and
		// over there on a Ready node: nothing of it runs anywhere else, and its start is
		// no release (the source is alive; its guard would halt every rerun, found by
		// review).
		if inst != nil && inst.Phase == string(kubevirtv1.Failed) && string(inst.UID) == j.VMI && vm.CurrentSite == req.To && nodeReady(s, inst.NodeName) {
			st.ReleasedFrom = ""
		}
		if vm.HomeSite == req.To {
			st.From = j.From
		}
		st.Action, st.Reason = ActionStart, fmt.Sprintf("journal: move %s left it %s from %s and it no longer runs (runStrategy Manual: KubeVirt will not start it): start it on %s", j.MoveID, j.Phase, dashed(j.From), req.To)
		if j.Error != "" {
			st.Reason += " (last try failed: " + j.Error + ")"
		}
	case failedManual:
		// On a node that is not Ready: on a live site the blocker NodeNotReady stops it;
		// anywhere the start is guarded like a release, from that node's site.
		st.Action, st.Reason = ActionStart, failedManualReason()
		st.ReleasedFrom = vm.CurrentSite
	case homed && running && vm.CurrentSite != req.To && j.Phase == journal.PhaseRestarting && j.Unfinished(req.To) && string(inst.UID) == j.VMI:
		// The restart did not take: the instance it acted on is still there, and it
		// selects the old site. Waiting for it would wait for ever.
		st.Action, st.Reason = ActionRestart, fmt.Sprintf("journal: move %s restarted it, but the instance it restarted is still there (%s): restart it again", j.MoveID, inst.Phase)
	case homed && running && inst.NodeName == "" && !inst.Migrating && inst.NodeSelector[s.Keys.Site] != "" && inst.NodeSelector[s.Keys.Site] != req.To:
		// Made before the template's patch, it still selects the old site: it never
		// schedules on the target, and a wait would last until --ready-timeout (found by
		// review).
		st.Action, st.Reason = ActionRestart, fmt.Sprintf("its instance never started (phase %s) and still selects %s, from before the template's patch: restart it from the template, which selects %s", inst.Phase, inst.NodeSelector[s.Keys.Site], req.To)
	case homed && !readyOnTarget && j.Unfinished(req.To) && (running || comesBack(s, vm, j)):
		st.Action, st.Reason = ActionWait, fmt.Sprintf("journal: move %s left it %s: wait until it is Ready on %s", j.MoveID, j.Phase, req.To)
	case homed && running && !readyOnTarget:
		st.Action, st.Reason = ActionWait, "starting from a template that already selects "+req.To+": wait until it is Ready there"
	case homed && !readyOnTarget && restartsNow(vm):
		// Whatever an old journal says, KubeVirt starts it again by itself, from a
		// template that selects the target: not done until it is Ready there.
		st.Action, st.Reason = ActionWait, fmt.Sprintf("runStrategy %s: KubeVirt starts it again from a template that already selects %s: wait until it is Ready there", vm.RunStrategy, req.To)
	case homed && vm.RunStrategy == kubevirtv1.RunStrategyManual && inst != nil && inst.Phase == string(kubevirtv1.Failed) &&
		vm.CurrentSite == req.To && j.Unfinished(req.To):
		// Started on the target from the move's patch (a restart in progress), it failed
		// there; KubeVirt does not start a Manual VM again (found by the simulator).
		st.Action, st.Reason = ActionStart, fmt.Sprintf("journal: move %s patched it and its instance failed on %s (runStrategy Manual: KubeVirt will not start it again): start it", j.MoveID, req.To)
	case homed && vm.RunStrategy == kubevirtv1.RunStrategyOnce && inst != nil && inst.Phase == string(kubevirtv1.Failed) && j.Unfinished(req.To):
		// The move's step began while it ran, and its instance failed on the target: a
		// skip would call it moved (found by the simulator), a start is refused.
		st.Action, st.StoppedByMove = ActionSkip, j.MoveID
		st.Reason = fmt.Sprintf("journal: move %s began on it while it ran, and its instance Failed on %s (runStrategy Once: KubeVirt neither starts it again nor accepts a start)", j.MoveID, dashed(inst.NodeName))
	case homed && j.Unfinished(req.To):
		// An interrupted move's step took effect: only its journal entry is left.
		st.Action, st.Reason = ActionSkip, fmt.Sprintf("already on %s (finishes the journal of move %s)", req.To, j.MoveID)
	case homed:
		st.Action, st.Reason = ActionSkip, "already on "+req.To
	case !running:
		st.Action, st.Reason = ActionPatch, "not running: the new site applies at its next start"
		if inst != nil {
			st.Reason = "instance is finishing: the new site applies at its next start"
			if inst.Phase == string(kubevirtv1.Failed) || inst.Phase == string(kubevirtv1.Succeeded) {
				st.Reason = fmt.Sprintf("its instance is over (%s): the new site applies at its next start", inst.Phase)
			}
		}
		if restartsNow(vm) {
			// KubeVirt starts it again by itself, now from the patched template.
			st.Recreated = true
			st.Reason = fmt.Sprintf("runStrategy %s and its instance is over or going: KubeVirt recreates it from the patched template; wait until it is Ready on %s", vm.RunStrategy, req.To)
		}
	case vm.CurrentSite == req.To:
		st.Action, st.Reason = ActionPatch, "already runs on "+req.To+": only the template follows"
	case vm.State == snapshot.StateStranded:
		st.Action, st.Reason = ActionFailover, fmt.Sprintf("site %s is down: release the instance from node %s so KubeVirt recreates it on %s", st.From, inst.NodeName, req.To)
	case req.Mode == ModeRestart:
		st.Action, st.Reason = ActionRestart, "--mode restart"
	case inst.NodeName == "" && !inst.Migrating:
		st.Action, st.Reason = ActionRestart, fmt.Sprintf("its instance never started (phase %s, %s): restart it from the patched template so that it schedules on %s", inst.Phase, dashed(vm.PrintableStatus), req.To)
	case inst.Migrating:
		st.Action, st.Reason = ActionMigrate, "a migration is in progress: wait for it, then move"
	case vm.RestartRequired && req.Mode == ModeAuto:
		st.Action, st.Reason = ActionRestart, "RestartRequired is set: LiveUpdate will not carry the new selector into the running instance"
	case s.RolloutStrategy == stageRollout && req.Mode == ModeAuto:
		st.Action, st.Reason = ActionRestart, "vmRolloutStrategy Stage: the new selector reaches the instance only at a restart"
	case inst.LiveMigratable:
		st.Action, st.Reason = ActionMigrate, "running and live-migratable"
	case req.Mode == ModeMigrate:
		st.Action, st.Reason = ActionMigrate, "--mode migrate"
	default:
		st.Action, st.Reason = ActionRestart, "not live-migratable: "+inst.NotMigratable
	}
	if (st.Action == ActionMigrate || st.Action == ActionWait) && inst != nil && inst.PausedByUser {
		st.Paused = true
	}
	// A restart would shut down a paused guest (it cannot answer: killed after its
	// grace period) and start it unpaused: no fallback for one.
	if st.Action == ActionMigrate && req.Mode == ModeAuto && restartable(vm.RunStrategy) && !st.Paused {
		st.FallbackRestart = true
		st.Reason += " (a restart if the migration fails)"
	}
	if st.Action == ActionFailover && vm.StartRequested {
		st.StartPending = true
	}
	if st.Action == ActionFailover && staysDown(vm.RunStrategy, inst, vm.StartRequested) {
		st.StaysDown = true
		st.Reason += fmt.Sprintf(" (runStrategy %s: nothing starts it again; it stays stopped, its template on %s)", vm.RunStrategy, req.To)
	}
	// A wait writes nothing: the step that started the VM was guarded (found by review).
	if site := mayStillRun(s, vm, j, req.To); st.ReleasedFrom == "" && st.Action != ActionFailover && st.Action != ActionWait && st.Starts() && site != "" {
		// Somebody else may have let an earlier instance go there (a force delete, a
		// remediation deleting the node's pods) while its guest still runs: KubeVirt
		// then shows a new instance on no node, or none. A start anywhere else is a
		// release, guarded like a failover of that site (found by review).
		st.ReleasedFrom = site
		st.Reason += fmt.Sprintf(" (site %s is down and nothing shows its earlier instance stopped there: the start needs the same proof as a failover of %s)", site, site)
	}
	return st
}

// mayStillRun names the dead site where an earlier instance of the VM may still run
// although the API shows none running there, "" when nothing says so (an instance that
// runs on a node is the failover rules' case):
//   - its instance is over on a node of a dead site that is not Ready, or on a node
//     deleted from the cluster (pod garbage collection then removed its launcher): the
//     site its instance selected, or the journal's source;
//   - its instance is on no node (a new one that cannot be scheduled) or there is none:
//     the site its template selects, or the source of an unfinished step of a move
//     towards to, whose patch already points the template there (found by review: a
//     rerun after the patch lost the guard).
func mayStillRun(s *snapshot.Snapshot, vm *snapshot.VM, j journal.Entry, to string) string {
	dead := func(site string) bool { return site != "" && site != to && !s.SiteAlive(site) }
	inst := vm.Instance
	if inst != nil && inst.NodeName != "" {
		if inst.Phase != string(kubevirtv1.Failed) && inst.Phase != string(kubevirtv1.Succeeded) {
			return ""
		}
		n, ok := s.Node(inst.NodeName)
		switch {
		case ok && n.State != snapshot.NodeReady && dead(n.Site):
			return n.Site
		case !ok && dead(inst.NodeSelector[s.Keys.Site]):
			return inst.NodeSelector[s.Keys.Site]
		case !ok && j.Unfinished(to) && dead(j.From):
			return j.From
		}
		return ""
	}
	if s.HasSite(vm.HomeSite) && dead(vm.HomeSite) {
		return vm.HomeSite
	}
	if inst != nil {
		if sel := inst.NodeSelector[s.Keys.Site]; s.HasSite(sel) && dead(sel) {
			return sel
		}
	}
	if j.Unfinished(to) && dead(j.From) {
		return j.From
	}
	return ""
}

// restartable reports a run strategy whose VM KubeVirt v1.8.0 restarts on request (the
// restart subresource answers 409 for Halted and Once).
func restartable(rs kubevirtv1.VirtualMachineRunStrategy) bool {
	switch rs {
	case kubevirtv1.RunStrategyAlways, kubevirtv1.RunStrategyRerunOnFailure, kubevirtv1.RunStrategyManual:
		return true
	}
	return false
}

// staysDown reports whether nothing starts a VM again once its instance is released
// (kubevirt v1.8.0 vm.go): Halted and Once never restart a failed instance, and a
// Manual or RerunOnFailure VM whose instance was stopping with no start request
// pending was being stopped (virtctl stop). A pending start (a restart in progress,
// this tool's own included) brings it back; a Manual VM that ran is started by the
// move, as KubeVirt would not.
func staysDown(rs kubevirtv1.VirtualMachineRunStrategy, inst *snapshot.VMI, startRequested bool) bool {
	switch rs {
	case kubevirtv1.RunStrategyHalted, kubevirtv1.RunStrategyOnce:
		return true
	case kubevirtv1.RunStrategyManual, kubevirtv1.RunStrategyRerunOnFailure:
		return inst != nil && inst.Terminating && !startRequested
	}
	return false
}

const stageRollout = string(kubevirtv1.VMRolloutStrategyStage)

// goneFrom is the site an instance on a deleted node ran in, as far as the VM tells;
// "" when nothing says, which is a blocker. With an unfinished step towards to, only the
// instance that step acted on is known to have run on the step's source: a newer one
// came from a template that selects to. Without one, the site the template selects,
// where the instance's own nodeSelector agrees.
func goneFrom(s *snapshot.Snapshot, vm *snapshot.VM, j journal.Entry, to string) string {
	inst := vm.Instance
	if j.Unfinished(to) {
		if j.From != "" && j.VMI != "" && string(inst.UID) == j.VMI {
			return j.From
		}
		return ""
	}
	if vm.HomeSite != to && inst.NodeSelector[s.Keys.Site] == vm.HomeSite {
		return vm.HomeSite
	}
	return ""
}

// nodeReady reports whether the node is in the cluster and Ready: its kubelet ends
// whatever of a failed instance is left there.
func nodeReady(s *snapshot.Snapshot, name string) bool {
	n, ok := s.Node(name)
	return ok && n.State == snapshot.NodeReady
}

// stoppedByTheMove reports whether the open step of j may be what ended a Manual VM's
// instance: a release (and its start), a restart, an old version's "failed" of unknown
// effect, or a "patched" or "migrating" on a site that is dead now (an old version wrote
// "patched" before a release). A migration on a live site ends nothing: a Manual VM that
// stopped after one was stopped by someone, and stays stopped.
func stoppedByTheMove(s *snapshot.Snapshot, j journal.Entry) bool {
	switch {
	case !j.Open(), j.StaysDown:
		// A release of a VM that was being stopped (or never restarts) ended nothing
		// the move should bring back.
		return false
	case j.Released(), j.Phase == journal.PhaseRestarting:
		return true
	default:
		return !s.SiteAlive(j.From)
	}
}

// comesBack reports whether a VM with an open step and no running instance will run
// again without the move: KubeVirt restarts it (restartsNow), or, for RerunOnFailure,
// the move's own release or restart ended it, which KubeVirt follows with a start.
func comesBack(s *snapshot.Snapshot, vm *snapshot.VM, j journal.Entry) bool {
	return restartsNow(vm) || vm.RunStrategy == kubevirtv1.RunStrategyRerunOnFailure && stoppedByTheMove(s, j)
}

// restartsNow reports whether KubeVirt starts a new instance of the VM by itself:
// Always does, RerunOnFailure only after a Failed instance, and any VM with a start
// request pending (a restart in progress) once its instance is gone (kubevirt v1.8.0
// pkg/virt-controller/watch/vm/vm.go: a Succeeded instance is not restarted, and
// without an instance only a start request starts it).
func restartsNow(vm *snapshot.VM) bool {
	if vm.StartRequested {
		return true
	}
	switch vm.RunStrategy {
	case kubevirtv1.RunStrategyAlways:
		return true
	case kubevirtv1.RunStrategyRerunOnFailure:
		return vm.Instance != nil && vm.Instance.Phase == string(kubevirtv1.Failed)
	}
	return false
}

// gitOpsObject names what to pause for each GitOps controller.
func gitOpsObject(controller string) string {
	if strings.Contains(strings.ToLower(controller), "flux") {
		return "Flux Kustomization or HelmRelease (flux suspend)"
	}
	return "Argo CD Application's auto-sync"
}

func countAction(steps []Step, a Action) int {
	n := 0
	for _, st := range steps {
		if st.Action == a {
			n++
		}
	}
	return n
}

func dashed(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

func vmWarnings(s *snapshot.Snapshot, vm *snapshot.VM, st Step, req Request) []Issue {
	var out []Issue
	if m := s.ActiveMigrations[vm.Key()]; st.Action == ActionMigrate && m != "" && !strings.HasPrefix(m, MigrationPrefix) {
		// KubeVirt refuses a second migration while one runs; a drain's evacuation ends
		// by itself, so the step waits for it rather than fail the VM.
		out = append(out, Issue{Code: "MigrationInProgress", VM: vm.Key(),
			Message: fmt.Sprintf("migration %s, not started by sitefail (a drain's evacuation?), is in progress: the move waits for it to end, then migrates the VM", m)})
	}
	if vm.Deleting {
		out = append(out, Issue{Code: "BeingDeleted", VM: vm.Key(),
			Message: "the VM is being deleted (its namespace going, say): it is left out of the move, and no copy of it starts anywhere"})
	}
	if vm.TierError != "" {
		out = append(out, Issue{Code: "MalformedTier", VM: vm.Key(), Message: vm.TierError + ": the VM is treated as untiered and moves last"})
	}
	if j := journal.Read(vm.Annotations); !j.Known() {
		out = append(out, Issue{Code: "JournalUnreadable", VM: vm.Key(),
			Message: fmt.Sprintf("its journal's phase %q is not one this version writes (hand-edited, or a newer version): planned from what runs now, and the move writes a fresh journal", j.Phase)})
	}
	if st.Action == ActionSkip {
		return out
	}
	if vm.GitOps != "" && req.AllowGitOpsDrift {
		out = append(out, Issue{Code: "GitOpsManaged", VM: vm.Key(),
			Message: fmt.Sprintf("managed by %s, which will revert a direct patch at its next sync: commit the change to Git (see 'kubectl sitefail gitops') or pause the sync", vm.GitOps)})
	}
	if vm.RestartRequired {
		out = append(out, Issue{Code: "RestartRequired", VM: vm.Key(), Message: "RestartRequired is already set: pending template changes apply at the restart this move causes"})
	}
	if inst := vm.Instance; inst != nil && inst.Paused {
		msg := "paused: a live migration keeps the guest paused on the target; the step is done when it runs there, still paused (it is not Ready until someone unpauses it)"
		if st.Action == ActionRestart || st.Action == ActionFailover {
			msg = "paused: the " + string(st.Action) + " starts a new instance, which runs unpaused"
		}
		out = append(out, Issue{Code: "Paused", VM: vm.Key(), Message: msg})
	}
	if vm.HomeSite == "" {
		out = append(out, Issue{Code: "Unpinned", VM: vm.Key(), Message: "pinned to no site: the move adds the site key to its nodeSelector"})
	}
	return out
}

func vmBlockers(s *snapshot.Snapshot, vm *snapshot.VM, st *Step, req Request, targets []*corev1.Node) []Issue {
	if st.StoppedByMove != "" {
		// Not overridable: --force would finish its journal as done on a stopped VM.
		return []Issue{{Code: "StoppedByMove", VM: vm.Key(),
			Message: fmt.Sprintf("move %s began on it while it ran and its instance then failed on node %s; runStrategy Once: KubeVirt will not start it again and refuses a start. To run it, set its runStrategy (kubectl patch vm -n %s %s --type merge -p '{\"spec\":{\"runStrategy\":\"Manual\"}}') and run the move again, which starts it on %s; or leave it out of the selection",
				st.StoppedByMove, dashed(vm.Instance.NodeName), vm.Namespace, vm.Name, req.To)}}
	}
	if st.Action == ActionSkip {
		return nil
	}
	var out []Issue
	if len(targets) > 0 && !fitsAny(vm, s.Keys.Site, req.To, targets) {
		out = append(out, Issue{Code: "ConstraintsExcludeTarget", VM: vm.Key(),
			Message: fmt.Sprintf("no Ready node on %s satisfies the VM's other nodeSelector keys, required node affinity or taint tolerations", req.To)})
	}
	inst := vm.Instance
	if vm.GitOps != "" && !req.AllowGitOpsDrift {
		out = append(out, Issue{Code: "GitOpsManaged", VM: vm.Key(),
			Message: fmt.Sprintf("managed by %s, which would revert the move at its next sync: commit the delta to Git ('kubectl sitefail gitops'), or pause the %s, then move with --allow-gitops-drift", vm.GitOps, gitOpsObject(vm.GitOps))})
	}
	if vm.Owner != "" {
		out = append(out, Issue{Code: "OwnedByController", VM: vm.Key(),
			Message: fmt.Sprintf("owned by %s, which rewrites the VM (its spec, and the move's journal with its annotations) from its own template at its next change, undoing the move, and makes new VMs from that template: change the site in the owner's VM template instead, or detach the VM from it", vm.Owner)})
	}
	if st.NodeGone {
		switch {
		case st.From == "":
			out = append(out, Issue{Code: "NodeNotFound", VM: vm.Key(),
				Message: fmt.Sprintf("its instance's node %s is not in the cluster and neither its template nor its journal names the site it ran in: find out whether it still runs (kubectl get vmi -o wide), then recreate the Node object or stop the VM", inst.NodeName)})
		case s.SiteAlive(st.From):
			out = append(out, Issue{Code: "NodeNotFound", VM: vm.Key(),
				Message: fmt.Sprintf("its instance's node %s is not in the cluster while site %s has Ready nodes: nothing shows whether it still runs; recreate the Node object, or wait for KubeVirt to fail the instance, then move it", inst.NodeName, st.From)})
		}
	}
	if st.Action == ActionFailover && vm.RunStrategy == kubevirtv1.RunStrategyOnce {
		out = append(out, Issue{Code: "ReleaseLosesVM", VM: vm.Key(),
			Message: "runStrategy Once: once released from the dead site KubeVirt neither recreates it nor accepts a start, so it would stay down; set its runStrategy to Manual or Always first, or leave it out of the selection"})
	}
	if st.Action == ActionRestart && vm.RunStrategy == kubevirtv1.RunStrategyOnce {
		out = append(out, Issue{Code: "RestartRefused", VM: vm.Key(),
			Message: "runStrategy Once: KubeVirt refuses to restart it; stop it, or use --mode migrate if it is live-migratable"})
	}
	if st.Action == ActionMigrate && s.RolloutStrategy == stageRollout && !inst.Migrating && vm.CurrentSite != req.To {
		out = append(out, Issue{Code: "StageRollout", VM: vm.Key(),
			Message: "vmRolloutStrategy is Stage: the new selector never reaches the running instance, so a migration would stay on the old site; use --mode auto or --mode restart"})
	}
	if st.Action == ActionMigrate && inst != nil && !inst.LiveMigratable && !inst.Migrating {
		out = append(out, Issue{Code: "NotMigratable", VM: vm.Key(),
			Message: fmt.Sprintf("not live-migratable (%s): use --mode auto or --mode restart", inst.NotMigratable)})
	}
	if to := s.ActiveMigrationTo[vm.Key()]; inst != nil && inst.Migrating && strings.HasPrefix(s.ActiveMigrations[vm.Key()], MigrationPrefix) && to != "" && to != req.To {
		// A move towards another site is still migrating it (a failback right after an
		// interrupted relocation): followed, it would land there after this move ended.
		out = append(out, Issue{Code: "MigrationToOtherSite", VM: vm.Key(),
			Message: fmt.Sprintf("sitefail migration %s is still taking it to %s: wait for it to finish (kubectl get vmim -n %s %s) or delete it to cancel it, then run this move again", s.ActiveMigrations[vm.Key()], to, vm.Namespace, s.ActiveMigrations[vm.Key()])})
	}
	if inst != nil && inst.NodeName != "" && vm.State != snapshot.StateStranded {
		if n, ok := s.Node(inst.NodeName); ok && n.State != snapshot.NodeReady && st.Action != ActionPatch {
			out = append(out, Issue{Code: "NodeNotReady", VM: vm.Key(),
				Message: fmt.Sprintf("its node %s is %s while site %s is alive: remediate or fence that node first (sitefail releases VMs only from a whole dead site)", n.Name, n.State, n.Site)})
		}
	}
	return out
}

// MigrationPrefix names the migrations sitefail creates, so a resumed move recognises its own.
const MigrationPrefix = "sitefail-"

func targetNodes(s *snapshot.Snapshot, site string) []*corev1.Node {
	var out []*corev1.Node
	for _, n := range s.Nodes {
		if n.Site == site && n.Schedulable() {
			out = append(out, &corev1.Node{
				ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels},
				Spec:       corev1.NodeSpec{Taints: n.Taints},
			})
		}
	}
	return out
}

// fitsAny reports whether the VM, with its site key set to the target, could be placed
// on at least one of the target nodes by the scheduler's own matching rules.
func fitsAny(vm *snapshot.VM, siteKey, to string, nodes []*corev1.Node) bool {
	sel := make(map[string]string, len(vm.NodeSelector)+1)
	for k, v := range vm.NodeSelector {
		sel[k] = v
	}
	sel[siteKey] = to
	pod := &corev1.Pod{Spec: corev1.PodSpec{NodeSelector: sel, Affinity: vm.Affinity, Tolerations: vm.Tolerations}}
	req := nodeaffinity.GetRequiredNodeAffinity(pod)
	for _, n := range nodes {
		if ok, err := req.Match(n); err != nil || !ok {
			continue
		}
		if _, untolerated := corev1helpers.FindMatchingUntoleratedTaint(n.Spec.Taints, vm.Tolerations, func(t *corev1.Taint) bool {
			return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
		}); untolerated {
			continue
		}
		return true
	}
	return false
}

// outOfServiceTarget names the target's Ready nodes that carry the out-of-service
// taint. No launcher tolerates it, so they take no VM until it is removed (a failback
// after --fence out-of-service). Whose taint it is decides the advice: this tool's may
// be removed once the node is repaired; somebody else's fenced the node for a reason
// this tool does not know. Only a target left with no untainted node blocks the move.
func outOfServiceTarget(s *snapshot.Snapshot, to string, blockers, warnings []Issue) ([]Issue, []Issue) {
	var tainted []string
	free := 0
	for _, n := range s.Nodes {
		if n.Site != to || !n.Schedulable() {
			continue
		}
		if !n.Fence.OutOfService {
			free++
			continue
		}
		tainted = append(tainted, n.Fence.OutOfServiceNote())
	}
	if len(tainted) == 0 {
		return blockers, warnings
	}
	issue := Issue{Code: "TargetOutOfService", Message: fmt.Sprintf("no VM starts on these nodes of %s until the taint is gone: %s", to, strings.Join(tainted, "; "))}
	if free == 0 {
		return append(blockers, issue), warnings
	}
	return blockers, append(warnings, issue)
}

func capacity(s *snapshot.Snapshot, site string, steps []Step) Capacity {
	c := Capacity{Site: site}
	onTarget := map[string]bool{}
	for _, n := range s.Nodes {
		// An out-of-service node takes no launcher (no launcher tolerates its taint).
		if n.Site == site && n.Schedulable() && !n.Fence.OutOfService {
			c.FreeCPUMilli += n.CPUMilli
			c.FreeMemoryBytes += n.MemoryBytes
			onTarget[n.Name] = true
		}
	}
	for _, vm := range s.VMs {
		if vm.Instance != nil && onTarget[vm.Instance.NodeName] {
			c.FreeCPUMilli -= vm.CPUMilli
			c.FreeMemoryBytes -= vm.MemoryBytes + vm.OverheadBytes
		}
	}
	for _, st := range steps {
		if st.Starts() {
			c.NeedCPUMilli += st.CPUMilli
			c.NeedMemoryBytes += st.MemoryBytes + st.OverheadBytes
		}
	}
	return c
}

// estimate models each tier as its batches (waves), each start taking the expected
// time. Tiers run one after the other (the barrier).
func estimate(steps []Step, batches []Batch, req Request) []TierEstimate {
	per := req.ExpectedStart
	if per <= 0 {
		per = DefaultExpectedStart
	}
	var out []TierEstimate
	for _, st := range steps {
		if !st.Starts() {
			continue
		}
		if len(out) == 0 || out[len(out)-1].Tier != st.Tier {
			out = append(out, TierEstimate{Tier: st.Tier})
		}
		t := &out[len(out)-1]
		t.Starts++
		if st.Action == ActionMigrate {
			t.Migrations++
		}
	}
	waves := map[int]int{}
	for _, b := range batches {
		waves[b.Tier]++
	}
	for i := range out {
		t := &out[i]
		t.Waves = waves[t.Tier]
		t.RTOSeconds = float64(t.Waves) * per.Seconds()
	}
	return out
}

func usesInstancetype(vms []*snapshot.VM) bool {
	for _, vm := range vms {
		if vm.Instancetype != "" {
			return true
		}
	}
	return false
}

// batches groups each tier's starts, in plan order, into waves of at most maxInFlight,
// of which at most migrationSlots live migrations: KubeVirt v1.8.0 runs no more than
// its parallelMigrationsPerCluster and leaves the rest Pending, and the executor holds
// a migration that would exceed it (Config.MaxMigrations) until one ends, with the
// steps behind it. A migration that does not fit begins the next wave.
func batches(steps []Step, maxInFlight, migrationSlots int) []Batch {
	maxInFlight = max(maxInFlight, 1)
	if migrationSlots < 1 {
		migrationSlots = maxInFlight
	}
	out := []Batch{}
	var cur *Batch
	migrations := 0
	for _, st := range steps {
		if !st.Starts() {
			continue
		}
		migrate := st.Action == ActionMigrate
		if cur == nil || cur.Tier != st.Tier || len(cur.VMs) == maxInFlight || migrate && migrations == migrationSlots {
			out = append(out, Batch{Tier: st.Tier})
			cur, migrations = &out[len(out)-1], 0
		}
		cur.VMs = append(cur.VMs, st.Key())
		if migrate {
			migrations++
		}
	}
	return out
}

// HumanBytes prints a byte count in binary units.
func HumanBytes(b int64) string {
	const unit = 1024
	neg := b < 0
	if neg {
		b = -b
	}
	s := fmt.Sprintf("%dB", b)
	if b >= unit {
		div, exp := int64(unit), 0
		for n := b / unit; n >= unit; n /= unit {
			div *= unit
			exp++
		}
		s = fmt.Sprintf("%.1f%ciB", float64(b)/float64(div), "KMGTPE"[exp])
	}
	if neg {
		return "-" + s
	}
	return s
}
