// Package siteloss says what losing a whole site costs beyond its VMs: whether etcd
// keeps a quorum (without one, the API server stops, and no tool that talks to it can
// fail anything over), and whether medik8s's NodeHealthChecks remediate the lost nodes
// automatically (they skip remediation when too few nodes stay healthy). Pure functions
// of a snapshot, shared by `plan` and `sites`.
package siteloss

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

// Runbook is the document for the case where the API server has lost quorum.
const Runbook = "docs/quorum-loss.md"

// Quorum is the etcd arithmetic for the loss of one site.
type Quorum struct {
	// Known: the etcd pods were read and there is at least one member. Otherwise
	// nothing below means anything (external etcd, a managed control plane, or pods we
	// may not list: Unread says which).
	Known  bool   `json:"known"`
	Unread string `json:"unread,omitempty"`
	// Members counts the members on the site's nodes, Total every member.
	Members int `json:"members"`
	Total   int `json:"total"`
	// Needed is a quorum of Total.
	Needed int `json:"needed"`
	// Survivors counts the members that could still vote without the site: Ready pods
	// on Ready nodes elsewhere. A member already down elsewhere does not help.
	Survivors int `json:"survivors"`
	// Lost: without the site fewer than Needed members vote, and etcd, so the API
	// server, stops serving.
	Lost bool `json:"lost"`
}

// QuorumIfLost counts the etcd members that survive the loss of site. A member on a node
// the cluster no longer has counts in the total and never as a survivor.
func QuorumIfLost(s *snapshot.Snapshot, site string) Quorum {
	if s.Etcd == nil {
		return Quorum{Unread: "not read"}
	}
	q := Quorum{Unread: s.Etcd.Unread, Total: len(s.Etcd.Members)}
	for _, m := range s.Etcd.Members {
		n, ok := s.Node(m.Node)
		switch {
		case ok && n.Site == site:
			q.Members++
		case ok && m.Ready && n.State == snapshot.NodeReady:
			q.Survivors++
		}
	}
	q.Known = q.Unread == "" && q.Total > 0
	if q.Known {
		q.Needed = q.Total/2 + 1
		q.Lost = q.Survivors < q.Needed
	}
	return q
}

// Describe says it in a sentence, for `plan` and `sites`.
func (q Quorum) Describe(site string) string {
	switch {
	case !q.Known && q.Unread != "":
		return "etcd members not counted: " + q.Unread
	case !q.Known:
		return "no etcd static pod found (external etcd or a managed control plane): quorum not counted"
	case q.Lost:
		return fmt.Sprintf("site %s holds %d of %d etcd members; without it %d can vote, and a quorum is %d: if %s is lost, the API server loses quorum, and no tool that talks to it (this one included) can fail over (see %s)",
			site, q.Members, q.Total, q.Survivors, q.Needed, site, Runbook)
	}
	return fmt.Sprintf("site %s holds %d of %d etcd members: %d others can vote, a quorum is %d", site, q.Members, q.Total, q.Survivors, q.Needed)
}

// ExcludeFromRemediation is the node label (value "true") that medik8s never remediates.
const ExcludeFromRemediation = "remediation.medik8s.io/exclude-from-remediation"

// Remediation is one NodeHealthCheck's answer to the loss of a site.
type Remediation struct {
	NodeHealthCheck string `json:"nodeHealthCheck"`
	// Remediated: NHC would create remediations for the site's nodes.
	Remediated bool   `json:"remediated"`
	Reason     string `json:"reason"`
	// Selected counts the nodes the NHC's selector selects, InSite those of the site,
	// HealthyAfter those that NHC would still count healthy, MinHealthy what it needs.
	Selected     int `json:"selected"`
	InSite       int `json:"inSite"`
	HealthyAfter int `json:"healthyAfter"`
	MinHealthy   int `json:"minHealthy"`
}

// RemediationIfLost judges every NodeHealthCheck that selects a node of site, as
// node-healthcheck-operator v0.12.0 decides (internal/controller,
// nodehealthcheck_controller.go): remediation is skipped when the healthy selected
// nodes are fewer than minHealthy, or than the selected nodes less maxUnhealthy, each
// scaled from a percentage rounding up. Healthy means matching none of the NHC's
// unhealthy conditions, not even one whose duration has not run out yet, and not being
// under remediation. NHCs that select none of the site's nodes are left out.
func RemediationIfLost(s *snapshot.Snapshot, site string) []Remediation {
	if s.NodeHealthChecks == nil {
		return nil
	}
	var out []Remediation
	for i := range s.NodeHealthChecks.Objects {
		if r, ok := judge(s, site, &s.NodeHealthChecks.Objects[i]); ok {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeHealthCheck < out[j].NodeHealthCheck })
	return out
}

// nhcSpec is the part of a NodeHealthCheck's spec that decides.
type nhcSpec struct {
	Selector            metav1.LabelSelector `json:"selector"`
	UnhealthyConditions []struct {
		Type   corev1.NodeConditionType `json:"type"`
		Status corev1.ConditionStatus   `json:"status"`
	} `json:"unhealthyConditions"`
	MinHealthy    *intstr.IntOrString `json:"minHealthy"`
	MaxUnhealthy  *intstr.IntOrString `json:"maxUnhealthy"`
	PauseRequests []string            `json:"pauseRequests"`
}

type nhcStatus struct {
	UnhealthyNodes []struct {
		Name string `json:"name"`
	} `json:"unhealthyNodes"`
	Conditions []metav1.Condition `json:"conditions"`
}

func judge(s *snapshot.Snapshot, site string, u *unstructured.Unstructured) (Remediation, bool) {
	r := Remediation{NodeHealthCheck: u.GetName()}
	var spec nhcSpec
	var status nhcStatus
	if m, ok := u.Object["spec"].(map[string]any); ok {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &spec); err != nil {
			r.Reason = fmt.Sprintf("its spec does not read (%v): NHC cannot act on it either", err)
			return r, true
		}
	}
	if m, ok := u.Object["status"].(map[string]any); ok {
		_ = runtime.DefaultUnstructuredConverter.FromUnstructured(m, &status)
	}
	sel, err := metav1.LabelSelectorAsSelector(&spec.Selector)
	if err != nil {
		r.Reason = fmt.Sprintf("its selector is invalid (%v): NHC selects no node", err)
		return r, true
	}
	if len(spec.UnhealthyConditions) == 0 {
		// The CRD's default, which the API server fills in.
		spec.UnhealthyConditions = append(spec.UnhealthyConditions,
			struct {
				Type   corev1.NodeConditionType `json:"type"`
				Status corev1.ConditionStatus   `json:"status"`
			}{corev1.NodeReady, corev1.ConditionFalse},
			struct {
				Type   corev1.NodeConditionType `json:"type"`
				Status corev1.ConditionStatus   `json:"status"`
			}{corev1.NodeReady, corev1.ConditionUnknown})
	}
	remediating := map[string]bool{}
	for _, n := range status.UnhealthyNodes {
		remediating[n.Name] = true
	}
	unhealthy := func(n *snapshot.Node) bool {
		for _, c := range spec.UnhealthyConditions {
			if st, ok := n.Conditions[c.Type]; ok && st == c.Status {
				return true
			}
		}
		return remediating[n.Name]
	}
	var excluded []string
	for i := range s.Nodes {
		n := &s.Nodes[i]
		if !sel.Matches(labels.Set(n.Labels)) {
			continue
		}
		r.Selected++
		switch {
		case n.Site == site:
			r.InSite++
			if n.Labels[ExcludeFromRemediation] == "true" {
				excluded = append(excluded, n.Name)
			}
		case !unhealthy(n):
			r.HealthyAfter++
		}
	}
	if r.InSite == 0 {
		return r, false
	}
	seesLoss := false
	for _, c := range spec.UnhealthyConditions {
		seesLoss = seesLoss || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionUnknown)
	}
	var threshold string
	r.MinHealthy, threshold, err = minHealthy(spec, r.Selected)
	switch {
	case len(spec.PauseRequests) > 0:
		r.Reason = "paused (spec.pauseRequests: " + strings.Join(spec.PauseRequests, ", ") + ")"
	case disabled(status.Conditions) != "":
		r.Reason = "disabled: " + disabled(status.Conditions)
	case err != nil:
		r.Reason = err.Error() + ": NHC fails to reconcile and remediates nothing"
	case !seesLoss:
		r.Reason = "no unhealthy condition matches Ready=Unknown, which is what the nodes of a lost site show: NHC never sees them unhealthy"
	case r.HealthyAfter < r.MinHealthy:
		r.Reason = fmt.Sprintf("with %s lost, %d of its %d selected nodes stay healthy, fewer than %s: NHC skips remediation", site, r.HealthyAfter, r.Selected, threshold)
	case len(excluded) == r.InSite:
		r.Reason = fmt.Sprintf("every selected node of %s carries %s=true", site, ExcludeFromRemediation)
	default:
		r.Remediated = true
		r.Reason = fmt.Sprintf("with %s lost, %d of its %d selected nodes stay healthy, at least %s: NHC remediates the %d node(s) of %s once their unhealthy conditions last long enough", site, r.HealthyAfter, r.Selected, threshold, r.InSite-len(excluded), site)
		if len(excluded) > 0 {
			r.Reason += fmt.Sprintf(" (not %s: %s=true)", strings.Join(excluded, ", "), ExcludeFromRemediation)
		}
	}
	return r, true
}

// minHealthy is node-healthcheck-operator's getMinHealthy: exactly one of minHealthy
// and maxUnhealthy, a percentage of the selected nodes rounded up; maxUnhealthy counts
// as the selected nodes less it, and may not exceed them.
func minHealthy(spec nhcSpec, total int) (int, string, error) {
	switch {
	case spec.MinHealthy != nil && spec.MaxUnhealthy != nil:
		return 0, "", fmt.Errorf("both minHealthy and maxUnhealthy are set")
	case spec.MinHealthy == nil && spec.MaxUnhealthy == nil:
		return 0, "", fmt.Errorf("neither minHealthy nor maxUnhealthy is set")
	case spec.MinHealthy != nil:
		v, err := intstr.GetScaledValueFromIntOrPercent(spec.MinHealthy, total, true)
		if err == nil && v < 0 {
			err = fmt.Errorf("minHealthy is negative: %d", v)
		}
		if err != nil {
			return 0, "", fmt.Errorf("minHealthy %s: %v", spec.MinHealthy.String(), err)
		}
		return v, fmt.Sprintf("minHealthy %s (%d)", spec.MinHealthy.String(), v), nil
	}
	v, err := intstr.GetScaledValueFromIntOrPercent(spec.MaxUnhealthy, total, true)
	switch {
	case err != nil:
	case v < 0:
		err = fmt.Errorf("maxUnhealthy is negative: %d", v)
	case v > total:
		err = fmt.Errorf("maxUnhealthy is greater than the number of selected nodes: %d", v)
	}
	if err != nil {
		return 0, "", fmt.Errorf("maxUnhealthy %s: %v", spec.MaxUnhealthy.String(), err)
	}
	return total - v, fmt.Sprintf("%d (%d selected less maxUnhealthy %s)", total-v, total, spec.MaxUnhealthy.String()), nil
}

// disabled gives the Disabled condition's reason when it is True.
func disabled(conds []metav1.Condition) string {
	for _, c := range conds {
		if c.Type == "Disabled" && c.Status == metav1.ConditionTrue {
			if c.Message != "" {
				return c.Reason + ": " + c.Message
			}
			return c.Reason
		}
	}
	return ""
}

// Summary says in a few words whether the loss of the site is remediated: "will" when
// every NHC that selects its nodes remediates them, "will not" when none does or none
// selects them, "partly" in between, "unknown" when NHCs could not be read.
func Summary(s *snapshot.Snapshot, rs []Remediation) string {
	if s.NodeHealthChecks == nil || s.NodeHealthChecks.Unread != "" {
		return "unknown"
	}
	will := 0
	for _, r := range rs {
		if r.Remediated {
			will++
		}
	}
	switch {
	case len(rs) == 0 || will == 0:
		return "will not"
	case will < len(rs):
		return "partly"
	}
	return "will"
}
