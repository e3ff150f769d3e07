package move

import (
	"context"
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

func guardSnapshot(primary snapshot.NodeState, extra ...snapshot.Node) *snapshot.Snapshot {
	n := func(name, site string, st snapshot.NodeState) snapshot.Node {
		return snapshot.Node{Name: name, Site: site, State: st, CPUMilli: 8000, MemoryBytes: 32 << 30, Labels: map[string]string{selector.DefaultSiteKey: site}}
	}
	s := &snapshot.Snapshot{Keys: selector.DefaultKeys(), Nodes: append([]snapshot.Node{
		n("p1", "Primary", primary), n("p2", "Primary", primary), n("d1", "DR", snapshot.NodeReady),
	}, extra...)}
	return s
}

func runningOn(name, node, home string, tier int) snapshot.VM {
	return snapshot.VM{Namespace: "a", Name: name, Tier: tier, HomeSite: home, RunStrategy: kubevirtv1.RunStrategyAlways,
		NodeSelector: map[string]string{selector.DefaultSiteKey: home}, HasSelector: true, CPUMilli: 100, MemoryBytes: 1 << 30,
		Instance: &snapshot.VMI{UID: types.UID("uid-" + name), Phase: "Running", NodeName: node, Ready: true, LiveMigratable: true}}
}

func guardPlan(t *testing.T, s *snapshot.Snapshot, req plan.Request) *plan.Plan {
	t.Helper()
	s.Derive()
	req.To, req.Mode, req.MaxInFlight = "DR", plan.ModeAuto, 5
	p, err := plan.Build(s, req)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGuardNeedsANamedDeadSite(t *testing.T) {
	s := guardSnapshot(snapshot.NodeNotReady)
	s.VMs = []snapshot.VM{runningOn("db", "p1", "Primary", 1)}
	p := guardPlan(t, s, plan.Request{All: true})
	var blocked *BlockedError
	if _, err := Guard(Config{Keys: s.Keys}, s, p); !errors.As(err, &blocked) || !strings.Contains(err.Error(), "--confirm-site-down=Primary") {
		t.Fatalf("unconfirmed: %v", err)
	}
	dead, err := Guard(Config{Keys: s.Keys, ConfirmedDown: []string{"Primary"}}, s, p)
	if err != nil || len(dead) != 2 {
		t.Fatalf("confirmed: %v %v", dead, err)
	}
	if _, err := Guard(Config{Keys: s.Keys, ConfirmedDown: []string{"DR"}}, s, p); err == nil || !strings.Contains(err.Error(), "is Ready") {
		t.Fatalf("confirming the live site: %v", err)
	}
}

// Scenario 4: out-of-service fencing releases everything on the dead nodes at once, so
// it is refused unless the move covers every VM there.
func TestOutOfServiceNeedsEveryVMOnTheDeadNodes(t *testing.T) {
	s := guardSnapshot(snapshot.NodeNotReady)
	s.VMs = []snapshot.VM{runningOn("db", "p1", "Primary", 1), runningOn("web", "p2", "Primary", 2)}
	cfg := Config{Keys: s.Keys, ConfirmedDown: []string{"Primary"}, Fence: FenceOutOfService}
	tier1 := guardPlan(t, s, plan.Request{Tiers: &selector.TierRange{Min: 1, Max: 1}})
	if _, err := Guard(cfg, s, tier1); err == nil || !strings.Contains(err.Error(), "a/web") {
		t.Fatalf("tier 1 only with out-of-service: %v", err)
	}
	if _, err := Guard(cfg, s, guardPlan(t, s, plan.Request{All: true})); err != nil {
		t.Fatalf("everything with out-of-service: %v", err)
	}
}

// Scenario 3: VMs on nodes without a site label are never released under any site's
// confirmation.
func TestUnlabeledNodesAreNeverReleased(t *testing.T) {
	spare := snapshot.Node{Name: "spare", State: snapshot.NodeNotReady, CPUMilli: 8000, MemoryBytes: 32 << 30, Labels: map[string]string{}}
	s := guardSnapshot(snapshot.NodeNotReady, spare)
	s.VMs = []snapshot.VM{runningOn("odd", "spare", "Primary", 1)}
	p := guardPlan(t, s, plan.Request{All: true})
	if len(p.NeedsFailover()) == 0 {
		t.Fatal("the plan does not fail over the VM on the dead unlabeled node: the guard is never asked")
	}
	_, err := Guard(Config{Keys: s.Keys, ConfirmedDown: []string{"Primary"}}, s, p)
	if err == nil || !strings.Contains(err.Error(), "no topology.kubernetes.io/site label") && !strings.Contains(err.Error(), "carry no") {
		t.Fatalf("VM on an unlabeled node: %v", err)
	}
}

// N5: the out-of-service coverage check looked only at the -n/-l snapshot, so the taint
// released VMs of other namespaces from templates that still select the dead site.
func TestN5OutOfServiceCoverageLooksBeyondTheNamespace(t *testing.T) {
	s := guardSnapshot(snapshot.NodeNotReady)
	s.VMs = []snapshot.VM{runningOn("db", "p1", "Primary", 1)}
	p := guardPlan(t, s, plan.Request{All: true})
	vmi := func(ns, name, node string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
			"metadata": map[string]any{"namespace": ns, "name": name}, "status": map[string]any{"nodeName": node}}}
		return u
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{kubevirt.VMIs: "VirtualMachineInstanceList"},
		vmi("a", "db", "p1"), vmi("other-team", "payroll", "p2"))
	cfg := Config{Keys: s.Keys, ConfirmedDown: []string{"Primary"}, Fence: FenceOutOfService, Namespace: "a", Dynamic: dyn}
	dead, err := Guard(cfg, s, p)
	if err != nil {
		t.Fatal(err)
	}
	var blocked *BlockedError
	if err := CoversDeadNodesEverywhere(context.Background(), cfg, p, dead); !errors.As(err, &blocked) || !strings.Contains(err.Error(), "other-team/payroll") {
		t.Fatalf("a VM of another namespace on a dead node: %v; want the move refused naming it", err)
	}
	cfg.Fence = FencePod
	if err := CoversDeadNodesEverywhere(context.Background(), cfg, p, dead); err != nil {
		t.Fatalf("--fence pod releases only the selection: %v", err)
	}
}

// N19: a drill checked for failovers only before its lock, from the snapshot it read
// first; a site lost after that made its leg a failover. The engine refuses it where the
// plan is rebuilt under the lock (and before it), whatever the caller checked.
func TestN19DrillRefusesAFailoverUnderTheLock(t *testing.T) {
	s := guardSnapshot(snapshot.NodeNotReady)
	s.VMs = []snapshot.VM{runningOn("db", "p1", "Primary", 1)}
	p := guardPlan(t, s, plan.Request{All: true})
	var blocked *BlockedError
	if err := refuseFailover(Config{NoFailover: true}, p); !errors.As(err, &blocked) || !strings.Contains(err.Error(), "not a drill") {
		t.Fatalf("a drill leg that needs a failover: %v", err)
	}
	if err := refuseFailover(Config{}, p); err != nil {
		t.Fatalf("a move may fail over: %v", err)
	}
}

// Review finding: without -n and -l the check looked only at the snapshot's VMs, and a
// standalone VMI (no VM) on a dead node was released by the taint all the same.
func TestOutOfServiceCoverageSeesStandaloneVMIs(t *testing.T) {
	s := guardSnapshot(snapshot.NodeNotReady)
	s.VMs = []snapshot.VM{runningOn("db", "p1", "Primary", 1)}
	p := guardPlan(t, s, plan.Request{All: true})
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
		"metadata": map[string]any{"namespace": "a", "name": "standalone"}, "status": map[string]any{"nodeName": "p2"}}}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{kubevirt.VMIs: "VirtualMachineInstanceList"}, u)
	cfg := Config{Keys: s.Keys, ConfirmedDown: []string{"Primary"}, Fence: FenceOutOfService, Dynamic: dyn}
	dead, err := Guard(cfg, s, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := CoversDeadNodesEverywhere(context.Background(), cfg, p, dead); err == nil || !strings.Contains(err.Error(), "a/standalone") {
		t.Fatalf("a standalone VMI on a dead node: %v; want the move refused naming it", err)
	}
}
