package fencing

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// sbrStorageUnhealthy is the node condition Storage Based Remediation's agents set from
// the heartbeats each node writes on the shared storage.
const sbrStorageUnhealthy = "SBRStorageUnhealthy"

// NodeFrom reduces a Node to what the judgement needs.
func NodeFrom(n *corev1.Node) Node {
	out := Node{Name: n.Name, Created: n.CreationTimestamp.Time}
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			out.InternalIPs = append(out.InternalIPs, a.Address)
		}
	}
	for _, c := range n.Status.Conditions {
		if c.Type == sbrStorageUnhealthy && c.Status == corev1.ConditionFalse {
			out.StorageHeartbeat = c.LastHeartbeatTime.Time
			if c.LastTransitionTime.After(out.StorageHeartbeat) {
				out.StorageHeartbeat = c.LastTransitionTime.Time
			}
		}
		if c.Type == corev1.NodeReady {
			out.Ready = c.Status == corev1.ConditionTrue
			if !out.Ready {
				out.NotReadySince = c.LastTransitionTime.Time
			} else {
				out.ReadySince = c.LastTransitionTime.Time
			}
		}
	}
	for _, t := range n.Spec.Taints {
		if t.Key != OutOfServiceTaint {
			continue
		}
		out.OutOfService = true
		if t.TimeAdded != nil {
			out.OutOfServiceAdded = t.TimeAdded.Time
			by := n.Annotations[OutOfServiceByAnnotation]
			if id, at, ok := strings.Cut(by, "@"); ok && id != "" && at == t.TimeAdded.UTC().Format(time.RFC3339) {
				out.OutOfServiceMove = id
			}
		}
	}
	return out
}

// Read lists the evidence objects of every kind, across namespaces. A kind whose CRD
// is not installed has none. A kind that cannot be listed (no permission, an error) is
// named in unread and counts as no evidence: a proof that cannot be read proves
// nothing. err is the first such error, for a caller that retries transient ones.
func Read(ctx context.Context, dyn dynamic.Interface) (objs Objects, unread []string, err error) {
	read := func(gvr schema.GroupVersionResource) []unstructured.Unstructured {
		if dyn == nil {
			unread = append(unread, gvr.Resource+" (no client)")
			return nil
		}
		list, lerr := dyn.Resource(gvr).List(ctx, metav1.ListOptions{})
		switch {
		case apierrors.IsNotFound(lerr):
			return nil
		case lerr != nil:
			unread = append(unread, fmt.Sprintf("%s.%s (%v)", gvr.Resource, gvr.Group, lerr))
			if err == nil {
				err = lerr
			}
			return nil
		}
		return list.Items
	}
	objs.FenceAgentsRemediations = read(FenceAgentsRemediations)
	objs.NetworkFences = read(NetworkFences)
	objs.StorageBasedRemediations = read(StorageBasedRemediations)
	objs.SelfNodeRemediations = read(SelfNodeRemediations)
	return objs, unread, err
}

// WithListKinds adds the list kinds of the evidence resources, and of the
// NodeHealthChecks that create remediations, to m and returns it: a fake dynamic client
// must know every resource it is asked to list.
func WithListKinds(m map[schema.GroupVersionResource]string) map[schema.GroupVersionResource]string {
	m[FenceAgentsRemediations] = "FenceAgentsRemediationList"
	m[NetworkFences] = "NetworkFenceList"
	m[StorageBasedRemediations] = "StorageBasedRemediationList"
	m[SelfNodeRemediations] = "SelfNodeRemediationList"
	m[NodeHealthChecks] = "NodeHealthCheckList"
	m[NetworkFenceClasses] = "NetworkFenceClassList"
	m[CSIAddonsNodes] = "CSIAddonsNodeList"
	return m
}
