package tui

import (
	"context"
	"fmt"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

func sourceNode(name, site string, ready corev1.ConditionStatus, beat time.Time) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{selector.DefaultSiteKey: site}},
		Status: corev1.NodeStatus{
			Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready, LastHeartbeatTime: metav1.NewTime(beat)}},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("32Gi")}}}
}

func unstructuredOf(t testing.TB, obj any) *unstructured.Unstructured {
	t.Helper()
	u, err := kubevirt.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// startSource runs a Source over fake clients with one VM running on p1 and returns
// its messages.
func startSource(t *testing.T) (*kubefake.Clientset, <-chan any) {
	t.Helper()
	kube := kubefake.NewSimpleClientset(sourceNode("p1", "Primary", corev1.ConditionTrue, time.Unix(1000, 0)), sourceNode("d1", "DR", corev1.ConditionTrue, time.Unix(1000, 0)))
	rs := kubevirtv1.RunStrategyAlways
	vm := &kubevirtv1.VirtualMachine{TypeMeta: metav1.TypeMeta{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: "db", Labels: map[string]string{selector.DefaultTierKey: "1"}},
		Spec: kubevirtv1.VirtualMachineSpec{RunStrategy: &rs, Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{
			Spec: kubevirtv1.VirtualMachineInstanceSpec{NodeSelector: map[string]string{selector.DefaultSiteKey: "Primary"}}}}}
	vmi := &kubevirtv1.VirtualMachineInstance{TypeMeta: metav1.TypeMeta{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachineInstance"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: "db", UID: "vmi-1"},
		Status: kubevirtv1.VirtualMachineInstanceStatus{Phase: kubevirtv1.Running, NodeName: "p1",
			Conditions: []kubevirtv1.VirtualMachineInstanceCondition{{Type: kubevirtv1.VirtualMachineInstanceReady, Status: corev1.ConditionTrue}}}}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), fencing.WithListKinds(map[schema.GroupVersionResource]string{
		kubevirt.VMs: "VirtualMachineList", kubevirt.VMIs: "VirtualMachineInstanceList", kubevirt.Migrations: "VirtualMachineInstanceMigrationList",
	}), unstructuredOf(t, vm), unstructuredOf(t, vmi))
	src, err := NewSource(kube, dyn, nil, "", selector.DefaultKeys())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	msgs := make(chan any, 100)
	go src.Run(ctx, 10*time.Millisecond, func(m any) { msgs <- m })
	return kube, msgs
}

func nextSnapshot(t *testing.T, msgs <-chan any, within time.Duration) *snapshot.Snapshot {
	t.Helper()
	select {
	case m := <-msgs:
		s, ok := m.(SnapshotMsg)
		if !ok {
			t.Fatalf("got %#v, want a snapshot", m)
		}
		return s.Snapshot
	case <-time.After(within):
		return nil
	}
}

func TestSourceComposesTheClusterFromItsWatches(t *testing.T) {
	_, msgs := startSource(t)
	s := nextSnapshot(t, msgs, 10*time.Second)
	if s == nil || len(s.VMs) != 1 || len(s.Nodes) != 2 {
		t.Fatalf("first snapshot: %+v", s)
	}
	vm := s.VMs[0]
	if vm.Key() != "prod/db" || vm.Tier != 1 || vm.Instance == nil || !vm.Instance.Ready || vm.CurrentSite != "Primary" || vm.State != snapshot.StateAligned {
		t.Fatalf("VM as composed: %+v instance %+v", vm, vm.Instance)
	}
}

// At 200 nodes, heartbeats alone arrive several times a second; each used to rebuild
// the whole view.
func TestNodeHeartbeatDoesNotRebuildTheView(t *testing.T) {
	kube, msgs := startSource(t)
	if nextSnapshot(t, msgs, 10*time.Second) == nil {
		t.Fatal("no first snapshot")
	}
	ctx := context.Background()
	if _, err := kube.CoreV1().Nodes().UpdateStatus(ctx, sourceNode("p1", "Primary", corev1.ConditionTrue, time.Unix(2000, 0)), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if s := nextSnapshot(t, msgs, 300*time.Millisecond); s != nil {
		t.Fatal("a heartbeat rebuilt the view")
	}
	if _, err := kube.CoreV1().Nodes().UpdateStatus(ctx, sourceNode("p1", "Primary", corev1.ConditionUnknown, time.Unix(2000, 0)), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	s := nextSnapshot(t, msgs, 10*time.Second)
	if s == nil {
		t.Fatal("a node that stopped reporting did not reach the view")
	}
	if n, _ := s.Node("p1"); n.State != snapshot.NodeUnknown || s.VMs[0].State != snapshot.StateStranded {
		t.Fatalf("node %+v, VM state %s", n, s.VMs[0].State)
	}
}

// BenchmarkAbsorb1000Events is a burst of 1,000 VMI updates reaching a view of 5,000
// VMs on 200 nodes: each update reduced (the informer's transform) and checked for a
// visible change, then one snapshot composed, the model rebuilt and a frame drawn.
// Decoding the events from the wire is client-go's and is not counted.
func BenchmarkAbsorb1000Events(b *testing.B) {
	keys := selector.DefaultKeys()
	src, err := NewSource(kubefake.NewSimpleClientset(), dynamicfake.NewSimpleDynamicClient(runtime.NewScheme()), nil, "", keys)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		site := []string{"Primary", "DR"}[i%2]
		e, _ := reduceNode(keys)(sourceNode(fmt.Sprintf("%s-%d", site, i), site, corev1.ConditionTrue, time.Unix(1000, 0)))
		if err := src.nodes.GetStore().Add(e); err != nil {
			b.Fatal(err)
		}
	}
	rs := kubevirtv1.RunStrategyAlways
	updates := make([]*unstructured.Unstructured, 0, 1000)
	for i := 0; i < 5000; i++ {
		vm := &kubevirtv1.VirtualMachine{TypeMeta: metav1.TypeMeta{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine"},
			ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("ns-%02d", i%50), Name: fmt.Sprint("vm-", i), Labels: map[string]string{keys.Tier: fmt.Sprint(1 + i/1000)}},
			Spec: kubevirtv1.VirtualMachineSpec{RunStrategy: &rs, Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{
				Spec: kubevirtv1.VirtualMachineInstanceSpec{NodeSelector: map[string]string{keys.Site: "Primary"}}}}}
		e, _ := reduceVM(keys)(unstructuredOf(b, vm))
		if err := src.vms.GetStore().Add(e); err != nil {
			b.Fatal(err)
		}
		if i >= 1000 {
			continue
		}
		vmi := &kubevirtv1.VirtualMachineInstance{TypeMeta: metav1.TypeMeta{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachineInstance"},
			ObjectMeta: metav1.ObjectMeta{Namespace: vm.Namespace, Name: vm.Name, UID: types.UID(fmt.Sprint("vmi-", i))},
			Spec:       kubevirtv1.VirtualMachineInstanceSpec{NodeSelector: map[string]string{keys.Site: "Primary"}},
			Status: kubevirtv1.VirtualMachineInstanceStatus{Phase: kubevirtv1.Running, NodeName: fmt.Sprintf("Primary-%d", 2*(i%100)),
				Conditions: []kubevirtv1.VirtualMachineInstanceCondition{{Type: kubevirtv1.VirtualMachineInstanceReady, Status: corev1.ConditionFalse}}}}
		e, _ = reduceVMI(unstructuredOf(b, vmi))
		if err := src.vmis.GetStore().Add(e); err != nil {
			b.Fatal(err)
		}
		vmi.Status.Conditions[0].Status = corev1.ConditionTrue
		vmi.Status.NodeName = fmt.Sprintf("DR-%d", 2*(i%100)+1)
		updates = append(updates, unstructuredOf(b, vmi))
	}
	m := New(Options{Context: "bench"})
	m.Update(tea.WindowSizeMsg{Width: 160, Height: 48})
	first, err := src.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	m.Update(SnapshotMsg{Snapshot: first})
	store := src.vmis.GetStore()
	b.ReportAllocs()
	for b.Loop() {
		changed := 0
		for _, u := range updates {
			cur, _ := reduceVMI(u)
			old, _, _ := store.Get(cur)
			if visible(old, cur) {
				changed++
			}
			if err := store.Update(cur); err != nil {
				b.Fatal(err)
			}
		}
		s, err := src.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		m.Update(SnapshotMsg{Snapshot: s})
		_ = m.View()
	}
}
