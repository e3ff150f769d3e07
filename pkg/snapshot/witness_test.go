package snapshot

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sitefail/kubectl-sitefail/pkg/selector"
)

// Every label combination that does, or does not, make a site a witness.
func TestWitnessSiteFromNodeLabelsOrDeclaration(t *testing.T) {
	n := func(name, site string, labels ...string) Node {
		l := map[string]string{selector.DefaultSiteKey: site}
		for _, kv := range labels {
			k, v, _ := strings.Cut(kv, "=")
			l[k] = v
		}
		return Node{Name: name, Site: site, Labels: l}
	}
	s := &Snapshot{Keys: selector.DefaultKeys(), Nodes: []Node{
		n("p1", "Primary"), n("d1", "DR"),
		n("z1", "Zone", ZoneLabel+"=arbiter"),
		n("zb", "ZoneB", ZoneLabel+"=b"),
		n("a1", "TNA", ArbiterRole+"="),
		n("e1", "EtcdOnly", EtcdRole+"=true"),
		n("e2", "EtcdServer", EtcdRole+"=true", "node-role.kubernetes.io/control-plane=true"),
		n("e3", "EtcdWorker", EtcdRole+"=true", "node-role.kubernetes.io/worker="),
		n("m1", "Mixed", ArbiterRole+"="), n("m2", "Mixed"),
		n("x1", "Both", ArbiterRole+"="), n("x2", "Both", EtcdRole+"=true"),
	}}
	s.Keys.Witnesses = []string{"Declared", "DR"}
	for site, want := range map[string]string{
		"Primary":    "",
		"DR":         Declared,
		"Declared":   "", // no node: it is no site, so nothing to refuse
		"Zone":       ZoneLabel + "=arbiter",
		"ZoneB":      "",
		"TNA":        ArbiterRole,
		"EtcdOnly":   EtcdRole + " (and no other role)",
		"EtcdServer": "",
		"EtcdWorker": "",
		"Mixed":      "",
		"Both":       ArbiterRole + " or " + EtcdRole + " (and no other role)",
		"":           "",
	} {
		got := s.Witness(site)
		if site == "Declared" {
			// Declared without a node: still named a witness, and never a site a
			// move could target (plan refuses unknown sites first).
			if got != Declared {
				t.Errorf("%s: %q", site, got)
			}
			continue
		}
		if (want == "") != (got == "") || (want != "" && !strings.Contains(got, want)) {
			t.Errorf("site %q: witness %q, want %q", site, got, want)
		}
	}
	if got := strings.Join(s.DataSites(), ","); got != "EtcdServer,EtcdWorker,Mixed,Primary,ZoneB" {
		t.Errorf("data sites %s", got)
	}
}

func etcdPod(ns, name, node string, labels map[string]string, phase corev1.PodPhase, ready bool) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:   corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{Phase: phase, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}}}
}

// The etcd members are kubeadm's and OpenShift's static pods, nothing else; pods that
// cannot be listed, or NodeHealthChecks that cannot, leave a reason and never fail the
// read; a missing NodeHealthCheck CRD is no error at all.
func TestReadCountsEtcdStaticPodsAndToleratesWhatItMayNotList(t *testing.T) {
	kubeadm := map[string]string{"component": "etcd", "tier": "control-plane"}
	ocp := map[string]string{"app": "etcd", "etcd": "true"}
	kube := kubefake.NewSimpleClientset(readyNode("p1", "Primary"), readyNode("d1", "DR"),
		etcdPod("kube-system", "etcd-p1", "p1", kubeadm, corev1.PodRunning, true),
		etcdPod("kube-system", "etcd-d1", "d1", kubeadm, corev1.PodRunning, false),
		etcdPod("kube-system", "etcd-old", "d1", kubeadm, corev1.PodFailed, false),
		etcdPod("kube-system", "kube-apiserver-p1", "p1", map[string]string{"component": "kube-apiserver"}, corev1.PodRunning, true),
		etcdPod("openshift-etcd", "etcd-w1", "w1", ocp, corev1.PodRunning, true),
		etcdPod("openshift-etcd", "etcd-guard-w1", "w1", map[string]string{"app": "guard"}, corev1.PodRunning, true),
	)
	nhc := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "remediation.medik8s.io/v1alpha1", "kind": "NodeHealthCheck",
		"metadata": map[string]any{"name": "workers"}, "spec": map[string]any{"minHealthy": "51%"}}}
	dyn := FakeDynamic(nhc)
	s, err := Read(context.Background(), Source{Kube: kube, Dynamic: dyn, Keys: selector.DefaultKeys()})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range s.Etcd.Members {
		got = append(got, m.Pod+"@"+m.Node+map[bool]string{true: "+", false: "-"}[m.Ready])
	}
	if strings.Join(got, " ") != "kube-system/etcd-d1@d1- kube-system/etcd-p1@p1+ openshift-etcd/etcd-w1@w1+" || s.Etcd.Unread != "" {
		t.Fatalf("etcd members %v, unread %q", got, s.Etcd.Unread)
	}
	if len(s.NodeHealthChecks.Objects) != 1 || s.NodeHealthChecks.Unread != "" {
		t.Fatalf("nhc %+v", s.NodeHealthChecks)
	}

	forbid := func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetNamespace() == "openshift-etcd" || a.GetResource().Resource == "nodehealthchecks" {
			return true, nil, apierrors.NewForbidden(a.GetResource().GroupResource(), "", nil)
		}
		return false, nil, nil
	}
	kube.PrependReactor("list", "pods", forbid)
	dyn.PrependReactor("list", "nodehealthchecks", forbid)
	s, err = Read(context.Background(), Source{Kube: kube, Dynamic: dyn, Keys: selector.DefaultKeys()})
	if err != nil {
		t.Fatalf("a forbidden list failed the read: %v", err)
	}
	if !strings.Contains(s.Etcd.Unread, "openshift-etcd") || len(s.Etcd.Members) != 2 {
		t.Fatalf("etcd %+v", s.Etcd)
	}
	if !strings.Contains(s.NodeHealthChecks.Unread, "nodehealthchecks.remediation.medik8s.io") || len(s.NodeHealthChecks.Objects) != 0 {
		t.Fatalf("nhc %+v", s.NodeHealthChecks)
	}

	dyn.PrependReactor("list", "nodehealthchecks", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: "remediation.medik8s.io", Resource: "nodehealthchecks"}, "")
	})
	s, err = Read(context.Background(), Source{Kube: kube, Dynamic: dyn, Keys: selector.DefaultKeys()})
	if err != nil || s.NodeHealthChecks.Unread != "" || len(s.NodeHealthChecks.Objects) != 0 {
		t.Fatalf("no CRD: %v %+v", err, s.NodeHealthChecks)
	}
}
