package virthandler

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
)

// A launcher pod that changed while the handler was ending it (virt-controller deleting
// it at that moment) is ended at the retry, although the VMI is Succeeded by then:
// otherwise the pod waits out its grace period, and KubeVirt keeps the deleted VMI, and
// so a restart's next one, until the pod is gone.
func TestDeletedVMIsLauncherEndsAfterAConflict(t *testing.T) {
	ctx := context.Background()
	deleted := metav1.Now()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "d1", Labels: map[string]string{"group": "dr"}}}
	vmi := &kubevirtv1.VirtualMachineInstance{
		TypeMeta:   metav1.TypeMeta{APIVersion: kubevirtv1.SchemeGroupVersion.String(), Kind: "VirtualMachineInstance"},
		ObjectMeta: metav1.ObjectMeta{Name: "vm", Namespace: "ns", UID: "vmi-1", DeletionTimestamp: &deleted, Finalizers: []string{"kubevirt.io/foregroundDeleteVirtualMachine"}},
		Status:     kubevirtv1.VirtualMachineInstanceStatus{Phase: kubevirtv1.Running, NodeName: "d1"},
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "virt-launcher-vm-x", Namespace: "ns", Labels: map[string]string{"kubevirt.io": "virt-launcher", kubevirt.CreatedByLabel: "vmi-1"}},
		Spec:       corev1.PodSpec{NodeName: "d1"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{
			{Name: "compute", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
		}},
	}
	kube := fake.NewClientset(node, pod)
	conflicts := 1
	kube.PrependReactor("update", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() == "status" && conflicts > 0 {
			conflicts--
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "pods"}, pod.Name, nil)
		}
		return false, nil, nil
	})
	u, err := kubevirt.ToUnstructured(vmi)
	if err != nil {
		t.Fatal(err)
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{kubevirt.VMIs: "VirtualMachineInstanceList"}, u)
	h := New(kube, kube, dyn, Config{NodeSelector: "group=dr", Site: "DR"})
	if err := h.nodes.GetStore().Add(node); err != nil {
		t.Fatal(err)
	}
	// sync reads the VMI from the informer: feed it what the API holds.
	syncOnce := func() error {
		t.Helper()
		cur, err := dyn.Resource(kubevirt.VMIs).Namespace("ns").Get(ctx, "vm", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := h.vmis.GetStore().Update(cur); err != nil {
			t.Fatal(err)
		}
		return h.sync(ctx, "ns/vm")
	}
	if err := syncOnce(); err == nil {
		t.Fatal("the first sync met a conflict ending the pod and must be retried")
	}
	if err := syncOnce(); err != nil {
		t.Fatal(err)
	}
	cur, err := dyn.Resource(kubevirt.VMIs).Namespace("ns").Get(ctx, "vm", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := kubevirt.ToVMI(cur)
	if err != nil {
		t.Fatal(err)
	}
	p, err := kube.CoreV1().Pods("ns").Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != kubevirtv1.Succeeded || p.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("after the retry: VMI %s, launcher pod %s; want both Succeeded", got.Status.Phase, p.Status.Phase)
	}
}
