package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/test/cluster"
	"github.com/sitefail/kubectl-sitefail/test/stretched"
)

// A disk that only the source site reaches blocks the move before any write; one that
// both sites reach does not. The volumes are real PersistentVolumes with node affinity,
// as local or zonal storage has, and the plan reads them with fixed LISTs.
func TestStorageOnlyOnTheSourceBlocks(t *testing.T) {
	ctx := context.Background()
	const ns = "storage"
	if _, err := env.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		for _, pv := range []string{"sitefail-test-local", "sitefail-test-stretched"} {
			_ = env.Kube.CoreV1().PersistentVolumes().Delete(ctx, pv, metav1.DeleteOptions{})
		}
	})
	pv := func(name string, nodes ...string) {
		v := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeSource:        corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: "/mnt/disk"}},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: nodes}},
			}}}},
		}}
		if _, err := env.Kube.CoreV1().PersistentVolumes().Create(ctx, v, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pv("sitefail-test-local", cluster.NodeName("Primary", 1))
	pv("sitefail-test-stretched", cluster.NodeName("Primary", 1), cluster.NodeName("DR", 1))
	for name, volume := range map[string]string{"local": "sitefail-test-local", "stretched": "sitefail-test-stretched"} {
		empty := ""
		pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: name + "-disk", Namespace: ns}, Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, VolumeName: volume, StorageClassName: &empty,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		}}
		if _, err := env.Kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		vm := stretched.VMSpec{Namespace: ns, Name: name, Tier: 1, Site: "Primary", RunStrategy: kubevirtv1.RunStrategyHalted}.VM()
		spec := &vm.Spec.Template.Spec
		spec.Domain.Devices.Disks = append(spec.Domain.Devices.Disks, kubevirtv1.Disk{Name: "data", DiskDevice: kubevirtv1.DiskDevice{Disk: &kubevirtv1.DiskTarget{Bus: kubevirtv1.DiskBusVirtio}}})
		spec.Volumes = append(spec.Volumes, kubevirtv1.Volume{Name: "data", VolumeSource: kubevirtv1.VolumeSource{
			PersistentVolumeClaim: &kubevirtv1.PersistentVolumeClaimVolumeSource{PersistentVolumeClaimVolumeSource: corev1.PersistentVolumeClaimVolumeSource{ClaimName: name + "-disk"}}}})
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(vm)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.Dynamic.Resource(kubevirt.VMs).Namespace(ns).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	r := sitefail(t, "plan", "--to", "DR", "-n", ns, "local")
	if r.code != 2 || !strings.Contains(r.stdout+r.stderr, "StorageNotOnTarget") || !strings.Contains(r.stdout+r.stderr, "sitefail-test-local") {
		t.Fatalf("a disk only Primary reaches must block the move to DR (exit 2): %s", r)
	}
	var p plan.Plan
	mustJSON(t, sitefail(t, "plan", "--to", "DR", "-n", ns, "stretched", "-o", "json"), &p)
	if p.Blocked(false) {
		t.Fatalf("a disk both sites reach must not block: %+v", p.Blockers)
	}
	if r := sitefail(t, "move", "--to", "DR", "-n", ns, "local"); r.code != 2 || templateSiteIn(t, ns, "local") != "Primary" {
		t.Fatalf("move must refuse and change nothing: %s", r)
	}
}

func templateSiteIn(t *testing.T, ns, name string) string {
	t.Helper()
	u, err := env.Dynamic.Resource(kubevirt.VMs).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sel, _, _ := unstructured.NestedStringMap(u.Object, "spec", "template", "spec", "nodeSelector")
	return sel["topology.kubernetes.io/site"]
}

// A GPU only the source site has blocks the move; once a target node offers it (its
// device plugin reports it allocatable), the plan is clear.
func TestDeviceOnlyOnTheSourceBlocks(t *testing.T) {
	ctx := context.Background()
	const ns, gpu = "devices", "sitefail.test/gpu"
	t.Cleanup(func() { _ = env.Kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}) })
	setGPUs := func(node string, n int64) {
		t.Helper()
		patch := fmt.Sprintf(`{"status":{"capacity":{%q:"%d"},"allocatable":{%q:"%d"}}}`, gpu, n, gpu, n)
		if _, err := env.Kube.CoreV1().Nodes().Patch(ctx, node, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
			t.Fatal(err)
		}
	}
	setGPUs(cluster.NodeName("Primary", 2), 2)
	t.Cleanup(func() {
		_, _ = env.Kube.CoreV1().Nodes().Patch(ctx, cluster.NodeName("Primary", 2), types.JSONPatchType, []byte(`[{"op":"remove","path":"/status/capacity/sitefail.test~1gpu"},{"op":"remove","path":"/status/allocatable/sitefail.test~1gpu"}]`), metav1.PatchOptions{}, "status")
		_, _ = env.Kube.CoreV1().Nodes().Patch(ctx, cluster.NodeName("DR", 2), types.JSONPatchType, []byte(`[{"op":"remove","path":"/status/capacity/sitefail.test~1gpu"},{"op":"remove","path":"/status/allocatable/sitefail.test~1gpu"}]`), metav1.PatchOptions{}, "status")
	})
	vm := stretched.VMSpec{Namespace: ns, Name: "render", Tier: 1, Site: "Primary", RunStrategy: kubevirtv1.RunStrategyHalted}.VM()
	vm.Spec.Template.Spec.Domain.Devices.GPUs = []kubevirtv1.GPU{{Name: "gpu1", DeviceName: gpu}}
	if _, err := env.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(vm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Dynamic.Resource(kubevirt.VMs).Namespace(ns).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if r := sitefail(t, "plan", "--to", "DR", "-n", ns, "render"); r.code != 2 || !strings.Contains(r.stdout+r.stderr, "DeviceNotOnTarget") {
		t.Fatalf("a GPU only Primary has must block the move to DR (exit 2): %s", r)
	}
	setGPUs(cluster.NodeName("DR", 2), 1)
	waitFor(t, 30*time.Second, "the DR node's GPU in the API", func() bool {
		n, err := env.Kube.CoreV1().Nodes().Get(ctx, cluster.NodeName("DR", 2), metav1.GetOptions{})
		q, ok := n.Status.Allocatable[corev1.ResourceName(gpu)]
		return err == nil && ok && q.Value() == 1
	})
	if r := sitefail(t, "plan", "--to", "DR", "-n", ns, "render"); r.code != 0 {
		t.Fatalf("with a GPU on a DR node the plan must be clear: %s", r)
	}
}
