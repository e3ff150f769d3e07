package kubevirtsim

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// crd builds a KubeVirt CRD. KubeVirt validates in webhooks, not in the schema, so spec
// and status keep unknown fields.
func crd(plural, singular, kind string, short []string, status bool) *unstructured.Unstructured {
	schemaProps := map[string]any{
		"type": "object",
		"properties": map[string]any{
			"spec":   map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true},
			"status": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true},
		},
	}
	version := map[string]any{
		"name": "v1", "served": true, "storage": true,
		"schema": map[string]any{"openAPIV3Schema": schemaProps},
	}
	if status {
		version["subresources"] = map[string]any{"status": map[string]any{}}
	}
	shortNames := make([]any, len(short))
	for i, s := range short {
		shortNames[i] = s
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   map[string]any{"name": plural + ".kubevirt.io"},
		"spec": map[string]any{
			"group":    "kubevirt.io",
			"scope":    "Namespaced",
			"names":    map[string]any{"plural": plural, "singular": singular, "kind": kind, "shortNames": shortNames, "categories": []any{"all"}},
			"versions": []any{version},
		},
	}}
}

// InstallCRDs creates the VM, VMI and migration CRDs and waits until they are served.
func InstallCRDs(ctx context.Context, dc dynamic.Interface, disc discovery.DiscoveryInterface) error {
	for _, c := range []*unstructured.Unstructured{
		crd("virtualmachines", "virtualmachine", "VirtualMachine", []string{"vm", "vms"}, true),
		crd("virtualmachineinstances", "virtualmachineinstance", "VirtualMachineInstance", []string{"vmi", "vmis"}, false),
		crd("virtualmachineinstancemigrations", "virtualmachineinstancemigration", "VirtualMachineInstanceMigration", []string{"vmim", "vmims"}, true),
	} {
		if _, err := dc.Resource(crdGVR).Create(ctx, c, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create CRD %s: %w", c.GetName(), err)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := disc.ServerResourcesForGroupVersion("kubevirt.io/v1")
		if err == nil && len(res.APIResources) >= 5 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("KubeVirt CRDs not served after 60s: %v", err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}
