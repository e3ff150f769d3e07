package virthandler

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
)

func schedulable(t *testing.T, kube *fake.Clientset, name string) string {
	t.Helper()
	n, err := kube.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n.Labels[kubevirtv1.NodeSchedulable]
}

// The handler labels its site's nodes as v1.8.0's heartbeat does: false at start, true
// once the device plugins are up, and false again when stopped on purpose; other
// sites' nodes are not its own.
func TestHeartbeatLabelsItsNodes(t *testing.T) {
	mine := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "d1", Labels: map[string]string{"group": "dr", kubevirtv1.NodeSchedulable: "true"}}}
	other := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "p1", Labels: map[string]string{"group": "primary", kubevirtv1.NodeSchedulable: "true"}}}
	kube := fake.NewClientset(mine, other)
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{kubevirt.VMIs: "VirtualMachineInstanceList"})
	h := New(kube, kube, dyn, Config{NodeSelector: "group=dr", Site: "DR", DevicePluginDelay: 300 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	if err := h.Run(ctx, 1); err != nil {
		t.Fatal(err)
	}
	waitLabel := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for schedulable(t, kube, "d1") != want {
			if time.Now().After(deadline) {
				t.Fatalf("d1 kubevirt.io/schedulable=%q; want %q", schedulable(t, kube, "d1"), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitLabel("false")
	waitLabel("true")
	cancel()
	h.Unschedule(context.Background())
	waitLabel("false")
	if got := schedulable(t, kube, "p1"); got != "true" {
		t.Fatalf("another site's node was labelled %q", got)
	}
}
