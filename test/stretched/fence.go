package stretched

import (
	"context"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/retry"

	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
)

// SetBMCDark makes a node's BMC stop answering fence agents (dark), or answer again:
// the played Fence Agents Remediation controller fails the agent of a dark node.
func (e *Env) SetBMCDark(node string, dark bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if dark {
		e.darkBMCs[node] = true
	} else {
		delete(e.darkBMCs, node)
	}
}

func (e *Env) bmcDark(node string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.darkBMCs[node]
}

// What Fence Agents Remediation v0.8.0 names (api/v1alpha1, pkg/utils/conditions.go,
// medik8s/common's annotations and conditions).
const (
	farFinalizer          = "fence-agents-remediation.medik8s.io/far-finalizer"
	farTaintKey           = "remediation.medik8s.io/fence-agents-remediation"
	farNodeNameAnnotation = "remediation.medik8s.io/node-name"
	nhcTimedOutAnnotation = "remediation.medik8s.io/nhc-timed-out"

	farProcessing   = "Processing"
	farAgentActed   = "FenceAgentActionSucceeded"
	farSucceeded    = "Succeeded"
	farOutOfService = "OutOfServiceTaint"
)

// farReason is one of FAR's ConditionsChangeReasons, with the message it writes.
type farReason struct{ reason, message string }

var (
	farNodeNotFound   = farReason{"RemediationFinishedNodeNotFound", "FAR CR name doesn't match a node name"}
	farInterrupted    = farReason{"RemediationInterruptedByNHC", "Node Healthcheck timeout annotation has been set. Remediation has stopped"}
	farStarted        = farReason{"RemediationStarted", "FAR CR was found, its name matches one of the cluster nodes, and a finalizer was set to the CR"}
	farAgentSucceeded = farReason{"FenceAgentSucceeded", "FAR taint was added and the fence agent command has been created and executed successfully"}
	farAgentFailed    = farReason{"FenceAgentFailed", "Fence agent command has failed"}
	farFinished       = farReason{"RemediationFinishedSuccessfully", "The unhealthy node was fully remediated (it was tainted, fenced using the fence agent and all the node resources have been deleted)"}
)

// setFARConditions is FAR's UpdateConditions: each reason sets Processing,
// FenceAgentActionSucceeded and Succeeded to its statuses ("" leaves one alone), a
// condition whose status does not change keeps its reason, and lastUpdateTime moves only
// with a change. It reports whether anything changed.
func setFARConditions(u *unstructured.Unstructured, r farReason) bool {
	var processing, acted, succeeded metav1.ConditionStatus
	switch r {
	case farNodeNotFound, farInterrupted, farAgentFailed:
		processing, acted, succeeded = metav1.ConditionFalse, metav1.ConditionFalse, metav1.ConditionFalse
	case farStarted:
		processing, acted, succeeded = metav1.ConditionTrue, metav1.ConditionUnknown, metav1.ConditionUnknown
	case farAgentSucceeded:
		acted = metav1.ConditionTrue
	case farFinished:
		processing, succeeded = metav1.ConditionFalse, metav1.ConditionTrue
	}
	conds := farConditions(u)
	changed := false
	for _, c := range []struct {
		typ    string
		status metav1.ConditionStatus
	}{{farProcessing, processing}, {farAgentActed, acted}, {farSucceeded, succeeded}} {
		if c.status == "" || meta.IsStatusConditionPresentAndEqual(conds, c.typ, c.status) {
			continue
		}
		meta.SetStatusCondition(&conds, metav1.Condition{Type: c.typ, Status: c.status, Reason: r.reason, Message: r.message})
		changed = true
	}
	if !changed {
		return false
	}
	list := make([]any, 0, len(conds))
	for _, c := range conds {
		m, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(&c)
		list = append(list, m)
	}
	status, _, _ := unstructured.NestedMap(u.Object, "status")
	if status == nil {
		status = map[string]any{}
	}
	status["conditions"] = list
	status["lastUpdateTime"] = time.Now().UTC().Format(time.RFC3339)
	u.Object["status"] = status
	return true
}

func farConditions(u *unstructured.Unstructured) []metav1.Condition {
	raw, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	var conds []metav1.Condition
	for _, r := range raw {
		m, ok := r.(map[string]any)
		if !ok {
			continue
		}
		var c metav1.Condition
		if runtime.DefaultUnstructuredConverter.FromUnstructured(m, &c) == nil {
			conds = append(conds, c)
		}
	}
	return conds
}

// playFenceAgents plays Fence Agents Remediation v0.8.0's controller
// (internal/controller/fenceagentsremediation_controller.go) for the
// FenceAgentsRemediations in the cluster, which node-healthcheck-operator creates when
// it runs (StartNodeHealthChecks). Each pass takes every FAR one step, as one reconcile
// would: the finalizer and RemediationStarted; FAR's NoSchedule taint on the node; the
// fence agent's result, which is success unless the node's BMC is dark (SetBMCDark),
// where every attempt fails and FenceAgentFailed is reported once the spec's retries
// are spent (the attempts themselves take no time here); then the remediation strategy
// (ResourceDeletion deletes every pod of the node at once, OutOfServiceTaint adds the
// out-of-service taint) and RemediationFinishedSuccessfully. A FAR being deleted loses
// its taints and then its finalizer; one whose node is gone is only marked
// RemediationFinishedNodeNotFound (and keeps its finalizer, as in v0.8.0); one NHC
// timed out is marked RemediationInterruptedByNHC. No agent is run and no event written.
// Until the CRD is installed it finds nothing.
func (e *Env) playFenceAgents(ctx context.Context) {
	res := e.Dynamic.Resource(fencing.FenceAgentsRemediations)
	for ctx.Err() == nil {
		if list, err := res.List(ctx, metav1.ListOptions{}); err == nil {
			for i := range list.Items {
				_ = e.reconcileFAR(ctx, &list.Items[i])
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (e *Env) reconcileFAR(ctx context.Context, u *unstructured.Unstructured) error {
	res := e.Dynamic.Resource(fencing.FenceAgentsRemediations).Namespace(u.GetNamespace())
	status := func(r farReason) error {
		if !setFARConditions(u, r) {
			return nil
		}
		_, err := res.UpdateStatus(ctx, u, metav1.UpdateOptions{})
		return err
	}
	nodeName := u.GetName()
	if n := u.GetAnnotations()[farNodeNameAnnotation]; n != "" {
		nodeName = n
	}
	node, err := e.Kube.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return status(farNodeNotFound)
	} else if err != nil {
		return err
	}
	strategy, _, _ := unstructured.NestedString(u.Object, "spec", "remediationStrategy")
	deleting := u.GetDeletionTimestamp() != nil
	finalizer := slices.Contains(u.GetFinalizers(), farFinalizer)
	if _, timedOut := u.GetAnnotations()[nhcTimedOutAnnotation]; timedOut {
		if deleting {
			return e.releaseFAR(ctx, u, node.Name, strategy)
		}
		return status(farInterrupted)
	}
	switch {
	case !finalizer && !deleting:
		u.SetFinalizers(append(u.GetFinalizers(), farFinalizer))
		updated, err := res.Update(ctx, u, metav1.UpdateOptions{})
		if err != nil {
			return err
		}
		u = updated
		return status(farStarted)
	case finalizer && deleting:
		return e.releaseFAR(ctx, u, node.Name, strategy)
	}
	if err := e.taintNode(ctx, node.Name, corev1.Taint{Key: farTaintKey, Effect: corev1.TaintEffectNoSchedule}, true); err != nil {
		return err
	}
	conds := farConditions(u)
	switch {
	case meta.IsStatusConditionTrue(conds, farProcessing) && !meta.IsStatusConditionTrue(conds, farAgentActed):
		if !e.bmcDark(node.Name) {
			return status(farAgentSucceeded)
		}
		retries, _, _ := unstructured.NestedInt64(u.Object, "spec", "retrycount")
		interval := 5 * time.Second
		if s, _, _ := unstructured.NestedString(u.Object, "spec", "retryinterval"); s != "" {
			if d, err := time.ParseDuration(s); err == nil {
				interval = d
			}
		}
		started := meta.FindStatusCondition(conds, farAgentActed)
		if retries > 1 && started != nil && time.Since(started.LastTransitionTime.Time) < time.Duration(retries-1)*interval {
			return nil
		}
		return status(farAgentFailed)
	case meta.IsStatusConditionTrue(conds, farAgentActed) && !meta.IsStatusConditionTrue(conds, farSucceeded):
		if strategy == farOutOfService {
			now := metav1.Now()
			err = e.taintNode(ctx, node.Name, corev1.Taint{Key: corev1.TaintNodeOutOfService, Value: "nodeshutdown", Effect: corev1.TaintEffectNoExecute, TimeAdded: &now}, true)
		} else {
			err = e.deletePodsOf(ctx, node.Name)
		}
		if err != nil {
			return err
		}
		return status(farFinished)
	}
	return nil
}

// releaseFAR is FAR's handleFARDeletion: the out-of-service taint (under that
// strategy) and FAR's own taint come off the node, then the finalizer off the FAR.
func (e *Env) releaseFAR(ctx context.Context, u *unstructured.Unstructured, node, strategy string) error {
	if strategy == farOutOfService {
		if err := e.taintNode(ctx, node, corev1.Taint{Key: corev1.TaintNodeOutOfService, Effect: corev1.TaintEffectNoExecute}, false); err != nil {
			return err
		}
	}
	if err := e.taintNode(ctx, node, corev1.Taint{Key: farTaintKey, Effect: corev1.TaintEffectNoSchedule}, false); err != nil {
		return err
	}
	u.SetFinalizers(slices.DeleteFunc(u.GetFinalizers(), func(f string) bool { return f == farFinalizer }))
	_, err := e.Dynamic.Resource(fencing.FenceAgentsRemediations).Namespace(u.GetNamespace()).Update(ctx, u, metav1.UpdateOptions{})
	return err
}

// taintNode adds the taint (when absent; its key and effect name it) or removes it.
func (e *Env) taintNode(ctx context.Context, name string, taint corev1.Taint, add bool) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := e.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		has := slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.MatchTaint(&taint) })
		switch {
		case add && !has:
			if taint.TimeAdded == nil {
				now := metav1.Now()
				taint.TimeAdded = &now
			}
			n.Spec.Taints = append(n.Spec.Taints, taint)
		case !add && has:
			n.Spec.Taints = slices.DeleteFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.MatchTaint(&taint) })
		default:
			return nil
		}
		_, err = e.Kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

// deletePodsOf is medik8s/common's DeletePods: every pod bound to the node, in every
// namespace, deleted with no grace period.
func (e *Env) deletePodsOf(ctx context.Context, node string) error {
	pods, err := e.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return err
	}
	zero := int64(0)
	for _, p := range pods.Items {
		err := e.Kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
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
