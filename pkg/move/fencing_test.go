package move

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
	"github.com/sitefail/kubectl-sitefail/pkg/journal"
	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

// farOff is a Fence Agents Remediation that powered node off at 'at'.
func farOff(node string, at time.Time) unstructured.Unstructured {
	u := unstructured.Unstructured{Object: map[string]any{
		"spec": map[string]any{"sharedparameters": map[string]any{"--action": "off"}},
		"status": map[string]any{"conditions": []any{
			map[string]any{"type": "FenceAgentActionSucceeded", "status": "True", "lastTransitionTime": at.Format(time.RFC3339)},
			map[string]any{"type": "Succeeded", "status": "True", "lastTransitionTime": at.Format(time.RFC3339)},
		}},
	}}
	u.SetName(node)
	u.SetUID(types.UID("far-" + node))
	u.SetCreationTimestamp(metav1.Time{Time: at})
	return u
}

// fencedSnapshot: Primary's nodes went NotReady a minute before each was powered off.
func fencedSnapshot(fenced ...string) *snapshot.Snapshot {
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	s := guardSnapshot(snapshot.NodeNotReady)
	for i := range s.Nodes {
		s.Nodes[i].Fence = fencing.Node{Name: s.Nodes[i].Name, Ready: s.Nodes[i].State == snapshot.NodeReady, InternalIPs: []string{"10.0.0." + s.Nodes[i].Name}}
		if !s.Nodes[i].Fence.Ready {
			s.Nodes[i].Fence.NotReadySince = at.Add(-time.Minute)
		}
	}
	for _, n := range fenced {
		s.Fencing.FenceAgentsRemediations = append(s.Fencing.FenceAgentsRemediations, farOff(n, at))
	}
	s.VMs = []snapshot.VM{runningOn("db", "p1", "Primary", 1)}
	return s
}

// Issue 21: strong fencing evidence for every node of the dead site stands in for the
// typed confirmation; evidence missing for one node does not, and the refusal names it.
func TestFencingEvidenceOfEveryNodeStandsInForTheConfirmation(t *testing.T) {
	s := fencedSnapshot("p1", "p2")
	p := guardPlan(t, s, plan.Request{All: true})
	if !p.ProvenDown("Primary") {
		t.Fatalf("every Primary node powered off by its FAR: not proven: %+v", p.Fencing)
	}
	if dead, err := Guard(Config{Keys: s.Keys}, s, p); err != nil || len(dead) != 2 {
		t.Fatalf("proven by evidence, no confirmation: dead %v, %v", dead, err)
	}

	s = fencedSnapshot("p1")
	p = guardPlan(t, s, plan.Request{All: true})
	var blocked *BlockedError
	_, err := Guard(Config{Keys: s.Keys}, s, p)
	if p.ProvenDown("Primary") || !errors.As(err, &blocked) || !strings.Contains(err.Error(), "p2 (none)") || !strings.Contains(err.Error(), "--confirm-site-down=Primary") {
		t.Fatalf("p2 without evidence: proven %v, %v", p.ProvenDown("Primary"), err)
	}
	if _, err := Guard(Config{Keys: s.Keys, ConfirmedDown: []string{"Primary"}}, s, p); err != nil {
		t.Fatalf("the typed confirmation still works without evidence: %v", err)
	}
}

// A VM whose node was deleted from the cluster: nothing proves that node off, so the
// site is not proven, and the confirmation is needed (H2).
func TestADeletedNodeMustBeProvenToo(t *testing.T) {
	s := fencedSnapshot("p1", "p2")
	gone := runningOn("gone", "p-deleted", "Primary", 1)
	// The instance's own selector names the site it ran in (goneFrom).
	gone.Instance.NodeSelector = map[string]string{s.Keys.Site: "Primary"}
	s.VMs = append(s.VMs, gone)
	p := guardPlan(t, s, plan.Request{All: true})
	failsOver := false
	for _, st := range p.Steps {
		failsOver = failsOver || st.Name == "gone" && st.Action == plan.ActionFailover
	}
	if !failsOver {
		t.Fatalf("the plan does not fail over the VM on the deleted node: %+v", p.Steps)
	}
	if p.ProvenDown("Primary") {
		t.Fatalf("a deleted node with no remediation naming it counted as fenced: %+v", p.Fencing["Primary"])
	}
	// Not even a FAR that names it: a node gone from the cluster has no NotReady time to
	// hold the fence against, so the typed confirmation stays needed.
	s.Fencing.FenceAgentsRemediations = append(s.Fencing.FenceAgentsRemediations, farOff("p-deleted", time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)))
	if p = guardPlan(t, s, plan.Request{All: true}); p.ProvenDown("Primary") {
		t.Fatalf("a deleted node has no NotReady time to hold the fence against: it must not count as proven: %+v", p.Fencing["Primary"])
	}
}

// Found by review: a Manual VM that a failover released (on fencing evidence) and did
// not start yet is started by the rerun, anywhere but the site it left: that start is a
// release too. The rerun is no failover of that site, so it asked for no proof, and a
// fence withdrawn meanwhile let it start a second copy. The start now needs the same
// proof as the failover, typed or fenced, and the fenced one is read again at the start.
func TestStartOfAReleasedVMNeedsTheSameProofAsItsFailover(t *testing.T) {
	released := func(s *snapshot.Snapshot) *snapshot.Snapshot {
		ops := runningOn("ops", "p1", "DR", 1)
		ops.RunStrategy = "Manual"
		ops.Instance = nil
		ops.Annotations = map[string]string{journal.MoveID: "sf-1", journal.To: "DR", journal.From: "Primary", journal.Phase: journal.PhaseReleasing, journal.VMI: "uid-old"}
		ops.HasAnnotations = true
		s.VMs = []snapshot.VM{ops}
		return s
	}
	s := released(fencedSnapshot())
	p := guardPlan(t, s, plan.Request{All: true})
	if st := p.Steps[0]; st.Action != plan.ActionStart || st.ReleasedFrom != "Primary" {
		t.Fatalf("rerun of the interrupted failover: %+v; want a start guarded by Primary", st)
	}
	if got := p.GuardedSites(); len(got) != 1 || got[0] != "Primary" {
		t.Fatalf("guarded sites %v", got)
	}
	var blocked *BlockedError
	if _, err := Guard(Config{Keys: s.Keys}, s, p); !errors.As(err, &blocked) || !strings.Contains(err.Error(), "--confirm-site-down=Primary") {
		t.Fatalf("a start released from an unproven dead site, unconfirmed: %v", err)
	}
	if _, err := Guard(Config{Keys: s.Keys, ConfirmedDown: []string{"Primary"}}, s, p); err != nil {
		t.Fatalf("confirmed: %v", err)
	}
	s = released(fencedSnapshot("p1", "p2"))
	p = guardPlan(t, s, plan.Request{All: true})
	if _, err := Guard(Config{Keys: s.Keys}, s, p); err != nil || !p.ProvenDown("Primary") {
		t.Fatalf("fenced: proven %v, %v", p.ProvenDown("Primary"), err)
	}
}

// failbackToFencedDR: DR's nodes have been Ready for an hour, and a VM on Primary
// moves there, onto the site this tool fenced.
func failbackToFencedDR(t *testing.T) (*snapshot.Snapshot, *plan.Plan) {
	t.Helper()
	s := guardSnapshot(snapshot.NodeReady)
	for i := range s.Nodes {
		s.Nodes[i].Fence = fencing.Node{Name: s.Nodes[i].Name, Ready: true, ReadySince: time.Now().Add(-time.Hour)}
	}
	s.VMs = []snapshot.VM{runningOn("db", "p1", "Primary", 1)}
	return s, guardPlan(t, s, plan.Request{All: true})
}

// drFence is this tool's fence of DR over cidrs.
func drFence(cidrs ...string) *unstructured.Unstructured {
	return fencing.NewNetworkFence("DR", "sf-1", fencing.Class{Name: "c", Driver: "d"}, cidrs)
}

// unfenceDyn serves objs, and the VMIs the unfence guard lists.
func unfenceDyn(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		fencing.WithListKinds(map[schema.GroupVersionResource]string{kubevirt.VMIs: "VirtualMachineInstanceList"}), objs...)
}

// Found by review (issue 21): the viewer role lists NetworkFences but may not get one.
// A move onto a site this tool fenced must still find the fence, through the list, and
// apply the guard; a fence that can be neither got nor listed stops the move.
func TestTargetFenceFoundByListWhenGetIsForbidden(t *testing.T) {
	ctx := context.Background()
	s, p := failbackToFencedDR(t)
	ours := drFence("10.0.0.1/32")
	fencing.SetFencedNodes(ours, []string{"d1"})
	foreign := ours.DeepCopy()
	foreign.SetLabels(nil)
	forbidden := func(verb string) k8stesting.ReactionFunc {
		return func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: fencing.NetworkFences.Group, Resource: fencing.NetworkFences.Resource}, "", errors.New(verb+" denied"))
		}
	}
	for _, tc := range []struct {
		name       string
		fence      *unstructured.Unstructured
		listDenied bool
		want       string // "" : the fence is found and may be lifted
	}{
		{"ours, found by list", ours, false, ""},
		{"somebody else's, found by list", foreign, false, "was not made by kubectl sitefail"},
		{"neither get nor list", ours, true, "cannot tell whether DR's storage is fenced"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dyn := unfenceDyn(tc.fence.DeepCopy())
			dyn.PrependReactor("get", "networkfences", forbidden("get"))
			if tc.listDenied {
				dyn.PrependReactor("list", "networkfences", forbidden("list"))
			}
			u, err := targetFence(ctx, Config{Dynamic: dyn, Keys: s.Keys}, s, p)
			switch {
			case tc.want == "" && (err != nil || u == nil || u.GetName() != fencing.FenceName("DR")):
				t.Fatalf("got %v, %v; want the fence, found by list", u, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v; want %q", err, tc.want)
			}
		})
	}
}

// Issue 21: a failback lifts the storage fence only once the remediations of the site's
// nodes are finished or gone: one still at work may yet power-cycle or fence its node.
// The refusal names it and the command that ends it.
func TestUnfenceWaitsForRemediationsAtWork(t *testing.T) {
	ctx := context.Background()
	s, p := failbackToFencedDR(t)
	fence := drFence("10.0.0.1/32")
	fencing.SetFencedNodes(fence, []string{"d1"})
	far := func(conds ...map[string]any) unstructured.Unstructured {
		u := farOff("d1", time.Now().Add(-2*time.Hour))
		u.SetNamespace("medik8s")
		list := []any{}
		for _, c := range conds {
			list = append(list, c)
		}
		u.Object["status"] = map[string]any{"conditions": list}
		return u
	}
	for _, tc := range []struct {
		name string
		far  *unstructured.Unstructured
		want string // "" : the fence may be lifted
	}{
		{"none", nil, ""},
		{"finished", ptr(far(map[string]any{"type": "Processing", "status": "False"}, map[string]any{"type": "Succeeded", "status": "True"})), ""},
		{"failed, and over", ptr(far(map[string]any{"type": "Processing", "status": "False"}, map[string]any{"type": "Succeeded", "status": "False"})), ""},
		{"at work", ptr(far(map[string]any{"type": "Processing", "status": "True"})), "FenceAgentsRemediation medik8s/d1 of node d1 is still at work (Processing=True, Succeeded=unknown)"},
		{"no status", ptr(far()), "kubectl delete fenceagentsremediations -n medik8s d1"},
		{"remediations unreadable", nil, "could not all be read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.Fencing, s.FencingUnread = fencing.Objects{}, nil
			if tc.name == "remediations unreadable" {
				s.FencingUnread = []string{"fenceagentsremediations.fence-agents-remediation.medik8s.io (forbidden)"}
			}
			if tc.far != nil {
				s.Fencing.FenceAgentsRemediations = []unstructured.Unstructured{*tc.far}
			}
			dyn := unfenceDyn(fence.DeepCopy())
			u, err := targetFence(ctx, Config{Dynamic: dyn, Keys: s.Keys}, s, p)
			switch {
			case tc.want == "" && (err != nil || u == nil):
				t.Fatalf("got %v, %v; want the fence liftable", u, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v; want %q", err, tc.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// Found by review (issue 21): a failback lifted the fence although one node it fenced
// had left the site (deleted, or relabelled, as the refusal used to suggest): that
// node's stale guest got its disks back beside the copy the failover started. The
// fence names the nodes it fenced; each must be back in the site, and so pass the
// checks, before the fence is lifted.
func TestUnfenceRefusesWhileAFencedNodeLeftTheSite(t *testing.T) {
	ctx := context.Background()
	s, p := failbackToFencedDR(t)
	for _, tc := range []struct {
		name  string
		nodes []string // nil: a fence that names none
		want  string   // "" : the fence may be lifted
	}{
		{"every fenced node back", []string{"d1"}, ""},
		{"one fenced node gone", []string{"d1", "d2"}, "node d2 was fenced with site DR and is not in it now"},
		{"a fence that names no node", nil, "names no node it fenced"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fence := drFence("10.0.0.1/32", "10.0.0.2/32")
			if tc.nodes != nil {
				fencing.SetFencedNodes(fence, tc.nodes)
			}
			dyn := unfenceDyn(fence)
			u, err := targetFence(ctx, Config{Dynamic: dyn, Keys: s.Keys}, s, p)
			switch {
			case tc.want == "" && (err != nil || u == nil):
				t.Fatalf("got %v, %v; want the fence liftable", u, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v; want %q", err, tc.want)
			}
		})
	}
}
