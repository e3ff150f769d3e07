package fencing

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
)

func fakeDynamic(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	kinds := WithListKinds(map[schema.GroupVersionResource]string{})
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), kinds, objs...)
}

func fenceClass(name string, params map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "csiaddons.openshift.io/v1alpha1", "kind": "NetworkFenceClass",
		"metadata": map[string]any{"name": name},
		"spec":     map[string]any{"provisioner": "rbd.csi.ceph.com", "parameters": params},
	}}
}

func TestSiteCIDRsCoverEveryNodeAddress(t *testing.T) {
	got, err := SiteCIDRs([]Node{
		{Name: "a", InternalIPs: []string{"10.0.0.2", "fd00::2"}},
		{Name: "b", InternalIPs: []string{"10.0.0.1", "10.0.0.2"}},
	}, []string{"192.0.2.7/24"})
	if err != nil {
		t.Fatal(err)
	}
	want := "10.0.0.1/32,10.0.0.2/32,192.0.2.0/24,fd00::2/128"
	if strings.Join(got, ",") != want {
		t.Fatalf("cidrs %v; want %s", got, want)
	}
	// A fence built from them proves each node: the judgement and the fence agree.
	for _, n := range []Node{{Name: "a", InternalIPs: []string{"10.0.0.2", "fd00::2"}}, {Name: "b", InternalIPs: []string{"10.0.0.1"}}} {
		u := NewNetworkFence("Primary", "m", Class{Name: "c", Driver: "d"}, got)
		u.Object["status"] = map[string]any{"result": "Succeeded", "message": "fencing operation successful"}
		if p, ok := networkFence(u, n); !ok || p.Strength != Strong {
			t.Fatalf("node %s: the tool's own fence does not prove it: %+v", n.Name, p)
		}
	}
	if _, err := SiteCIDRs([]Node{{Name: "bare"}}, nil); err == nil || !strings.Contains(err.Error(), "bare") {
		t.Fatalf("a node without an address: %v; want it named", err)
	}
	if _, err := SiteCIDRs(nil, []string{"10.0.0.0"}); err == nil {
		t.Fatal("a --fence-cidr that is no CIDR was accepted")
	}
}

func TestFenceNameIsAValidObjectName(t *testing.T) {
	for site, want := range map[string]string{"Primary": "sitefail-primary", "DR_2": "sitefail-dr-2", "eu west": "sitefail-eu-west"} {
		if got := FenceName(site); got != want {
			t.Errorf("FenceName(%q) = %q; want %q", site, got, want)
		}
	}
}

func TestPickClass(t *testing.T) {
	ctx := context.Background()
	one := fenceClass("ceph", map[string]any{
		"clusterID": "c1", classSecretName: "s", classSecretNamespace: "rook-ceph",
	})
	c, err := PickClass(ctx, fakeDynamic(one), "")
	if err != nil || c.Driver != "rbd.csi.ceph.com" || c.SecretName != "s" || c.SecretNamespace != "rook-ceph" || len(c.Parameters) != 1 || c.Parameters["clusterID"] != "c1" {
		t.Fatalf("the only class: %+v %v; want its driver, its secret apart, the reserved keys left out", c, err)
	}
	two := fakeDynamic(one, fenceClass("other", nil))
	if _, err := PickClass(ctx, two, ""); err == nil || !strings.Contains(err.Error(), "--network-fence-class") {
		t.Fatalf("two classes and none named: %v; want the flag named", err)
	}
	if c, err := PickClass(ctx, two, "other"); err != nil || c.Name != "other" {
		t.Fatalf("the named class: %+v %v", c, err)
	}
	if _, err := PickClass(ctx, two, "nope"); err == nil || !strings.Contains(err.Error(), "ceph") {
		t.Fatalf("an unknown class: %v; want the classes listed", err)
	}
	if _, err := PickClass(ctx, fakeDynamic(), ""); err == nil || !strings.Contains(err.Error(), "no NetworkFenceClass") {
		t.Fatalf("no class: %v", err)
	}
}

// The driver's answer decides: Failed carries its message; a result left by the
// unfence does not count as the fence's.
func TestFenceWaitsForTheDriversResult(t *testing.T) {
	ctx := context.Background()
	want := NewNetworkFence("Primary", "m1", Class{Name: "c", Driver: "d"}, []string{"10.0.0.1/32"})
	for _, tc := range []struct {
		name, result, message string
		wantErr               string
	}{
		{"succeeded", "Succeeded", "fencing operation successful", ""},
		{"failed", "Failed", "storage cluster unreachable", "storage cluster unreachable"},
		{"stale unfence result", "Succeeded", "unfencing operation successful", "did not report the fence"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dyn := fakeDynamic()
			done := make(chan struct{})
			go func() {
				defer close(done)
				// The driver answers once the fence exists.
				for i := 0; i < 100; i++ {
					u, err := dyn.Resource(NetworkFences).Get(ctx, want.GetName(), metav1.GetOptions{})
					if err == nil {
						u.Object["status"] = map[string]any{"result": tc.result, "message": tc.message}
						_, _ = dyn.Resource(NetworkFences).Update(ctx, u, metav1.UpdateOptions{})
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
			}()
			_, err := Fence(ctx, dyn, want.DeepCopy(), 3*time.Second, false)
			<-done
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("err %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err %v; want %q", err, tc.wantErr)
			case tc.result == "Failed" && !errors.Is(err, ErrFenceFailed):
				t.Fatalf("err %v; want ErrFenceFailed", err)
			}
		})
	}
}

// An existing fence is adopted only if it is this tool's, fenced, over the same
// addresses.
func TestFenceAdoptsOnlyItsOwnFence(t *testing.T) {
	ctx := context.Background()
	want := NewNetworkFence("Primary", "m2", Class{Name: "c", Driver: "d"}, []string{"10.0.0.1/32"})
	foreign := want.DeepCopy()
	foreign.SetLabels(nil)
	other := want.DeepCopy()
	_ = unstructured.SetNestedStringSlice(other.Object, []string{"10.0.0.9/32"}, "spec", "cidrs")
	unfenced := want.DeepCopy()
	_ = unstructured.SetNestedField(unfenced.Object, "Unfenced", "spec", "fenceState")
	for name, existing := range map[string]*unstructured.Unstructured{"foreign": foreign, "other addresses": other, "unfenced": unfenced} {
		if _, err := Fence(ctx, fakeDynamic(existing), want.DeepCopy(), time.Second, false); err == nil {
			t.Errorf("%s: adopted", name)
		}
	}
	ours := want.DeepCopy()
	ours.Object["status"] = map[string]any{"result": "Succeeded", "message": "fencing operation successful"}
	if _, err := Fence(ctx, fakeDynamic(ours), want.DeepCopy(), time.Second, false); err != nil {
		t.Fatalf("a rerun's own fence: %v", err)
	}
}

func TestUnfenceLiftsThenDeletes(t *testing.T) {
	ctx := context.Background()
	u := NewNetworkFence("Primary", "m3", Class{Name: "c", Driver: "d"}, []string{"10.0.0.1/32"})
	dyn := fakeDynamic(u)
	go func() {
		for i := 0; i < 100; i++ {
			got, err := dyn.Resource(NetworkFences).Get(ctx, u.GetName(), metav1.GetOptions{})
			if err == nil {
				if s, _, _ := unstructured.NestedString(got.Object, "spec", "fenceState"); s == "Unfenced" {
					got.Object["status"] = map[string]any{"result": "Succeeded", "message": "unfencing operation successful"}
					_, _ = dyn.Resource(NetworkFences).Update(ctx, got, metav1.UpdateOptions{})
					return
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	if _, found, err := Unfence(ctx, dyn, "Primary", 3*time.Second); err != nil || !found {
		t.Fatalf("found %v, err %v", found, err)
	}
	if _, err := dyn.Resource(NetworkFences).Get(ctx, u.GetName(), metav1.GetOptions{}); err == nil {
		t.Fatal("the fence is still there after its unfence")
	}
	if _, found, err := Unfence(ctx, dyn, "Primary", time.Second); err != nil || found {
		t.Fatalf("no fence: found %v, err %v", found, err)
	}
}

// Partition or power loss: nodes that went silent at once look like a power loss;
// minutes apart, or a NotReady node whose kubelet still renews its lease, look like a
// partition, and say so.
func TestPartitionedTellsSilenceApartFromPowerLoss(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	for _, tc := range []struct {
		name  string
		nodes []Node
		want  string
	}{
		{"power loss", []Node{{Name: "a", LeaseRenewed: ago(10 * time.Minute)}, {Name: "b", LeaseRenewed: ago(10*time.Minute + 20*time.Second)}}, ""},
		{"one by one", []Node{{Name: "a", LeaseRenewed: ago(30 * time.Minute)}, {Name: "b", LeaseRenewed: ago(3 * time.Minute)}}, "went silent at different times (a 30m0s ago, b 3m0s ago)"},
		{"kubelet alive", []Node{{Name: "a", NotReadySince: ago(5 * time.Minute), LeaseRenewed: ago(5 * time.Second)}, {Name: "b", NotReadySince: ago(5 * time.Minute), LeaseRenewed: ago(20 * time.Second)}}, "node a is NotReady but its kubelet renewed its lease 5s ago"},
		{"freshly silent", []Node{{Name: "a", NotReadySince: ago(2 * time.Second), LeaseRenewed: ago(30 * time.Second)}, {Name: "b", NotReadySince: ago(3 * time.Second), LeaseRenewed: ago(31 * time.Second)}}, ""},
		{"leases unknown", []Node{{Name: "a"}, {Name: "b"}}, ""},
		// Storage Based Remediation's agents read each node's heartbeat on the shared
		// storage and report SBRStorageUnhealthy=False while it is written.
		{"storage heartbeat fresh", []Node{{Name: "a", NotReadySince: ago(5 * time.Minute), StorageHeartbeat: ago(15 * time.Second)}}, "node a is NotReady but its storage heartbeat is fresh (SBRStorageUnhealthy=False 15s ago, after the node went NotReady)"},
		{"storage heartbeat from before", []Node{{Name: "a", NotReadySince: ago(5 * time.Minute), LeaseRenewed: ago(6 * time.Minute), StorageHeartbeat: ago(6 * time.Minute)}}, ""},
		{"a Ready node is not silent", []Node{{Name: "a", Ready: true, LeaseRenewed: ago(time.Second)}, {Name: "b", LeaseRenewed: ago(time.Hour)}}, ""},
	} {
		got := Partitioned(tc.nodes, now)
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q; want %q", tc.name, got, tc.want)
		}
	}
}

// The addresses the storage driver reports for a node's clients, for the class, are
// fenced too: a storage network apart from the node's InternalIPs.
func TestDriverCIDRsAreTheClassesOwnForTheSitesNodes(t *testing.T) {
	csiNode := func(name, node, class string, cidrs ...any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "csiaddons.openshift.io/v1alpha1", "kind": "CSIAddonsNode",
			"metadata": map[string]any{"name": name, "namespace": "rook-ceph"},
			"spec":     map[string]any{"driver": map[string]any{"name": "rbd.csi.ceph.com", "nodeID": node, "endpoint": "pod://x"}},
			"status": map[string]any{"networkFenceClientStatus": []any{map[string]any{
				"networkFenceClassName": class, "ClientDetails": []any{map[string]any{"id": "c1", "cidrs": cidrs}}}}},
		}}
	}
	dyn := fakeDynamic(csiNode("a", "p1", "ceph", "192.168.10.5/32"), csiNode("b", "p2", "other", "192.168.10.6/32"), csiNode("c", "d1", "ceph", "192.168.20.5/32"))
	got, err := DriverCIDRs(context.Background(), dyn, "ceph", []string{"p1", "p2"})
	if err != nil || strings.Join(got, ",") != "192.168.10.5/32" {
		t.Fatalf("driver CIDRs %v, %v; want only p1's for class ceph", got, err)
	}
}
