package plan

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"

	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

// storageIssues checks that the VM's disks can be reached from the target site, before
// the first write: a volume pinned to the source site's nodes (local or zonal storage,
// or a "stretched" class that is not) would leave the VM unable to start there.
func storageIssues(s *snapshot.Snapshot, vm *snapshot.VM, st *Step, req Request, targets []*corev1.Node) (blockers, warnings []Issue) {
	if s.Storage == nil || st.Action == ActionSkip || len(targets) == 0 {
		return nil, nil
	}
	for _, dv := range vm.DataVolumes {
		phase, ok := s.Storage.DataVolumePhases[vm.Namespace+"/"+dv]
		switch {
		case !ok, dataVolumeUsable(phase):
		case phase == "Failed":
			blockers = append(blockers, Issue{Code: "DataVolumeNotReady", VM: vm.Key(),
				Message: fmt.Sprintf("DataVolume %s failed: its disk was not imported or cloned, and KubeVirt will not start the VM until it is; see why with 'kubectl describe dv -n %s %s'", dv, vm.Namespace, dv)})
		default:
			blockers = append(blockers, Issue{Code: "DataVolumeNotReady", VM: vm.Key(),
				Message: fmt.Sprintf("DataVolume %s is %s: its disk is still being imported or cloned; wait until it is Succeeded ('kubectl get dv -n %s %s')", dv, dashed(phase), vm.Namespace, dv)})
		}
	}
	var rwo []string
	for _, name := range vm.Claims {
		c, ok := s.Storage.Claims[vm.Namespace+"/"+name]
		if !ok {
			continue
		}
		if !c.Shared() {
			rwo = append(rwo, name)
		}
		if c.VolumeName != "" {
			if aff := s.Storage.VolumeAffinity[c.VolumeName]; aff != nil && !anyNodeMatches(targets, aff) {
				blockers = append(blockers, Issue{Code: "StorageNotOnTarget", VM: vm.Key(),
					Message: fmt.Sprintf("claim %s is bound to PersistentVolume %s, reachable only from nodes matching %s, and no Ready node of %s does: replicate the volume to %s (a storage class that really spans both sites) or leave the VM where it is", name, c.VolumeName, describeSelector(aff), req.To, req.To)})
			}
			continue
		}
		if sc, ok := s.Storage.Classes[c.StorageClass]; ok && len(sc.AllowedTopologies) > 0 && !anyNodeInTopology(targets, sc.AllowedTopologies) {
			blockers = append(blockers, Issue{Code: "StorageNotOnTarget", VM: vm.Key(),
				Message: fmt.Sprintf("claim %s is not bound yet and its storage class %s allows only topologies no Ready node of %s is in: use a class whose allowedTopologies include %s", name, c.StorageClass, req.To, req.To)})
		}
	}
	if len(rwo) > 0 && vm.Instance != nil {
		msg := fmt.Sprintf("disks %s are ReadWriteOnce: source and target cannot mount them at once, so KubeVirt cannot live-migrate the VM and it restarts (a short outage) instead", strings.Join(rwo, ", "))
		if st.Action == ActionFailover {
			msg = fmt.Sprintf("disks %s are ReadWriteOnce and attached to a node of the dead site: they attach on %s only once that attachment is cleared (--fence out-of-service clears it at once; with --fence pod Kubernetes force-detaches after about 6 minutes)", strings.Join(rwo, ", "), req.To)
		}
		warnings = append(warnings, Issue{Code: "ReadWriteOnceVolume", VM: vm.Key(), Message: msg})
	}
	return blockers, warnings
}

// dataVolumeUsable reports whether KubeVirt starts a VM on a DataVolume of that phase
// (v1.8.0 vm.go handleDataVolumes): populated, or waiting for the VM's first pod to bind
// or populate its claim, which after the move runs on the target. The claim's own
// topology is checked below like any other.
func dataVolumeUsable(phase string) bool {
	return phase == "Succeeded" || phase == "WaitForFirstConsumer" || phase == "PendingPopulation"
}

func anyNodeMatches(nodes []*corev1.Node, sel *corev1.NodeSelector) bool {
	for _, n := range nodes {
		if ok, err := corev1helpers.MatchNodeSelectorTerms(n, sel); err == nil && ok {
			return true
		}
	}
	return false
}

// anyNodeInTopology reports whether a node is in one of a storage class's allowed
// topologies: every expression of some term matches the node's labels.
func anyNodeInTopology(nodes []*corev1.Node, terms []corev1.TopologySelectorTerm) bool {
	for _, n := range nodes {
		for _, t := range terms {
			match := true
			for _, e := range t.MatchLabelExpressions {
				v, ok := n.Labels[e.Key]
				if !ok || !slices.Contains(e.Values, v) {
					match = false
					break
				}
			}
			if match {
				return true
			}
		}
	}
	return false
}

func describeSelector(sel *corev1.NodeSelector) string {
	var terms []string
	for _, t := range sel.NodeSelectorTerms {
		var exprs []string
		for _, e := range t.MatchExpressions {
			exprs = append(exprs, fmt.Sprintf("%s %s %s", e.Key, e.Operator, strings.Join(e.Values, ",")))
		}
		terms = append(terms, strings.Join(exprs, " and "))
	}
	return strings.Join(terms, " or ")
}
