package stretched

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
)

// FenceAgentsNamespace holds the FenceAgentsRemediations the harness creates, as an
// operator's NodeHealthCheck would in its own namespace.
const FenceAgentsNamespace = "medik8s"

// FenceSiteWithAgents plays Fence Agents Remediation v0.8.0 for every node of site (see
// FenceNodeWithAgents); the nodes in dark have a BMC that does not answer. It returns
// the objects' names.
func (e *Env) FenceSiteWithAgents(ctx context.Context, site string, dark ...string) ([]string, error) {
	nodes, err := e.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: selector.DefaultSiteKey + "=" + site})
	if err != nil {
		return nil, err
	}
	if len(nodes.Items) == 0 {
		return nil, fmt.Errorf("no node of site %s", site)
	}
	var names []string
	for _, n := range nodes.Items {
		name, err := e.FenceNodeWithAgents(ctx, n.Name, slices.Contains(dark, n.Name))
		if err != nil {
			return nil, err
		}
		names = append(names, name)
	}
	return names, nil
}

// FenceNodeWithAgents plays Fence Agents Remediation v0.8.0 for one node: a
// FenceAgentsRemediation named after it, with --action off, and the status its
// controller writes (pkg/utils/conditions.go): FenceAgentActionSucceeded and Succeeded
// True once the agent powered the node off, or all False with reason FenceAgentFailed
// when its BMC does not answer (dark).
func (e *Env) FenceNodeWithAgents(ctx context.Context, node string, dark bool) (string, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: FenceAgentsNamespace}}
	if _, err := e.Kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create namespace %s: %w", FenceAgentsNamespace, err)
	}
	res := e.Dynamic.Resource(fencing.FenceAgentsRemediations).Namespace(FenceAgentsNamespace)
	far := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "fence-agents-remediation.medik8s.io/v1alpha1",
		"kind":       "FenceAgentsRemediation",
		"metadata":   map[string]any{"name": node},
		"spec": map[string]any{
			"agent":            "fence_ipmilan",
			"sharedparameters": map[string]any{"--action": "off", "--lanplus": ""},
			"nodeparameters":   map[string]any{"--ipport": map[string]any{node: "623"}},
		},
	}}
	created, err := res.Create(ctx, far, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("create FenceAgentsRemediation %s: %w", node, err)
	}
	now := time.Now().UTC().Format(time.RFC3339)
	cond := func(typ, status, reason, msg string) map[string]any {
		return map[string]any{"type": typ, "status": status, "reason": reason, "message": msg, "lastTransitionTime": now}
	}
	conds := []any{
		cond("Processing", "False", "RemediationFinishedSuccessfully", "The unhealthy node was fully remediated"),
		cond("FenceAgentActionSucceeded", "True", "FenceAgentSucceeded", "FAR taint was added and the fence agent command has been created and executed successfully"),
		cond("Succeeded", "True", "RemediationFinishedSuccessfully", "The unhealthy node was fully remediated"),
	}
	if dark {
		conds = []any{
			cond("Processing", "False", "FenceAgentFailed", "Fence agent command has failed"),
			cond("FenceAgentActionSucceeded", "False", "FenceAgentFailed", "Fence agent command has failed"),
			cond("Succeeded", "False", "FenceAgentFailed", "Fence agent command has failed"),
		}
	}
	created.Object["status"] = map[string]any{"conditions": conds, "lastUpdateTime": now}
	if _, err := res.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return "", fmt.Errorf("report FenceAgentsRemediation %s: %w", node, err)
	}
	return node, nil
}

// StorageDriverFailParameter, as a NetworkFenceClass parameter (csi-addons copies the
// class's parameters into each fence), makes the played storage driver fail every fence
// of that class with the value as its message: a driver that cannot reach the storage
// cluster.
const StorageDriverFailParameter = "sitefail.test/fail"

// playStorageDriver plays csi-addons v0.12.0's NetworkFence controller and a driver
// that fences at once (networkfence_controller.go): the result of the last operation
// asked, Succeeded with csi-addons' own messages, or Failed when the fence's parameters
// say so. Until the CRD is installed it finds nothing.
func (e *Env) playStorageDriver(ctx context.Context) {
	res := e.Dynamic.Resource(fencing.NetworkFences)
	for ctx.Err() == nil {
		list, err := res.List(ctx, metav1.ListOptions{})
		if err == nil {
			for i := range list.Items {
				u := &list.Items[i]
				state, _, _ := unstructured.NestedString(u.Object, "spec", "fenceState")
				result, message := "Succeeded", "fencing operation successful"
				if state == "Unfenced" {
					message = "unfencing operation successful"
				}
				if fail, _, _ := unstructured.NestedString(u.Object, "spec", "parameters", StorageDriverFailParameter); fail != "" {
					result, message = "Failed", fail
				}
				r, _, _ := unstructured.NestedString(u.Object, "status", "result")
				m, _, _ := unstructured.NestedString(u.Object, "status", "message")
				if r == result && m == message {
					continue
				}
				u.Object["status"] = map[string]any{"result": result, "message": message}
				_, _ = res.UpdateStatus(ctx, u, metav1.UpdateOptions{})
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// CreateNetworkFenceClass makes a NetworkFenceClass for the played storage driver;
// failWith, when set, makes the driver fail its fences with that message.
func (e *Env) CreateNetworkFenceClass(ctx context.Context, name, failWith string) error {
	params := map[string]any{"clusterID": "sitefail-test"}
	if failWith != "" {
		params[StorageDriverFailParameter] = failWith
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "csiaddons.openshift.io/v1alpha1",
		"kind":       "NetworkFenceClass",
		"metadata":   map[string]any{"name": name},
		"spec":       map[string]any{"provisioner": "rbd.csi.ceph.com", "parameters": params},
	}}
	_, err := e.Dynamic.Resource(fencing.NetworkFenceClasses).Create(ctx, u, metav1.CreateOptions{})
	return err
}
