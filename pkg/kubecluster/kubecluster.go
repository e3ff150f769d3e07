// Package kubecluster is the executor's view of a real cluster: writes through the API
// server (VM patches, KubeVirt subresources, migrations, pod force-deletes, node taints,
// Events) and reads from watch caches of VMIs and migrations, so waiting for thousands
// of VMs costs two watches, not a stream of GETs.
package kubecluster

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
	"github.com/sitefail/kubectl-sitefail/pkg/journal"
	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
)

// OutOfServiceTaint is Kubernetes' non-graceful node shutdown taint.
const OutOfServiceTaint = "node.kubernetes.io/out-of-service"

// Cluster implements executor.Cluster against an API server.
type Cluster struct {
	kube    kubernetes.Interface
	dyn     dynamic.Interface
	subs    rest.Interface
	siteKey string
	// nodeSite maps node names to sites, from the snapshot the plan was made on.
	nodeSite map[string]string
	// proven names the dead sites released on their fencing evidence, not on the
	// operator's confirmation: each release from them reads the evidence again.
	proven map[string]bool
	dryRun []string
	actor  string
	moveID string

	vmis, migrations cache.SharedIndexInformer
	// nodes is a live watch of nodes: the release guard reads it at each release.
	nodes  cache.SharedIndexInformer
	stopCh chan struct{}

	mu      sync.Mutex
	changed chan struct{}
	events  sync.WaitGroup
}

// Options configure a Cluster.
type Options struct {
	Config    *rest.Config
	Kube      kubernetes.Interface
	Dynamic   dynamic.Interface
	Namespace string
	SiteKey   string
	NodeSite  map[string]string
	// ProvenSites are the dead sites whose failover rests on fencing evidence.
	ProvenSites []string
	// DryRun sends every write with dryRun=All.
	DryRun bool
	Actor  string
	MoveID string
	// OnSkip is told of a VMI or migration that does not decode and is left out of the
	// watch caches (kubevirt.Informer).
	OnSkip func(name string, err error)
}

// New builds a Cluster; call Start before use.
func New(o Options) (*Cluster, error) {
	cfg := rest.CopyConfig(o.Config)
	cfg.GroupVersion = &kubevirt.SubresourceGroupVersion
	cfg.APIPath = "/apis"
	cfg.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	if cfg.UserAgent == "" {
		cfg.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	subs, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, err
	}
	c := &Cluster{kube: o.Kube, dyn: o.Dynamic, subs: subs, siteKey: o.SiteKey, nodeSite: o.NodeSite,
		actor: o.Actor, moveID: o.MoveID, changed: make(chan struct{}), stopCh: make(chan struct{}), proven: map[string]bool{}}
	for _, site := range o.ProvenSites {
		c.proven[site] = true
	}
	if o.DryRun {
		c.dryRun = []string{metav1.DryRunAll}
	}
	// The VMI and migration watches decode straight into the Go types: the executor's
	// waits look their VM up at every change, and converting from unstructured there
	// was half the CPU of a 1,000-VM relocation.
	rc, err := kubevirt.RESTClient(o.Config)
	if err != nil {
		return nil, err
	}
	c.vmis = kubevirt.Informer(rc, kubevirt.VMIs.Resource, o.Namespace, &kubevirtv1.VirtualMachineInstance{},
		func() runtime.Object { return &kubevirtv1.VirtualMachineInstanceList{} }, o.OnSkip)
	c.migrations = kubevirt.Informer(rc, kubevirt.Migrations.Resource, o.Namespace, &kubevirtv1.VirtualMachineInstanceMigration{},
		func() runtime.Object { return &kubevirtv1.VirtualMachineInstanceMigrationList{} }, o.OnSkip)

	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.notify() },
		UpdateFunc: func(any, any) { c.notify() },
		DeleteFunc: func(any) { c.notify() },
	}
	if _, err := c.vmis.AddEventHandler(h); err != nil {
		return nil, err
	}
	c.nodes = informers.NewSharedInformerFactory(o.Kube, 0).Core().V1().Nodes().Informer()
	if _, err := c.migrations.AddEventHandler(h); err != nil {
		return nil, err
	}
	return c, nil
}

// Watch runs the watches and waits for their caches.
func (c *Cluster) Watch(ctx context.Context) error {
	go c.vmis.Run(c.stopCh)
	go c.migrations.Run(c.stopCh)
	go c.nodes.Run(c.stopCh)
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !cache.WaitForCacheSync(sctx.Done(), c.vmis.HasSynced, c.migrations.HasSynced, c.nodes.HasSynced) {
		return fmt.Errorf("watching nodes, VMIs and migrations: caches did not sync within a minute")
	}
	return nil
}

// Stop ends the watches and waits for Events in flight.
func (c *Cluster) Stop() {
	close(c.stopCh)
	c.events.Wait()
}

func (c *Cluster) notify() {
	c.mu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// Changed implements executor.Cluster.
func (c *Cluster) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// PatchSite implements executor.Cluster.
func (c *Cluster) PatchSite(ctx context.Context, st plan.Step, journal map[string]string) error {
	patch, err := selector.SitePatch(c.siteKey, st.To, st.UID, journal)
	if err != nil {
		return err
	}
	return c.patchVM(ctx, st, patch)
}

// Annotate implements executor.Cluster.
func (c *Cluster) Annotate(ctx context.Context, st plan.Step, journal map[string]string) error {
	patch, err := selector.AnnotationPatch(st.UID, journal)
	if err != nil {
		return err
	}
	return c.patchVM(ctx, st, patch)
}

// patchVM sends a merge patch that carries the VM's UID. When the name now belongs to
// another VM, the patch would change that VM's UID, which the API server refuses (422,
// "metadata.uid: ... field is immutable"): the VM the plan saw is gone.
func (c *Cluster) patchVM(ctx context.Context, st plan.Step, patch []byte) error {
	_, err := c.dyn.Resource(kubevirt.VMs).Namespace(st.Namespace).Patch(ctx, st.Name, types.MergePatchType, patch, metav1.PatchOptions{DryRun: c.dryRun})
	if st.UID != "" && (apierrors.IsInvalid(err) || apierrors.IsConflict(err)) && strings.Contains(err.Error(), "uid") {
		return apierrors.NewNotFound(schema.GroupResource{Group: kubevirt.VMs.Group, Resource: kubevirt.VMs.Resource}, st.Name)
	}
	return err
}

func (c *Cluster) subresource(ctx context.Context, ns, name, verb string, body any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	return c.subs.Put().Namespace(ns).Resource("virtualmachines").Name(name).SubResource(verb).
		Body(data).SetHeader("Content-Type", "application/json").Do(ctx).Error()
}

// Restart implements executor.Cluster through virt-api's restart subresource.
func (c *Cluster) Restart(ctx context.Context, ns, name string) error {
	return c.subresource(ctx, ns, name, "restart", kubevirtv1.RestartOptions{DryRun: c.dryRun})
}

// Start implements executor.Cluster through virt-api's start subresource.
func (c *Cluster) Start(ctx context.Context, ns, name string) error {
	return c.subresource(ctx, ns, name, "start", kubevirtv1.StartOptions{DryRun: c.dryRun})
}

// Migrate implements executor.Cluster.
func (c *Cluster) Migrate(ctx context.Context, ns, vmi, name, to string) error {
	m := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": kubevirtv1.SchemeGroupVersion.String(),
		"kind":       "VirtualMachineInstanceMigration",
		"metadata": map[string]any{"name": name, "namespace": ns,
			"labels": map[string]any{journal.MoveID: c.moveID, journal.To: to}},
		"spec": map[string]any{"vmiName": vmi},
	}}
	_, err := c.dyn.Resource(kubevirt.Migrations).Namespace(ns).Create(ctx, m, metav1.CreateOptions{DryRun: c.dryRun})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// CheckRelease implements executor.Cluster. It reads the site's nodes from the API
// server at the instant of the release, not from the watch cache: after an outage of
// the watch (the API server restarted, the network between) the cache may still say
// NotReady of a node that is back.
func (c *Cluster) CheckRelease(ctx context.Context, site, node string) error {
	if site == "" {
		return fmt.Errorf("%w: node %s carries no %s label, so no site's confirmation covers it; label it ('kubectl sitefail sites label') or release it by hand", executor.ErrNotReleasable, dashIfEmpty(node), c.siteKey)
	}
	list, err := c.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: labels.Set{c.siteKey: site}.String()})
	if err != nil {
		return fmt.Errorf("reading the nodes of site %s before the release: %w", site, err)
	}
	var n *corev1.Node
	for i := range list.Items {
		if nodeReady(&list.Items[i]) {
			return fmt.Errorf("%w: node %s of site %s is Ready again", executor.ErrSiteAlive, list.Items[i].Name, site)
		}
		if list.Items[i].Name == node {
			n = &list.Items[i]
		}
	}
	if c.proven[site] {
		if err := c.checkEvidence(ctx, site, list.Items, node); err != nil {
			return err
		}
	}
	if node == "" {
		return nil
	}
	if n == nil {
		got, err := c.kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			// Deleted from the cluster, which says nothing of whether it still runs: only
			// a node the move knew in the confirmed site (from its snapshot, or a plan step
			// whose node was already gone and which the confirmation of that site covers)
			// may be released from.
			if c.nodeSite[node] == site {
				return nil
			}
			return fmt.Errorf("%w: node %s is not in the cluster and was not known in the confirmed-down site %s", executor.ErrNotReleasable, node, site)
		case err != nil:
			return fmt.Errorf("reading node %s before the release: %w", node, err)
		}
		n = got
	}
	if got := n.Labels[c.siteKey]; got != site {
		return fmt.Errorf("%w: node %s is in site %q, not in the confirmed-down site %s", executor.ErrNotReleasable, node, got, site)
	}
	if nodeReady(n) {
		return fmt.Errorf("%w: node %s is Ready", executor.ErrNotReleasable, node)
	}
	return nil
}

// checkEvidence reads the fencing evidence again for every node of a site released on
// it, and for the node of the release when it is gone from the cluster. Evidence that
// no longer holds (a NetworkFence set back to Unfenced, a FAR deleted, a node back)
// stops every release, as a Ready node does: the move rested on it.
func (c *Cluster) checkEvidence(ctx context.Context, site string, nodes []corev1.Node, node string) error {
	objs, unread, err := fencing.Read(ctx, c.dyn)
	if err != nil {
		// Not a refusal: a failed read (a 429 during the outage) is retried where the
		// check runs inside a write's tries, and otherwise fails this VM, not the move.
		return fmt.Errorf("reading the fencing evidence of site %s before the release: %w", site, err)
	}
	// A kubelet that renewed its lease after its node's fence contradicts the fence
	// (found by review). Leases that cannot be read leave the judgement to the objects,
	// as the plan's own judgement does.
	renewed := map[string]time.Time{}
	leases, err := c.kube.CoordinationV1().Leases(corev1.NamespaceNodeLease).List(ctx, metav1.ListOptions{})
	switch {
	case apierrors.IsForbidden(err):
		// The plan said so already (unread leases); the objects decide.
	case err != nil:
		// Retried by the write's tries: a 429 in the outage must not hide a kubelet
		// that still runs.
		return fmt.Errorf("reading the node leases of site %s before the release: %w", site, err)
	default:
		for _, l := range leases.Items {
			if l.Spec.RenewTime != nil {
				renewed[l.Name] = l.Spec.RenewTime.Time
			}
		}
	}
	var judged []fencing.Node
	seen := false
	for i := range nodes {
		n := fencing.NodeFrom(&nodes[i])
		n.LeaseRenewed = renewed[n.Name]
		judged = append(judged, n)
		seen = seen || nodes[i].Name == node
	}
	// A node the move knew in the site and that is gone from the cluster must be proven
	// too; any other node is refused by the checks after this one.
	if node != "" && !seen && c.nodeSite[node] == site {
		judged = append(judged, fencing.Node{Name: node})
	}
	fs := fencing.JudgeSite(judged, objs, unread)
	if fs.Proven {
		return nil
	}
	why := "no node"
	if u := fencing.Unproven(fs.Nodes); len(u) > 0 {
		why = strings.Join(u, ", ")
	}
	return fmt.Errorf("%w: the fencing evidence that site %s is down no longer holds for %s", executor.ErrSiteAlive, site, why)
}

func nodeReady(n *corev1.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

// ForceDeleteLaunchers implements executor.Cluster: a grace-0 delete of the launcher
// pods, which the kubelet of a dead node can no longer confirm. Every pod's node is
// checked against the API server before the first delete (one VM's pods, moments
// apart), so a refusal deletes nothing; a migration target's VMI is read again right
// before its delete; each delete is conditional on that pod's UID.
func (c *Cluster) ForceDeleteLaunchers(ctx context.Context, ns, uid, site string) error {
	list, err := c.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: kubevirt.CreatedByLabel + "=" + uid})
	if err != nil {
		return err
	}
	// Every pod is judged before the first delete, so a refusal leaves the VM whole.
	var release, targets []corev1.Pod
	for _, p := range list.Items {
		if err := c.CheckRelease(ctx, site, p.Spec.NodeName); err != nil {
			if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
				// An ended launcher elsewhere (an earlier migration's source on a live
				// node) runs nothing: it is neither released nor a reason to refuse.
				continue
			}
			if ok, verr := c.unfinishedTarget(ctx, site, &p); verr != nil {
				return verr
			} else if !ok {
				return fmt.Errorf("pod %s: %w", p.Name, err)
			}
			targets = append(targets, p)
			continue
		}
		// Ended launchers on the dead node go too: KubeVirt takes the newest pod on the
		// VMI's node as its pod, and a VM that migrated away and back would otherwise
		// keep an old, ended one there, so its instance would never fail and never be
		// recreated.
		release = append(release, p)
	}
	zero := int64(0)
	del := func(p corev1.Pod) error {
		pre := &metav1.Preconditions{UID: &p.UID}
		err := c.kube.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: pre, DryRun: c.dryRun})
		// A conflict (the precondition: this pod, not a successor) is the executor's to
		// retry, with a fresh list.
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		return nil
	}
	for _, p := range release {
		if err := del(p); err != nil {
			return err
		}
	}
	// The dead site's pods first: with its source gone, the migration cannot hand over
	// any more. The target's handler may still have done it in the meantime, so the VMI
	// is read again right before each target's delete.
	for _, p := range targets {
		if ok, err := c.unfinishedTarget(ctx, site, &p); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("pod %s: %w: the migration to its node completed during the release", p.Name, executor.ErrNotReleasable)
		}
		if err := del(p); err != nil {
			return err
		}
	}
	return nil
}

// unfinishedTarget reports a launcher that is the target of a live migration off the
// confirmed-down site which never handed over: the VMI, read from the API server now,
// still has its node in that site, and its migration state names this pod and this
// migration with neither an end time nor completion (KubeVirt v1.8.0's target moves
// status.nodeName with the end time, then marks Completed). Such a target holds no guest
// of record: if its QEMU took the memory at the last instant, stopping it stops a copy
// of a guest whose source is down, and the VM starts again from its disks, as in any
// failover. The pod stays in the way otherwise: virt-controller takes the VMI's newest
// pod as its own, so the instance would neither fail nor be recreated (issue 20,
// behaviour 1).
func (c *Cluster) unfinishedTarget(ctx context.Context, site string, p *corev1.Pod) (bool, error) {
	job := p.Labels[kubevirtv1.MigrationJobLabel]
	owner := metav1.GetControllerOf(p)
	if job == "" || owner == nil || owner.Kind != "VirtualMachineInstance" || c.dyn == nil {
		return false, nil
	}
	u, err := c.dyn.Resource(kubevirt.VMIs).Namespace(p.Namespace).Get(ctx, owner.Name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, err
	}
	vmi, err := kubevirt.ToVMI(u)
	if err != nil || string(vmi.UID) != string(owner.UID) {
		return false, err
	}
	ms := vmi.Status.MigrationState
	if ms == nil || string(ms.MigrationUID) != job || ms.TargetPod != p.Name || ms.Completed || ms.EndTimestamp != nil {
		return false, nil
	}
	return c.CheckRelease(ctx, site, vmi.Status.NodeName) == nil, nil
}

// FenceNodes implements executor.Cluster: it taints those of nodes that belong to site,
// each checked immediately before.
func (c *Cluster) FenceNodes(ctx context.Context, site string, nodes []string) error {
	for _, name := range nodes {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			n, err := c.kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if n.Labels[c.siteKey] != site {
				return nil
			}
			if err := c.CheckRelease(ctx, site, name); err != nil {
				return err
			}
			if nodeReady(n) {
				return fmt.Errorf("%w: node %s is Ready", executor.ErrNotReleasable, name)
			}
			for _, t := range n.Spec.Taints {
				if t.Key == OutOfServiceTaint {
					return nil
				}
			}
			// The node keeps who added the taint, and when: a move back names the taint
			// as this tool's, and never mistakes somebody else's taint for it.
			added := metav1.Now()
			n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: OutOfServiceTaint, Value: "nodeshutdown", Effect: corev1.TaintEffectNoExecute, TimeAdded: &added})
			if n.Annotations == nil {
				n.Annotations = map[string]string{}
			}
			n.Annotations[fencing.OutOfServiceByAnnotation] = fencing.OutOfServiceBy(c.moveID, added.Time)
			_, err = c.kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{DryRun: c.dryRun})
			return err
		})
		if err != nil {
			return fmt.Errorf("taint node %s: %w", name, err)
		}
	}
	return nil
}

// Instance implements executor.Cluster from the watch cache.
func (c *Cluster) Instance(ns, name string) *executor.Instance {
	obj, ok, err := c.vmis.GetStore().GetByKey(ns + "/" + name)
	if err != nil || !ok {
		return nil
	}
	vmi, ok := obj.(*kubevirtv1.VirtualMachineInstance)
	if !ok {
		return nil
	}
	node := kubevirt.RunningNode(vmi)
	inst := &executor.Instance{
		UID: string(vmi.UID), NodeName: node, Phase: string(vmi.Status.Phase),
		Terminating: vmi.DeletionTimestamp != nil, SelectorSite: vmi.Spec.NodeSelector[c.siteKey],
		Site: c.siteOfNode(node),
	}
	if cond, ok := kubevirt.VMICondition(vmi, kubevirtv1.VirtualMachineInstanceReady); ok {
		inst.Ready = cond.Status == corev1.ConditionTrue
	}
	// Only a pause a user asked for is a state the move carries over.
	_, inst.Paused = kubevirt.PausedState(vmi)
	if ms := vmi.Status.MigrationState; ms != nil && ms.TargetNode != "" && ms.TargetNode == node && ms.EndTimestamp != nil && !ms.Failed &&
		ms.TargetNodeDomainReadyTimestamp == nil && (ms.TargetState == nil || ms.TargetState.DomainReadyTimestamp == nil) {
		inst.DomainNeverRan = true
	}
	return inst
}

// siteOfNode reads the node's site from the live watch, so a node added or relabeled
// during the move counts; the snapshot's view is the fallback until the watch has it.
func (c *Cluster) siteOfNode(name string) string {
	if name == "" {
		return ""
	}
	if obj, ok, _ := c.nodes.GetStore().GetByKey(name); ok {
		return obj.(*corev1.Node).Labels[c.siteKey]
	}
	return c.nodeSite[name]
}

// Migration implements executor.Cluster from the watch cache.
func (c *Cluster) Migration(ns, name string) executor.MigrationState {
	obj, ok, err := c.migrations.GetStore().GetByKey(ns + "/" + name)
	if err != nil || !ok {
		return executor.MigrationState{}
	}
	m, ok := obj.(*kubevirtv1.VirtualMachineInstanceMigration)
	if !ok {
		return executor.MigrationState{}
	}
	return c.migrationState(m)
}

func (c *Cluster) migrationState(m *kubevirtv1.VirtualMachineInstanceMigration) executor.MigrationState {
	done, success := kubevirt.MigrationDone(m)
	st := executor.MigrationState{Name: m.Name, Exists: true, Phase: string(m.Status.Phase), Done: done, Success: success}
	if done && !success {
		st.Reason = c.failureReason(m)
	}
	st.TargetPlaced = targetPlaced(m)
	return st
}

// targetPlaced says whether the migration reached Scheduled, which virt-controller sets
// once the target pod is scheduled and ready: its phase history records each phase it
// passed through.
func targetPlaced(m *kubevirtv1.VirtualMachineInstanceMigration) bool {
	for _, ts := range m.Status.PhaseTransitionTimestamps {
		switch ts.Phase {
		case kubevirtv1.MigrationScheduled, kubevirtv1.MigrationPreparingTarget, kubevirtv1.MigrationTargetReady,
			kubevirtv1.MigrationRunning, kubevirtv1.MigrationSucceeded:
			return true
		}
	}
	return false
}

// failureReason is what KubeVirt said of a failed migration: the source's reason, which
// virt-controller copies into the VMIM once final, or still only on the VMI.
func (c *Cluster) failureReason(m *kubevirtv1.VirtualMachineInstanceMigration) string {
	if ms := m.Status.MigrationState; ms != nil && ms.FailureReason != "" {
		return ms.FailureReason
	}
	if obj, ok, _ := c.vmis.GetStore().GetByKey(m.Namespace + "/" + m.Spec.VMIName); ok {
		if vmi, ok := obj.(*kubevirtv1.VirtualMachineInstance); ok {
			if ms := vmi.Status.MigrationState; ms != nil && ms.MigrationUID == m.UID && ms.FailureReason != "" {
				return ms.FailureReason
			}
		}
	}
	for _, cond := range m.Status.Conditions {
		if cond.Status == corev1.ConditionTrue && cond.Message != "" {
			return cond.Message
		}
	}
	return ""
}

// ActiveMigration implements executor.Cluster from the watch cache.
func (c *Cluster) ActiveMigration(ns, vmi, to string) (executor.MigrationState, bool) {
	return c.unfinished(ns, vmi, func(m *kubevirtv1.VirtualMachineInstanceMigration) bool {
		return m.Labels[journal.MoveID] != "" && m.Labels[journal.To] == to
	})
}

// UnfinishedMigration implements executor.Cluster from the watch cache.
func (c *Cluster) UnfinishedMigration(ns, vmi string) (executor.MigrationState, bool) {
	return c.unfinished(ns, vmi, func(*kubevirtv1.VirtualMachineInstanceMigration) bool { return true })
}

// unfinished finds an unfinished migration of the VMI that keep accepts.
func (c *Cluster) unfinished(ns, vmi string, keep func(*kubevirtv1.VirtualMachineInstanceMigration) bool) (executor.MigrationState, bool) {
	objs, err := c.migrations.GetIndexer().ByIndex(cache.NamespaceIndex, ns)
	if err != nil {
		return executor.MigrationState{}, false
	}
	for _, o := range objs {
		m, ok := o.(*kubevirtv1.VirtualMachineInstanceMigration)
		if !ok || m.Spec.VMIName != vmi || !keep(m) {
			continue
		}
		if st := c.migrationState(m); !st.Done {
			return st, true
		}
	}
	return executor.MigrationState{}, false
}

// Record implements executor.Cluster. Events are an audit trail, not a step: a failure
// to write one does not fail the move.
func (c *Cluster) Record(ns, name, reason, message string) {
	if c.dryRun != nil {
		return
	}
	now := metav1.Now()
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: name + ".sitefail.", Namespace: ns,
			Annotations: map[string]string{journal.MoveID: c.moveID, journal.Actor: c.actor}},
		InvolvedObject: corev1.ObjectReference{Kind: "VirtualMachine", APIVersion: kubevirtv1.SchemeGroupVersion.String(), Namespace: ns, Name: name},
		Reason:         reason,
		Message:        message + " (by " + c.actor + ", move " + c.moveID + ")",
		Type:           corev1.EventTypeNormal,
		Source:         corev1.EventSource{Component: "kubectl-sitefail"},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		ReportingController: "sitefail.io/kubectl-sitefail", ReportingInstance: c.actor,
	}
	if reason == "SitefailMoveFailed" {
		ev.Type = corev1.EventTypeWarning
	}
	c.events.Add(1)
	go func() {
		defer c.events.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = c.kube.CoreV1().Events(ns).Create(ctx, ev, metav1.CreateOptions{})
	}()
}

var _ executor.Cluster = (*Cluster)(nil)
