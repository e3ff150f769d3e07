package kubevirt

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	kubevirtv1 "kubevirt.io/api/core/v1"
)

// N17: one VMI that does not decode into the Go type (here a string where KubeVirt has
// an object) failed every list of the typed cache, which then never synced, and every
// wait of the move timed out. The informer's list leaves it out and names it.
func TestN17OneUndecodableVMIDoesNotStallTheCache(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"apiVersion":"kubevirt.io/v1","kind":"VirtualMachineInstanceList","metadata":{"resourceVersion":"7"},"items":[
			{"metadata":{"namespace":"a","name":"good","uid":"u1"},"status":{"phase":"Running","nodeName":"p1"}},
			{"metadata":{"namespace":"a","name":"odd","uid":"u2"},"status":{"phase":"Running","migrationState":"not an object"}}]}`))
	}))
	defer srv.Close()
	rc, err := RESTClient(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	var skipped []string
	lenient := LenientListWatch(rc, VMIs.Resource, "", func() runtime.Object { return &kubevirtv1.VirtualMachineInstanceList{} },
		func(name string, err error) { skipped = append(skipped, name) })
	// The strict list, which the snapshot a plan is made from uses, refuses the page.
	if _, err := ListWatch(rc, VMIs.Resource, "", func() runtime.Object { return &kubevirtv1.VirtualMachineInstanceList{} }).
		ListWithContextFunc(context.Background(), metav1.ListOptions{}); err == nil {
		t.Fatal("the strict list decoded an undecodable page: the test proves nothing")
	}
	list, err := lenient.ListWithContextFunc(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("the informer's list: %v", err)
	}
	items := list.(*kubevirtv1.VirtualMachineInstanceList).Items
	if len(items) != 1 || items[0].Name != "good" || list.(*kubevirtv1.VirtualMachineInstanceList).ResourceVersion != "7" {
		t.Fatalf("items %+v", items)
	}
	if len(skipped) != 1 || skipped[0] != "a/odd" {
		t.Fatalf("skipped %v; want a/odd named", skipped)
	}
}
