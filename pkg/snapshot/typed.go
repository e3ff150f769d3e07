package snapshot

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/pager"

	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
)

// The KubeVirt lists are decoded straight into their Go types when the source has a
// REST config (kubevirt.RESTClient). Fake clients in tests have no config and take the
// dynamic path; both reduce with the same functions.

// eachKubeVirt calls fn with every object of a kubevirt.io/v1 resource, typed: decoded
// straight into T through rc when there is one, else through the dynamic client and
// converted.
func eachKubeVirt[T runtime.Object](ctx context.Context, rc rest.Interface, dyn dynamic.Interface, gvr schema.GroupVersionResource, ns, sel string,
	newList func() runtime.Object, fromU func(*unstructured.Unstructured) (T, error), fn func(T) error) error {
	if rc == nil {
		return listDynamic(ctx, dyn, gvr, ns, sel, func(u *unstructured.Unstructured) error {
			t, err := fromU(u)
			if err != nil {
				return err
			}
			return fn(t)
		})
	}
	return listAll(ctx, pager.ListPageFunc(kubevirt.ListWatch(rc, gvr.Resource, ns, newList).ListWithContextFunc), func(obj runtime.Object) error {
		t, ok := obj.(T)
		if !ok {
			return fmt.Errorf("%s: list item is a %T", gvr.Resource, obj)
		}
		return fn(t)
	}, metav1.ListOptions{LabelSelector: sel})
}
