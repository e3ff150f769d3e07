package snapshot

import (
	"sort"
	"strings"
)

// The node labels that mark a node as holding only a quorum witness or an arbiter.
const (
	// ZoneLabel with the value ArbiterZone is how ODF and Rook stretch clusters place
	// their arbiter (a Ceph monitor, no OSD).
	ZoneLabel   = "topology.kubernetes.io/zone"
	ArbiterZone = "arbiter"
	// ArbiterRole is OpenShift's two-node-with-arbiter role.
	ArbiterRole = "node-role.kubernetes.io/arbiter"
	// EtcdRole marks an etcd member (Rancher, RKE2); a node with no other role holds
	// etcd alone.
	EtcdRole = "node-role.kubernetes.io/etcd"

	rolePrefix = "node-role.kubernetes.io/"
)

// WitnessNode says which label makes a node a witness node, "" when none does. An etcd
// role counts only alone: an RKE2 server carries etcd beside control-plane and master,
// and runs workloads.
func WitnessNode(labels map[string]string) string {
	if labels[ZoneLabel] == ArbiterZone {
		return ZoneLabel + "=" + ArbiterZone
	}
	if _, ok := labels[ArbiterRole]; ok {
		return ArbiterRole
	}
	if _, ok := labels[EtcdRole]; !ok {
		return ""
	}
	for k := range labels {
		if strings.HasPrefix(k, rolePrefix) && k != EtcdRole {
			return ""
		}
	}
	return EtcdRole + " (and no other role)"
}

// Declared is the reason given for a witness site named by --witness-site or the config
// file's witnessSites.
const Declared = "declared (--witness-site or the config file's witnessSites)"

// Witness says why a site is a witness site, "" when it is not. A site is a witness when
// the operator declares it one, or when every one of its nodes is a witness node: one
// node that may run workloads makes it a data site, since a witness label on part of a
// site says nothing about where VMs may go.
func (s *Snapshot) Witness(site string) string {
	if site == "" {
		return ""
	}
	for _, w := range s.Keys.Witnesses {
		if w == site {
			return Declared
		}
	}
	reasons := map[string]bool{}
	nodes := 0
	for _, n := range s.Nodes {
		if n.Site != site {
			continue
		}
		nodes++
		r := WitnessNode(n.Labels)
		if r == "" {
			return ""
		}
		reasons[r] = true
	}
	if nodes == 0 {
		return ""
	}
	var out []string
	for r := range reasons {
		out = append(out, r)
	}
	sort.Strings(out)
	return "every node carries " + strings.Join(out, " or ")
}

// DataSites lists the sites that are not witnesses, sorted: the sites a move may target.
func (s *Snapshot) DataSites() []string {
	var out []string
	for _, site := range s.SiteNames() {
		if s.Witness(site) == "" {
			out = append(out, site)
		}
	}
	return out
}
