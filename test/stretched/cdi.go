package stretched

import (
	"context"
	"fmt"
	"reflect"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

// CDIHoldAnnotation, on a DataVolume (or on a VM's dataVolumeTemplates entry, whose
// annotations KubeVirt copies into the DataVolume), keeps the played import running: the
// claim is made and bound, and the DataVolume stays ImportInProgress until the annotation
// is removed. It is how a test sees what KubeVirt does while a disk is still imported.
const CDIHoldAnnotation = "sitefail.test/cdi-hold"

// CDI's own strings (containerized-data-importer v1.64.0), which KubeVirt and operators
// read: the claim's label and annotation (pkg/common, pkg/controller/common/util.go), the
// Running condition's reasons and messages (pkg/controller/util.go PodRunningReason,
// ImportCompleteMessage; pkg/controller/populators/clone-populator.go) and the message of
// a claim CDI cannot render (pkg/controller/datavolume/util.go).
const (
	cdiLabelKey, cdiLabelValue = "app", "containerized-data-importer"
	annCreatedForDataVolume    = "cdi.kubevirt.io/createdForDataVolume"
	cdiPodRunning              = "Pod is running"
	cdiImportComplete          = "Import Complete"
	cdiCloneComplete           = "Clone Complete"
	cdiNoAccessMode            = "PVC spec is missing accessMode and no storageClass to choose profile"
)

// playCDI plays CDI v1.64.0's DataVolume controller and a storage that provisions at once,
// for every DataVolume, whatever its source (blank, registry, http, a PVC to clone): the
// claim of the DataVolume's name, owned by it, with its storage (spec.pvc as written,
// spec.storage as written: no StorageProfile fills in what it leaves out, nor the
// filesystem overhead CDI adds to its size), bound to a PersistentVolume made for it as
// CreateVMs makes one; then the status CDI's controller writes once the importer (or the
// clone) has finished: Succeeded, "100.0%", the claim's name, and the conditions Bound,
// Ready and Running as pkg/controller/datavolume/conditions.go sets them. Until the CRD is
// installed (hack/build-tools.sh cdi) it finds nothing.
func (e *Env) playCDI(ctx context.Context) {
	res := e.Dynamic.Resource(snapshot.DataVolumes)
	for ctx.Err() == nil {
		if list, err := res.List(ctx, metav1.ListOptions{}); err == nil {
			for i := range list.Items {
				if err := e.reconcileDataVolume(ctx, &list.Items[i]); err != nil {
					fmt.Fprintf(e.log, "played CDI: DataVolume %s/%s: %v\n", list.Items[i].GetNamespace(), list.Items[i].GetName(), err)
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func (e *Env) reconcileDataVolume(ctx context.Context, dv *unstructured.Unstructured) error {
	if dv.GetDeletionTimestamp() != nil {
		return nil
	}
	spec, err := claimSpecOf(dv)
	if err != nil {
		return err
	}
	if len(spec.AccessModes) == 0 {
		// CDI renders the access modes from the StorageProfile of the claim's class; none
		// is played, so it stays Pending as CDI leaves it without a class.
		return e.setDataVolumeStatus(ctx, dv, "Pending", "", "", []dvCondition{
			{"Bound", "False", "ErrClaimNotValid", cdiNoAccessMode},
			{"Ready", "False", "", ""},
		})
	}
	pvc, err := e.Kube.CoreV1().PersistentVolumeClaims(dv.GetNamespace()).Get(ctx, dv.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		pvc, err = e.createDataVolumeClaim(ctx, dv, spec)
	}
	if err != nil {
		return err
	}
	if owner := metav1.GetControllerOf(pvc); owner == nil || owner.UID != dv.GetUID() {
		// A claim of that name that is not this DataVolume's: CDI's claim adoption is not
		// played.
		return nil
	}
	if pvc.Status.Phase != corev1.ClaimBound {
		if err := e.ensureVolume(ctx, pvc); err != nil {
			return err
		}
		return e.setDataVolumeStatus(ctx, dv, "Pending", "N/A", pvc.Name, []dvCondition{
			{"Bound", "False", "Pending", fmt.Sprintf("PVC %s Pending", pvc.Name)},
			{"Ready", "False", "", ""},
		})
	}
	bound := dvCondition{"Bound", "True", "Bound", fmt.Sprintf("PVC %s Bound", pvc.Name)}
	if _, held := dv.GetAnnotations()[CDIHoldAnnotation]; held {
		return e.setDataVolumeStatus(ctx, dv, "ImportInProgress", "N/A", pvc.Name, []dvCondition{
			bound, {"Ready", "False", "", ""}, {"Running", "True", cdiPodRunning, ""},
		})
	}
	done := cdiImportComplete
	if src, _, _ := unstructured.NestedMap(dv.Object, "spec", "source"); src["pvc"] != nil || src["snapshot"] != nil {
		done = cdiCloneComplete
	}
	return e.setDataVolumeStatus(ctx, dv, "Succeeded", "100.0%", pvc.Name, []dvCondition{
		bound, {"Ready", "True", "", ""}, {"Running", "False", "Completed", done},
	})
}

// claimSpecOf is the claim CDI renders from spec.pvc or spec.storage (renderPvcSpec).
func claimSpecOf(dv *unstructured.Unstructured) (corev1.PersistentVolumeClaimSpec, error) {
	var spec corev1.PersistentVolumeClaimSpec
	for _, field := range []string{"pvc", "storage"} {
		m, ok, _ := unstructured.NestedMap(dv.Object, "spec", field)
		if !ok {
			continue
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &spec); err != nil {
			return spec, fmt.Errorf("spec.%s: %w", field, err)
		}
		return spec, nil
	}
	return spec, fmt.Errorf("neither spec.pvc nor spec.storage")
}

// createDataVolumeClaim makes the DataVolume's claim as CDI's newPersistentVolumeClaim
// does: the DataVolume's labels and annotations, CDI's label, owned by the DataVolume.
func (e *Env) createDataVolumeClaim(ctx context.Context, dv *unstructured.Unstructured, spec corev1.PersistentVolumeClaimSpec) (*corev1.PersistentVolumeClaim, error) {
	labels := map[string]string{cdiLabelKey: cdiLabelValue}
	for k, v := range dv.GetLabels() {
		labels[k] = v
	}
	ann := map[string]string{}
	for k, v := range dv.GetAnnotations() {
		ann[k] = v
	}
	ann[annCreatedForDataVolume] = string(dv.GetUID())
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name: dv.GetName(), Namespace: dv.GetNamespace(), Labels: labels, Annotations: ann,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "cdi.kubevirt.io/v1beta1", Kind: "DataVolume", Name: dv.GetName(), UID: dv.GetUID(),
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: spec,
	}
	created, err := e.Kube.CoreV1().PersistentVolumeClaims(pvc.Namespace).Create(ctx, pvc, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create its PVC: %w", err)
	}
	return created, nil
}

// ensureVolume plays the provisioner: a PersistentVolume bound to the claim, as
// CreateVMs makes one (kube-controller-manager's binder binds the pre-bound pair).
func (e *Env) ensureVolume(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	name := "sitefail-" + string(pvc.UID)
	if _, err := e.Kube.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		return err
	}
	size := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if size.IsZero() {
		size = resource.MustParse("1Gi")
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			AccessModes:      pvc.Spec.AccessModes,
			Capacity:         corev1.ResourceList{corev1.ResourceStorage: size},
			StorageClassName: ptr.Deref(pvc.Spec.StorageClassName, ""),
			VolumeMode:       pvc.Spec.VolumeMode,
			ClaimRef:         &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: "/var/lib/sitefail/" + string(pvc.UID)},
			},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
		},
	}
	if _, err := e.Kube.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create the PV of its PVC: %w", err)
	}
	return nil
}

type dvCondition struct{ typ, status, reason, message string }

// setDataVolumeStatus writes the status when it changed; a condition keeps its
// transition time while its status stays (conditions.go updateCondition).
func (e *Env) setDataVolumeStatus(ctx context.Context, dv *unstructured.Unstructured, phase, progress, claim string, conds []dvCondition) error {
	old, _, _ := unstructured.NestedSlice(dv.Object, "status", "conditions")
	prev := map[string]map[string]any{}
	for _, c := range old {
		if m, ok := c.(map[string]any); ok {
			prev[fmt.Sprint(m["type"])] = m
		}
	}
	now := time.Now().UTC().Format(time.RFC3339)
	var list []any
	for _, c := range conds {
		m := map[string]any{"type": c.typ, "status": c.status, "lastTransitionTime": now, "lastHeartbeatTime": now}
		if c.reason != "" {
			m["reason"] = c.reason
		}
		if c.message != "" {
			m["message"] = c.message
		}
		if p := prev[c.typ]; p != nil {
			if p["status"] == c.status {
				m["lastTransitionTime"] = p["lastTransitionTime"]
			}
			if p["status"] == c.status && p["reason"] == m["reason"] && p["message"] == m["message"] {
				m["lastHeartbeatTime"] = p["lastHeartbeatTime"]
			}
		}
		list = append(list, m)
	}
	status := map[string]any{"phase": phase, "conditions": list}
	if progress != "" {
		status["progress"] = progress
	}
	if claim != "" {
		status["claimName"] = claim
	}
	if cur, _, _ := unstructured.NestedMap(dv.Object, "status"); reflect.DeepEqual(cur, status) {
		return nil
	}
	dv.Object["status"] = status
	_, err := e.Dynamic.Resource(snapshot.DataVolumes).Namespace(dv.GetNamespace()).UpdateStatus(ctx, dv, metav1.UpdateOptions{})
	return err
}
