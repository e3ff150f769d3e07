package snapshot

import (
	"context"
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"

	"github.com/sitefail/kubectl-sitefail/pkg/selector"
)

// BenchmarkRead5000 reads a 5,000-VM cluster (half of them running) through the same
// paginated path as a real cluster, with fake clients; it measures decoding and
// derivation, not the network.
func BenchmarkRead5000(b *testing.B) {
	t := &testing.T{}
	kube := kubefake.NewSimpleClientset(readyNode("p1", "Primary"), readyNode("d1", "DR"))
	var objs []runtime.Object
	for i := 0; i < 5000; i++ {
		name := fmt.Sprintf("vm-%d", i)
		objs = append(objs, unstructuredVM(t, fmt.Sprintf("ns-%d", i%10), name, "Primary"))
		if i%2 == 0 {
			objs = append(objs, unstructuredVMI(t, fmt.Sprintf("ns-%d", i%10), name, "p1"))
		}
	}
	dyn := FakeDynamic(objs...)
	b.ReportAllocs()
	for b.Loop() {
		s, err := Read(context.Background(), Source{Kube: kube, Dynamic: dyn, Keys: selector.DefaultKeys()})
		if err != nil || len(s.VMs) != 5000 {
			b.Fatal(err)
		}
	}
}
