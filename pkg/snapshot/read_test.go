package snapshot

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	kubevirtv1 "kubevirt.io/api/core/v1"
	instancetypev1beta1 "kubevirt.io/api/instancetype/v1beta1"

	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
)

func TestVMFromRunStrategiesAndTiers(t *testing.T) {
	yes, no := true, false
	manual := kubevirtv1.RunStrategyManual
	keys := selector.DefaultKeys()
	tests := []struct {
		name    string
		running *bool
		rs      *kubevirtv1.VirtualMachineRunStrategy
		tier    string
		want    kubevirtv1.VirtualMachineRunStrategy
		tierOK  int
		tierErr bool
	}{
		{name: "running true", running: &yes, tier: "2", want: kubevirtv1.RunStrategyAlways, tierOK: 2},
		{name: "running false", running: &no, want: kubevirtv1.RunStrategyHalted},
		{name: "manual", rs: &manual, tier: "0", want: kubevirtv1.RunStrategyManual, tierErr: true},
		{name: "neither", tier: "x", want: kubevirtv1.RunStrategyHalted, tierErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vm := &kubevirtv1.VirtualMachine{
				ObjectMeta: metav1.ObjectMeta{Name: "v", Namespace: "n", Labels: map[string]string{keys.Tier: tc.tier}},
				Spec: kubevirtv1.VirtualMachineSpec{Running: tc.running, RunStrategy: tc.rs, Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{
					Spec: kubevirtv1.VirtualMachineInstanceSpec{NodeSelector: map[string]string{keys.Site: "DR", "disk": "ssd"}}}},
			}
			got := VMFrom(vm, nil, keys)
			if got.RunStrategy != tc.want || got.Tier != tc.tierOK || (got.TierError != "") != tc.tierErr {
				t.Fatalf("got %s tier %d err %q", got.RunStrategy, got.Tier, got.TierError)
			}
			if got.HomeSite != "DR" || got.NodeSelector["disk"] != "ssd" {
				t.Fatalf("selector: %+v", got.NodeSelector)
			}
		})
	}
}

func TestRequests(t *testing.T) {
	mem := resource.MustParse("4Gi")
	d := kubevirtv1.DomainSpec{CPU: &kubevirtv1.CPU{Cores: 2, Sockets: 2}, Memory: &kubevirtv1.Memory{Guest: &mem}}
	if cpu, m := Requests(&d); cpu != 400 || m != 4<<30 {
		t.Fatalf("derived: %d %d", cpu, m)
	}
	d.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3"), corev1.ResourceMemory: resource.MustParse("5Gi")}
	if cpu, m := Requests(&d); cpu != 3000 || m != 5<<30 {
		t.Fatalf("explicit: %d %d", cpu, m)
	}
}

func unstructuredVM(t *testing.T, ns, name, site string) *unstructured.Unstructured {
	rs := kubevirtv1.RunStrategyAlways
	vm := &kubevirtv1.VirtualMachine{
		TypeMeta:   metav1.TypeMeta{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{selector.DefaultTierKey: "1"}},
		Spec: kubevirtv1.VirtualMachineSpec{RunStrategy: &rs, Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{
			Spec: kubevirtv1.VirtualMachineInstanceSpec{NodeSelector: map[string]string{selector.DefaultSiteKey: site}}}},
	}
	return toU(t, vm)
}

// toU converts through JSON, as the API server would serve the object.
func toU(t *testing.T, obj any) *unstructured.Unstructured {
	u, err := kubevirt.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func unstructuredVMI(t *testing.T, ns, name, nodeName string) *unstructured.Unstructured {
	vmi := &kubevirtv1.VirtualMachineInstance{
		TypeMeta:   metav1.TypeMeta{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachineInstance"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: "u-" + "x"},
		Status: kubevirtv1.VirtualMachineInstanceStatus{NodeName: nodeName, Phase: kubevirtv1.Running, Conditions: []kubevirtv1.VirtualMachineInstanceCondition{
			{Type: kubevirtv1.VirtualMachineInstanceReady, Status: corev1.ConditionTrue}}},
	}
	return toU(t, vmi)
}

// FakeDynamic returns a fake dynamic client that knows the KubeVirt list kinds.
func FakeDynamic(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), fencing.WithListKinds(map[schema.GroupVersionResource]string{
		kubevirt.VMs: "VirtualMachineList", kubevirt.VMIs: "VirtualMachineInstanceList", kubevirt.Migrations: "VirtualMachineInstanceMigrationList", kubevirt.KubeVirts: "KubeVirtList", DataVolumes: "DataVolumeList",
	}), objs...)
}

func readyNode(name, site string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{selector.DefaultSiteKey: site}},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("16Gi")}}}
}

func TestReadDerivesPlacementWithOneListPerKind(t *testing.T) {
	kube := kubefake.NewSimpleClientset(readyNode("p1", "Primary"), readyNode("d1", "DR"))
	var objs []runtime.Object
	for i, name := range []string{"a", "b", "c"} {
		objs = append(objs, unstructuredVM(t, "ns", name, "Primary"))
		node := []string{"p1", "d1", ""}[i]
		if node != "" {
			objs = append(objs, unstructuredVMI(t, "ns", name, node))
		}
	}
	dyn := FakeDynamic(objs...)
	s, err := Read(context.Background(), Source{Kube: kube, Dynamic: dyn, Keys: selector.DefaultKeys()})
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]VMState{}
	for _, vm := range s.VMs {
		states[vm.Name] = vm.State
	}
	if states["a"] != StateAligned || states["b"] != StatePendingMove || states["c"] != StateStopped {
		t.Fatalf("states %v", states)
	}
	gets := 0
	for _, a := range append(kube.Actions(), dyn.Actions()...) {
		if a.GetVerb() != "list" {
			gets++
		}
		if _, ok := a.(k8stesting.GetAction); ok {
			gets++
		}
	}
	// Nodes, VMIs, VMs, launcher pods, migrations, the KubeVirt CR, the storage
	// (claims, volumes, storage classes and DataVolumes), and the fencing evidence (FAR,
	// NetworkFence, SBR, SNR), the etcd static pods (kubeadm's and OpenShift's) and the
	// NodeHealthChecks.
	if gets != 0 || len(kube.Actions())+len(dyn.Actions()) != 17 {
		t.Fatalf("want exactly 17 LIST calls, got %d actions (%d non-list)", len(kube.Actions())+len(dyn.Actions()), gets)
	}
}

func TestPlacementNeedsFromTheTemplate(t *testing.T) {
	spec := &kubevirtv1.VirtualMachineInstanceSpec{Domain: kubevirtv1.DomainSpec{
		CPU: &kubevirtv1.CPU{Model: "Skylake", DedicatedCPUPlacement: true, Features: []kubevirtv1.CPUFeature{{Name: "avx512f"}, {Name: "svm", Policy: "forbid"}}},
		Devices: kubevirtv1.Devices{
			GPUs:        []kubevirtv1.GPU{{Name: "g", DeviceName: "nvidia.com/A10"}},
			HostDevices: []kubevirtv1.HostDevice{{Name: "h", DeviceName: "intel.com/qat"}},
		},
	}}
	devices, features, hostModel := placementNeeds(spec)
	if len(devices) != 2 || devices[0] != "nvidia.com/A10" || devices[1] != "intel.com/qat" || hostModel {
		t.Fatalf("devices %v hostModel %v", devices, hostModel)
	}
	want := map[string]string{kubevirtv1.CPUManager: "true", kubevirtv1.CPUModelLabel + "Skylake": "true", kubevirtv1.CPUFeatureLabel + "avx512f": "true"}
	if len(features) != len(want) {
		t.Fatalf("features %v, want %v", features, want)
	}
	for k, v := range want {
		if features[k] != v {
			t.Fatalf("features %v, want %v", features, want)
		}
	}
	if _, _, hostModel := placementNeeds(&kubevirtv1.VirtualMachineInstanceSpec{}); !hostModel {
		t.Fatal("no CPU model is KubeVirt's default, host-model")
	}
}

func TestInstancetypePlacementJoinsTheVMs(t *testing.T) {
	dedicated := true
	vm := &VM{Namespace: "a", Name: "vm", NodeSelector: map[string]string{"topology.kubernetes.io/site": "Primary", "disk": "ssd"}}
	applyInstancetype(vm, instancetypev1beta1.VirtualMachineInstancetypeSpec{
		NodeSelector: map[string]string{"topology.kubernetes.io/site": "Primary", "gpu": "yes"},
		CPU:          instancetypev1beta1.CPUInstancetype{DedicatedCPUPlacement: &dedicated},
		GPUs:         []kubevirtv1.GPU{{Name: "g", DeviceName: "nvidia.com/A10"}},
	}, "topology.kubernetes.io/site")
	if vm.InstancetypeSite != "Primary" || vm.NodeSelector["gpu"] != "yes" || vm.NodeSelector["disk"] != "ssd" ||
		vm.NodeFeatures[kubevirtv1.CPUManager] != "true" || len(vm.Devices) != 1 {
		t.Fatalf("%+v", vm)
	}
}

func TestSRIOVNetworkAddsItsDeviceResource(t *testing.T) {
	nad := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
		"metadata": map[string]any{"name": "sriov-a", "namespace": "prod", "annotations": map[string]any{nadResourceAnnotation: "intel.com/sriov_netdevice"}},
	}}
	plain := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
		"metadata": map[string]any{"name": "bridge", "namespace": "prod"},
	}}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), fencing.WithListKinds(map[schema.GroupVersionResource]string{
		NetworkAttachmentDefinitions: "NetworkAttachmentDefinitionList"}))
	// Created through the resource: the fake would guess "networkattachmentdefinitions".
	for _, o := range []*unstructured.Unstructured{nad, plain} {
		if _, err := dyn.Resource(NetworkAttachmentDefinitions).Namespace("prod").Create(context.Background(), o, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	spec := &kubevirtv1.VirtualMachineInstanceSpec{Networks: []kubevirtv1.Network{
		{Name: "pod", NetworkSource: kubevirtv1.NetworkSource{Pod: &kubevirtv1.PodNetwork{}}},
		{Name: "fast", NetworkSource: kubevirtv1.NetworkSource{Multus: &kubevirtv1.MultusNetwork{NetworkName: "sriov-a"}}},
		{Name: "br", NetworkSource: kubevirtv1.NetworkSource{Multus: &kubevirtv1.MultusNetwork{NetworkName: "prod/bridge"}}},
	}}
	s := &Snapshot{VMs: []VM{{Namespace: "prod", Name: "vm", Networks: multusNetworks("prod", spec)}}}
	readNetworks(context.Background(), Source{Dynamic: dyn, Namespace: "prod"}, s)
	if d := s.VMs[0].Devices; len(d) != 1 || d[0] != "intel.com/sriov_netdevice" || s.NetworksUnread != "" {
		t.Fatalf("devices %v, unread %q", d, s.NetworksUnread)
	}
}

// Found by the crash suite: between a migration's Succeeded and the VMI's hand-off, the
// VMI still names the source node; a rerun that believed it planned a second migration.
func TestCompletedMigrationCountsOnTheTargetBeforeTheHandOff(t *testing.T) {
	vm := &kubevirtv1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "vm"}}
	vmi := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "vm", UID: "u1"},
		Status: kubevirtv1.VirtualMachineInstanceStatus{NodeName: "primary-1", Phase: kubevirtv1.Running,
			MigrationState: &kubevirtv1.VirtualMachineInstanceMigrationState{Completed: true, TargetNode: "dr-1", SourceNode: "primary-1"}}}
	if got := VMFrom(vm, vmi, selector.DefaultKeys()); got.Instance.NodeName != "dr-1" {
		t.Fatalf("instance on %s, want dr-1 (the completed migration's target)", got.Instance.NodeName)
	}
}

// Issue 20, behaviour 3: KubeVirt's launcher pods select kubevirt.io/schedulable=true
// (v1.8.0 nodeselectorrenderer.go), so a node without it takes no VM.
func TestNodeWithoutKubeVirtSchedulableTakesNoVM(t *testing.T) {
	keys := selector.DefaultKeys()
	for label, want := range map[string]bool{"true": true, "false": false, "": false} {
		n := readyNode("d1", "DR")
		if label != "" {
			n.Labels["kubevirt.io/schedulable"] = label
		}
		got := NodeFrom(n, keys.Site)
		if got.Schedulable() != want {
			t.Errorf("kubevirt.io/schedulable=%q: schedulable %v; want %v", label, got.Schedulable(), want)
		}
	}
}

// The overhead KubeVirt v1.8.0 adds to a launcher's memory request on x86
// (pkg/hypervisor/kvm/hypervisorbackend.go GetMemoryOverhead), counted by hand in MiB
// (page tables are a few bytes over 8Mi for 4Gi).
func TestMemoryOverheadFollowsKubeVirt(t *testing.T) {
	mi := int64(1 << 20)
	guest := resource.MustParse("4Gi")
	no := false
	for _, tc := range []struct {
		name string
		spec kubevirtv1.VirtualMachineInstanceSpec
		want int64
	}{
		// page tables 4Gi/512 = 8Mi, fixed 220Mi, 2 vCPUs 16Mi, IOThread 8Mi, video 32Mi.
		{"plain", kubevirtv1.VirtualMachineInstanceSpec{Domain: kubevirtv1.DomainSpec{CPU: &kubevirtv1.CPU{Cores: 2}, Memory: &kubevirtv1.Memory{Guest: &guest}}}, 284 * mi},
		{"no video, dedicated CPUs", kubevirtv1.VirtualMachineInstanceSpec{Domain: kubevirtv1.DomainSpec{CPU: &kubevirtv1.CPU{Cores: 2, DedicatedCPUPlacement: true}, Memory: &kubevirtv1.Memory{Guest: &guest},
			Devices: kubevirtv1.Devices{AutoattachGraphicsDevice: &no}}}, (284 - 32 + 100) * mi},
		{"a host device (VFIO)", kubevirtv1.VirtualMachineInstanceSpec{Domain: kubevirtv1.DomainSpec{CPU: &kubevirtv1.CPU{Cores: 2}, Memory: &kubevirtv1.Memory{Guest: &guest},
			Devices: kubevirtv1.Devices{HostDevices: []kubevirtv1.HostDevice{{Name: "nic", DeviceName: "intel.com/qat"}}}}}, (284 + 1024) * mi},
	} {
		if got := MemoryOverhead(&tc.spec); got/mi != tc.want/mi {
			t.Errorf("%s: overhead %d MiB; want %d MiB", tc.name, got/mi, tc.want/mi)
		}
	}
}

// An instance-typed VM's template carries no CPU or memory: capacity counted it as
// 100m and 0 bytes. Its instance type's vCPUs and memory are its requests, and KubeVirt's
// overhead follows them (review of issue 20).
func TestInstancetypeSizesTheVM(t *testing.T) {
	var empty kubevirtv1.VirtualMachineInstanceSpec
	cpu, mem := Requests(&empty.Domain)
	vm := &VM{CPUMilli: cpu, MemoryBytes: mem, OverheadBytes: MemoryOverhead(&empty)}
	var spec instancetypev1beta1.VirtualMachineInstancetypeSpec
	spec.CPU.Guest = 4
	spec.Memory.Guest = resource.MustParse("8Gi")
	applyInstancetype(vm, spec, "topology.kubernetes.io/site")
	want := &kubevirtv1.VirtualMachineInstanceSpec{Domain: kubevirtv1.DomainSpec{CPU: &kubevirtv1.CPU{Cores: 4}, Memory: &kubevirtv1.Memory{Guest: &spec.Memory.Guest}}}
	if vm.CPUMilli != 400 || vm.MemoryBytes != 8<<30 || vm.OverheadBytes != MemoryOverhead(want) {
		t.Fatalf("cpu %d, memory %d, overhead %d; want 400, %d, %d", vm.CPUMilli, vm.MemoryBytes, vm.OverheadBytes, int64(8<<30), MemoryOverhead(want))
	}
}
