package move

import (
	"context"
	"fmt"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sitefail/kubectl-sitefail/pkg/plan"
)

// reviewer answers access reviews: allowed says which are granted.
func reviewer(allowed func(a *authorizationv1.ResourceAttributes) bool) (*kubefake.Clientset, *int) {
	kube := kubefake.NewSimpleClientset()
	n := 0
	kube.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		n++
		r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview)
		r.Status.Allowed = allowed(r.Spec.ResourceAttributes)
		return true, r, nil
	})
	return kube, &n
}

func manyNamespaces(n int) *plan.Plan {
	p := &plan.Plan{}
	for i := 0; i < n; i++ {
		p.Steps = append(p.Steps, plan.Step{Namespace: fmt.Sprintf("ns-%02d", i), Name: "vm", Action: plan.ActionMigrate})
	}
	return p
}

// A user with a cluster-wide grant costs one access review per verb, not one per verb
// and namespace (150 reviews for a 50-namespace move before).
func TestClusterWideGrantIsCheckedOnce(t *testing.T) {
	kube, n := reviewer(func(*authorizationv1.ResourceAttributes) bool { return true })
	cfg := Config{Kube: kube, LockNamespace: "kube-system"}
	if _, err := CheckAccess(context.Background(), cfg, manyNamespaces(50), nil); err != nil {
		t.Fatal(err)
	}
	if *n > 10 {
		t.Fatalf("%d access reviews for a cluster-wide grant; want one per verb", *n)
	}
}

// A user with namespaced grants is still checked namespace by namespace, and every
// missing permission is named.
func TestNamespacedGrantsAreCheckedPerNamespace(t *testing.T) {
	kube, _ := reviewer(func(a *authorizationv1.ResourceAttributes) bool {
		return a.Namespace != "" && a.Namespace != "ns-07" || a.Resource == "leases"
	})
	cfg := Config{Kube: kube, LockNamespace: "kube-system"}
	_, err := CheckAccess(context.Background(), cfg, manyNamespaces(10), nil)
	if err == nil || !strings.Contains(err.Error(), "patch virtualmachines.kubevirt.io in namespace ns-07") || strings.Contains(err.Error(), "ns-06") {
		t.Fatalf("want ns-07's missing permissions named, and no other: %v", err)
	}
}
