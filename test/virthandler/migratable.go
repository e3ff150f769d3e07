package virthandler

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
)

// liveMigratable is the VMI's LiveMigratable condition as v1.8.0's handler computes it
// (pkg/virt-handler/vm.go calculateLiveMigrationCondition), in its order, for what the
// test cluster can create: the pod network's binding, PCI host devices and GPUs, then
// the volumes. CPU models, SEV, TDX, persistent reservations, TSC and Hyper-V
// passthrough need a real host and are not modelled.
func liveMigratable(vmi *kubevirtv1.VirtualMachineInstance) kubevirtv1.VirtualMachineInstanceCondition {
	not := func(reason, msg string) kubevirtv1.VirtualMachineInstanceCondition {
		return kubevirtv1.VirtualMachineInstanceCondition{
			Type: kubevirtv1.VirtualMachineInstanceIsMigratable, Status: corev1.ConditionFalse, Reason: reason, Message: msg,
		}
	}
	if err := podNetworkMigratable(vmi); err != nil {
		return not(kubevirtv1.VirtualMachineInstanceReasonInterfaceNotMigratable, err.Error())
	}
	if d := vmi.Spec.Domain.Devices; len(d.HostDevices) > 0 || len(d.GPUs) > 0 {
		return not(kubevirtv1.VirtualMachineInstanceReasonHostDeviceNotMigratable, "VMI uses a PCI host devices")
	}
	if err := volumesMigratable(vmi); err != nil {
		return not(kubevirtv1.VirtualMachineInstanceReasonDisksNotMigratable, err.Error())
	}
	return kubevirtv1.VirtualMachineInstanceCondition{Type: kubevirtv1.VirtualMachineInstanceIsMigratable, Status: corev1.ConditionTrue}
}

// podNetworkMigratable follows v1.8.0 pkg/network/vmispec VerifyVMIMigratable: the
// interface on the pod network must be masquerade or passt, or a bridge the VMI's
// annotation allows to migrate. KubeVirt's default binding is bridge
// (virt-config DefaultNetworkInterface), so a VM that names no interface is not
// live-migratable.
func podNetworkMigratable(vmi *kubevirtv1.VirtualMachineInstance) error {
	ifaces := vmi.Spec.Domain.Devices.Interfaces
	if len(ifaces) == 0 {
		return nil
	}
	var pod *kubevirtv1.Network
	for i := range vmi.Spec.Networks {
		if vmi.Spec.Networks[i].Pod != nil {
			pod = &vmi.Spec.Networks[i]
		}
	}
	if pod == nil {
		return nil
	}
	var primary *kubevirtv1.Interface
	for i := range ifaces {
		if ifaces[i].Name == pod.Name {
			primary = &ifaces[i]
		}
	}
	switch {
	case primary == nil:
		return fmt.Errorf("no primary interface found for network %s", pod.Name)
	case primary.Masquerade != nil || primary.PasstBinding != nil:
		return nil
	case primary.Bridge != nil:
		if _, ok := vmi.Annotations[kubevirtv1.AllowPodBridgeNetworkLiveMigrationAnnotation]; ok {
			return nil
		}
	}
	return fmt.Errorf("cannot migrate VMI which does not use masquerade or a migratable plugin to connect to the pod network")
}

// volumesMigratable follows v1.8.0 vm.go checkVolumesForMigration: every PVC (or
// DataVolume) must be shared (ReadWriteMany), read from the PVC information that
// virt-controller writes into the VMI's volume status; a HostDisk must be shared. Any
// other volume is copied by a block migration and does not prevent one.
func volumesMigratable(vmi *kubevirtv1.VirtualMachineInstance) error {
	status := map[string]kubevirtv1.VolumeStatus{}
	for _, s := range vmi.Status.VolumeStatus {
		status[s.Name] = s
	}
	for _, v := range vmi.Spec.Volumes {
		switch {
		case v.PersistentVolumeClaim != nil || v.DataVolume != nil:
			claim := ""
			if v.PersistentVolumeClaim != nil {
				claim = v.PersistentVolumeClaim.ClaimName
			} else {
				claim = v.DataVolume.Name
			}
			s, ok := status[v.Name]
			if !ok || s.PersistentVolumeClaimInfo == nil {
				return fmt.Errorf("cannot migrate VMI: Unable to determine if PVC %v is shared, live migration requires that all PVCs must be shared (using ReadWriteMany access mode)", claim)
			}
			if !shared(s.PersistentVolumeClaimInfo.AccessModes) {
				return fmt.Errorf("cannot migrate VMI: PVC %v is not shared, live migration requires that all PVCs must be shared (using ReadWriteMany access mode)", claim)
			}
		case v.HostDisk != nil:
			if v.HostDisk.Shared == nil || !*v.HostDisk.Shared {
				return fmt.Errorf("cannot migrate VMI with non-shared HostDisk")
			}
		}
	}
	return nil
}

func shared(modes []corev1.PersistentVolumeAccessMode) bool {
	for _, m := range modes {
		if m == corev1.ReadWriteMany {
			return true
		}
	}
	return false
}
