package snapshot

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/selector"
)

// With a REST config the KubeVirt lists are decoded into their types, page by page,
// and reduced by the same rules as the dynamic path.
func TestReadDecodesKubeVirtListsTyped(t *testing.T) {
	rs := kubevirtv1.RunStrategyAlways
	vm := func(name string) kubevirtv1.VirtualMachine {
		return kubevirtv1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: map[string]string{selector.DefaultTierKey: "2"}},
			Spec: kubevirtv1.VirtualMachineSpec{RunStrategy: &rs, Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{
				Spec: kubevirtv1.VirtualMachineInstanceSpec{NodeSelector: map[string]string{selector.DefaultSiteKey: "Primary"}}}}}
	}
	var pages []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		var list any
		switch {
		case strings.HasSuffix(r.URL.Path, "/virtualmachines") && r.URL.Query().Get("continue") == "":
			pages = append(pages, "vms-1")
			list = kubevirtv1.VirtualMachineList{TypeMeta: metav1.TypeMeta{Kind: "VirtualMachineList", APIVersion: "kubevirt.io/v1"},
				ListMeta: metav1.ListMeta{Continue: "page-2"}, Items: []kubevirtv1.VirtualMachine{vm("a")}}
		case strings.HasSuffix(r.URL.Path, "/virtualmachines"):
			pages = append(pages, "vms-"+r.URL.Query().Get("continue"))
			list = kubevirtv1.VirtualMachineList{TypeMeta: metav1.TypeMeta{Kind: "VirtualMachineList", APIVersion: "kubevirt.io/v1"},
				Items: []kubevirtv1.VirtualMachine{vm("b")}}
		case strings.HasSuffix(r.URL.Path, "/virtualmachineinstances"):
			vmi := kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "b", UID: "u-b"},
				Status: kubevirtv1.VirtualMachineInstanceStatus{Phase: kubevirtv1.Running, NodeName: "p1"}}
			list = kubevirtv1.VirtualMachineInstanceList{TypeMeta: metav1.TypeMeta{Kind: "VirtualMachineInstanceList", APIVersion: "kubevirt.io/v1"},
				Items: []kubevirtv1.VirtualMachineInstance{vmi}}
		case strings.HasSuffix(r.URL.Path, "/virtualmachineinstancemigrations"):
			list = kubevirtv1.VirtualMachineInstanceMigrationList{TypeMeta: metav1.TypeMeta{Kind: "VirtualMachineInstanceMigrationList", APIVersion: "kubevirt.io/v1"}}
		default:
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(list)
	}))
	defer srv.Close()
	kube := kubefake.NewSimpleClientset(readyNode("p1", "Primary"), readyNode("d1", "DR"))
	s, err := Read(context.Background(), Source{Kube: kube, Dynamic: FakeDynamic(), Config: &rest.Config{Host: srv.URL}, Keys: selector.DefaultKeys()})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(pages, ",") != "vms-1,vms-page-2" || len(s.VMs) != 2 {
		t.Fatalf("pages %v, VMs %+v", pages, s.VMs)
	}
	for _, v := range s.VMs {
		if v.Tier != 2 || v.HomeSite != "Primary" {
			t.Errorf("%s: tier %d home %q", v.Key(), v.Tier, v.HomeSite)
		}
		if (v.Name == "b") != (v.Instance != nil) || (v.Name == "b" && v.State != StateAligned) {
			t.Errorf("%s: instance %+v state %s", v.Key(), v.Instance, v.State)
		}
	}
}
