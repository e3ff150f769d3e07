package snapshot

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kubevirtv1 "kubevirt.io/api/core/v1"
)

// PersistentStateLabel names the VM whose TPM and EFI state a PVC holds (KubeVirt's
// backend storage, one PVC per VM, not listed among the VM's volumes).
const PersistentStateLabel = "persistent-state-for"

// DataVolumes is CDI's DataVolume resource; a cluster without CDI has none.
var DataVolumes = schema.GroupVersionResource{Group: "cdi.kubevirt.io", Version: "v1beta1", Resource: "datavolumes"}

// Claim is a PersistentVolumeClaim as placement needs it.
type Claim struct {
	StorageClass string                              `json:"storageClass,omitempty"`
	VolumeName   string                              `json:"volumeName,omitempty"`
	AccessModes  []corev1.PersistentVolumeAccessMode `json:"accessModes,omitempty"`
}

// Shared reports whether more than one node can mount the claim at once (what a live
// migration needs: source and target run together).
func (c Claim) Shared() bool {
	for _, m := range c.AccessModes {
		if m == corev1.ReadWriteMany || m == corev1.ReadOnlyMany {
			return true
		}
	}
	return false
}

// StorageClass is what placement needs of a StorageClass.
type StorageClass struct {
	AllowedTopologies []corev1.TopologySelectorTerm `json:"allowedTopologies,omitempty"`
	// WaitForFirstConsumer: an unbound claim binds where its first pod is scheduled.
	WaitForFirstConsumer bool `json:"waitForFirstConsumer,omitempty"`
}

// Storage is the storage the VMs use: a fixed number of LISTs, whatever the VM count.
type Storage struct {
	// Claims by namespace/name.
	Claims map[string]Claim `json:"-"`
	// VolumeAffinity holds the required node affinity of each PersistentVolume that has one.
	VolumeAffinity map[string]*corev1.NodeSelector `json:"-"`
	Classes        map[string]StorageClass         `json:"-"`
	// DataVolumePhases by namespace/name (CDI's DataVolume status.phase).
	DataVolumePhases map[string]string `json:"-"`
	// Unread, when set, says why storage could not be read; the plan then warns that it
	// did not check it.
	Unread string `json:"unread,omitempty"`
}

// readStorage lists claims (in the VMs' namespace scope), volumes, storage classes and
// DataVolumes. A permission it lacks leaves the storage unchecked, with the reason, and
// does not fail the read: plan and status work with the read-only role of older
// releases too.
func readStorage(ctx context.Context, src Source, s *Snapshot) {
	st := &Storage{Claims: map[string]Claim{}, VolumeAffinity: map[string]*corev1.NodeSelector{}, Classes: map[string]StorageClass{}, DataVolumePhases: map[string]string{}}
	s.Storage = st
	unread := func(err error, resource string) bool {
		if err == nil {
			return false
		}
		st.Unread = "cannot list " + resource + ": " + err.Error()
		return true
	}
	vmIndex := make(map[string]int, len(s.VMs))
	for i := range s.VMs {
		vmIndex[s.VMs[i].Key()] = i
	}
	err := listAll(ctx, func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
		return src.Kube.CoreV1().PersistentVolumeClaims(src.Namespace).List(ctx, opts)
	}, func(obj runtime.Object) error {
		pvc := obj.(*corev1.PersistentVolumeClaim)
		c := Claim{VolumeName: pvc.Spec.VolumeName, AccessModes: pvc.Spec.AccessModes}
		if pvc.Spec.StorageClassName != nil {
			c.StorageClass = *pvc.Spec.StorageClassName
		}
		st.Claims[pvc.Namespace+"/"+pvc.Name] = c
		if vm, ok := pvc.Labels[PersistentStateLabel]; ok {
			if i, ok := vmIndex[pvc.Namespace+"/"+vm]; ok {
				s.VMs[i].Claims = append(s.VMs[i].Claims, pvc.Name)
			}
		}
		return nil
	}, metav1.ListOptions{})
	if unread(err, "persistentvolumeclaims") {
		return
	}
	err = listAll(ctx, func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
		return src.Kube.CoreV1().PersistentVolumes().List(ctx, opts)
	}, func(obj runtime.Object) error {
		pv := obj.(*corev1.PersistentVolume)
		if a := pv.Spec.NodeAffinity; a != nil && a.Required != nil && len(a.Required.NodeSelectorTerms) > 0 {
			st.VolumeAffinity[pv.Name] = a.Required
		}
		return nil
	}, metav1.ListOptions{})
	if unread(err, "persistentvolumes") {
		return
	}
	err = listAll(ctx, func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
		return src.Kube.StorageV1().StorageClasses().List(ctx, opts)
	}, func(obj runtime.Object) error {
		sc := obj.(*storagev1.StorageClass)
		st.Classes[sc.Name] = StorageClass{AllowedTopologies: sc.AllowedTopologies,
			WaitForFirstConsumer: sc.VolumeBindingMode != nil && *sc.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer}
		return nil
	}, metav1.ListOptions{})
	if unread(err, "storageclasses") {
		return
	}
	err = listDynamic(ctx, src.Dynamic, DataVolumes, src.Namespace, "", func(u *unstructured.Unstructured) error {
		phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
		st.DataVolumePhases[u.GetNamespace()+"/"+u.GetName()] = phase
		return nil
	})
	// Without CDI there are no DataVolumes to wait for.
	if err != nil && !apierrors.IsNotFound(err) {
		unread(err, "datavolumes.cdi.kubevirt.io")
	}
}

// volumeClaims names the claims and DataVolumes a VM template mounts.
func volumeClaims(spec *kubevirtv1.VirtualMachineInstanceSpec) (claims, dataVolumes []string) {
	for _, v := range spec.Volumes {
		switch {
		case v.PersistentVolumeClaim != nil:
			claims = append(claims, v.PersistentVolumeClaim.ClaimName)
		case v.DataVolume != nil:
			// A DataVolume's claim carries its name.
			claims = append(claims, v.DataVolume.Name)
			dataVolumes = append(dataVolumes, v.DataVolume.Name)
		}
	}
	return claims, dataVolumes
}
