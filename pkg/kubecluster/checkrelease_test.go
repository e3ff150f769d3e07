package kubecluster

import (
	"context"
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
)

func node(name, site string, ready bool) *corev1.Node {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"site": site}},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}}}
}

// H2 at the write: a release off a node that is not in the cluster is allowed only when
// the move knew that node in the confirmed site. The old guard took any missing node as
// releasable.
func TestH2CheckReleaseRefusesANodeItNeverSawInTheSite(t *testing.T) {
	kube := fake.NewClientset(node("p1", "Primary", false), node("d1", "DR", true))
	c := &Cluster{siteKey: "site", kube: kube, nodeSite: map[string]string{"p1": "Primary", "p-gone": "Primary", "d-gone": "DR"}}
	for _, tc := range []struct {
		node string
		ok   bool
	}{
		{"p1", true},
		{"p-gone", true},    // seen in the confirmed site, deleted since
		{"d-gone", false},   // seen in a live site
		{"stranger", false}, // never seen
		{"d1", false},
	} {
		err := c.CheckRelease(context.Background(), "Primary", tc.node)
		if (err == nil) != tc.ok {
			t.Errorf("CheckRelease(Primary, %s) = %v; want releasable %v", tc.node, err, tc.ok)
		}
		if err != nil && !errors.Is(err, executor.ErrNotReleasable) {
			t.Errorf("%s: %v does not wrap ErrNotReleasable", tc.node, err)
		}
	}
}

// N14: the guard at the release reads the API server, not the watch cache, which after
// a cut may still say NotReady of a node that is back.
func TestN14CheckReleaseReadsTheAPIServerNotTheCache(t *testing.T) {
	stale := cache.NewSharedIndexInformer(&cache.ListWatch{}, &corev1.Node{}, 0, cache.Indexers{})
	if err := stale.GetStore().Add(node("p1", "Primary", false)); err != nil {
		t.Fatal(err)
	}
	kube := fake.NewClientset(node("p1", "Primary", true)) // back, which the cache missed
	c := &Cluster{siteKey: "site", kube: kube, nodes: stale, nodeSite: map[string]string{"p1": "Primary"}}
	if err := c.CheckRelease(context.Background(), "Primary", "p1"); !errors.Is(err, executor.ErrSiteAlive) {
		t.Fatalf("CheckRelease with a stale cache: %v; want the site alive", err)
	}
}

// Scenario 10: a node added to the target site during the move counts as the target:
// an instance's site comes from the live node watch, not from the snapshot the plan was
// made on, which did not know the node.
func TestInstanceSiteComesFromTheLiveNodeWatch(t *testing.T) {
	nodes := cache.NewSharedIndexInformer(&cache.ListWatch{}, &corev1.Node{}, 0, cache.Indexers{})
	vmis := cache.NewSharedIndexInformer(&cache.ListWatch{}, &kubevirtv1.VirtualMachineInstance{}, 0, cache.Indexers{})
	if err := nodes.GetStore().Add(node("d-new", "DR", true)); err != nil {
		t.Fatal(err)
	}
	vmi := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "vm", UID: "u1"},
		Status: kubevirtv1.VirtualMachineInstanceStatus{NodeName: "d-new", Phase: kubevirtv1.Running}}
	if err := vmis.GetStore().Add(vmi); err != nil {
		t.Fatal(err)
	}
	c := &Cluster{siteKey: "site", nodes: nodes, vmis: vmis, nodeSite: map[string]string{"p1": "Primary"}}
	if inst := c.Instance("ns", "vm"); inst == nil || inst.Site != "DR" {
		t.Fatalf("instance on a node the snapshot did not know: %+v; want site DR from the live watch", inst)
	}
}
