package plan

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

// deviceIssues checks what KubeVirt adds to a launcher's scheduling beyond the VM's own
// selector and affinity: device plugin resources (GPUs, host devices), node feature
// labels (dedicated CPUs, a named CPU model, required CPU features), and for a live
// migration of a host-model CPU, a target that can run the source node's model.
func deviceIssues(s *snapshot.Snapshot, vm *snapshot.VM, st *Step, req Request, targets []*corev1.Node) []Issue {
	if st.Action == ActionSkip || len(targets) == 0 {
		return nil
	}
	var out []Issue
	switch {
	case vm.InstancetypeSite != "" && vm.InstancetypeSite != req.To:
		out = append(out, Issue{Code: "SiteInInstancetype", VM: vm.Key(),
			Message: fmt.Sprintf("its %s %s sets the site key to %s, which the VM's template cannot override: give the VM an instance type without the site key (keep the site in the template), or one for %s", vm.InstancetypeKind, vm.Instancetype, vm.InstancetypeSite, req.To)})
	case vm.InstancetypeSelects && vm.InstancetypeSite == "":
		// KubeVirt v1.8.0 (pkg/instancetype/apply/nodeselector.go) refuses a VM whose
		// template and instance type both set a nodeSelector: the site patch would be
		// refused at the write.
		out = append(out, Issue{Code: "NodeSelectorInInstancetype", VM: vm.Key(),
			Message: fmt.Sprintf("its %s %s sets spec.nodeSelector, so KubeVirt refuses any nodeSelector in the VM's template, the site key this move writes included: move the instance type's nodeSelector into the VM's template (with the site key), or use an instance type without one", vm.InstancetypeKind, vm.Instancetype)})
	}
	for _, dev := range vm.Devices {
		if !anyNodeOffers(s, targets, dev) {
			out = append(out, Issue{Code: "DeviceNotOnTarget", VM: vm.Key(),
				Message: fmt.Sprintf("it needs device %s, which no Ready node of %s has allocatable: install the device and its plugin there, or leave the VM where it is", dev, req.To)})
		}
	}
	if len(vm.NodeFeatures) > 0 && !anyNodeHasLabels(targets, vm.NodeFeatures) {
		out = append(out, Issue{Code: "NodeFeatureNotOnTarget", VM: vm.Key(),
			Message: fmt.Sprintf("KubeVirt schedules it only on nodes labelled %s, and no Ready node of %s has them all (dedicated CPUs need the CPU manager; a named CPU model or feature needs a node that offers it)", describeLabels(vm.NodeFeatures), req.To)})
	}
	if st.Action == ActionMigrate && vm.HostModelCPU && vm.Instance != nil {
		if model := hostModelOf(s, vm.Instance.NodeName); model != "" {
			key := kubevirtv1.SupportedHostModelMigrationCPU + model
			if !anyNodeHasLabels(targets, map[string]string{key: "true"}) {
				out = append(out, Issue{Code: "HostModelCPUMismatch", VM: vm.Key(),
					Message: fmt.Sprintf("its host-model CPU is %s (node %s), and no Ready node of %s can run that model (label %s), so a live migration would stay Pending: use --mode restart (it starts with %s's own host model)", model, vm.Instance.NodeName, req.To, key, req.To)})
			}
		}
	}
	return out
}

func anyNodeOffers(s *snapshot.Snapshot, targets []*corev1.Node, resource string) bool {
	for _, t := range targets {
		if n, ok := s.Node(t.Name); ok && n.Devices[resource] > 0 {
			return true
		}
	}
	return false
}

func anyNodeHasLabels(nodes []*corev1.Node, labels map[string]string) bool {
	for _, n := range nodes {
		all := true
		for k, v := range labels {
			if n.Labels[k] != v {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// hostModelOf is the node's host-model CPU, from KubeVirt's node labeller.
func hostModelOf(s *snapshot.Snapshot, node string) string {
	n, ok := s.Node(node)
	if !ok {
		return ""
	}
	for k := range n.Labels {
		if m, ok := strings.CutPrefix(k, kubevirtv1.HostModelCPULabel); ok {
			return m
		}
	}
	return ""
}

func describeLabels(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k, v := range l {
		keys = append(keys, k+"="+v)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}
