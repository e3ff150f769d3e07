package snapshot

import (
	"context"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kubevirtv1 "kubevirt.io/api/core/v1"
)

// NetworkAttachmentDefinitions are Multus's networks. One whose annotation names a
// device plugin resource (SR-IOV, say) makes KubeVirt request that resource for each VM
// attached to it.
var NetworkAttachmentDefinitions = schema.GroupVersionResource{Group: "k8s.cni.cncf.io", Version: "v1", Resource: "network-attachment-definitions"}

const nadResourceAnnotation = "k8s.v1.cni.cncf.io/resourceName"

// multusNetworks names the VM's Multus networks as namespace/name.
func multusNetworks(namespace string, spec *kubevirtv1.VirtualMachineInstanceSpec) []string {
	var out []string
	for _, n := range spec.Networks {
		if n.Multus == nil || n.Multus.NetworkName == "" {
			continue
		}
		name := n.Multus.NetworkName
		if !strings.Contains(name, "/") {
			name = namespace + "/" + name
		}
		out = append(out, name)
	}
	return out
}

// readNetworks adds the device resource of each Multus network a VM is attached to to
// the VM's devices. One LIST, only when a VM uses Multus; a cluster without Multus, or a
// user who cannot list them, leaves them out (the plan warns about the latter).
func readNetworks(ctx context.Context, src Source, s *Snapshot) {
	uses := false
	for i := range s.VMs {
		uses = uses || len(s.VMs[i].Networks) > 0
	}
	if !uses {
		return
	}
	resources := map[string]string{}
	err := listDynamic(ctx, src.Dynamic, NetworkAttachmentDefinitions, src.Namespace, "", func(u *unstructured.Unstructured) error {
		if r := u.GetAnnotations()[nadResourceAnnotation]; r != "" {
			resources[u.GetNamespace()+"/"+u.GetName()] = r
		}
		return nil
	})
	if err != nil {
		if !apierrors.IsNotFound(err) {
			s.NetworksUnread = "cannot list network-attachment-definitions: " + err.Error()
		}
		return
	}
	for i := range s.VMs {
		for _, n := range s.VMs[i].Networks {
			if r, ok := resources[n]; ok {
				s.VMs[i].Devices = append(s.VMs[i].Devices, r)
			}
		}
	}
}
