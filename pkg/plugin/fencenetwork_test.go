package plugin

import (
	"context"
	"errors"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/pkg/lock"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/record"
)

// addressed gives a test node an InternalIP, which a storage fence covers.
func addressed(n *corev1.Node, ip string, ready bool) *corev1.Node {
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
	if !ready {
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, LastTransitionTime: metav1.Now()}}
	}
	return n
}

// networkFenceSetup: Primary is dark, DR and Edge are up, one VM runs on each of
// Primary and Edge, and the cluster has one NetworkFenceClass. The storage driver
// answers each fence with success; onFence runs when it does.
func networkFenceSetup(t *testing.T, onFence func(kube *kubefake.Clientset, dyn *dynamicfake.FakeDynamicClient)) (*kubefake.Clientset, *dynamicfake.FakeDynamicClient) {
	t.Helper()
	kube := kubefake.NewSimpleClientset(
		addressed(testNode("primary-1", "Primary"), "10.0.1.1", false),
		addressed(testNode("dr-1", "DR"), "10.0.2.1", true),
		addressed(testNode("edge-1", "Edge"), "10.0.3.1", true))
	kube.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview)
		// VMs are granted per namespace, and none in vault.
		ra := r.Spec.ResourceAttributes
		r.Status.Allowed = ra == nil || ra.Group != "kubevirt.io" || ra.Namespace != "" && ra.Namespace != "vault"
		return true, r, nil
	})
	var objs []runtime.Object
	objs = append(objs, testVM(t, "prod", "db", "1", "Primary", true)...)
	objs = append(objs, testVM(t, "prod", "till", "1", "Edge", true)...)
	objs = append(objs, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "csiaddons.openshift.io/v1alpha1", "kind": "NetworkFenceClass",
		"metadata": map[string]any{"name": "ceph"},
		"spec":     map[string]any{"provisioner": "rbd.csi.ceph.com"},
	}})
	var dyn *dynamicfake.FakeDynamicClient
	dyn = fakeDynamic(objs...)
	dyn.PrependReactor("create", "networkfences", func(a k8stesting.Action) (bool, runtime.Object, error) {
		u := a.(k8stesting.CreateAction).GetObject().(*unstructured.Unstructured)
		u.Object["status"] = map[string]any{"result": "Succeeded", "message": "fencing operation successful"}
		if onFence != nil {
			onFence(kube, dyn)
		}
		return false, nil, nil
	})
	return kube, dyn
}

// writes lists the VM and VMI writes a move sent.
func vmWrites(dyn *dynamicfake.FakeDynamicClient) []string {
	var out []string
	for _, a := range dyn.Actions() {
		switch a.GetVerb() {
		case "get", "list", "watch":
			continue
		}
		if r := a.GetResource().Resource; r == "virtualmachines" || r == "virtualmachineinstances" || r == "virtualmachineinstancemigrations" {
			out = append(out, a.GetVerb()+" "+r)
		}
	}
	return out
}

// Found by review (issue 21): the plan is built again after --fence network's wait, and
// a site that died during that wait is neither fenced nor confirmed. Guard asks for no
// confirmation under --fence network, so without its own check the rebuilt plan would
// release Edge's VM on no proof at all.
func TestSiteThatDiesDuringTheFenceWaitIsNotReleased(t *testing.T) {
	kube, dyn := networkFenceSetup(t, func(kube *kubefake.Clientset, _ *dynamicfake.FakeDynamicClient) {
		n, err := kube.CoreV1().Nodes().Get(context.Background(), "edge-1", metav1.GetOptions{})
		if err != nil {
			t.Error(err)
			return
		}
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, LastTransitionTime: metav1.Now()}}
		if _, err := kube.CoreV1().Nodes().UpdateStatus(context.Background(), n, metav1.UpdateOptions{}); err != nil {
			t.Error(err)
		}
	})
	out, errOut, err := runCmdWith(t, kube, dyn, "move", "--all", "--to", "DR", "--fence", "network", "--progress", "lines")
	if err == nil || !strings.Contains(err.Error()+errOut, "site Edge went down while its storage fence was awaited") {
		t.Fatalf("a site that died during the fence wait: %v\n%s\n%s", err, out, errOut)
	}
	if w := vmWrites(dyn); len(w) > 0 {
		t.Fatalf("refused, yet VMs were written: %v", w)
	}
	if _, err := dyn.Resource(fencing.NetworkFences).Get(context.Background(), fencing.FenceName("Primary"), metav1.GetOptions{}); err != nil {
		t.Fatalf("Primary's fence was made first: %v", err)
	}
	// The fence was this move's first write: its record tells of it, and of the stop
	// (found by review: the record used to start after the fence).
	st, err := (&record.Store{Kube: kube, Namespace: lock.DefaultNamespace}).Latest(context.Background())
	if err != nil || st == nil {
		t.Fatalf("no record of a move that fenced a site: %v", err)
	}
	run := st.Record.Runs[len(st.Record.Runs)-1]
	if run.Outcome != record.OutcomeFailed || !strings.Contains(run.Stopped, "site Edge went down") ||
		len(run.Evidence.StorageFences) != 1 || !strings.Contains(run.Evidence.StorageFences[0], "site Primary fenced: NetworkFence sitefail-primary") {
		t.Fatalf("record of the stopped move: outcome %s, stopped %q, storage fences %q", run.Outcome, run.Stopped, run.Evidence.StorageFences)
	}
	// It holds the plan built after the fence, which the refusal was about.
	found := false
	for _, v := range run.VMs {
		if v.VM == "prod/till" {
			found = true
			if v.Action != plan.ActionFailover {
				t.Fatalf("the record keeps the plan from before the fence: %+v", v)
			}
		}
	}
	if !found {
		t.Fatalf("the record has no step for prod/till: %+v", run.VMs)
	}
}

// Found by review (issue 21): the plan rebuilt after the fence wait is checked as the
// first one was. A VM that appeared during the wait may bring a blocker, or a namespace
// the operator may not write; either refuses the move before any VM is touched.
func TestPlanRebuiltAfterTheFenceIsCheckedAgain(t *testing.T) {
	for _, tc := range []struct {
		name, ns, want string
		owned          bool
	}{
		{"a new blocker", "prod", "the plan built after the storage fence is blocked", true},
		{"a namespace the operator may not write", "vault", "vault", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kube, dyn := networkFenceSetup(t, func(_ *kubefake.Clientset, dyn *dynamicfake.FakeDynamicClient) {
				// The tracker, not the client: the client's lock is held while a reactor runs.
				for _, o := range testVM(t, tc.ns, "late", "1", "Primary", true) {
					u := o.(*unstructured.Unstructured)
					if tc.owned && u.GetKind() == "VirtualMachine" {
						yes := true
						u.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "pool.kubevirt.io/v1beta1", Kind: "VirtualMachinePool", Name: "pool", UID: "pool-uid", Controller: &yes}})
					}
					gvr := kubevirt.VMs
					if u.GetKind() == "VirtualMachineInstance" {
						gvr = kubevirt.VMIs
						u.SetUID("uid-late")
					}
					if err := dyn.Tracker().Create(gvr, u, tc.ns); err != nil {
						t.Error(err)
					}
				}
			})
			out, errOut, err := runCmdWith(t, kube, dyn, "move", "--all", "-A", "--to", "DR", "--fence", "network", "--progress", "lines")
			if err == nil || !strings.Contains(err.Error()+errOut, tc.want) {
				t.Fatalf("%s after the fence: %v; want %q\n%s\n%s", tc.name, err, tc.want, out, errOut)
			}
			if w := vmWrites(dyn); len(w) > 0 {
				t.Fatalf("refused, yet VMs were written: %v", w)
			}
		})
	}
}

// Found by review of the ui's evidence (issue 21): the ui asks for the dead site's name
// for every failover. For a site its plan showed proven down, the name is no manual
// confirmation: the move's releases rest on the evidence and read it again, and evidence
// gone by the time of the lock stops the move rather than being overridden.
func TestUIConfirmsByHandOnlyASiteNotProvenDown(t *testing.T) {
	p := &plan.Plan{Fencing: map[string]fencing.Site{"Primary": {Proven: true}, "Edge": {}}}
	if got := uiConfirmations(p, "Primary"); len(got) != 0 {
		t.Fatalf("a proven site confirmed by hand: %v", got)
	}
	if got := uiConfirmations(p, "Edge"); len(got) != 1 || got[0] != "Edge" {
		t.Fatalf("an unproven site: %v; want it confirmed by the typed name", got)
	}
	if got := uiConfirmations(p, ""); len(got) != 0 {
		t.Fatalf("no failover: %v", got)
	}
	// The ui's move runs with them (found by review: the test above passed with the
	// ui still passing the typed name).
	uo := &uiOptions{Options: &Options{}}
	if got := uo.moveOptions(p, "Primary").confirmSiteDown; len(got) != 0 {
		t.Fatalf("the ui's move confirms a proven site by hand: %v", got)
	}
	if got := uo.moveOptions(p, "Edge").confirmSiteDown; len(got) != 1 {
		t.Fatalf("the ui's move does not confirm an unproven site: %v", got)
	}
}

// Found by review (issue 21): --fence network plans its fences before the lock and again
// under it, and a warning of the first was printed twice.
func TestFenceNetworkWarnsOnce(t *testing.T) {
	kube, dyn := networkFenceSetup(t, func(kube *kubefake.Clientset, _ *dynamicfake.FakeDynamicClient) {
		n, _ := kube.CoreV1().Nodes().Get(context.Background(), "edge-1", metav1.GetOptions{})
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, LastTransitionTime: metav1.Now()}}
		_, _ = kube.CoreV1().Nodes().UpdateStatus(context.Background(), n, metav1.UpdateOptions{})
	})
	dyn.PrependReactor("list", "csiaddonsnodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("csi-addons is on holiday")
	})
	_, errOut, _ := runCmdWith(t, kube, dyn, "move", "--all", "--to", "DR", "--fence", "network", "--progress", "lines")
	if n := strings.Count(errOut, "csi-addons is on holiday"); n != 1 {
		t.Fatalf("the driver-address warning printed %d times; want once:\n%s", n, errOut)
	}
}
