package snapshot

import (
	"context"
	"encoding/json"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kubevirtv1 "kubevirt.io/api/core/v1"
	instancetypev1beta1 "kubevirt.io/api/instancetype/v1beta1"
)

var (
	// Instancetypes and ClusterInstancetypes are KubeVirt's instance types.
	Instancetypes        = schema.GroupVersionResource{Group: "instancetype.kubevirt.io", Version: "v1beta1", Resource: "virtualmachineinstancetypes"}
	ClusterInstancetypes = schema.GroupVersionResource{Group: "instancetype.kubevirt.io", Version: "v1beta1", Resource: "virtualmachineclusterinstancetypes"}
)

const clusterInstancetypeKind = "VirtualMachineClusterInstancetype"

// readInstancetypes adds the placement an instance type gives its VMs (its nodeSelector,
// dedicated CPUs, GPUs and host devices) to theirs: it is part of where they can run,
// and the template cannot override it. Two LISTs; a cluster without the CRDs, or a user
// without the permission, leaves them out (the plan warns about the latter).
func readInstancetypes(ctx context.Context, src Source, s *Snapshot) {
	uses := false
	for i := range s.VMs {
		uses = uses || s.VMs[i].Instancetype != ""
	}
	if !uses {
		return
	}
	specs := map[string]instancetypev1beta1.VirtualMachineInstancetypeSpec{}
	collect := func(kind string) func(*unstructured.Unstructured) error {
		return func(u *unstructured.Unstructured) error {
			raw, ok := u.Object["spec"]
			if !ok {
				return nil
			}
			data, err := json.Marshal(raw)
			if err != nil {
				return err
			}
			var spec instancetypev1beta1.VirtualMachineInstancetypeSpec
			if err := json.Unmarshal(data, &spec); err != nil {
				return nil // not ours to judge; KubeVirt reports it
			}
			specs[instancetypeKey(kind, u.GetNamespace(), u.GetName())] = spec
			return nil
		}
	}
	for _, r := range []struct {
		gvr      schema.GroupVersionResource
		kind, ns string
	}{{Instancetypes, "VirtualMachineInstancetype", src.Namespace}, {ClusterInstancetypes, clusterInstancetypeKind, ""}} {
		if err := listDynamic(ctx, src.Dynamic, r.gvr, r.ns, "", collect(r.kind)); err != nil && !apierrors.IsNotFound(err) {
			s.InstancetypesUnread = "cannot list " + r.gvr.Resource + ": " + err.Error()
			return
		}
	}
	for i := range s.VMs {
		vm := &s.VMs[i]
		if vm.Instancetype == "" {
			continue
		}
		kind, name := vm.InstancetypeKind, vm.Instancetype
		ns := vm.Namespace
		if kind == clusterInstancetypeKind {
			ns = ""
		}
		spec, ok := specs[instancetypeKey(kind, ns, name)]
		if !ok {
			continue
		}
		applyInstancetype(vm, spec, s.Keys.Site)
	}
}

func instancetypeKey(kind, ns, name string) string { return kind + "/" + ns + "/" + name }

func applyInstancetype(vm *VM, spec instancetypev1beta1.VirtualMachineInstancetypeSpec, siteKey string) {
	// The instance type's vCPUs and memory are the VM's (v1.8.0 refuses a template that
	// sets them too): its requests and KubeVirt's overhead follow them.
	if g := int64(spec.CPU.Guest); g > 0 {
		vm.OverheadBytes += 8 << 20 * (g - max(vm.CPUMilli/100, 1))
		vm.CPUMilli = g * 100
	}
	if m := spec.Memory.Guest.Value(); m > 0 {
		vm.OverheadBytes += pageTables(m) - pageTables(vm.MemoryBytes)
		vm.MemoryBytes = m
	}
	if site, ok := spec.NodeSelector[siteKey]; ok {
		vm.InstancetypeSite = site
	}
	if spec.NodeSelector != nil {
		vm.InstancetypeSelects = true
	}
	if len(spec.NodeSelector) > 0 {
		sel := make(map[string]string, len(vm.NodeSelector)+len(spec.NodeSelector))
		for k, v := range spec.NodeSelector {
			if k != siteKey {
				sel[k] = v
			}
		}
		for k, v := range vm.NodeSelector {
			sel[k] = v
		}
		vm.NodeSelector = sel
	}
	if spec.CPU.DedicatedCPUPlacement != nil && *spec.CPU.DedicatedCPUPlacement {
		if vm.NodeFeatures == nil {
			vm.NodeFeatures = map[string]string{}
		}
		vm.NodeFeatures[kubevirtv1.CPUManager] = "true"
	}
	for _, g := range spec.GPUs {
		vm.Devices = append(vm.Devices, g.DeviceName)
	}
	for _, h := range spec.HostDevices {
		vm.Devices = append(vm.Devices, h.DeviceName)
	}
}
