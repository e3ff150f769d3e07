// Package move runs a move end to end, the way kubectl drain's Helper runs a drain: a
// plain Config that the move, failback and drill commands and the TUI fill in, callbacks
// for confirmation and progress, typed dry-run and fence modes. The sequence is Run:
// the lock, the snapshot read again and the plan rebuilt under it, the split-brain guard,
// the RBAC preflight, then the executor, whose every write stops if the lock is lost.
package move

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
	"github.com/sitefail/kubectl-sitefail/pkg/journal"
	"github.com/sitefail/kubectl-sitefail/pkg/kubecluster"
	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/pkg/lock"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

// DryRun says whether writes are sent for real.
type DryRun string

const (
	// DryRunNone writes.
	DryRunNone DryRun = "none"
	// DryRunServer sends every write with dryRun=All (see ServerDryRun).
	DryRunServer DryRun = "server"
)

// Fence is how VMs are released from a dead site.
type Fence string

const (
	// FencePod force-deletes each released VM's launcher pods, tier by tier.
	FencePod Fence = "pod"
	// FenceOutOfService taints the dead nodes node.kubernetes.io/out-of-service, which
	// releases every VM on them at once.
	FenceOutOfService Fence = "out-of-service"
	// FenceNetwork first fences the dead site's storage (a csi-addons NetworkFence over
	// every node address of the site) and waits for the driver's success; the fence is
	// the proof the releases rest on. VMs are then released as with FencePod.
	FenceNetwork Fence = "network"
)

// NetworkFence configures FenceNetwork.
type NetworkFence struct {
	// Class names the NetworkFenceClass; "" takes the cluster's only one.
	Class string
	// ExtraCIDRs are fenced beside the site's node addresses (its storage network).
	ExtraCIDRs []string
	// Timeout bounds the wait for the driver's result.
	Timeout time.Duration
	// Settle is how long every node of a fenced site must have been Ready before a
	// failback lifts the fence: a returned kubelet first ends the launchers the failover
	// force-deleted, each within its grace period, and a guest shutting down gracefully
	// writes to its disks.
	Settle time.Duration
}

// Config is one move.
type Config struct {
	Kube       kubernetes.Interface
	Dynamic    dynamic.Interface
	RESTConfig *rest.Config
	Keys       selector.Keys
	// Namespace ("" for all) and LabelSelector scope the snapshot.
	Namespace, LabelSelector string
	// Snapshot is the one the caller planned from, for the preflight before the lock;
	// Run reads one when it is nil. The executed plan is always built from a fresh read
	// under the lock.
	Snapshot *snapshot.Snapshot
	// Request is resolved: a target, no --to-other or journal placeholders.
	Request plan.Request
	// Force runs despite overridable blockers.
	Force bool
	// ConfirmedDown names the sites the operator confirmed dead and fenced.
	ConfirmedDown []string
	Fence         Fence
	NetworkFence  NetworkFence
	DryRun        DryRun
	MaxPerNode    int
	Rate          float64
	NoBarrier     bool
	ReadyTimeout  time.Duration
	MaxFailures   int
	LockNamespace string
	TakeOverStale bool
	// NoFailover refuses a plan that releases any VM from a dead site, checked again
	// under the lock: a drill is a rehearsal on live sites, and a site that went down
	// after the drill was started is an incident.
	NoFailover bool

	// ConfirmSiteDown asks the operator about a site that needs failing over and that
	// ConfirmedDown does not name; nil refuses.
	ConfirmSiteDown func(site string, nodes int) bool
	// OnStart is called when the lock is held and the plan rebuilt, before any write.
	OnStart func(moveID, actor string, p *plan.Plan)
	// OnEvent receives the executor's progress, serialised.
	OnEvent func(executor.Event)
	// OnWarning receives what could not be checked and did not stop the move.
	OnWarning func(string)
	// Records, when set, keeps the move's audit record in LockNamespace; a dry run keeps
	// none. A record that cannot be written never stops the move.
	Records *Records
}

// BlockedError means the move did not start: the plan is blocked or a failover is not
// confirmed. Nothing was changed. Plan is set when its blockers explain why.
type BlockedError struct {
	Plan *plan.Plan
	Err  error
}

func (e *BlockedError) Error() string { return e.Err.Error() }
func (e *BlockedError) Unwrap() error { return e.Err }

// LockLostError means the move stopped writing because it lost the lock; the report
// says how far it got, and running it again finishes it.
type LockLostError struct{ Err error }

func (e *LockLostError) Error() string {
	return fmt.Sprintf("%v; run the same command again once no other move runs", e.Err)
}
func (e *LockLostError) Unwrap() error { return e.Err }

// Run carries out cfg. stop, when cancelled, stops starting VMs and lets steps in flight
// reach a safe point; ctx aborts at once.
func Run(ctx, stop context.Context, cfg Config) (*executor.Report, error) {
	src := snapshot.Source{Kube: cfg.Kube, Dynamic: cfg.Dynamic, Config: cfg.RESTConfig, Namespace: cfg.Namespace, LabelSelector: cfg.LabelSelector, Keys: cfg.Keys}
	// The preflight runs again under the lock: a warning it gave once is not repeated.
	if warn := cfg.OnWarning; warn != nil {
		var mu sync.Mutex
		seen := map[string]bool{}
		cfg.OnWarning = func(msg string) {
			mu.Lock()
			repeat := seen[msg]
			seen[msg] = true
			mu.Unlock()
			if !repeat {
				warn(msg)
			}
		}
	}
	// The guard runs before and after the lock; the operator answers once per site.
	if ask := cfg.ConfirmSiteDown; ask != nil {
		answers := map[string]bool{}
		cfg.ConfirmSiteDown = func(site string, nodes int) bool {
			ok, asked := answers[site]
			if !asked {
				ok = ask(site, nodes)
				answers[site] = ok
			}
			return ok
		}
	}
	// Preflight before the lock, which is a write: a user who may not move is told
	// everything they lack, and nothing is changed.
	s := cfg.Snapshot
	if s == nil {
		var err error
		if s, err = snapshot.Read(ctx, src); err != nil {
			return nil, err
		}
	}
	p, err := plan.Build(s, cfg.Request)
	if err != nil {
		return nil, err
	}
	if err := refuseFailover(cfg, p); err != nil {
		return nil, err
	}
	if _, err := Guard(cfg, s, p); err != nil {
		return nil, err
	}
	fences, err := planFences(ctx, cfg, s, p, "")
	if err != nil {
		return nil, err
	}
	if _, err := targetFence(ctx, cfg, s, p); err != nil {
		return nil, err
	}
	allowed, err := CheckAccess(ctx, cfg, p, nil)
	if err != nil {
		return nil, err
	}
	store := checkRecords(ctx, cfg)

	actor := WhoAmI(ctx, cfg.Kube)
	moveID := NewMoveID(time.Now())
	lk, err := lock.Acquire(ctx, cfg.Kube, lock.Options{Namespace: cfg.LockNamespace, Holder: actor + " (" + moveID + ")", MoveID: moveID, TakeOverStale: cfg.TakeOverStale})
	if err != nil {
		return nil, err
	}
	if lk.Warning != "" && cfg.OnWarning != nil {
		cfg.OnWarning(lk.Warning)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = lk.Unlock(rctx)
	}()
	ctx, cancelWrites := context.WithCancel(ctx)
	defer cancelWrites()
	stop, cancelStarts := context.WithCancel(stop)
	defer cancelStarts()
	go func() {
		select {
		case <-lk.Lost():
			cancelStarts()
			cancelWrites()
		case <-ctx.Done():
		}
	}()

	// The plan the executor runs is built from a snapshot read under the lock: a move
	// that finished meanwhile changed what this one must do.
	if s, err = snapshot.Read(ctx, src); err != nil {
		return nil, err
	}
	if p, err = plan.Build(s, cfg.Request); err != nil {
		return nil, err
	}
	if p.Blocked(cfg.Force) {
		return nil, &BlockedError{Plan: p, Err: errors.New("the plan is blocked; nothing was changed (see the blockers above)")}
	}
	if err := refuseFailover(cfg, p); err != nil {
		return nil, err
	}
	deadNodes, err := Guard(cfg, s, p)
	if err != nil {
		return nil, err
	}
	if err := CoversDeadNodesEverywhere(ctx, cfg, p, deadNodes); err != nil {
		return nil, err
	}
	if _, err := CheckAccess(ctx, cfg, p, allowed); err != nil {
		return nil, err
	}
	if fences, err = planFences(ctx, cfg, s, p, moveID); err != nil {
		return nil, err
	}
	// The record starts before the first write, a storage fence's included: a move that
	// a fence stopped, or whose plan the fence changed, leaves its account too.
	rec := startRecording(ctx, cfg, store, p, moveID, actor, lk.Valid, lk.Lost())
	stopped := func(err error) (*executor.Report, error) {
		err = lockLostOr(lk, err)
		var lost *LockLostError
		rec.finish(nil, err, errors.As(err, &lost))
		return nil, err
	}
	if err := unfenceTarget(ctx, cfg, s, p, rec.storageFence); err != nil {
		return stopped(err)
	}
	if len(fences) > 0 {
		// The storage fence comes before any VM is touched: it is what the releases
		// rest on. Then the plan is built again, from evidence that now includes it.
		if err := applyFences(ctx, cfg, fences, rec.storageFence); err != nil {
			return stopped(err)
		}
		if cfg.DryRun == DryRunNone {
			if s, err = snapshot.Read(ctx, src); err != nil {
				return stopped(err)
			}
			if p, err = plan.Build(s, cfg.Request); err != nil {
				return stopped(err)
			}
			rec.replan(p)
			for _, f := range fences {
				if !p.ProvenDown(f.site) && !contains(cfg.ConfirmedDown, f.site) {
					return stopped(fmt.Errorf("NetworkFence %s reports success, but it does not prove every node of %s down (%s): nothing was released; check the fence's addresses (kubectl get networkfence %s -o yaml)",
						f.obj.GetName(), f.site, strings.Join(fencing.Unproven(p.Fencing[f.site].Nodes), ", "), f.obj.GetName()))
				}
			}
			// The wait for the driver may have been long: the plan built after it is
			// checked as the first one was, and every site it releases from must be one
			// fenced here or confirmed (a site that died during the wait is neither, and
			// Guard, under --fence network, asks for no confirmation).
			fenced := map[string]bool{}
			for _, f := range fences {
				fenced[f.site] = true
			}
			for _, site := range append(p.NeedsFailover(), p.GuardedSites()...) {
				if !s.SiteAlive(site) && !fenced[site] && !contains(cfg.ConfirmedDown, site) {
					return stopped(&BlockedError{Err: fmt.Errorf("site %s went down while its storage fence was awaited: it is not fenced; run the move again to fence it too, or pass --confirm-site-down=%s (no VM was touched)", site, site)})
				}
			}
			if p.Blocked(cfg.Force) {
				return stopped(&BlockedError{Plan: p, Err: errors.New("the plan built after the storage fence is blocked; no VM was touched (see the blockers above)")})
			}
			if err := refuseFailover(cfg, p); err != nil {
				return stopped(err)
			}
			if deadNodes, err = Guard(cfg, s, p); err != nil {
				return stopped(err)
			}
			if err := CoversDeadNodesEverywhere(ctx, cfg, p, deadNodes); err != nil {
				return stopped(err)
			}
			if _, err := CheckAccess(ctx, cfg, p, allowed); err != nil {
				return stopped(err)
			}
		}
	}
	nodeSite := map[string]string{}
	var targetNodes []string
	for _, n := range s.Nodes {
		nodeSite[n.Name] = n.Site
		// A node out of service takes no launcher: no throttle slot either.
		if n.Site == p.Request.To && n.Schedulable() && !n.Fence.OutOfService {
			targetNodes = append(targetNodes, n.Name)
		}
	}
	// An instance whose node was already deleted is released as a failover of the site
	// the plan names for it, which Guard made the operator confirm.
	for _, st := range p.Steps {
		if st.NodeGone && st.Action == plan.ActionFailover && st.From != "" {
			nodeSite[st.Node] = st.From
		}
	}
	// A site the operator did not confirm was proven down by its fencing evidence, which
	// each release from it reads again.
	var proven []string
	for _, site := range append(p.NeedsFailover(), p.GuardedSites()...) {
		if !contains(cfg.ConfirmedDown, site) && p.ProvenDown(site) {
			proven = append(proven, site)
		}
	}
	kc, err := kubecluster.New(kubecluster.Options{Config: cfg.RESTConfig, Kube: cfg.Kube, Dynamic: cfg.Dynamic, Namespace: cfg.Namespace,
		SiteKey: cfg.Keys.Site, NodeSite: nodeSite, ProvenSites: proven, DryRun: cfg.DryRun == DryRunServer, Actor: actor, MoveID: moveID,
		OnSkip: func(name string, err error) {
			if cfg.OnWarning != nil {
				cfg.OnWarning(fmt.Sprintf("%s does not decode (%v): it is left out of the move's watch, and a step that waits on it fails at --ready-timeout", name, err))
			}
		}})
	if err != nil {
		return stopped(err)
	}
	cluster, err := kubecluster.WithCrashPoint(kc, os.Getenv(kubecluster.CrashEnv))
	if err != nil {
		return stopped(err)
	}
	if err := kc.Watch(ctx); err != nil {
		return stopped(err)
	}
	defer kc.Stop()
	if cfg.OnStart != nil {
		cfg.OnStart(moveID, actor, p)
	}
	ex := executor.New(cluster, executor.Config{
		MoveID: moveID, Actor: actor, MaxInFlight: cfg.Request.MaxInFlight, MaxPerNode: cfg.MaxPerNode, Rate: cfg.Rate,
		MaxMigrations: s.MigrationsPerCluster,
		NoBarrier:     cfg.NoBarrier, ReadyTimeout: cfg.ReadyTimeout, MaxFailures: cfg.MaxFailures,
		TargetNodes: targetNodes, Fence: string(cfg.Fence), DeadNodes: deadNodes, LockValid: lk.Valid,
	}, func(e executor.Event) {
		rec.event(e)
		if cfg.OnEvent != nil {
			cfg.OnEvent(e)
		}
	})
	rep, err := ex.Run(ctx, stop, p)
	if rep != nil {
		rep.Releases = releaseBases(p, proven)
	}
	if lerr := lk.Err(); lerr != nil {
		if rep != nil {
			rep.Interrupted = true
			rep.Stopped = "lost the move lock: " + lerr.Error()
		}
		rec.finish(rep, err, true)
		return rep, &LockLostError{Err: lerr}
	}
	rec.finish(rep, err, false)
	return rep, err
}

// releaseBases records what each site's releases rested on, for the report.
func releaseBases(p *plan.Plan, proven []string) []executor.ReleaseBasis {
	var out []executor.ReleaseBasis
	seen := map[string]bool{}
	for _, site := range append(p.NeedsFailover(), p.GuardedSites()...) {
		if seen[site] {
			continue
		}
		seen[site] = true
		// Guard let the move start: a site not proven by its evidence was confirmed, by
		// the flag or at the prompt.
		basis := "manual"
		if contains(proven, site) {
			basis = "fencing"
		}
		out = append(out, executor.ReleaseBasis{Site: site, Basis: basis, Evidence: p.Fencing[site].Nodes})
	}
	return out
}

// lockLostOr reports a wait that ended because the lock was lost as that: a rerun
// finishes the move (exit 4), whatever the wait's own error says.
func lockLostOr(lk *lock.Lock, err error) error {
	if lerr := lk.Err(); lerr != nil {
		return &LockLostError{Err: lerr}
	}
	return err
}

// siteFence is one NetworkFence a move makes.
type siteFence struct {
	site string
	obj  *unstructured.Unstructured
}

// planFences builds the storage fences of --fence network, one per dead site the plan
// releases VMs from, and checks everything they need before anything is written: the
// CRDs, a class, an address for every node.
func planFences(ctx context.Context, cfg Config, s *snapshot.Snapshot, p *plan.Plan, moveID string) ([]siteFence, error) {
	if cfg.Fence != FenceNetwork {
		return nil, nil
	}
	sites := p.NeedsFailover()
	for _, site := range p.GuardedSites() {
		if !s.SiteAlive(site) && !slices.Contains(sites, site) {
			sites = append(sites, site)
		}
	}
	if len(sites) == 0 {
		return nil, nil
	}
	if cfg.Dynamic == nil {
		return nil, errors.New("--fence network needs a dynamic client")
	}
	class, err := fencing.PickClass(ctx, cfg.Dynamic, cfg.NetworkFence.Class)
	if err != nil {
		return nil, &BlockedError{Err: fmt.Errorf("%w (nothing was changed)", err)}
	}
	var out []siteFence
	for _, site := range sites {
		var nodes []fencing.Node
		for _, n := range s.Nodes {
			if n.Site == site {
				nodes = append(nodes, n.Fence)
			}
		}
		for _, st := range p.Steps {
			if st.Action == plan.ActionFailover && st.NodeGone && st.From == site && !contains(cfg.ConfirmedDown, site) {
				return nil, &BlockedError{Err: fmt.Errorf("--fence network cannot prove %s down: node %s, where %s ran, is deleted, and no fence shows what still runs there; pass --confirm-site-down=%s as well (nothing was changed)", site, st.Node, st.Key(), site)}
			}
		}
		// The addresses the driver itself reports for these nodes' storage clients go in
		// too: a storage network apart from the nodes' InternalIPs (found by review).
		var names []string
		for _, n := range nodes {
			names = append(names, n.Name)
		}
		extra := slices.Clone(cfg.NetworkFence.ExtraCIDRs)
		driver, err := fencing.DriverCIDRs(ctx, cfg.Dynamic, class.Name, names)
		if err != nil && cfg.OnWarning != nil {
			cfg.OnWarning(fmt.Sprintf("could not read csi-addons' node objects (%v): the fence of %s covers the node addresses and --fence-cidr only, not the addresses the storage driver reports", err, site))
		}
		extra = append(extra, driver...)
		cidrs, err := fencing.SiteCIDRs(nodes, extra)
		if err != nil {
			return nil, &BlockedError{Err: fmt.Errorf("--fence network, site %s: %w (nothing was changed)", site, err)}
		}
		obj := fencing.NewNetworkFence(site, moveID, class, cidrs)
		fencing.SetFencedNodes(obj, names)
		out = append(out, siteFence{site: site, obj: obj})
	}
	return out, nil
}

// DescribeFences says, in words, what the storage fences of a move would be: the fences
// --fence network would create, and the fence a move to a fenced site would lift. It
// writes nothing; a fence it cannot plan is an error, as the move's preflight would be.
func DescribeFences(ctx context.Context, cfg Config, s *snapshot.Snapshot, p *plan.Plan) ([]string, error) {
	fences, err := planFences(ctx, cfg, s, p, "")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range fences {
		cidrs, _, _ := unstructured.NestedStringSlice(f.obj.Object, "spec", "cidrs")
		driver, _, _ := unstructured.NestedString(f.obj.Object, "spec", "driver")
		out = append(out, fmt.Sprintf("create NetworkFence %s (driver %s, class %s) over %s, and wait for the driver's Succeeded before any VM is touched",
			f.obj.GetName(), driver, f.obj.GetAnnotations()["sitefail.io/network-fence-class"], strings.Join(cidrs, ", ")))
	}
	u, err := targetFence(ctx, cfg, s, p)
	if err != nil {
		return out, err
	}
	if u != nil {
		out = append(out, fmt.Sprintf("lift NetworkFence %s (Unfenced, then deleted) before any VM goes to %s", u.GetName(), p.Request.To))
	}
	return out, nil
}

// applyFences creates each fence and waits for the storage driver's success. A failed
// fence stops the move before any VM is touched.
func applyFences(ctx context.Context, cfg Config, fences []siteFence, note func(string)) error {
	timeout := cfg.NetworkFence.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	for _, f := range fences {
		res, err := fencing.Fence(ctx, cfg.Dynamic, f.obj, timeout, cfg.DryRun == DryRunServer)
		if err != nil {
			note(fmt.Sprintf("fencing site %s with NetworkFence %s failed: %v", f.site, f.obj.GetName(), err))
		} else {
			note(fmt.Sprintf("site %s fenced: NetworkFence %s (uid %s) reported %q", f.site, res.Name, res.UID, res.Message))
		}
		if errors.Is(err, fencing.ErrFenceFailed) {
			return fmt.Errorf("--fence network, site %s: %w; no VM was touched. Fix the storage driver's problem, delete the failed fence (kubectl delete networkfence %s), then run the move again", f.site, err, f.obj.GetName())
		}
		if err != nil {
			return fmt.Errorf("--fence network, site %s: %w; no VM was touched", f.site, err)
		}
		if cfg.OnWarning != nil && cfg.DryRun == DryRunNone {
			cfg.OnWarning(fmt.Sprintf("site %s's storage is fenced: NetworkFence %s (uid %s) reports %q", f.site, res.Name, res.UID, res.Message))
		}
	}
	return nil
}

// DefaultUnfenceSettle covers a launcher's grace period with room to spare: KubeVirt's
// default terminationGracePeriodSeconds is 30 s, the common VM templates set 180 s, and
// the launcher pod's is the VMI's plus a margin.
const DefaultUnfenceSettle = 5 * time.Minute

// targetFence finds this tool's storage fence of the move's target site (a failback
// to a site an earlier failover fenced) and checks that it may be lifted: the site is
// back, and nothing of what ran there before the fence runs there now. Lifting it with
// a stale guest still there would give that guest its disks back beside the copy the
// failover started. It returns nil when there is no such fence.
func targetFence(ctx context.Context, cfg Config, s *snapshot.Snapshot, p *plan.Plan) (*unstructured.Unstructured, error) {
	if cfg.Dynamic == nil || len(p.Steps) == 0 || p.Request.To == "" {
		return nil, nil
	}
	site := p.Request.To
	name := fencing.FenceName(site)
	u, err := cfg.Dynamic.Resource(fencing.NetworkFences).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case apierrors.IsForbidden(err):
		// The viewer role lists fences but may not get one; an operator who moves VMs
		// onto a fenced site would leave them without storage.
		list, lerr := cfg.Dynamic.Resource(fencing.NetworkFences).List(ctx, metav1.ListOptions{})
		if apierrors.IsNotFound(lerr) {
			return nil, nil
		}
		if lerr != nil {
			return nil, fmt.Errorf("cannot tell whether %s's storage is fenced: get networkfences %s: %v; list: %v (grant get on networkfences.csiaddons.openshift.io)", site, name, err, lerr)
		}
		u = nil
		for i := range list.Items {
			if list.Items[i].GetName() == name {
				u = &list.Items[i]
			}
		}
		if u == nil {
			return nil, nil
		}
	case err != nil:
		return nil, fmt.Errorf("read NetworkFence %s (is %s's storage fenced?): %w", name, site, err)
	}
	if u.GetLabels()[fencing.FenceSiteLabel] == "" {
		return nil, &BlockedError{Err: fmt.Errorf("NetworkFence %s fences site %s and was not made by kubectl sitefail: VMs moved there would have no storage; unfence it yourself once the site is safe (nothing was changed)", name, site)}
	}
	settle := cfg.NetworkFence.Settle
	if settle <= 0 {
		settle = DefaultUnfenceSettle
	}
	var missing []string
	for _, n := range s.Nodes {
		if n.Site != site {
			continue
		}
		switch {
		case n.State != snapshot.NodeReady:
			missing = append(missing, fmt.Sprintf("node %s is %s: bring it back", n.Name, n.State))
		case time.Since(n.Fence.ReadySince) < settle:
			missing = append(missing, fmt.Sprintf("node %s has been Ready for %s only: its kubelet may still be ending the launchers the failover released, within their grace periods; run the failback again after %s (--unfence-settle)",
				n.Name, time.Since(n.Fence.ReadySince).Round(time.Second), settle))
		case n.KubeVirtUnschedulable:
			missing = append(missing, fmt.Sprintf("node %s has no kubevirt.io/schedulable=true: its virt-handler is not up yet, and nothing shows what runs there", n.Name))
		}
		if n.Fence.OutOfService {
			missing = append(missing, n.Fence.OutOfServiceNote())
		}
	}
	// Every node the fence fenced must be back in the site, and so pass the checks above:
	// one deleted or relabelled meanwhile may still run the guests the failover
	// released, and the unfence would give them their disks back.
	inSite := map[string]bool{}
	for _, n := range s.Nodes {
		inSite[n.Name] = n.Site == site
	}
	if fenced, ok := fencing.FencedNodes(u); !ok {
		missing = append(missing, fmt.Sprintf("NetworkFence %s names no node it fenced (made by an older version): make sure every machine it covers is stopped, then lift it yourself (kubectl delete networkfence %s)", name, name))
	} else {
		for _, node := range fenced {
			if !inSite[node] {
				missing = append(missing, fmt.Sprintf("node %s was fenced with site %s and is not in it now (deleted, or its site label changed): its guests may still run behind the fence; bring it back into %s, or make sure it is powered off and lift the fence yourself (kubectl delete networkfence %s)", node, site, site, name))
			}
		}
	}
	onSite := map[string]bool{}
	var siteNodes []fencing.Node
	for _, n := range s.Nodes {
		if n.Site == site {
			onSite[n.Name] = true
			siteNodes = append(siteNodes, n.Fence)
		}
	}
	missing = append(missing, fencing.Unfinished(siteNodes, s.Fencing)...)
	for _, kind := range s.FencingUnread {
		if strings.Contains(kind, "remediations") {
			missing = append(missing, fmt.Sprintf("the remediations of its nodes could not all be read (%s): grant list on them, so that none still at work is missed", kind))
		}
	}
	// Every namespace, whatever the move's scope: a guest of any VM that still runs on
	// the fenced site gets its disks back with the unfence.
	vmis, err := cfg.Dynamic.Resource(kubevirt.VMIs).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list VMIs in every namespace, to check that nothing runs on fenced site %s before its fence is lifted: %w", site, err)
	}
	for i := range vmis.Items {
		vmi, err := kubevirt.ToVMI(&vmis.Items[i])
		if err != nil || vmi.IsFinal() {
			continue
		}
		if node := kubevirt.RunningNode(vmi); onSite[node] {
			missing = append(missing, fmt.Sprintf("VMI %s/%s is still on node %s: make sure its guest is stopped, then delete it (kubectl delete vmi -n %s %s)", vmi.Namespace, vmi.Name, node, vmi.Namespace, vmi.Name))
		}
	}
	if len(missing) > 0 {
		return nil, &BlockedError{Err: fmt.Errorf("site %s's storage is fenced (NetworkFence %s), and the fence is lifted only when:\n  - %s\n(nothing was changed)", site, name, strings.Join(missing, "\n  - "))}
	}
	return u, nil
}

// unfenceTarget lifts this tool's fence of the target site before any VM goes there:
// Unfenced, the driver's success awaited, then the fence deleted.
func unfenceTarget(ctx context.Context, cfg Config, s *snapshot.Snapshot, p *plan.Plan, note func(string)) error {
	u, err := targetFence(ctx, cfg, s, p)
	if err != nil || u == nil {
		return err
	}
	site := p.Request.To
	if cfg.DryRun == DryRunServer {
		if cfg.OnWarning != nil {
			cfg.OnWarning(fmt.Sprintf("site %s's storage is fenced (NetworkFence %s): a move would lift the fence first (not sent under --dry-run=server)", site, u.GetName()))
		}
		return nil
	}
	timeout := cfg.NetworkFence.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	res, _, err := fencing.Unfence(ctx, cfg.Dynamic, site, timeout)
	if err != nil {
		note(fmt.Sprintf("lifting site %s's NetworkFence %s failed: %v", site, u.GetName(), err))
		return fmt.Errorf("lifting site %s's storage fence: %w; no VM was moved", site, err)
	}
	note(fmt.Sprintf("site %s's storage fence lifted: NetworkFence %s (uid %s) reported %q and was deleted", site, res.Name, u.GetUID(), res.Message))
	if cfg.OnWarning != nil {
		cfg.OnWarning(fmt.Sprintf("site %s's storage fence is lifted: NetworkFence %s reported %q and was deleted", site, res.Name, res.Message))
	}
	return nil
}

// refuseFailover applies Config.NoFailover.
func refuseFailover(cfg Config, p *plan.Plan) error {
	if sites := p.NeedsFailover(); cfg.NoFailover && len(sites) > 0 {
		return &BlockedError{Err: fmt.Errorf("site %s is down: this is an incident, not a drill; use 'move' (nothing was changed)", sites[0])}
	}
	return nil
}

// ValidateConfirmations checks ConfirmedDown before anything is written: a confirmation
// must name a site that exists and looks dead. Confirming a live site is an operator
// error, whatever the plan needs.
func ValidateConfirmations(cfg Config, s *snapshot.Snapshot) error {
	for _, site := range cfg.ConfirmedDown {
		if site == "" {
			return errors.New("--confirm-site-down needs a site name; an empty one confirms nothing (nothing was changed)")
		}
		if !s.KnownSite(site) {
			return fmt.Errorf("--confirm-site-down=%s: no node carries %s=%s (sites: %s); nothing was changed", site, cfg.Keys.Site, site, strings.Join(s.SiteNames(), ", "))
		}
		for _, n := range s.Nodes {
			if n.Site == site && n.State == snapshot.NodeReady {
				return fmt.Errorf("--confirm-site-down=%s, but node %s of that site is Ready: the site is not down. Relocate instead (no confirmation), or fence the site first; nothing was changed", site, n.Name)
			}
		}
	}
	return nil
}

// Guard is the split-brain guard before the first write: VMs are released from a site
// only when no node of it is Ready and the operator has named that site as down. The
// executor checks the same again at every release, reading the API server at that instant. It
// returns the dead nodes.
func Guard(cfg Config, s *snapshot.Snapshot, p *plan.Plan) ([]string, error) {
	if err := ValidateConfirmations(cfg, s); err != nil {
		return nil, err
	}
	var dead []string
	for _, site := range p.NeedsFailover() {
		if site == "" {
			var vms []string
			for _, st := range p.Steps {
				if st.Action == plan.ActionFailover && st.From == "" {
					vms = append(vms, st.Key()+" (node "+st.Node+")")
				}
			}
			return nil, &BlockedError{Err: fmt.Errorf("refusing to release %s: their nodes carry no %s label, so no site's confirmation covers them; label the nodes ('kubectl sitefail sites label') or handle these VMs by hand (nothing was changed)", strings.Join(vms, ", "), cfg.Keys.Site)}
		}
		n := 0
		for _, node := range s.Nodes {
			if node.Site != site {
				continue
			}
			if node.State == snapshot.NodeReady {
				return nil, fmt.Errorf("refusing to fail over from %s: node %s is Ready, so the site may be alive and its VMs running; relocate instead, or fence the site first", site, node.Name)
			}
			dead = append(dead, node.Name)
			n++
		}
		// Strong fencing evidence for every node stands in for the typed confirmation;
		// the release checks it again (kubecluster.Options.ProvenSites). Under --fence
		// network the move makes that evidence itself, before the first release, and
		// checks that it proves the site down (Run).
		if !contains(cfg.ConfirmedDown, site) && !p.ProvenDown(site) && cfg.Fence != FenceNetwork && (cfg.ConfirmSiteDown == nil || !cfg.ConfirmSiteDown(site, n)) {
			return nil, &BlockedError{Err: fmt.Errorf(
				"failover from %s needs confirmation: its %d node(s) are NotReady or Unknown, which is also what a network partition looks like. "+
					"If a partitioned node still runs a VM, releasing it starts a second copy on the same disks. "+
					"No fencing evidence proves it for %s. "+
					"Make sure the site is powered off or fenced, then pass --confirm-site-down=%s (nothing was changed)", site, n, strings.Join(fencing.Unproven(p.Fencing[site].Nodes), ", "), site)}
		}
	}
	// A start of a VM that an earlier failover released, anywhere but the site it left,
	// is a release too: it rests on the same proof, typed or fenced, as that failover.
	// On a live site the start's own guard refuses it at the write.
	for _, site := range p.GuardedSites() {
		if s.SiteAlive(site) {
			continue
		}
		n := 0
		for _, node := range s.Nodes {
			if node.Site == site {
				n++
			}
		}
		if !contains(cfg.ConfirmedDown, site) && !p.ProvenDown(site) && cfg.Fence != FenceNetwork && (cfg.ConfirmSiteDown == nil || !cfg.ConfirmSiteDown(site, n)) {
			return nil, &BlockedError{Err: fmt.Errorf(
				"starting the VMs an earlier failover released from %s is a release too, and needs the same proof: no fencing evidence proves it for %s; "+
					"make sure the site is powered off or fenced, then pass --confirm-site-down=%s (nothing was changed)", site, strings.Join(fencing.Unproven(p.Fencing[site].Nodes), ", "), site)}
		}
	}
	if cfg.Fence == FenceOutOfService && len(dead) > 0 {
		if err := coversDeadNodes(s, p, dead); err != nil {
			return nil, err
		}
	}
	return dead, nil
}

// coversDeadNodes refuses out-of-service fencing when the dead nodes run VMs outside the
// plan: the taint releases every VM on them at once, and KubeVirt would recreate those
// from templates that still select the dead site.
func coversDeadNodes(s *snapshot.Snapshot, p *plan.Plan, dead []string) error {
	onNode := map[string]string{}
	for i := range s.VMs {
		if vm := &s.VMs[i]; vm.Instance != nil {
			onNode[vm.Key()] = vm.Instance.NodeName
		}
	}
	return uncovered(p, dead, onNode, "are not failed over by this move")
}

// CoversDeadNodesEverywhere extends coversDeadNodes beyond the move's snapshot: the
// taint releases every instance on the dead nodes, of every namespace, and those outside
// the selection (other namespaces, other labels, standalone VMIs of no VM) would come
// back from templates that still select the dead site, or not at all.
func CoversDeadNodesEverywhere(ctx context.Context, cfg Config, p *plan.Plan, dead []string) error {
	if cfg.Fence != FenceOutOfService || len(dead) == 0 {
		return nil
	}
	list, err := cfg.Dynamic.Resource(kubevirt.VMIs).List(ctx, metav1.ListOptions{})
	if err != nil {
		return &BlockedError{Err: fmt.Errorf("--fence out-of-service releases every VM on the dead nodes, in every namespace, and listing the VMIs of every namespace to check them failed (%v): "+
			"grant list on virtualmachineinstances cluster-wide, or use --fence pod (nothing was changed)", err)}
	}
	onNode := map[string]string{}
	for _, u := range list.Items {
		onNode[u.GetNamespace()+"/"+u.GetName()], _, _ = unstructured.NestedString(u.Object, "status", "nodeName")
	}
	return uncovered(p, dead, onNode, "are outside this move")
}

// uncovered refuses the taint when an instance (namespace/name to its node) on a dead
// node is not failed over by the plan.
func uncovered(p *plan.Plan, dead []string, onNode map[string]string, why string) error {
	isDead := map[string]bool{}
	for _, n := range dead {
		isDead[n] = true
	}
	planned := map[string]bool{}
	for _, st := range p.Steps {
		if st.Action == plan.ActionFailover {
			planned[st.Key()] = true
		}
	}
	var outside []string
	for key, node := range onNode {
		if isDead[node] && !planned[key] {
			outside = append(outside, key)
		}
	}
	if len(outside) == 0 {
		return nil
	}
	sort.Strings(outside)
	return &BlockedError{Err: fmt.Errorf("--fence out-of-service releases every VM on the dead nodes at once, and %d of them %s (%s): "+
		"select them too (--all -A), or use --fence pod, which releases only the selected VMs, tier by tier (nothing was changed)", len(outside), why, strings.Join(outside, ", "))}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

type need struct{ verb, group, resource, sub, ns, name string }

func (n need) String() string {
	res := n.resource
	if n.sub != "" {
		res += "/" + n.sub
	}
	if n.group != "" {
		res += "." + n.group
	}
	if n.name != "" {
		res += " " + n.name
	}
	where := "cluster-wide"
	if n.ns != "" {
		where = "in namespace " + n.ns
	}
	return fmt.Sprintf("%s %s %s", n.verb, res, where)
}

// needs lists every verb the plan's writes use.
func needs(cfg Config, p *plan.Plan) []need {
	var out []need
	namespaces := map[string]bool{}
	actions := map[plan.Action]bool{}
	manual := map[string]bool{}
	for _, st := range p.Steps {
		if st.Action == plan.ActionSkip {
			continue
		}
		namespaces[st.Namespace] = true
		actions[st.Action] = true
		if st.Action == plan.ActionStart || st.Action == plan.ActionFailover && st.RunStrategy == kubevirtv1.RunStrategyManual {
			manual[st.Namespace] = true
		}
	}
	for ns := range namespaces {
		out = append(out, need{"patch", "kubevirt.io", "virtualmachines", "", ns, ""},
			need{"watch", "kubevirt.io", "virtualmachineinstances", "", ns, ""},
			need{"create", "", "events", "", ns, ""})
		if actions[plan.ActionRestart] {
			out = append(out, need{"update", "subresources.kubevirt.io", "virtualmachines", "restart", ns, ""})
		}
		if actions[plan.ActionMigrate] {
			out = append(out, need{"create", "kubevirt.io", "virtualmachineinstancemigrations", "", ns, ""},
				need{"watch", "kubevirt.io", "virtualmachineinstancemigrations", "", ns, ""})
		}
		if actions[plan.ActionFailover] && (cfg.Fence == FencePod || cfg.Fence == FenceNetwork) {
			out = append(out, need{"delete", "", "pods", "", ns, ""})
		}
		if manual[ns] {
			out = append(out, need{"update", "subresources.kubevirt.io", "virtualmachines", "start", ns, ""})
		}
	}
	if actions[plan.ActionFailover] && cfg.Fence == FenceOutOfService {
		out = append(out, need{"update", "", "nodes", "", "", ""})
	}
	if (actions[plan.ActionFailover] || actions[plan.ActionStart]) && cfg.Fence == FenceNetwork {
		out = append(out, need{"list", "csiaddons.openshift.io", "networkfenceclasses", "", "", ""},
			need{"list", "csiaddons.openshift.io", "csiaddonsnodes", "", "", ""},
			need{"create", "csiaddons.openshift.io", "networkfences", "", "", ""},
			need{"get", "csiaddons.openshift.io", "networkfences", "", "", ""})
	}
	if cfg.DryRun == DryRunNone {
		// The Lease by name: a Role may grant update on this one Lease only.
		out = append(out, need{"create", "coordination.k8s.io", "leases", "", cfg.LockNamespace, ""},
			need{"update", "coordination.k8s.io", "leases", "", cfg.LockNamespace, lock.DefaultName})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// CheckAccess asks the API server, before the first write, whether every verb the plan
// needs is allowed, and names all that are not. It returns what it found allowed, so a
// second check of a rebuilt plan asks only about the rest.
func CheckAccess(ctx context.Context, cfg Config, p *plan.Plan, allowed map[string]bool) (map[string]bool, error) {
	if allowed == nil {
		allowed = map[string]bool{}
	}
	review := func(n need) (bool, error) {
		if allowed[n.String()] {
			return true, nil
		}
		r := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: n.verb, Group: n.group, Resource: n.resource, Subresource: n.sub, Namespace: n.ns, Name: n.name}}}
		res, err := cfg.Kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, r, metav1.CreateOptions{})
		if err != nil {
			return false, fmt.Errorf("checking permissions: %w", err)
		}
		if res.Status.Allowed {
			allowed[n.String()] = true
		}
		return res.Status.Allowed, nil
	}
	var missing []string
	everywhere := map[need]bool{}
	for _, n := range needs(cfg, p) {
		if n.ns != "" && n.name == "" {
			// A grant in every namespace (a ClusterRoleBinding) answers for each of them:
			// one review per verb instead of one per verb and namespace.
			all := n
			all.ns = ""
			ok, seen := everywhere[all]
			if !seen {
				var err error
				if ok, err = review(all); err != nil {
					return allowed, err
				}
				everywhere[all] = ok
			}
			if ok {
				continue
			}
		}
		ok, err := review(n)
		if err != nil {
			return allowed, err
		}
		if !ok {
			missing = append(missing, n.String())
		}
	}
	if len(missing) > 0 {
		return allowed, fmt.Errorf("forbidden: this move needs permissions you lack (nothing was changed):\n  - %s\nask a cluster admin for a Role or ClusterRole granting them (deploy/rbac has one)", strings.Join(missing, "\n  - "))
	}
	return allowed, nil
}

// ServerDryRun sends every template patch with dryRun=All after the same guard and
// preflight as Run, and returns the patches admission rejected and how many were sent.
func ServerDryRun(ctx context.Context, cfg Config, s *snapshot.Snapshot, p *plan.Plan) (rejected []string, sent int, err error) {
	cfg.DryRun = DryRunServer
	if _, err := Guard(cfg, s, p); err != nil {
		return nil, 0, err
	}
	if _, err := CheckAccess(ctx, cfg, p, nil); err != nil {
		return nil, 0, err
	}
	kc, err := kubecluster.New(kubecluster.Options{Config: cfg.RESTConfig, Kube: cfg.Kube, Dynamic: cfg.Dynamic, SiteKey: cfg.Keys.Site, DryRun: true})
	if err != nil {
		return nil, 0, err
	}
	for _, st := range p.Steps {
		if st.Action == plan.ActionSkip || st.Action == plan.ActionWait {
			continue
		}
		sent++
		if err := kc.PatchSite(ctx, st, map[string]string{journal.Phase: "dry-run"}); err != nil {
			rejected = append(rejected, fmt.Sprintf("%s: %v", st.Key(), err))
		}
	}
	return rejected, sent, nil
}

// NewMoveID names a move: its start time and a random suffix.
func NewMoveID(now time.Time) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return "sf-" + now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b)
}

// WhoAmI names the operator for the lock, the journal and Events.
func WhoAmI(ctx context.Context, kube kubernetes.Interface) string {
	res, err := kube.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err == nil && res.Status.UserInfo.Username != "" {
		return res.Status.UserInfo.Username
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s@%s", os.Getenv("USER"), host)
}
