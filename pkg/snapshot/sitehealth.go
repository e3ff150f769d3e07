package snapshot

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
)

// EtcdPods are where a control plane runs its etcd members as static pods: kubeadm's
// in kube-system, OpenShift's in openshift-etcd (whose guard, installer and pruner pods
// carry other app labels).
var EtcdPods = []struct{ Namespace, Selector string }{
	{"kube-system", "component=etcd"},
	{"openshift-etcd", "app=etcd"},
}

// EtcdMember is one etcd static pod, and so one member of the cluster's etcd.
type EtcdMember struct {
	Pod  string `json:"pod"`
	Node string `json:"node"`
	// Ready: the pod is Ready; a member whose pod is not may not vote.
	Ready bool `json:"ready"`
}

// Etcd is the cluster's etcd as its static pods show it. A control plane whose etcd
// runs outside the cluster (external etcd, a managed control plane) shows no member.
type Etcd struct {
	Members []EtcdMember `json:"members"`
	// Unread says why the etcd pods could not be listed, when they could not.
	Unread string `json:"unread,omitempty"`
}

// NodeHealthChecks are medik8s NodeHealthCheck objects, which decide whether unhealthy
// nodes are remediated (fenced) automatically.
type NodeHealthChecks struct {
	Objects []unstructured.Unstructured `json:"-"`
	// Unread says why they could not be listed, when they could not; a cluster without
	// the CRD has none, and that is no error.
	Unread string `json:"unread,omitempty"`
}

// readEtcd lists the etcd static pods. Nothing here may fail a plan: a user who may not
// list pods in those namespaces gets the reason in Unread, as with fencing evidence.
func readEtcd(ctx context.Context, src Source) *Etcd {
	e := &Etcd{Members: []EtcdMember{}}
	var unread []string
	for _, where := range EtcdPods {
		err := listAll(ctx, func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return src.Kube.CoreV1().Pods(where.Namespace).List(ctx, opts)
		}, func(obj runtime.Object) error {
			if m, ok := EtcdMemberOf(obj.(*corev1.Pod)); ok {
				e.Members = append(e.Members, m)
			}
			return nil
		}, metav1.ListOptions{LabelSelector: where.Selector})
		if err != nil {
			unread = append(unread, fmt.Sprintf("pods -l %s in %s (%v)", where.Selector, where.Namespace, err))
		}
	}
	e.Unread = strings.Join(unread, "; ")
	return e
}

// EtcdMemberOf reduces an etcd static pod to a member; a pod that is over (Succeeded,
// Failed) or being deleted is no member.
func EtcdMemberOf(p *corev1.Pod) (EtcdMember, bool) {
	if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || p.Spec.NodeName == "" {
		return EtcdMember{}, false
	}
	m := EtcdMember{Pod: p.Namespace + "/" + p.Name, Node: p.Spec.NodeName}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			m.Ready = c.Status == corev1.ConditionTrue
		}
	}
	return m, true
}

// readNodeHealthChecks lists the NodeHealthChecks (cluster-scoped). A missing CRD means
// none; any other failure is recorded, never returned.
func readNodeHealthChecks(ctx context.Context, src Source) *NodeHealthChecks {
	out := &NodeHealthChecks{}
	if src.Dynamic == nil {
		out.Unread = "no client"
		return out
	}
	list, err := src.Dynamic.Resource(fencing.NodeHealthChecks).List(ctx, metav1.ListOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		out.Unread = fmt.Sprintf("%s.%s (%v)", fencing.NodeHealthChecks.Resource, fencing.NodeHealthChecks.Group, err)
	default:
		out.Objects = list.Items
	}
	return out
}
