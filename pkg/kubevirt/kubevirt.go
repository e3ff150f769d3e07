// Package kubevirt holds what sitefail needs to know about KubeVirt's API: resource
// names, the typed objects read from unstructured lists, and the launcher pod labels.
package kubevirt

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kubevirtv1 "kubevirt.io/api/core/v1"
)

var (
	// VMs, VMIs and Migrations are the kubevirt.io/v1 resources sitefail reads.
	VMs        = kubevirtv1.SchemeGroupVersion.WithResource("virtualmachines")
	VMIs       = kubevirtv1.SchemeGroupVersion.WithResource("virtualmachineinstances")
	Migrations = kubevirtv1.SchemeGroupVersion.WithResource("virtualmachineinstancemigrations")
	// KubeVirts is the KubeVirt CR, whose configuration says how template changes roll out.
	KubeVirts = kubevirtv1.SchemeGroupVersion.WithResource("kubevirts")
	// SubresourceGroupVersion serves restart, start, stop and migrate through virt-api.
	SubresourceGroupVersion = schema.GroupVersion{Group: "subresources.kubevirt.io", Version: "v1"}
)

const (
	// LauncherSelector selects every virt-launcher pod.
	LauncherSelector = kubevirtv1.AppLabel + "=virt-launcher"
	// CreatedByLabel on a launcher pod holds the UID of its VMI.
	CreatedByLabel = kubevirtv1.CreatedByLabel
)

// ToVM converts an unstructured VirtualMachine into its typed form.
func ToVM(u *unstructured.Unstructured) (*kubevirtv1.VirtualMachine, error) {
	vm := &kubevirtv1.VirtualMachine{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, vm); err != nil {
		return nil, fmt.Errorf("virtualmachine %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return vm, nil
}

// ToVMI converts an unstructured VirtualMachineInstance into its typed form.
func ToVMI(u *unstructured.Unstructured) (*kubevirtv1.VirtualMachineInstance, error) {
	vmi := &kubevirtv1.VirtualMachineInstance{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, vmi); err != nil {
		return nil, fmt.Errorf("virtualmachineinstance %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return vmi, nil
}

// ToMigration converts an unstructured VirtualMachineInstanceMigration into its typed form.
func ToMigration(u *unstructured.Unstructured) (*kubevirtv1.VirtualMachineInstanceMigration, error) {
	m := &kubevirtv1.VirtualMachineInstanceMigration{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, m); err != nil {
		return nil, fmt.Errorf("virtualmachineinstancemigration %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return m, nil
}

// RunStrategy resolves a VM's effective run strategy, mapping the deprecated
// spec.running onto the strategy it stands for.
func RunStrategy(vm *kubevirtv1.VirtualMachine) kubevirtv1.VirtualMachineRunStrategy {
	if vm.Spec.RunStrategy != nil {
		return *vm.Spec.RunStrategy
	}
	if vm.Spec.Running != nil && *vm.Spec.Running {
		return kubevirtv1.RunStrategyAlways
	}
	return kubevirtv1.RunStrategyHalted
}

// VMCondition reports whether the VM has the condition set to True.
func VMCondition(vm *kubevirtv1.VirtualMachine, t kubevirtv1.VirtualMachineConditionType) bool {
	for _, c := range vm.Status.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// VMICondition returns the VMI condition of that type, if any.
func VMICondition(vmi *kubevirtv1.VirtualMachineInstance, t kubevirtv1.VirtualMachineInstanceConditionType) (kubevirtv1.VirtualMachineInstanceCondition, bool) {
	for _, c := range vmi.Status.Conditions {
		if c.Type == t {
			return c, true
		}
	}
	return kubevirtv1.VirtualMachineInstanceCondition{}, false
}

// MigrationDone reports whether a migration reached a final phase, and whether it succeeded.
func MigrationDone(m *kubevirtv1.VirtualMachineInstanceMigration) (done, ok bool) {
	switch m.Status.Phase {
	case kubevirtv1.MigrationSucceeded:
		return true, true
	case kubevirtv1.MigrationFailed:
		return true, false
	}
	return false, false
}

// ToUnstructured converts a typed object through JSON, as the API server would serve
// it (the reflection converter rejects some of KubeVirt's unsigned fields on deep copy).
func ToUnstructured(obj any) (*unstructured.Unstructured, error) {
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(data); err != nil {
		return nil, err
	}
	return u, nil
}

// PausedByUserReason is the Paused condition's reason for virtctl pause (kubevirt
// v1.8.0 pkg/virt-handler/vm.go; the API module names no constant for it).
const PausedByUserReason = "PausedByUser"

// PausedState reports a paused guest, and whether a user paused it (KubeVirt v1.8.0's
// handler sets the Paused condition with reason PausedByUser for virtctl pause, and
// other reasons for an I/O error or the migration monitor).
func PausedState(vmi *kubevirtv1.VirtualMachineInstance) (paused, byUser bool) {
	c, ok := VMICondition(vmi, kubevirtv1.VirtualMachineInstancePaused)
	if !ok || c.Status != corev1.ConditionTrue {
		return false, false
	}
	return true, c.Reason == PausedByUserReason
}

// RunningNode is the node the VMI's domain runs on. KubeVirt v1.8.0's target handler
// moves status.nodeName (with endTimestamp) before it marks the migration Completed, so
// nodeName is right there; a handler that reports Completed first (older releases, the
// source side) leaves a window where the domain already runs on the migration's target
// node, and a second migration must not be started from the old one.
func RunningNode(vmi *kubevirtv1.VirtualMachineInstance) string {
	if ms := vmi.Status.MigrationState; ms != nil && ms.Completed && !ms.Failed && ms.TargetNode != "" {
		return ms.TargetNode
	}
	return vmi.Status.NodeName
}
