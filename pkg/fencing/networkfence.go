package fencing

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
)

// NetworkFenceClasses is csi-addons' class of storage fences: the driver that fences,
// and its secret and parameters (v0.12.0's NetworkFence names them itself).
var NetworkFenceClasses = schema.GroupVersionResource{Group: "csiaddons.openshift.io", Version: "v1alpha1", Resource: "networkfenceclasses"}

// csi-addons v0.12.0's reserved class parameters (networkfenceclass_controller.go):
// they name the secret, and are not passed to the driver.
const (
	classParamPrefix     = "csiaddons.openshift.io/"
	classSecretName      = classParamPrefix + "networkfence-secret-name"
	classSecretNamespace = classParamPrefix + "networkfence-secret-namespace"
	// unfencedMessage is what the csi-addons controller reports after an unfence.
	unfencedMessage = "unfencing operation successful"
)

// Labels on the fences this tool creates, so that a failback finds its own and never
// touches a fence somebody else made.
const (
	FenceSiteLabel = "sitefail.io/fenced-site"
	FenceMoveLabel = "sitefail.io/move"
)

// FenceName is the NetworkFence this tool keeps for a site: one per site, so that a
// rerun finds the fence of the first run instead of making a second.
func FenceName(site string) string {
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '.':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		}
		return '-'
	}, site)
	return strings.Trim("sitefail-"+name, "-.")
}

// Class is the NetworkFenceClass a fence is made from.
type Class struct {
	Name, Driver                string
	SecretName, SecretNamespace string
	Parameters                  map[string]string
}

// PickClass returns the named NetworkFenceClass, or the only one when name is empty.
// Its errors say what to do: a storage fence from a guessed class fences nothing.
func PickClass(ctx context.Context, dyn dynamic.Interface, name string) (Class, error) {
	list, err := dyn.Resource(NetworkFenceClasses).List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return Class{}, errors.New("--fence network needs the csi-addons CRDs (networkfences, networkfenceclasses.csiaddons.openshift.io), which this cluster does not serve: install csi-addons with a storage driver that supports network fencing, or use --fence pod")
	}
	if err != nil {
		return Class{}, fmt.Errorf("list NetworkFenceClasses for --fence network: %w", err)
	}
	var names []string
	for i := range list.Items {
		u := &list.Items[i]
		names = append(names, u.GetName())
		if name == "" && len(list.Items) == 1 || u.GetName() == name {
			return classFrom(u)
		}
	}
	switch {
	case len(list.Items) == 0:
		return Class{}, errors.New("--fence network: the cluster has no NetworkFenceClass: create one for your storage driver (csi-addons), or use --fence pod")
	case name == "":
		return Class{}, fmt.Errorf("--fence network: the cluster has %d NetworkFenceClasses (%s): name one with --network-fence-class", len(names), strings.Join(names, ", "))
	}
	return Class{}, fmt.Errorf("--network-fence-class %s: no such NetworkFenceClass (the cluster has: %s)", name, strings.Join(names, ", "))
}

func classFrom(u *unstructured.Unstructured) (Class, error) {
	c := Class{Name: u.GetName(), Parameters: map[string]string{}}
	c.Driver, _, _ = unstructured.NestedString(u.Object, "spec", "provisioner")
	if c.Driver == "" {
		return Class{}, fmt.Errorf("NetworkFenceClass %s names no provisioner", c.Name)
	}
	params, _, _ := unstructured.NestedStringMap(u.Object, "spec", "parameters")
	for k, v := range params {
		switch {
		case k == classSecretName:
			c.SecretName = v
		case k == classSecretNamespace:
			c.SecretNamespace = v
		case strings.HasPrefix(k, classParamPrefix):
			// Reserved for the controller; the driver never sees it.
		default:
			c.Parameters[k] = v
		}
	}
	return c, nil
}

// CSIAddonsNodes are csi-addons' per-node objects: for a class that fences, the
// addresses the storage driver sees the node's clients at (its storage network), which
// need not be the node's InternalIPs.
var CSIAddonsNodes = schema.GroupVersionResource{Group: "csiaddons.openshift.io", Version: "v1alpha1", Resource: "csiaddonsnodes"}

// DriverCIDRs lists, for the nodes named, the client CIDRs that csi-addons' node objects
// report for the class (status.networkFenceClientStatus). A cluster without the CRD
// has none; another error is returned, for the caller to say what it could not check.
func DriverCIDRs(ctx context.Context, dyn dynamic.Interface, class string, nodes []string) ([]string, error) {
	list, err := dyn.Resource(CSIAddonsNodes).List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for i := range list.Items {
		u := &list.Items[i]
		node, _, _ := unstructured.NestedString(u.Object, "spec", "driver", "nodeID")
		if !slices.Contains(nodes, node) {
			continue
		}
		statuses, _, _ := unstructured.NestedSlice(u.Object, "status", "networkFenceClientStatus")
		for _, st := range statuses {
			m, _ := st.(map[string]any)
			if m == nil || m["networkFenceClassName"] != class {
				continue
			}
			details, _ := m["ClientDetails"].([]any)
			for _, d := range details {
				dm, _ := d.(map[string]any)
				cidrs, _ := dm["cidrs"].([]any)
				for _, c := range cidrs {
					if cs, ok := c.(string); ok && cs != "" {
						out = append(out, cs)
					}
				}
			}
		}
	}
	return out, nil
}

// SiteCIDRs is every InternalIP of the site's nodes as a host CIDR, and the extra CIDRs,
// sorted and without repeats. A node without an InternalIP cannot be fenced this way.
func SiteCIDRs(nodes []Node, extra []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	add := func(c string) {
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	for _, n := range nodes {
		if len(n.InternalIPs) == 0 {
			return nil, fmt.Errorf("node %s has no InternalIP: a network fence cannot cut it off; add its storage address with --fence-cidr, or fence it otherwise", n.Name)
		}
		for _, ip := range n.InternalIPs {
			p := net.ParseIP(ip)
			if p == nil {
				return nil, fmt.Errorf("node %s: InternalIP %q is not an IP address", n.Name, ip)
			}
			if p.To4() != nil {
				add(p.String() + "/32")
			} else {
				add(p.String() + "/128")
			}
		}
	}
	for _, c := range extra {
		_, ipnet, err := net.ParseCIDR(c)
		if err != nil {
			return nil, fmt.Errorf("--fence-cidr %q: %v", c, err)
		}
		add(ipnet.String())
	}
	slices.Sort(out)
	return out, nil
}

// fencedNodesAnnotation names, on a fence this tool made, the nodes it fenced: a fence is
// lifted only once each of them is back in its site, whatever its addresses now say.
const fencedNodesAnnotation = "sitefail.io/fenced-nodes"

// SetFencedNodes records on the fence the nodes it fences.
func SetFencedNodes(u *unstructured.Unstructured, nodes []string) {
	a := u.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[fencedNodesAnnotation] = strings.Join(nodes, ",")
	u.SetAnnotations(a)
}

// FencedNodes are the nodes the fence fenced, as recorded when it was made; ok is false
// when it records none.
func FencedNodes(u *unstructured.Unstructured) (nodes []string, ok bool) {
	v, ok := u.GetAnnotations()[fencedNodesAnnotation]
	if !ok || v == "" {
		return nil, false
	}
	return strings.Split(v, ","), true
}

// NewNetworkFence is the fence for a site.
func NewNetworkFence(site, moveID string, class Class, cidrs []string) *unstructured.Unstructured {
	spec := map[string]any{
		"driver":     class.Driver,
		"fenceState": "Fenced",
		"cidrs":      toAny(cidrs),
	}
	if class.SecretName != "" {
		spec["secret"] = map[string]any{"name": class.SecretName, "namespace": class.SecretNamespace}
	}
	if len(class.Parameters) > 0 {
		p := map[string]any{}
		for k, v := range class.Parameters {
			p[k] = v
		}
		spec["parameters"] = p
	}
	labels := map[string]any{FenceSiteLabel: labelValue(site)}
	if moveID != "" {
		labels[FenceMoveLabel] = moveID
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": NetworkFences.GroupVersion().String(),
		"kind":       "NetworkFence",
		"metadata": map[string]any{
			"name":        FenceName(site),
			"labels":      labels,
			"annotations": map[string]any{"sitefail.io/site": site, "sitefail.io/network-fence-class": class.Name},
		},
		"spec": spec,
	}}
}

func labelValue(s string) string {
	if len(validation.IsValidLabelValue(s)) == 0 {
		return s
	}
	return strings.TrimPrefix(FenceName(s), "sitefail-")
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// FenceResult is how a fence or an unfence ended.
type FenceResult struct {
	Name, UID, ResourceVersion string
	Message                    string
}

// ErrFenceFailed is the driver's refusal; its message is in the error.
var ErrFenceFailed = errors.New("the storage driver failed the network fence")

// Fence creates the site's fence (or adopts the one an earlier run made with the same
// addresses) and waits until the driver reports it fenced. dryRun sends the create as a
// server dry run and waits for nothing.
func Fence(ctx context.Context, dyn dynamic.Interface, want *unstructured.Unstructured, timeout time.Duration, dryRun bool) (FenceResult, error) {
	res := dyn.Resource(NetworkFences)
	name := want.GetName()
	opts := metav1.CreateOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	got, err := res.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if got, err = res.Create(ctx, want, opts); err != nil {
			return FenceResult{}, fmt.Errorf("create NetworkFence %s: %w", name, err)
		}
	case err != nil:
		return FenceResult{}, fmt.Errorf("read NetworkFence %s: %w", name, err)
	default:
		if err := adoptable(got, want); err != nil {
			return FenceResult{}, err
		}
	}
	if dryRun {
		return FenceResult{Name: name}, nil
	}
	return waitResult(ctx, dyn, name, timeout, func(u *unstructured.Unstructured) bool {
		state, _, _ := unstructured.NestedString(u.Object, "spec", "fenceState")
		return state == "Fenced"
	}, "fence")
}

// adoptable accepts an existing fence only if it is this tool's, fenced, over the same
// addresses: anything else is somebody's decision that a move must not overwrite.
func adoptable(got, want *unstructured.Unstructured) error {
	name := got.GetName()
	if got.GetLabels()[FenceSiteLabel] == "" {
		return fmt.Errorf("NetworkFence %s exists and was not made by kubectl sitefail: remove or rename it, then run the move again", name)
	}
	state, _, _ := unstructured.NestedString(got.Object, "spec", "fenceState")
	if state != "Fenced" {
		return fmt.Errorf("NetworkFence %s exists and is %s (an unfinished failback): wait for it to be deleted (kubectl get networkfence %s), then run the move again", name, state, name)
	}
	gc, _, _ := unstructured.NestedStringSlice(got.Object, "spec", "cidrs")
	wc, _, _ := unstructured.NestedStringSlice(want.Object, "spec", "cidrs")
	if !slices.Equal(sortedCopy(gc), sortedCopy(wc)) {
		return fmt.Errorf("NetworkFence %s fences %s, but the site's addresses are now %s: check the site's nodes, delete the fence once its storage is safe, then run the move again", name, strings.Join(gc, ","), strings.Join(wc, ","))
	}
	return nil
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// waitResult polls the fence until the driver reports on the state wanted: Succeeded,
// or Failed with its message. A result left from the other operation does not count.
func waitResult(ctx context.Context, dyn dynamic.Interface, name string, timeout time.Duration, wanted func(*unstructured.Unstructured) bool, op string) (FenceResult, error) {
	var out FenceResult
	var failed error
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		u, err := dyn.Resource(NetworkFences).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			// Transient errors are retried until the timeout.
			return false, nil
		}
		if !wanted(u) {
			return false, nil
		}
		result, _, _ := unstructured.NestedString(u.Object, "status", "result")
		message, _, _ := unstructured.NestedString(u.Object, "status", "message")
		unfenced := strings.EqualFold(message, unfencedMessage)
		out = FenceResult{Name: name, UID: string(u.GetUID()), ResourceVersion: u.GetResourceVersion(), Message: message}
		switch {
		case result == "Failed":
			failed = fmt.Errorf("%w: NetworkFence %s: %s", ErrFenceFailed, name, message)
			return true, nil
		case result == "Succeeded" && unfenced == (op == "unfence"):
			return true, nil
		}
		return false, nil
	})
	if failed != nil {
		return out, failed
	}
	if err != nil {
		return out, fmt.Errorf("NetworkFence %s: the storage driver did not report the %s within %s (kubectl get networkfence %s -o yaml)", name, op, timeout, name)
	}
	return out, nil
}

// Unfence lifts this tool's fence of a site: Unfenced, the driver's success awaited,
// then the object deleted. A site without a fence is done at once; a fence this tool
// did not make is refused.
func Unfence(ctx context.Context, dyn dynamic.Interface, site string, timeout time.Duration) (FenceResult, bool, error) {
	name := FenceName(site)
	res := dyn.Resource(NetworkFences)
	got, err := res.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return FenceResult{}, false, nil
	case err != nil:
		return FenceResult{}, false, fmt.Errorf("read NetworkFence %s: %w", name, err)
	}
	if got.GetLabels()[FenceSiteLabel] == "" {
		return FenceResult{}, false, fmt.Errorf("NetworkFence %s was not made by kubectl sitefail: unfence it yourself once the site is safe", name)
	}
	patch := []byte(`{"spec":{"fenceState":"Unfenced"}}`)
	if _, err := res.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return FenceResult{}, true, fmt.Errorf("unfence NetworkFence %s: %w", name, err)
	}
	out, err := waitResult(ctx, dyn, name, timeout, func(u *unstructured.Unstructured) bool {
		state, _, _ := unstructured.NestedString(u.Object, "spec", "fenceState")
		return state == "Unfenced"
	}, "unfence")
	if err != nil {
		return out, true, err
	}
	if err := res.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return out, true, fmt.Errorf("delete NetworkFence %s after its unfence: %w", name, err)
	}
	return out, true, nil
}
