// Package snapshot reads everything sitefail decides on from the cluster in a handful of
// paginated LIST calls, and holds it as plain data: sites, nodes, VMs and where they run.
package snapshot

import (
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
)

// NodeState is a node's readiness as the node lifecycle controller reports it.
type NodeState string

const (
	NodeReady    NodeState = "Ready"
	NodeNotReady NodeState = "NotReady"
	NodeUnknown  NodeState = "Unknown"
)

// Node is the part of a Node that placement decisions need.
type Node struct {
	Name          string    `json:"name"`
	Site          string    `json:"site,omitempty"`
	State         NodeState `json:"state"`
	Unschedulable bool      `json:"unschedulable,omitempty"`
	// KubeVirtUnschedulable: the node lacks kubevirt.io/schedulable=true, which every
	// launcher pod selects; its virt-handler is down, just came back, or never ran.
	KubeVirtUnschedulable bool              `json:"kubevirtUnschedulable,omitempty"`
	CPUMilli              int64             `json:"allocatableCPUMillis"`
	MemoryBytes           int64             `json:"allocatableMemoryBytes"`
	Labels                map[string]string `json:"-"`
	Taints                []corev1.Taint    `json:"-"`
	// Conditions are the node's condition statuses by type: a NodeHealthCheck counts a
	// node healthy only when none matches its unhealthy conditions.
	Conditions map[corev1.NodeConditionType]corev1.ConditionStatus `json:"-"`
	// Fence is what the fencing judgement needs of the node.
	Fence fencing.Node `json:"-"`
	// Devices counts the allocatable extended resources (GPUs, host devices, SR-IOV
	// VFs: names with a domain, like nvidia.com/GA102GL_A10) the node offers.
	Devices map[string]int64 `json:"devices,omitempty"`
}

// Schedulable reports whether new VMs can land on the node.
func (n *Node) Schedulable() bool {
	return n.State == NodeReady && !n.Unschedulable && !n.KubeVirtUnschedulable
}

// VMState summarises a VM's placement relative to its home site.
type VMState string

const (
	StateAligned     VMState = "aligned"
	StatePendingMove VMState = "pending-move"
	StateStranded    VMState = "stranded"
	StateStopped     VMState = "stopped"
	StateUnpinned    VMState = "unpinned"
	StateUnknown     VMState = "unknown"
)

// VMI is the running instance of a VM, as far as sitefail cares.
type VMI struct {
	UID            types.UID         `json:"uid"`
	Phase          string            `json:"phase"`
	NodeName       string            `json:"nodeName,omitempty"`
	Ready          bool              `json:"ready"`
	LiveMigratable bool              `json:"liveMigratable"`
	NotMigratable  string            `json:"notMigratableReason,omitempty"`
	NodeSelector   map[string]string `json:"nodeSelector,omitempty"`
	Migrating      bool              `json:"migrating,omitempty"`
	Terminating    bool              `json:"terminating,omitempty"`
	// Paused: the guest is paused (condition Paused).
	Paused bool `json:"paused,omitempty"`
	// PausedByUser: paused by a request (virtctl pause), not by an I/O error or the
	// migration monitor: a state the operator chose, which a move carries over.
	PausedByUser bool `json:"pausedByUser,omitempty"`
}

// VM is one VirtualMachine with its instance and derived placement.
type VM struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	UID       types.UID `json:"uid"`
	// Tier is 0 when the VM carries no tier label; TierError names a malformed one.
	Tier      int    `json:"tier,omitempty"`
	TierError string `json:"tierError,omitempty"`
	// HomeSite is the site key of the template nodeSelector: where the VM will start.
	HomeSite        string                               `json:"homeSite,omitempty"`
	NodeSelector    map[string]string                    `json:"nodeSelector,omitempty"`
	HasSelector     bool                                 `json:"-"`
	Affinity        *corev1.Affinity                     `json:"-"`
	Tolerations     []corev1.Toleration                  `json:"-"`
	RunStrategy     kubevirtv1.VirtualMachineRunStrategy `json:"runStrategy"`
	PrintableStatus string                               `json:"printableStatus,omitempty"`
	Ready           bool                                 `json:"ready"`
	RestartRequired bool                                 `json:"restartRequired,omitempty"`
	// StartRequested: a start request (a restart's, or a start's) waits in the VM's
	// status for KubeVirt to act on it.
	StartRequested bool `json:"startRequested,omitempty"`
	// Deleting: the VM itself is being deleted (deletionTimestamp set, its namespace
	// going, say): KubeVirt starts no new instance of it.
	Deleting bool `json:"deleting,omitempty"`
	// GitOps names the controller (argocd, flux) whose metadata the VM carries.
	GitOps string `json:"gitops,omitempty"`
	// Owner is the controller that owns the VM ("Kind/name" of its controller
	// ownerReference, a VirtualMachinePool say): it rewrites the VM's spec.
	Owner       string `json:"owner,omitempty"`
	CPUMilli    int64  `json:"requestCPUMillis"`
	MemoryBytes int64  `json:"requestMemoryBytes"`
	// OverheadBytes is the memory KubeVirt adds to the launcher pod's request.
	OverheadBytes   int64             `json:"memoryOverheadBytes,omitempty"`
	Labels          map[string]string `json:"-"`
	Annotations     map[string]string `json:"-"`
	HasAnnotations  bool              `json:"-"`
	ResourceVersion string            `json:"-"`

	// Claims are the PVCs the VM mounts (its volumes' claims and DataVolumes, and its
	// persistent-state PVC), in its namespace; DataVolumes the DataVolumes among them.
	Claims      []string `json:"claims,omitempty"`
	DataVolumes []string `json:"dataVolumes,omitempty"`
	// Devices are the device plugin resources the VM asks for (its GPUs and host
	// devices); NodeFeatures the node labels KubeVirt adds to its launcher's
	// nodeSelector (dedicated CPUs, a named CPU model, required CPU features).
	Devices      []string          `json:"devices,omitempty"`
	NodeFeatures map[string]string `json:"nodeFeatures,omitempty"`
	// HostModelCPU: the CPU model is host-model (KubeVirt's default), so a live
	// migration needs a target that can run the source node's CPU model.
	HostModelCPU bool `json:"hostModelCPU,omitempty"`
	// Instancetype names the VM's instance type (InstancetypeKind says which kind);
	// InstancetypeSite is the site key its nodeSelector sets, which the template cannot
	// override.
	// Networks are the VM's Multus networks, namespace/name.
	Networks         []string `json:"networks,omitempty"`
	Instancetype     string   `json:"instancetype,omitempty"`
	InstancetypeKind string   `json:"instancetypeKind,omitempty"`
	InstancetypeSite string   `json:"instancetypeSite,omitempty"`
	// InstancetypeSelects: the instance type sets spec.nodeSelector, and KubeVirt
	// v1.8.0 then refuses any nodeSelector in the VM's template (a conflict), the site
	// key included.
	InstancetypeSelects bool `json:"instancetypeSelects,omitempty"`

	Instance    *VMI    `json:"instance,omitempty"`
	CurrentSite string  `json:"currentSite,omitempty"`
	State       VMState `json:"state"`
}

// Key returns namespace/name.
func (v *VM) Key() string { return v.Namespace + "/" + v.Name }

// Snapshot is the cluster as read at one instant.
type Snapshot struct {
	Keys  selector.Keys
	Nodes []Node
	VMs   []VM
	// LauncherPods maps a VMI UID to the names of its virt-launcher pods.
	LauncherPods map[types.UID][]string
	// ActiveMigrations counts migrations not yet in a final phase, by namespace/VMI name.
	ActiveMigrations map[string]string
	// ActiveMigrationTo is the target site a sitefail migration among them carries in its
	// labels, by namespace/VMI name (nil where the snapshot was composed from caches).
	ActiveMigrationTo map[string]string
	// MigrationsPerCluster is the KubeVirt CR's parallelMigrationsPerCluster (KubeVirt's
	// default, 5, when unset or unreadable): more migrations wait in Pending.
	MigrationsPerCluster int
	// RolloutStrategy is the KubeVirt CR's vmRolloutStrategy: LiveUpdate (also when the
	// CR leaves it unset: KubeVirt's default since v1.6) or Stage; "" when the CR could
	// not be read.
	RolloutStrategy string
	// Storage is nil when it was not read (a snapshot assembled from watch caches).
	Storage *Storage `json:"storage,omitempty"`
	// InstancetypesUnread says why instance types could not be read, when they could not.
	InstancetypesUnread string `json:"instancetypesUnread,omitempty"`
	// NetworksUnread says why Multus networks could not be read, when they could not.
	NetworksUnread string `json:"networksUnread,omitempty"`
	// Fencing holds the fencing tools' objects (FAR, NetworkFence, SBR, SNR); empty in a
	// snapshot assembled from watch caches, where no failover rests on them.
	Fencing fencing.Objects `json:"-"`
	// FencingUnread names the kinds of fencing evidence that could not be read.
	FencingUnread []string `json:"fencingUnread,omitempty"`
	// Etcd is the control plane's etcd members, from their static pods; nil in a
	// snapshot assembled from watch caches.
	Etcd *Etcd `json:"etcd,omitempty"`
	// NodeHealthChecks are medik8s's NodeHealthChecks; nil in a snapshot assembled from
	// watch caches.
	NodeHealthChecks *NodeHealthChecks `json:"nodeHealthChecks,omitempty"`

	nodeIndex map[string]int
}

// Node returns the node by name.
func (s *Snapshot) Node(name string) (*Node, bool) {
	if s.nodeIndex == nil {
		s.nodeIndex = make(map[string]int, len(s.Nodes))
		for i := range s.Nodes {
			s.nodeIndex[s.Nodes[i].Name] = i
		}
	}
	i, ok := s.nodeIndex[name]
	if !ok {
		return nil, false
	}
	return &s.Nodes[i], true
}

// SiteNames lists the sites named by node labels, sorted.
func (s *Snapshot) SiteNames() []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range s.Nodes {
		if n.Site != "" && !seen[n.Site] {
			seen[n.Site] = true
			out = append(out, n.Site)
		}
	}
	sort.Strings(out)
	return out
}

// HasNode reports whether the cluster has a Node of that name.
func (s *Snapshot) HasNode(name string) bool {
	_, ok := s.Node(name)
	return ok
}

// KnownSite reports whether a node carries that site label or, when every node of a
// site was deleted (as some runbooks do with an unreachable site), a VM's template
// still selects it.
func (s *Snapshot) KnownSite(site string) bool {
	if s.HasSite(site) {
		return true
	}
	for i := range s.VMs {
		if s.VMs[i].HomeSite == site {
			return true
		}
	}
	return false
}

// HasSite reports whether any node carries that site label.
func (s *Snapshot) HasSite(site string) bool {
	for _, n := range s.Nodes {
		if n.Site == site {
			return true
		}
	}
	return false
}

// SiteAlive reports whether at least one node of the site is Ready. A site whose every
// node is NotReady or Unknown is what a dead site, or a partitioned one, looks like.
func (s *Snapshot) SiteAlive(site string) bool {
	for _, n := range s.Nodes {
		if n.Site == site && n.State == NodeReady {
			return true
		}
	}
	return false
}

// SiteFencing judges the fencing evidence of every node of the site, as a failover of
// it would: sites and the ui show the same judgement. It means something only for a
// snapshot read in full (one assembled from watch caches has no evidence).
func (s *Snapshot) SiteFencing(site string) fencing.Site {
	var nodes []fencing.Node
	for _, n := range s.Nodes {
		if n.Site == site {
			nodes = append(nodes, n.Fence)
		}
	}
	return fencing.JudgeSite(nodes, s.Fencing, s.FencingUnread)
}
