package kubecluster

import (
	"context"
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
)

func launcher(name, node, vmiUID, migrationUID string) *corev1.Pod {
	yes := true
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(name),
		Labels:          map[string]string{kubevirt.CreatedByLabel: vmiUID},
		OwnerReferences: []metav1.OwnerReference{{Kind: "VirtualMachineInstance", Name: "vm", UID: types.UID(vmiUID), Controller: &yes}}},
		Spec: corev1.PodSpec{NodeName: node}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	if migrationUID != "" {
		p.Labels[kubevirtv1.MigrationJobLabel] = migrationUID
	}
	return p
}

func migratingVMI(t *testing.T, node string, ms *kubevirtv1.VirtualMachineInstanceMigrationState) runtime.Object {
	t.Helper()
	vmi := &kubevirtv1.VirtualMachineInstance{TypeMeta: metav1.TypeMeta{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachineInstance"},
		ObjectMeta: metav1.ObjectMeta{Name: "vm", Namespace: "ns", UID: "vmi-1"},
		Status:     kubevirtv1.VirtualMachineInstanceStatus{NodeName: node, Phase: kubevirtv1.Running, MigrationState: ms}}
	u, err := kubevirt.ToUnstructured(vmi)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func fakeDyn(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		kubevirt.VMIs: "VirtualMachineInstanceList"}, objs...)
}

// Issue 20, behaviour 1: the source site dies while a live migration of the VM runs.
// The release found the migration's target pod on the live site and refused the VM, so a
// failover could not recover it. A target that never took the VMI over runs no guest of
// record: it goes with the release, and KubeVirt recreates the VM from its template.
func TestReleaseTakesTheTargetOfAMigrationThatNeverHandedOver(t *testing.T) {
	ms := &kubevirtv1.VirtualMachineInstanceMigrationState{MigrationUID: "mig-1", SourceNode: "p1", TargetNode: "d1", TargetPod: "target"}
	kube := fake.NewClientset(node("p1", "Primary", false), node("d1", "DR", true),
		launcher("source", "p1", "vmi-1", ""), launcher("target", "d1", "vmi-1", "mig-1"))
	c := &Cluster{siteKey: "site", kube: kube, dyn: fakeDyn(migratingVMI(t, "p1", ms)), nodeSite: map[string]string{"p1": "Primary", "d1": "DR"}}
	if err := c.ForceDeleteLaunchers(context.Background(), "ns", "vmi-1", "Primary"); err != nil {
		t.Fatalf("release of a VM migrating off the dead site: %v", err)
	}
	left, _ := kube.CoreV1().Pods("ns").List(context.Background(), metav1.ListOptions{})
	if len(left.Items) != 0 {
		t.Fatalf("pods left: %d; want the source and the unfinished target released", len(left.Items))
	}
}

// Once the target took the VMI over, it is the VM: nothing is released off the live
// site, and nothing at all is deleted (validated before the first delete).
func TestReleaseRefusesATargetThatTookTheVMIOver(t *testing.T) {
	now := metav1.Now()
	for name, tc := range map[string]struct {
		node string
		ms   *kubevirtv1.VirtualMachineInstanceMigrationState
	}{
		"handed over":         {"d1", &kubevirtv1.VirtualMachineInstanceMigrationState{MigrationUID: "mig-1", SourceNode: "p1", TargetNode: "d1", TargetPod: "target", EndTimestamp: &now}},
		"completed":           {"p1", &kubevirtv1.VirtualMachineInstanceMigrationState{MigrationUID: "mig-1", SourceNode: "p1", TargetNode: "d1", TargetPod: "target", Completed: true}},
		"another migration's": {"p1", &kubevirtv1.VirtualMachineInstanceMigrationState{MigrationUID: "mig-2", SourceNode: "p1", TargetNode: "d2", TargetPod: "other"}},
	} {
		t.Run(name, func(t *testing.T) {
			kube := fake.NewClientset(node("p1", "Primary", false), node("d1", "DR", true),
				launcher("source", "p1", "vmi-1", ""), launcher("target", "d1", "vmi-1", "mig-1"))
			c := &Cluster{siteKey: "site", kube: kube, dyn: fakeDyn(migratingVMI(t, tc.node, tc.ms)), nodeSite: map[string]string{"p1": "Primary", "d1": "DR"}}
			err := c.ForceDeleteLaunchers(context.Background(), "ns", "vmi-1", "Primary")
			if !errors.Is(err, executor.ErrNotReleasable) {
				t.Fatalf("%v; want a refusal", err)
			}
			left, _ := kube.CoreV1().Pods("ns").List(context.Background(), metav1.ListOptions{})
			if len(left.Items) != 2 {
				t.Fatalf("pods left: %d; want nothing deleted", len(left.Items))
			}
		})
	}
}

// Review of issue 20: the target's handler can hand the VMI over without the source (it
// acks the end itself), between the first look and the delete. The dead site's pods go
// first, and the VMI is read again right before the target's delete: a target that
// took over is left alone.
func TestReleaseRereadsTheVMIBeforeDeletingATarget(t *testing.T) {
	now := metav1.Now()
	open := &kubevirtv1.VirtualMachineInstanceMigrationState{MigrationUID: "mig-1", SourceNode: "p1", TargetNode: "d1", TargetPod: "target"}
	handed := &kubevirtv1.VirtualMachineInstanceMigrationState{MigrationUID: "mig-1", SourceNode: "p1", TargetNode: "d1", TargetPod: "target", EndTimestamp: &now}
	kube := fake.NewClientset(node("p1", "Primary", false), node("d1", "DR", true),
		launcher("source", "p1", "vmi-1", ""), launcher("target", "d1", "vmi-1", "mig-1"))
	dyn := fakeDyn(migratingVMI(t, "p1", open))
	gets := 0
	dyn.PrependReactor("get", "virtualmachineinstances", func(k8stesting.Action) (bool, runtime.Object, error) {
		gets++
		if gets == 1 {
			return false, nil, nil
		}
		return true, migratingVMI(t, "d1", handed), nil
	})
	c := &Cluster{siteKey: "site", kube: kube, dyn: dyn, nodeSite: map[string]string{"p1": "Primary", "d1": "DR"}}
	err := c.ForceDeleteLaunchers(context.Background(), "ns", "vmi-1", "Primary")
	if !errors.Is(err, executor.ErrNotReleasable) {
		t.Fatalf("%v; want the target refused once it took the VMI over", err)
	}
	if _, err := kube.CoreV1().Pods("ns").Get(context.Background(), "target", metav1.GetOptions{}); err != nil {
		t.Fatalf("the target that took the VMI over was deleted: %v", err)
	}
}
