// Package fencing judges the evidence that a node of a dead site runs nothing: the
// objects of the fencing tools that an operator's cluster may run (medik8s's Fence
// Agents, Storage Based and Self Node Remediation, csi-addons' NetworkFence) and the
// out-of-service taint. A NotReady node proves nothing by itself: a partitioned site
// keeps running QEMU on the same disks. It is a pure function of objects already read,
// so the plan and every release judge the same evidence the same way.
package fencing

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Strength is what one proof is worth.
type Strength int

const (
	// None: no proof.
	None Strength = iota
	// Assertion: someone says the node is down (the out-of-service taint); nothing was
	// checked.
	Assertion
	// Weak: the node fences itself (Self Node Remediation). An isolated site with two
	// or more workers may never reboot, since its nodes still see each other
	// (medik8s/self-node-remediation PR 354).
	Weak
	// Strong: something outside the node cut it off and said it succeeded: its power
	// (Fence Agents Remediation, action off), its storage (a NetworkFence), or its
	// shared-storage watchdog (Storage Based Remediation).
	Strong
)

func (s Strength) String() string {
	switch s {
	case Assertion:
		return "assertion"
	case Weak:
		return "weak"
	case Strong:
		return "strong"
	}
	return "none"
}

// The kinds of evidence, strongest first, and the resources they are read from.
var (
	FenceAgentsRemediations  = schema.GroupVersionResource{Group: "fence-agents-remediation.medik8s.io", Version: "v1alpha1", Resource: "fenceagentsremediations"}
	NetworkFences            = schema.GroupVersionResource{Group: "csiaddons.openshift.io", Version: "v1alpha1", Resource: "networkfences"}
	StorageBasedRemediations = schema.GroupVersionResource{Group: "storage-based-remediation.medik8s.io", Version: "v1alpha1", Resource: "storagebasedremediations"}
	SelfNodeRemediations     = schema.GroupVersionResource{Group: "self-node-remediation.medik8s.io", Version: "v1alpha1", Resource: "selfnoderemediations"}
	// NodeHealthChecks are no evidence: they decide whether medik8s creates the
	// remediations above for unhealthy nodes at all (cluster-scoped).
	NodeHealthChecks = schema.GroupVersionResource{Group: "remediation.medik8s.io", Version: "v1alpha1", Resource: "nodehealthchecks"}
)

// OutOfServiceTaint is Kubernetes' non-graceful node shutdown taint.
const OutOfServiceTaint = "node.kubernetes.io/out-of-service"

// OutOfServiceByAnnotation, on a node, records the out-of-service taint this tool added:
// the move's ID and the taint's timeAdded. A taint whose timeAdded differs was added by
// somebody else, even if this tool's once stood there.
const OutOfServiceByAnnotation = "sitefail.io/out-of-service-by"

// OutOfServiceBy is the annotation's value for a taint added at added by move moveID.
func OutOfServiceBy(moveID string, added time.Time) string {
	return moveID + "@" + added.UTC().Format(time.RFC3339)
}

// OutOfServiceNote names the node's out-of-service taint, whose it is, and the command
// that removes it. This tool's may be removed once the node is repaired; somebody else's
// fenced the node for a reason this tool does not know, and it never removes one.
func (n Node) OutOfServiceNote() string {
	by := "somebody other than this tool added it"
	if !n.OutOfServiceAdded.IsZero() {
		by += " at " + n.OutOfServiceAdded.UTC().Format(time.RFC3339)
	}
	by += "; find out why before you remove it"
	if n.OutOfServiceMove != "" {
		by = fmt.Sprintf("kubectl sitefail's move %s added it at %s (--fence out-of-service); remove it once the node is repaired", n.OutOfServiceMove, n.OutOfServiceAdded.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("node %s carries %s: %s (kubectl taint node %s %s-)", n.Name, OutOfServiceTaint, by, n.Name, OutOfServiceTaint)
}

// nodeNameAnnotation names the node of a remediation whose own name differs (medik8s).
const nodeNameAnnotation = "remediation.medik8s.io/node-name"

// Node is what the judgement needs of a node.
type Node struct {
	Name        string
	InternalIPs []string
	Ready       bool
	// NotReadySince is when the node's Ready condition last left True (zero if Ready).
	NotReadySince time.Time
	// ReadySince is when it last turned True (zero if not Ready).
	ReadySince time.Time
	// LeaseRenewed is when the node's kubelet last renewed its kube-node-lease Lease
	// (zero when unknown): a site that lost its power goes silent at once.
	LeaseRenewed time.Time
	// StorageHeartbeat is when Storage Based Remediation's agents last reported the
	// node's heartbeat on the shared storage as written (SBRStorageUnhealthy=False);
	// zero when they report it missing, or run not at all.
	StorageHeartbeat time.Time
	// OutOfService: the node carries the out-of-service taint.
	OutOfService bool
	// OutOfServiceAdded is the taint's timeAdded (zero when it has none).
	OutOfServiceAdded time.Time
	// OutOfServiceMove names the move of this tool that added the taint; empty when
	// somebody else added it.
	OutOfServiceMove string
	// Created is the Node object's creation time: a remediation older than it was made
	// for an earlier node of the same name.
	Created time.Time
}

// LeaseAge is how long before now the node's kubelet last renewed its lease, to the
// second; "-" when unknown (the leases are read only while a node is not Ready).
func (n Node) LeaseAge(now time.Time) string {
	if n.LeaseRenewed.IsZero() {
		return "-"
	}
	return now.Sub(n.LeaseRenewed).Round(time.Second).String()
}

// downSince reports whether the node has stayed NotReady since at, when a fence
// succeeded. A node that was Ready after its fence may have run anything since: an old
// FAR left behind after someone powered the node back on proves nothing about today.
func (n Node) downSince(at time.Time) bool {
	return !n.Ready && !n.NotReadySince.IsZero() && !at.IsZero() && !n.NotReadySince.After(at)
}

const readySince = "the node has been Ready since it was fenced: it may run VMs again"

// clockSlack allows for the clocks of the node, the fence's controller and the API
// server: a signal later than a fence by less proves nothing against it.
const clockSlack = 10 * time.Second

// Objects are the evidence objects as listed; a kind whose CRD is absent is empty.
type Objects struct {
	FenceAgentsRemediations  []unstructured.Unstructured
	NetworkFences            []unstructured.Unstructured
	StorageBasedRemediations []unstructured.Unstructured
	SelfNodeRemediations     []unstructured.Unstructured
}

// Proof is one piece of evidence about one node. Kind, Name, UID and ResourceVersion
// name the object, so that a report can say exactly what the release rested on.
type Proof struct {
	Kind            string   `json:"kind"`
	Name            string   `json:"name"`
	UID             string   `json:"uid,omitempty"`
	ResourceVersion string   `json:"resourceVersion,omitempty"`
	Strength        Strength `json:"-"`
	StrengthName    string   `json:"strength"`
	// Detail says why it counts, or why it does not count (Strength None).
	Detail string `json:"detail"`
}

// Evidence is everything found about one node.
type Evidence struct {
	Node   string  `json:"node"`
	Proofs []Proof `json:"proofs,omitempty"`
}

// Best is the strongest proof's strength.
func (e Evidence) Best() Strength {
	best := None
	for _, p := range e.Proofs {
		if p.Strength > best {
			best = p.Strength
		}
	}
	return best
}

// Summary is the strongest proof in a few words ("strong: FenceAgentsRemediation
// far-1"), or why nothing counts: the one line that sites -o wide and the ui show for a
// node.
func (e Evidence) Summary() string {
	best := e.Best()
	for _, p := range e.Proofs {
		if p.Strength == best && best != None {
			return fmt.Sprintf("%s: %s %s", p.StrengthName, p.Kind, p.Name)
		}
	}
	if len(e.Proofs) > 0 {
		return "none counts (" + e.Proofs[0].Kind + ": " + e.Proofs[0].Detail + ")"
	}
	return "none"
}

// Judge collects the evidence for each node, in the nodes' order. Every object that
// names a node is listed, including those that do not count, with the reason: an
// operator who sees a FAR must also see why it was not enough.
func Judge(nodes []Node, objs Objects) []Evidence {
	out := make([]Evidence, 0, len(nodes))
	for _, n := range nodes {
		e := Evidence{Node: n.Name}
		for i := range objs.FenceAgentsRemediations {
			if u := &objs.FenceAgentsRemediations[i]; remediates(u, n.Name) {
				e.Proofs = append(e.Proofs, older(u, n, "FenceAgentsRemediation", far))
			}
		}
		for i := range objs.NetworkFences {
			if p, ok := networkFence(&objs.NetworkFences[i], n); ok {
				e.Proofs = append(e.Proofs, p)
			}
		}
		for i := range objs.StorageBasedRemediations {
			if u := &objs.StorageBasedRemediations[i]; remediates(u, n.Name) {
				e.Proofs = append(e.Proofs, older(u, n, "StorageBasedRemediation", sbr))
			}
		}
		for i := range objs.SelfNodeRemediations {
			if u := &objs.SelfNodeRemediations[i]; remediates(u, n.Name) {
				e.Proofs = append(e.Proofs, older(u, n, "SelfNodeRemediation", snr))
			}
		}
		if n.OutOfService {
			e.Proofs = append(e.Proofs, proof(Assertion, "Taint", OutOfServiceTaint, nil,
				"someone marked the node out of service; nothing checked that it is off"))
		}
		sort.SliceStable(e.Proofs, func(i, j int) bool { return e.Proofs[i].Strength > e.Proofs[j].Strength })
		out = append(out, e)
	}
	return out
}

// Unproven names the nodes without strong evidence, with their best proof's strength:
// a failover may rest on evidence alone only when this is empty.
func Unproven(ev []Evidence) []string {
	var out []string
	for _, e := range ev {
		if b := e.Best(); b < Strong {
			out = append(out, fmt.Sprintf("%s (%s)", e.Node, b))
		}
	}
	return out
}

// Unfinished names the remediations of these nodes that are still at work, each with
// the command that ends it. A remediation in progress may yet power-cycle or fence its
// node, so a site is not given its storage back, or VMs, until each is finished
// (Succeeded set, True or False) or gone. An object whose status says nothing is taken
// as at work: no status proves it done.
func Unfinished(nodes []Node, objs Objects) []string {
	var out []string
	for _, n := range nodes {
		for _, k := range []struct {
			kind, resource string
			items          []unstructured.Unstructured
		}{
			{"FenceAgentsRemediation", FenceAgentsRemediations.Resource, objs.FenceAgentsRemediations},
			{"StorageBasedRemediation", StorageBasedRemediations.Resource, objs.StorageBasedRemediations},
			{"SelfNodeRemediation", SelfNodeRemediations.Resource, objs.SelfNodeRemediations},
		} {
			for i := range k.items {
				u := &k.items[i]
				if !remediates(u, n.Name) {
					continue
				}
				processing, _ := condition(u, "Processing")
				done, _ := condition(u, "Succeeded")
				if done == "" && k.kind == "StorageBasedRemediation" {
					// SBR states its end as FencingSucceeded, which is what its proof reads.
					done, _ = condition(u, "FencingSucceeded")
				}
				if processing != "True" && (done == "True" || done == "False") {
					continue
				}
				out = append(out, fmt.Sprintf("%s %s/%s of node %s is still at work (Processing=%s, Succeeded=%s): let it finish, or once the node is repaired delete it (kubectl delete %s -n %s %s)",
					k.kind, u.GetNamespace(), u.GetName(), n.Name, orUnknown(processing), orUnknown(done), k.resource, u.GetNamespace(), u.GetName()))
			}
		}
	}
	return out
}

func remediates(u *unstructured.Unstructured, node string) bool {
	if u.GetDeletionTimestamp() != nil {
		// A remediation being deleted is over: the node may be back.
		return false
	}
	if n := u.GetAnnotations()[nodeNameAnnotation]; n != "" {
		return n == node
	}
	return u.GetName() == node
}

// older judges a remediation unless it was made before the node object: then it
// belongs to an earlier node of the same name.
func older(u *unstructured.Unstructured, n Node, kind string, judge func(*unstructured.Unstructured, Node) Proof) Proof {
	if !n.Created.IsZero() && u.GetCreationTimestamp().Time.Before(n.Created) {
		return proof(None, kind, u.GetName(), u, "made before this node joined the cluster: it was for an earlier node of that name")
	}
	return judge(u, n)
}

func proof(s Strength, kind, name string, u *unstructured.Unstructured, detail string) Proof {
	p := Proof{Kind: kind, Name: name, Strength: s, StrengthName: s.String(), Detail: detail}
	if u != nil {
		p.UID, p.ResourceVersion = string(u.GetUID()), u.GetResourceVersion()
	}
	return p
}

// far: Fence Agents Remediation proves a node off when its agent ran the off action
// and reported success. A reboot proves it only while the node has stayed NotReady
// since the fence: once it came back, it may run anything again.
func far(u *unstructured.Unstructured, n Node) Proof {
	kind := "FenceAgentsRemediation"
	action, _, _ := unstructured.NestedString(u.Object, "spec", "sharedparameters", "--action")
	acted, actedAt := condition(u, "FenceAgentActionSucceeded")
	done, _ := condition(u, "Succeeded")
	switch {
	case acted != "True" || done != "True":
		return proof(None, kind, u.GetName(), u, fmt.Sprintf("not finished: FenceAgentActionSucceeded=%s, Succeeded=%s", orUnknown(acted), orUnknown(done)))
	case action != "off" && action != "reboot" && action != "":
		// fence-agents-remediation's default action is reboot.
		return proof(None, kind, u.GetName(), u, fmt.Sprintf("fence agent action %q proves nothing about the node being off", action))
	case !n.downSince(actedAt):
		return proof(None, kind, u.GetName(), u, readySince)
	case n.LeaseRenewed.After(actedAt.Add(clockSlack)):
		// The agent says the node is off; its kubelet says otherwise, later.
		return proof(None, kind, u.GetName(), u, fmt.Sprintf("its kubelet renewed its lease %s after the fence: it runs", n.LeaseRenewed.Sub(actedAt).Round(time.Second)))
	case action == "off":
		return proof(Strong, kind, u.GetName(), u, "fence agent powered the node off, and it has stayed NotReady since")
	}
	return proof(Strong, kind, u.GetName(), u, "fence agent rebooted the node, and it has stayed NotReady since")
}

// networkFence: a csi-addons NetworkFence cuts the listed CIDRs off the storage. It is
// the one proof that still holds when a whole site's power and BMCs are dark. It
// counts for a node only if it covers every InternalIP of it.
func networkFence(u *unstructured.Unstructured, n Node) (Proof, bool) {
	kind := "NetworkFence"
	cidrs, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "cidrs")
	if len(n.InternalIPs) == 0 {
		return Proof{}, false
	}
	covered := 0
	for _, ip := range n.InternalIPs {
		if coveredBy(ip, cidrs) {
			covered++
		}
	}
	if covered == 0 {
		return Proof{}, false
	}
	state, _, _ := unstructured.NestedString(u.Object, "spec", "fenceState")
	result, _, _ := unstructured.NestedString(u.Object, "status", "result")
	message, _, _ := unstructured.NestedString(u.Object, "status", "message")
	switch {
	case u.GetDeletionTimestamp() != nil:
		return proof(None, kind, u.GetName(), u, "being deleted"), true
	case covered < len(n.InternalIPs):
		return proof(None, kind, u.GetName(), u, fmt.Sprintf("covers %d of the node's %d InternalIPs", covered, len(n.InternalIPs))), true
	case state != "Fenced":
		return proof(None, kind, u.GetName(), u, fmt.Sprintf("fenceState is %s", orUnknown(state))), true
	case result != "Succeeded":
		return proof(None, kind, u.GetName(), u, fmt.Sprintf("result is %s", orUnknown(result))), true
	case strings.Contains(strings.ToLower(message), "unfenc"):
		// The status has no generation: a fence set back to Fenced still shows the
		// unfence's success until the driver has fenced again.
		return proof(None, kind, u.GetName(), u, fmt.Sprintf("its result is the unfence's (%q): the fence is not done yet", message)), true
	}
	return proof(Strong, kind, u.GetName(), u, "the node's addresses are fenced off the storage"), true
}

func sbr(u *unstructured.Unstructured, n Node) Proof {
	kind := "StorageBasedRemediation"
	s, at := condition(u, "FencingSucceeded")
	switch {
	case s != "True":
		return proof(None, kind, u.GetName(), u, fmt.Sprintf("FencingSucceeded=%s", orUnknown(s)))
	case !n.downSince(at):
		return proof(None, kind, u.GetName(), u, readySince)
	case n.StorageHeartbeat.After(at.Add(clockSlack)):
		return proof(None, kind, u.GetName(), u, fmt.Sprintf("its storage heartbeat was written %s after the fence: it runs", n.StorageHeartbeat.Sub(at).Round(time.Second)))
	}
	return proof(Strong, kind, u.GetName(), u, "the node's watchdog fenced it through the shared storage")
}

func snr(u *unstructured.Unstructured, n Node) Proof {
	kind := "SelfNodeRemediation"
	phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
	s, at := condition(u, "Succeeded")
	switch {
	case s != "True" || phase != "Fencing-Completed":
		return proof(None, kind, u.GetName(), u, fmt.Sprintf("Succeeded=%s, phase %s", orUnknown(s), orUnknown(phase)))
	case !n.downSince(at):
		return proof(None, kind, u.GetName(), u, readySince)
	}
	return proof(Weak, kind, u.GetName(), u, "the node fenced itself; a partitioned site's nodes may never do so, so this is not enough alone")
}

// condition returns a status condition's status and last transition time.
func condition(u *unstructured.Unstructured, typ string) (string, time.Time) {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok || m["type"] != typ {
			continue
		}
		s, _ := m["status"].(string)
		var at time.Time
		if ts, ok := m["lastTransitionTime"].(string); ok {
			at, _ = time.Parse(time.RFC3339, ts)
		}
		return s, at
	}
	return "", time.Time{}
}

func coveredBy(ip string, cidrs []string) bool {
	addr, err := netip.ParseAddr(strings.TrimSpace(ip))
	if err != nil {
		return false
	}
	for _, c := range cidrs {
		c = strings.TrimSpace(c)
		if !strings.Contains(c, "/") {
			if a, err := netip.ParseAddr(c); err == nil && a == addr {
				return true
			}
			continue
		}
		if p, err := netip.ParsePrefix(c); err == nil && p.Contains(addr) {
			return true
		}
	}
	return false
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// Site is the judgement of one dead site's evidence.
type Site struct {
	// Proven: every node of the site has strong evidence, so the failover needs no
	// typed confirmation; every release checks it again.
	Proven bool       `json:"proven"`
	Nodes  []Evidence `json:"nodes"`
	// Unread names the kinds of evidence that could not be read.
	Unread []string `json:"unread,omitempty"`
	// Partition says why the site looks partitioned rather than powered off (see
	// Partitioned); "" when nothing does.
	Partition string `json:"possiblyPartitioned,omitempty"`
}

// Node is the evidence found about one node of the site.
func (s Site) Node(name string) (Evidence, bool) {
	for _, e := range s.Nodes {
		if e.Node == name {
			return e, true
		}
	}
	return Evidence{}, false
}

// JudgeSite judges a site's nodes. A site without nodes is never proven.
func JudgeSite(nodes []Node, objs Objects, unread []string) Site {
	ev := Judge(nodes, objs)
	return Site{Proven: len(ev) > 0 && len(Unproven(ev)) == 0, Nodes: ev, Unread: unread, Partition: Partitioned(nodes, time.Now())}
}

// SilenceSpread is how far apart the last lease renewals of a dead site's nodes may be
// and still look like one event (a power loss): the kubelet renews every 10 s, and the
// node controller marks a node NotReady 40 s after its last renewal.
const SilenceSpread = time.Minute

// Partitioned says, in words, why a site with no Ready node looks partitioned rather
// than powered off, or "" when nothing does: a node whose kubelet still renews its
// lease runs, and nodes that went silent minutes apart died one by one or lost the
// network, not the power. Neither proves the VMs still run; both say the operator must
// not take "NotReady" for "off".
func Partitioned(nodes []Node, now time.Time) string {
	var first, last Node
	var why []string
	for _, n := range nodes {
		if n.Ready {
			continue
		}
		// SBR's agents see a node's heartbeat on the shared storage: written after the
		// node went NotReady, it comes from a node that runs and reaches the disks.
		if !n.NotReadySince.IsZero() && n.StorageHeartbeat.After(n.NotReadySince.Add(clockSlack)) {
			why = append(why, fmt.Sprintf("node %s is NotReady but its storage heartbeat is fresh (SBRStorageUnhealthy=False %s ago, after the node went NotReady): it still writes to the shared storage", n.Name, now.Sub(n.StorageHeartbeat).Round(time.Second)))
		}
		if n.LeaseRenewed.IsZero() {
			continue
		}
		// The node controller marks a silent node NotReady a grace period after its last
		// renewal; a renewal after that (past the two clocks' slack) is a kubelet that
		// runs and reports the node NotReady itself.
		if !n.NotReadySince.IsZero() && n.LeaseRenewed.After(n.NotReadySince.Add(clockSlack)) {
			why = append(why, fmt.Sprintf("node %s is NotReady but its kubelet renewed its lease %s ago, after the node went NotReady: it runs", n.Name, now.Sub(n.LeaseRenewed).Round(time.Second)))
		}
		if first.Name == "" || n.LeaseRenewed.Before(first.LeaseRenewed) {
			first = n
		}
		if last.Name == "" || n.LeaseRenewed.After(last.LeaseRenewed) {
			last = n
		}
	}
	if first.Name != "" && last.LeaseRenewed.Sub(first.LeaseRenewed) > SilenceSpread {
		why = append(why, fmt.Sprintf("its nodes went silent at different times (%s %s ago, %s %s ago)",
			first.Name, now.Sub(first.LeaseRenewed).Round(time.Second), last.Name, now.Sub(last.LeaseRenewed).Round(time.Second)))
	}
	return strings.Join(why, "; ")
}
