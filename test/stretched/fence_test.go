package stretched

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The played FAR controller writes the conditions FAR v0.8.0's UpdateConditions
// writes (pkg/utils/conditions.go), in the order its reconciles reach them.
func TestFARConditionsFollowFARsUpdateConditions(t *testing.T) {
	type want struct{ processing, acted, succeeded, reason string }
	check := func(t *testing.T, u *unstructured.Unstructured, w want) {
		t.Helper()
		got := map[string]metav1.Condition{}
		for _, c := range farConditions(u) {
			got[c.Type] = c
		}
		for typ, status := range map[string]string{farProcessing: w.processing, farAgentActed: w.acted, farSucceeded: w.succeeded} {
			if string(got[typ].Status) != status {
				t.Errorf("%s=%q, want %q (all: %+v)", typ, got[typ].Status, status, got)
			}
		}
		if got[farAgentActed].Reason != w.reason {
			t.Errorf("FenceAgentActionSucceeded's reason %q, want %q", got[farAgentActed].Reason, w.reason)
		}
	}

	t.Run("fenced", func(t *testing.T) {
		u := &unstructured.Unstructured{Object: map[string]any{}}
		if !setFARConditions(u, farStarted) {
			t.Fatal("RemediationStarted changed nothing")
		}
		check(t, u, want{"True", "Unknown", "Unknown", "RemediationStarted"})
		if setFARConditions(u, farStarted) {
			t.Error("RemediationStarted again reported a change: lastUpdateTime would move")
		}
		setFARConditions(u, farAgentSucceeded)
		check(t, u, want{"True", "True", "Unknown", "FenceAgentSucceeded"})
		setFARConditions(u, farFinished)
		check(t, u, want{"False", "True", "True", "FenceAgentSucceeded"})
		succeeded := meta.FindStatusCondition(farConditions(u), farSucceeded)
		if succeeded == nil || succeeded.Reason != "RemediationFinishedSuccessfully" || succeeded.LastTransitionTime.IsZero() {
			t.Errorf("Succeeded: %+v", succeeded)
		}
		if s, _, _ := unstructured.NestedString(u.Object, "status", "lastUpdateTime"); s == "" {
			t.Error("no lastUpdateTime")
		}
	})
	t.Run("dark BMC", func(t *testing.T) {
		u := &unstructured.Unstructured{Object: map[string]any{}}
		setFARConditions(u, farStarted)
		setFARConditions(u, farAgentFailed)
		check(t, u, want{"False", "False", "False", "FenceAgentFailed"})
	})
}
