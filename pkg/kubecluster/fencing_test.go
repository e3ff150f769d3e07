package kubecluster

import (
	"context"
	"errors"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
)

var fenceAt = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

// downNode is a Primary node that went NotReady before the fence, at 10.0.0.N.
func downNode(name, ip string) *corev1.Node {
	n := node(name, "Primary", false)
	n.Status.Conditions[0].LastTransitionTime = metav1.Time{Time: fenceAt.Add(-time.Minute)}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
	return n
}

func networkFence(state string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "csiaddons.openshift.io/v1alpha1", "kind": "NetworkFence",
		"metadata": map[string]any{"name": "sitefail-primary"},
		"spec":     map[string]any{"fenceState": state, "cidrs": []any{"10.0.0.0/24"}},
		"status":   map[string]any{"result": "Succeeded"},
	}}
	return u
}

func evidenceDyn(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), fencing.WithListKinds(map[schema.GroupVersionResource]string{}), objs...)
}

// Issue 21: a site released on its fencing evidence has that evidence read again at
// every release, like the Ready check: a fence set back to Unfenced, or evidence that
// cannot be read any more, stops every release (ErrSiteAlive halts the move's releases).
func TestReleaseOnEvidenceRereadsTheEvidence(t *testing.T) {
	kube := fake.NewClientset(downNode("p1", "10.0.0.1"), downNode("p2", "10.0.0.2"), node("d1", "DR", true))
	dyn := evidenceDyn(networkFence("Fenced"))
	c := &Cluster{siteKey: "site", kube: kube, dyn: dyn, nodeSite: map[string]string{"p1": "Primary", "p2": "Primary"}, proven: map[string]bool{"Primary": true}}
	ctx := context.Background()
	if err := c.CheckRelease(ctx, "Primary", "p1"); err != nil {
		t.Fatalf("fenced site: %v", err)
	}

	// Someone unfences the storage mid-move.
	if _, err := dyn.Resource(fencing.NetworkFences).Update(ctx, networkFence("Unfenced"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := c.CheckRelease(ctx, "Primary", "p2")
	if !errors.Is(err, executor.ErrSiteAlive) {
		t.Fatalf("evidence withdrawn: %v; want ErrSiteAlive, which halts every release", err)
	}

	// The evidence cannot be read (a 429 during the outage, a revoked permission): this
	// release does not happen, and the error is the API's own, so that a transient one
	// is retried; it does not halt the move, since nothing says the site is alive.
	dyn = evidenceDyn(networkFence("Fenced"))
	dyn.PrependReactor("list", "networkfences", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewTooManyRequests("busy", 1)
	})
	c.dyn = dyn
	if err := c.CheckRelease(ctx, "Primary", "p1"); err == nil || errors.Is(err, executor.ErrSiteAlive) || !apierrors.IsTooManyRequests(err) {
		t.Fatalf("evidence unreadable: %v; want the API's 429, not released and not halting", err)
	}
	c.dyn = evidenceDyn(networkFence("Fenced"))

	// A node of another site is refused as before (ErrNotReleasable), not taken for a
	// hole in the site's evidence that halts every release.
	if err := c.CheckRelease(ctx, "Primary", "d1"); !errors.Is(err, executor.ErrNotReleasable) || errors.Is(err, executor.ErrSiteAlive) {
		t.Fatalf("a DR node under Primary's evidence: %v; want ErrNotReleasable only", err)
	}

	// A site the operator confirmed by hand is not held to evidence it never rested on.
	c.proven = map[string]bool{}
	if err := c.CheckRelease(ctx, "Primary", "p1"); err != nil {
		t.Fatalf("confirmed by hand: %v", err)
	}
}

// Issue 21: the out-of-service taint this tool adds is recorded on the node with its
// timeAdded and the move's ID, so that a move back names it as this tool's. A taint
// somebody put back afterwards (a new timeAdded) is theirs, whatever the annotation says.
func TestOutOfServiceTaintRecordsWhoAddedIt(t *testing.T) {
	kube := fake.NewClientset(downNode("p1", "10.0.0.1"))
	c := &Cluster{siteKey: "site", kube: kube, dyn: evidenceDyn(), moveID: "sf-7", nodeSite: map[string]string{"p1": "Primary"}}
	ctx := context.Background()
	if err := c.FenceNodes(ctx, "Primary", []string{"p1"}); err != nil {
		t.Fatal(err)
	}
	n, err := kube.CoreV1().Nodes().Get(ctx, "p1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := fencing.NodeFrom(n); !got.OutOfService || got.OutOfServiceMove != "sf-7" || got.OutOfServiceAdded.IsZero() {
		t.Fatalf("the tool's own taint: %+v; want it named as move sf-7's", got)
	}
	for i := range n.Spec.Taints {
		if n.Spec.Taints[i].Key == fencing.OutOfServiceTaint {
			later := metav1.NewTime(n.Spec.Taints[i].TimeAdded.Add(time.Hour))
			n.Spec.Taints[i].TimeAdded = &later
		}
	}
	if got := fencing.NodeFrom(n); !got.OutOfService || got.OutOfServiceMove != "" {
		t.Fatalf("a taint somebody added later: %+v; want it not the tool's", got)
	}
}

// Found by review (issue 21): a Fence Agents Remediation says the node is off, and its
// kubelet renews its lease after that. Each release reads the leases with the
// evidence, and the contradiction stops the releases, as withdrawn evidence does.
func TestReleaseStopsWhenAFencedNodesKubeletRenewsItsLease(t *testing.T) {
	far := func(node string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "fence-agents-remediation.medik8s.io/v1alpha1", "kind": "FenceAgentsRemediation",
			"metadata": map[string]any{"name": node, "namespace": "medik8s"},
			"spec":     map[string]any{"sharedparameters": map[string]any{"--action": "off"}},
			"status": map[string]any{"conditions": []any{
				map[string]any{"type": "FenceAgentActionSucceeded", "status": "True", "lastTransitionTime": fenceAt.Format(time.RFC3339)},
				map[string]any{"type": "Succeeded", "status": "True", "lastTransitionTime": fenceAt.Format(time.RFC3339)},
			}},
		}}
		return u
	}
	lease := func(node string, at time.Time) *coordinationv1.Lease {
		t := metav1.NewMicroTime(at)
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: node, Namespace: corev1.NamespaceNodeLease}, Spec: coordinationv1.LeaseSpec{RenewTime: &t}}
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		renewed time.Time
		alive   bool
	}{
		{"silent since before the fence", fenceAt.Add(-90 * time.Second), false},
		{"renewed after the fence", fenceAt.Add(5 * time.Minute), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kube := fake.NewClientset(downNode("p1", "10.0.0.1"), downNode("p2", "10.0.0.2"), lease("p1", tc.renewed), lease("p2", fenceAt.Add(-90*time.Second)))
			c := &Cluster{siteKey: "site", kube: kube, dyn: evidenceDyn(far("p1"), far("p2")), nodeSite: map[string]string{"p1": "Primary", "p2": "Primary"}, proven: map[string]bool{"Primary": true}}
			err := c.CheckRelease(ctx, "Primary", "p2")
			if got := errors.Is(err, executor.ErrSiteAlive); got != tc.alive {
				t.Fatalf("release: %v; want site alive %v", err, tc.alive)
			}
		})
	}
}

// Found by review: a lease read that fails with a transient error (a 429 in the outage)
// fails this release, to be retried, rather than judging without the leases; a
// forbidden one leaves the judgement to the fencing objects, as the plan's does.
func TestLeaseReadErrorsAtARelease(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		err     error
		retried bool
	}{
		{"too many requests", apierrors.NewTooManyRequests("busy", 1), true},
		{"forbidden", apierrors.NewForbidden(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, "", errors.New("no")), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kube := fake.NewClientset(downNode("p1", "10.0.0.1"), downNode("p2", "10.0.0.2"))
			kube.PrependReactor("list", "leases", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, tc.err })
			c := &Cluster{siteKey: "site", kube: kube, dyn: evidenceDyn(networkFence("Fenced")), nodeSite: map[string]string{"p1": "Primary", "p2": "Primary"}, proven: map[string]bool{"Primary": true}}
			err := c.CheckRelease(ctx, "Primary", "p1")
			if tc.retried != (err != nil && apierrors.IsTooManyRequests(err)) || errors.Is(err, executor.ErrSiteAlive) {
				t.Fatalf("lease read %v: release %v", tc.err, err)
			}
		})
	}
}
