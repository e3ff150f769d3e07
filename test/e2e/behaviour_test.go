package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
	"github.com/sitefail/kubectl-sitefail/test/cluster"
	"github.com/sitefail/kubectl-sitefail/test/stretched"
)

// TestKubeVirtBehaviour pins, against KubeVirt's own virt-api and virt-controller, the
// behaviour the plugin relies on (see docs in the README, "How a move works"). If a
// KubeVirt upgrade changes one of these, this test says which.
//
// It runs on a node of its own ("lab", outside both sites), so that it can kill that
// node without touching the sites the other tests use, and removes it at the end.
func TestKubeVirtBehaviour(t *testing.T) {
	ctx := context.Background()
	const ns, lab = "pins", "Lab"
	labSel := map[string]string{cluster.KwokGroupLabel: cluster.KwokGroup(lab)}
	if err := env.AddNode(ctx, "lab-node-1", "", cluster.KwokGroup(lab)); err != nil {
		t.Fatal(err)
	}
	if err := env.StartSite(lab); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.StopSite(lab)
		_ = env.Kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		_ = env.Kube.CoreV1().Nodes().Delete(ctx, "lab-node-1", metav1.DeleteOptions{})
		waitFor(t, 2*time.Minute, "namespace pins gone", func() bool {
			_, err := env.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		})
	})
	waitFor(t, time.Minute, "lab node Ready", func() bool {
		n, err := env.Kube.CoreV1().Nodes().Get(ctx, "lab-node-1", metav1.GetOptions{})
		return err == nil && cluster.NodeReady(n)
	})
	vm := func(name string, rs kubevirtv1.VirtualMachineRunStrategy) stretched.VMSpec {
		return stretched.VMSpec{Namespace: ns, Name: name, RunStrategy: rs, ExtraSelector: labSel}
	}
	if err := env.CreateVMs(ctx, []stretched.VMSpec{
		vm("halted", kubevirtv1.RunStrategyHalted),
		vm("once", kubevirtv1.RunStrategyOnce),
		vm("always", kubevirtv1.RunStrategyAlways),
		vm("manual", kubevirtv1.RunStrategyManual),
		vm("live", kubevirtv1.RunStrategyAlways),
		vm("staged", kubevirtv1.RunStrategyAlways),
		vm("rerun", kubevirtv1.RunStrategyRerunOnFailure),
		vm("rrq", kubevirtv1.RunStrategyAlways),
		func() stretched.VMSpec {
			v := vm("defaultnet", kubevirtv1.RunStrategyAlways)
			v.DefaultNetwork = true
			return v
		}(),
		func() stretched.VMSpec {
			v := vm("rwx", kubevirtv1.RunStrategyAlways)
			v.Disk = corev1.ReadWriteMany
			return v
		}(),
		func() stretched.VMSpec {
			v := vm("evac", kubevirtv1.RunStrategyAlways)
			v.EvictionStrategy = ptr.To(kubevirtv1.EvictionStrategyLiveMigrate)
			return v
		}(),
		func() stretched.VMSpec {
			v := vm("evictnone", kubevirtv1.RunStrategyAlways)
			v.EvictionStrategy = ptr.To(kubevirtv1.EvictionStrategyNone)
			return v
		}(),
		func() stretched.VMSpec {
			v := vm("nomig", kubevirtv1.RunStrategyAlways)
			v.Disk = corev1.ReadWriteOnce
			return v
		}(),
	}); err != nil {
		t.Fatal(err)
	}
	if code, err := subresource(ctx, ns, "manual", "start"); code != http.StatusAccepted {
		t.Fatalf("start of a Manual VM: %d %v", code, err)
	}
	for _, name := range []string{"once", "always", "manual", "live", "staged", "rerun", "nomig", "rrq", "evac", "evictnone", "defaultnet", "rwx"} {
		waitFor(t, time.Minute, ns+"/"+name+" Ready", func() bool { return vmiReady(ctx, ns, name) })
	}

	t.Run("restart of Halted or Once answers 409", func(t *testing.T) {
		for _, name := range []string{"halted", "once"} {
			code, err := subresource(ctx, ns, name, "restart")
			if code != http.StatusConflict {
				t.Errorf("restart %s: HTTP %d (%v), want 409", name, code, err)
			}
		}
	})

	t.Run("restart answers 202 and yields a new VMI UID", func(t *testing.T) {
		before := vmi(t, ns, "always").UID
		code, err := subresource(ctx, ns, "always", "restart")
		if code != http.StatusAccepted {
			t.Fatalf("restart: HTTP %d (%v), want 202", code, err)
		}
		waitFor(t, time.Minute, "a new Ready VMI", func() bool {
			u, err := env.Dynamic.Resource(kubevirt.VMIs).Namespace(ns).Get(ctx, "always", metav1.GetOptions{})
			return err == nil && u.GetUID() != before && vmiReady(ctx, ns, "always")
		})
	})

	t.Run("LiveUpdate copies a nodeSelector change into the VMI without migrating it", func(t *testing.T) {
		before := vmi(t, ns, "live")
		patchSelector(t, ns, "live", "sitefail.test/rack", "r2")
		waitFor(t, 30*time.Second, "the VMI's nodeSelector to follow the template", func() bool {
			return vmi(t, ns, "live").Spec.NodeSelector["sitefail.test/rack"] == "r2"
		})
		// A migration would take a while to show: give virt-controller time to start one.
		time.Sleep(3 * time.Second)
		after := vmi(t, ns, "live")
		if after.UID != before.UID || after.Status.NodeName != before.Status.NodeName || after.Status.MigrationState != nil {
			t.Fatalf("the VMI moved: %s on %s -> %s on %s (migration %v)", before.UID, before.Status.NodeName, after.UID, after.Status.NodeName, after.Status.MigrationState)
		}
		if n := countMigrations(t, ns, "live"); n != 0 {
			t.Fatalf("%d migrations of the VMI, want none", n)
		}
	})

	t.Run("under Stage a template change sets RestartRequired", func(t *testing.T) {
		if err := env.KubeVirt.SetConfiguration(ctx, map[string]any{"vmRolloutStrategy": "Stage"}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.KubeVirt.SetConfiguration(ctx, map[string]any{"vmRolloutStrategy": "LiveUpdate"}) })
		time.Sleep(2 * time.Second) // the configuration reaches virt-controller through a watch
		patchSelector(t, ns, "staged", "sitefail.test/rack", "r2")
		waitFor(t, 30*time.Second, "RestartRequired on the VM", func() bool {
			u, err := env.Dynamic.Resource(kubevirt.VMs).Namespace(ns).Get(ctx, "staged", metav1.GetOptions{})
			if err != nil {
				return false
			}
			v, err := kubevirt.ToVM(u)
			return err == nil && kubevirt.VMCondition(v, kubevirtv1.VirtualMachineRestartRequired)
		})
		if got := vmi(t, ns, "staged").Spec.NodeSelector["sitefail.test/rack"]; got != "" {
			t.Fatalf("under Stage the VMI's selector changed to %q", got)
		}
	})

	t.Run("under LiveUpdate RestartRequired keeps a nodeSelector change out of the VMI", func(t *testing.T) {
		// terminationGracePeriodSeconds is not live-updatable (v1.8.0 vm.go
		// syncRestartRequired); with RestartRequired set, the VM controller no longer
		// carries nodeSelector changes into the VMI, which is why the plan restarts such
		// a VM instead of migrating it.
		patch := `{"spec":{"template":{"spec":{"terminationGracePeriodSeconds":7}}}}`
		if _, err := env.Dynamic.Resource(kubevirt.VMs).Namespace(ns).Patch(ctx, "rrq", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "RestartRequired on the VM", func() bool {
			u, err := env.Dynamic.Resource(kubevirt.VMs).Namespace(ns).Get(ctx, "rrq", metav1.GetOptions{})
			if err != nil {
				return false
			}
			v, err := kubevirt.ToVM(u)
			return err == nil && kubevirt.VMCondition(v, kubevirtv1.VirtualMachineRestartRequired)
		})
		patchSelector(t, ns, "rrq", "sitefail.test/rack", "r3")
		time.Sleep(3 * time.Second) // LiveUpdate carries a selector within a second when it does
		if got := vmi(t, ns, "rrq").Spec.NodeSelector["sitefail.test/rack"]; got == "r3" {
			t.Fatal("the nodeSelector change reached the VMI although RestartRequired is set")
		}
	})

	t.Run("a second migration is refused while one is in flight", func(t *testing.T) {
		// The lab has one node, so the target pod cannot be placed: the first migration
		// stays unfinished for minutes.
		first := migration(ns, "live", "pin-first")
		if _, err := env.Dynamic.Resource(kubevirt.Migrations).Namespace(ns).Create(ctx, first, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err := env.Dynamic.Resource(kubevirt.Migrations).Namespace(ns).Create(ctx, migration(ns, "live", "pin-second"), metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), "in-flight migration detected") {
			t.Fatalf("second migration: %v, want refused as in-flight", err)
		}
		if err := env.Dynamic.Resource(kubevirt.Migrations).Namespace(ns).Delete(ctx, "pin-first", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		// A deleted migration counts against parallelMigrationsPerCluster until it is
		// final (findRunningMigrations counts unfinished ones); the queueing pin below
		// needs the slot free. (Its target pod may outlive it, unscheduled: a loaded run
		// once left one past two minutes, and it holds no slot.)
		waitFor(t, 2*time.Minute, "the cancelled migration gone", func() bool {
			_, err := env.Dynamic.Resource(kubevirt.Migrations).Namespace(ns).Get(ctx, "pin-first", metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		})
	})

	t.Run("RerunOnFailure restarts on request: 202 and a new VMI", func(t *testing.T) {
		before := vmi(t, ns, "rerun").UID
		if code, err := subresource(ctx, ns, "rerun", "restart"); code != http.StatusAccepted {
			t.Fatalf("restart: HTTP %d (%v), want 202", code, err)
		}
		waitFor(t, time.Minute, "a new Ready VMI of rerun", func() bool {
			v, err := getVMI(ctx, ns, "rerun")
			return err == nil && v.UID != before && vmiReady(ctx, ns, "rerun")
		})
	})

	// The handler's LiveMigratable follows v1.8.0's rules (test/virthandler
	// migratable.go); what it reads is KubeVirt's own: virt-api's default interface and
	// the PVC information virt-controller writes into the volume status.
	t.Run("LiveMigratable: the default pod bridge and a ReadWriteOnce PVC are not, a ReadWriteMany PVC is", func(t *testing.T) {
		migratable := func(name string) (corev1.ConditionStatus, string) {
			c, _ := kubevirt.VMICondition(vmi(t, ns, name), kubevirtv1.VirtualMachineInstanceIsMigratable)
			return c.Status, c.Reason
		}
		v := vmi(t, ns, "defaultnet")
		if len(v.Spec.Domain.Devices.Interfaces) != 1 || v.Spec.Domain.Devices.Interfaces[0].Bridge == nil {
			t.Fatalf("a VM that names no interface: VMI interfaces %+v; want virt-api's default, a bridge", v.Spec.Domain.Devices.Interfaces)
		}
		if s, r := migratable("defaultnet"); s != corev1.ConditionFalse || r != kubevirtv1.VirtualMachineInstanceReasonInterfaceNotMigratable {
			t.Errorf("default bridge: LiveMigratable %s %s", s, r)
		}
		waitFor(t, time.Minute, "virt-controller's PVC information in rwx's volume status, and LiveMigratable", func() bool {
			for _, vs := range vmi(t, ns, "rwx").Status.VolumeStatus {
				if vs.PersistentVolumeClaimInfo != nil && len(vs.PersistentVolumeClaimInfo.AccessModes) == 1 && vs.PersistentVolumeClaimInfo.AccessModes[0] == corev1.ReadWriteMany {
					s, _ := migratable("rwx")
					return s == corev1.ConditionTrue
				}
			}
			return false
		})
		if s, r := migratable("nomig"); s != corev1.ConditionFalse || r != kubevirtv1.VirtualMachineInstanceReasonDisksNotMigratable {
			t.Errorf("ReadWriteOnce PVC: LiveMigratable %s %s", s, r)
		}
	})

	t.Run("a migration of a VMI that is not live-migratable is refused at the create", func(t *testing.T) {
		_, err := env.Dynamic.Resource(kubevirt.Migrations).Namespace(ns).Create(ctx, migration(ns, "nomig", "pin-nomig"), metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), "Cannot migrate VMI") || !strings.Contains(err.Error(), "DisksNotLiveMigratable") {
			t.Fatalf("migration of a non-migratable VMI: %v, want refused naming the reason", err)
		}
	})

	// A drain evicts launcher pods. v1.8.0's virt-api intercepts the eviction
	// (pod-eviction-admitter.go): under evictionStrategy LiveMigrate it marks the VMI for
	// evacuation and refuses the eviction, and the evacuation controller creates the
	// migration; under None it lets the eviction through to the pod's disruption
	// budgets, which kube-controller-manager's disruption controller keeps.
	t.Run("an eviction is an evacuation migration under LiveMigrate, and is left to the PDBs under None", func(t *testing.T) {
		t.Cleanup(func() {
			for _, name := range []string{"evac", "evictnone"} {
				_ = env.Dynamic.Resource(kubevirt.VMs).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{})
			}
			_ = env.Kube.PolicyV1().PodDisruptionBudgets(ns).Delete(ctx, "evictnone", metav1.DeleteOptions{})
			// The evacuation's migration ends with its VMI; the queueing pin needs the slot.
			waitFor(t, 2*time.Minute, "evac's instance and its migrations gone", func() bool {
				_, err := getVMI(ctx, ns, "evac")
				return apierrors.IsNotFound(err) && countMigrations(t, ns, "evac") == 0
			})
		})
		err := evict(ctx, ns, launcherOf(t, ns, "evac"))
		if !apierrors.IsTooManyRequests(err) || !strings.Contains(err.Error(), `Eviction triggered evacuation of VMI "pins/evac"`) {
			t.Fatalf("eviction of a LiveMigrate VM's launcher: %v; want it refused as an evacuation", err)
		}
		isEvacuation := func(m *kubevirtv1.VirtualMachineInstanceMigration) bool {
			_, ok := m.Annotations[kubevirtv1.EvacuationMigrationAnnotation]
			return ok
		}
		waitFor(t, time.Minute, "the evacuation controller's migration of evac", func() bool {
			return vmi(t, ns, "evac").Status.EvacuationNodeName == "lab-node-1" && countMigrationsWhere(t, ns, "evac", isEvacuation) == 1
		})
		if err := evict(ctx, ns, launcherOf(t, ns, "evac")); !apierrors.IsTooManyRequests(err) || !strings.Contains(err.Error(), "Evacuation in progress") {
			t.Fatalf("a second eviction: %v; want it refused as in progress", err)
		}

		pdb := &policyv1.PodDisruptionBudget{
			ObjectMeta: metav1.ObjectMeta{Name: "evictnone", Namespace: ns},
			Spec: policyv1.PodDisruptionBudgetSpec{
				MinAvailable: ptr.To(intstr.FromInt32(1)),
				Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{"kubevirt.io/domain": "evictnone"}},
			},
		}
		if _, err := env.Kube.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		counted := func(allowed int32) func() bool {
			return func() bool {
				p, err := env.Kube.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "evictnone", metav1.GetOptions{})
				return err == nil && p.Status.ObservedGeneration == p.Generation && p.Status.ExpectedPods == 1 && p.Status.DisruptionsAllowed == allowed
			}
		}
		waitFor(t, time.Minute, "the disruption controller to count evictnone's launcher", counted(0))
		if err := evict(ctx, ns, launcherOf(t, ns, "evictnone")); !apierrors.IsTooManyRequests(err) || !strings.Contains(err.Error(), "disruption budget") {
			t.Fatalf("eviction of a None VM's launcher under a budget that allows none: %v; want it refused by the budget", err)
		}
		relax := `{"spec":{"minAvailable":0}}`
		if _, err := env.Kube.PolicyV1().PodDisruptionBudgets(ns).Patch(ctx, "evictnone", types.MergePatchType, []byte(relax), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "the budget to allow one disruption", counted(1))
		if err := evict(ctx, ns, launcherOf(t, ns, "evictnone")); err != nil {
			t.Fatalf("eviction of a None VM's launcher under a budget that allows one: %v", err)
		}
	})

	t.Run("parallelMigrationsPerCluster queues the extra migrations Pending", func(t *testing.T) {
		if err := env.KubeVirt.SetConfiguration(ctx, map[string]any{"migrations": map[string]any{"parallelMigrationsPerCluster": int64(1)}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.KubeVirt.SetConfiguration(ctx, map[string]any{"migrations": nil}) })
		time.Sleep(2 * time.Second) // the configuration reaches virt-controller through a watch
		// The lab has one node: the first migration's target pod cannot be placed, so it
		// stays running (Scheduling) and holds the one slot.
		for _, m := range []*unstructured.Unstructured{migration(ns, "rerun", "pin-slot"), migration(ns, "always", "pin-queued")} {
			if _, err := env.Dynamic.Resource(kubevirt.Migrations).Namespace(ns).Create(ctx, m, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() {
			for _, name := range []string{"pin-slot", "pin-queued"} {
				_ = env.Dynamic.Resource(kubevirt.Migrations).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{})
			}
		})
		phase := func(name string) kubevirtv1.VirtualMachineInstanceMigrationPhase {
			u, err := env.Dynamic.Resource(kubevirt.Migrations).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return ""
			}
			m, err := kubevirt.ToMigration(u)
			if err != nil {
				return ""
			}
			return m.Status.Phase
		}
		// virt-controller requeues a migration held by the limit every 5 s; a loaded
		// 2-core machine running three clusters needs more than a few rounds.
		waitFor(t, 2*time.Minute, "the first migration to take the slot", func() bool {
			p := phase("pin-slot")
			return p != "" && p != kubevirtv1.MigrationPending
		})
		time.Sleep(5 * time.Second) // a second one would have left Pending by now
		if p := phase("pin-queued"); p != kubevirtv1.MigrationPending && p != "" {
			t.Fatalf("the migration over the limit is %q; want it queued Pending", p)
		}
	})

	t.Run("a force-deleted launcher on a dead node: Always and RerunOnFailure come back from their templates, Manual and Once do not", func(t *testing.T) {
		// The queueing pin's migration of rerun ends first, or its instance is held.
		for _, name := range []string{"pin-slot", "pin-queued"} {
			_ = env.Dynamic.Resource(kubevirt.Migrations).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{})
		}
		waitFor(t, time.Minute, "no migration of rerun in flight", func() bool {
			v, err := getVMI(ctx, ns, "rerun")
			return err == nil && (v.Status.MigrationState == nil || v.Status.MigrationState.Completed || v.Status.MigrationState.Failed) && countUnfinished(t, ns, "rerun") == 0
		})
		before := map[string]types.UID{}
		for _, name := range []string{"always", "manual", "once", "rerun"} {
			before[name] = vmi(t, ns, name).UID
		}
		// Their templates now point at DR, as a failover's patch would.
		patchSelector(t, ns, "always", cluster.KwokGroupLabel, cluster.KwokGroup("DR"))
		patchSelector(t, ns, "rerun", cluster.KwokGroupLabel, cluster.KwokGroup("DR"))
		if err := env.StopSite(lab); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 90*time.Second, "lab node NotReady", func() bool {
			n, err := env.Kube.CoreV1().Nodes().Get(ctx, "lab-node-1", metav1.GetOptions{})
			return err == nil && !cluster.NodeReady(n)
		})
		pods, err := env.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=lab-node-1"})
		if err != nil {
			t.Fatal(err)
		}
		zero := int64(0)
		for _, p := range pods.Items {
			if err := env.Kube.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil && !apierrors.IsNotFound(err) {
				t.Fatal(err)
			}
		}
		for _, name := range []string{"always", "rerun"} {
			waitFor(t, 90*time.Second, name+" to run again on DR", func() bool {
				v, err := getVMI(ctx, ns, name)
				return err == nil && v.UID != before[name] && vmiReady(ctx, ns, name) && siteOf(t, ns, name) == "DR"
			})
		}
		for _, name := range []string{"manual", "once"} {
			waitFor(t, 60*time.Second, name+"'s VMI to fail", func() bool {
				v, err := getVMI(ctx, ns, name)
				return apierrors.IsNotFound(err) || err == nil && v.IsFinal()
			})
		}
		time.Sleep(5 * time.Second) // a recreation would have shown by now
		for _, name := range []string{"manual", "once"} {
			if v, err := getVMI(ctx, ns, name); err == nil && v.UID != before[name] {
				t.Errorf("%s was recreated (%s)", name, v.UID)
			}
		}
	})

	// The plan blocks a VM a controller owns (OwnedByController). v1.8.0's pool
	// controller does not revert a direct patch of its VM by itself: it compares its
	// revision of the pool's template with the pool's template, not with the VM. It
	// rewrites the VM, spec and annotations (the move's journal too), at the pool's next
	// template change (pool.go isOutdatedVM, opportunisticUpdate).
	t.Run("a VirtualMachinePool keeps a patch of its VM until its own template changes", func(t *testing.T) {
		pools := schema.GroupVersionResource{Group: "pool.kubevirt.io", Version: "v1beta1", Resource: "virtualmachinepools"}
		pool := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "pool.kubevirt.io/v1beta1", "kind": "VirtualMachinePool",
			"metadata": map[string]any{"name": "pool", "namespace": ns},
			"spec": map[string]any{
				"replicas": int64(1),
				"selector": map[string]any{"matchLabels": map[string]any{"pool": "pool"}},
				"virtualMachineTemplate": map[string]any{
					"metadata": map[string]any{"labels": map[string]any{"pool": "pool"}},
					"spec": map[string]any{
						"runStrategy": "Halted",
						"template": map[string]any{
							"metadata": map[string]any{"labels": map[string]any{"pool": "pool"}},
							"spec": map[string]any{
								"nodeSelector": map[string]any{"topology.kubernetes.io/site": "Primary"},
								"domain":       map[string]any{"devices": map[string]any{}, "resources": map[string]any{"requests": map[string]any{"memory": "64Mi"}}},
							},
						},
					},
				},
			},
		}}
		if _, err := env.Dynamic.Resource(pools).Namespace(ns).Create(ctx, pool, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "the pool's VM pool-0", func() bool {
			_, err := env.Dynamic.Resource(kubevirt.VMs).Namespace(ns).Get(ctx, "pool-0", metav1.GetOptions{})
			return err == nil
		})
		patch := `{"metadata":{"annotations":{"sitefail.io/move-id":"sf-pin"}},"spec":{"template":{"spec":{"nodeSelector":{"topology.kubernetes.io/site":"DR"}}}}}`
		if _, err := env.Dynamic.Resource(kubevirt.VMs).Namespace(ns).Patch(ctx, "pool-0", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second) // a revert would have shown by now
		if site := templateSiteIn(t, ns, "pool-0"); site != "DR" {
			t.Fatalf("the pool reverted a direct patch of its VM at once (site %q)", site)
		}
		touch := `{"spec":{"virtualMachineTemplate":{"spec":{"template":{"metadata":{"labels":{"touched":"yes"}}}}}}}`
		if _, err := env.Dynamic.Resource(pools).Namespace(ns).Patch(ctx, "pool", types.MergePatchType, []byte(touch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "the pool to rewrite its VM from its own template", func() bool {
			u, err := env.Dynamic.Resource(kubevirt.VMs).Namespace(ns).Get(ctx, "pool-0", metav1.GetOptions{})
			return err == nil && templateSiteIn(t, ns, "pool-0") == "Primary" && u.GetAnnotations()["sitefail.io/move-id"] == ""
		})
	})
}

// launcherOf names the VMI's running launcher pod (not a migration target's).
func launcherOf(t *testing.T, ns, name string) string {
	t.Helper()
	v := vmi(t, ns, name)
	pods, err := env.Kube.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: kubevirtv1.CreatedByLabel + "=" + string(v.UID)})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.Spec.NodeName == v.Status.NodeName && p.DeletionTimestamp == nil {
			return p.Name
		}
	}
	t.Fatalf("no launcher pod of %s/%s on %s", ns, name, v.Status.NodeName)
	return ""
}

// evict asks for the pod's eviction, as kubectl drain does.
func evict(ctx context.Context, ns, pod string) error {
	return env.Kube.PolicyV1().Evictions(ns).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: pod, Namespace: ns}})
}

func waitFor(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// subresource calls virt-api's VM subresource through kube-apiserver, as the plugin does.
func subresource(ctx context.Context, ns, name, verb string) (int, error) {
	var code int
	err := env.Kube.CoreV1().RESTClient().Put().
		AbsPath("/apis/subresources.kubevirt.io/v1/namespaces", ns, "virtualmachines", name, verb).
		Body([]byte("{}")).SetHeader("Content-Type", "application/json").
		Do(ctx).StatusCode(&code).Error()
	return code, err
}

func getVMI(ctx context.Context, ns, name string) (*kubevirtv1.VirtualMachineInstance, error) {
	u, err := env.Dynamic.Resource(kubevirt.VMIs).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return kubevirt.ToVMI(u)
}

func vmi(t *testing.T, ns, name string) *kubevirtv1.VirtualMachineInstance {
	t.Helper()
	v, err := getVMI(context.Background(), ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func vmiReady(ctx context.Context, ns, name string) bool {
	v, err := getVMI(ctx, ns, name)
	if err != nil || v.DeletionTimestamp != nil || !v.IsRunning() {
		return false
	}
	c, ok := kubevirt.VMICondition(v, kubevirtv1.VirtualMachineInstanceReady)
	return ok && c.Status == corev1.ConditionTrue
}

func patchSelector(t *testing.T, ns, name, key, value string) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"nodeSelector":{%q:%q}}}}}`, key, value)
	if _, err := env.Dynamic.Resource(kubevirt.VMs).Namespace(ns).Patch(context.Background(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func migration(ns, vmiName, name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     map[string]any{"vmiName": vmiName},
	}}
}

// countUnfinished counts the VMI's migrations that are neither Succeeded nor Failed.
func countUnfinished(t *testing.T, ns, vmiName string) int {
	t.Helper()
	return countMigrationsWhere(t, ns, vmiName, func(m *kubevirtv1.VirtualMachineInstanceMigration) bool {
		return m.Status.Phase != kubevirtv1.MigrationSucceeded && m.Status.Phase != kubevirtv1.MigrationFailed
	})
}

func countMigrations(t *testing.T, ns, vmiName string) int {
	t.Helper()
	return countMigrationsWhere(t, ns, vmiName, func(*kubevirtv1.VirtualMachineInstanceMigration) bool { return true })
}

func countMigrationsWhere(t *testing.T, ns, vmiName string, ok func(*kubevirtv1.VirtualMachineInstanceMigration) bool) int {
	t.Helper()
	list, err := env.Dynamic.Resource(kubevirt.Migrations).Namespace(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i := range list.Items {
		if m, err := kubevirt.ToMigration(&list.Items[i]); err == nil && m.Spec.VMIName == vmiName && ok(m) {
			n++
		}
	}
	return n
}

// TestKubeVirtDataVolumeTemplates pins what KubeVirt v1.8.0 does with a VM that has
// spec.dataVolumeTemplates, with CDI played by the harness (test/stretched cdi.go), and
// that a move keeps the VM's DataVolume: the VM controller creates the DataVolume (owned
// by the VM) and starts no instance until CDI reports it Succeeded; the instance mounts
// the DataVolume's claim; a move restarts or migrates the VM by its claim's access mode
// and the DataVolume is never made again.
func TestKubeVirtDataVolumeTemplates(t *testing.T) {
	ctx := context.Background()
	const ns = "dvpins"
	dvs := env.Dynamic.Resource(snapshot.DataVolumes).Namespace(ns)
	if _, err := env.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var volumes []string
	t.Cleanup(func() {
		// The VMs are gone before the next test, which may count or move every VM of a
		// site; the namespace, which takes a minute more to go, is not waited for.
		for _, name := range []string{"rwo", "rwx"} {
			_ = env.Dynamic.Resource(kubevirt.VMs).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{})
		}
		waitFor(t, time.Minute, "the VMs and their instances gone", func() bool {
			vms, err := env.Dynamic.Resource(kubevirt.VMs).Namespace(ns).List(ctx, metav1.ListOptions{})
			vmis, err2 := env.Dynamic.Resource(kubevirt.VMIs).Namespace(ns).List(ctx, metav1.ListOptions{})
			return err == nil && err2 == nil && len(vms.Items) == 0 && len(vmis.Items) == 0
		})
		_ = env.Kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		for _, pv := range volumes {
			_ = env.Kube.CoreV1().PersistentVolumes().Delete(ctx, pv, metav1.DeleteOptions{})
		}
	})
	// rwo imports a blank image into a ReadWriteOnce claim (spec.storage), held importing
	// until released; rwx a registry image into a ReadWriteMany one (spec.pvc). The played
	// CDI never pulls the image.
	storage := func(mode corev1.PersistentVolumeAccessMode) map[string]any {
		return map[string]any{"accessModes": []any{string(mode)}, "resources": map[string]any{"requests": map[string]any{"storage": "1Gi"}}}
	}
	for _, v := range []struct {
		name string
		ann  map[string]any
		spec map[string]any
	}{
		{"rwo", map[string]any{stretched.CDIHoldAnnotation: "true"},
			map[string]any{"source": map[string]any{"blank": map[string]any{}}, "storage": storage(corev1.ReadWriteOnce)}},
		{"rwx", nil,
			map[string]any{"source": map[string]any{"registry": map[string]any{"url": "docker://registry.sitefail.test/disks/fedora:41"}}, "pvc": storage(corev1.ReadWriteMany)}},
	} {
		vm := stretched.VMSpec{Namespace: ns, Name: v.name, Site: "Primary"}.VM()
		spec := &vm.Spec.Template.Spec
		spec.Domain.Devices.Disks = []kubevirtv1.Disk{{Name: "root", DiskDevice: kubevirtv1.DiskDevice{Disk: &kubevirtv1.DiskTarget{Bus: kubevirtv1.DiskBusVirtio}}}}
		spec.Volumes = []kubevirtv1.Volume{{Name: "root", VolumeSource: kubevirtv1.VolumeSource{DataVolume: &kubevirtv1.DataVolumeSource{Name: v.name + "-root"}}}}
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(vm)
		if err != nil {
			t.Fatal(err)
		}
		meta := map[string]any{"name": v.name + "-root"}
		if v.ann != nil {
			meta["annotations"] = v.ann
		}
		if err := unstructured.SetNestedSlice(obj, []any{map[string]any{"metadata": meta, "spec": v.spec}}, "spec", "dataVolumeTemplates"); err != nil {
			t.Fatal(err)
		}
		if _, err := env.Dynamic.Resource(kubevirt.VMs).Namespace(ns).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	getDV := func(name string) *unstructured.Unstructured {
		t.Helper()
		u, err := dvs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	phase := func(name string) string {
		u, err := dvs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return ""
		}
		p, _, _ := unstructured.NestedString(u.Object, "status", "phase")
		return p
	}

	t.Run("the VM controller creates the DataVolume, owned by the VM, and starts nothing until it is Succeeded", func(t *testing.T) {
		waitFor(t, time.Minute, "rwo's DataVolume importing (the played CDI holds it)", func() bool { return phase("rwo-root") == "ImportInProgress" })
		dv := getDV("rwo-root")
		vm, err := env.Dynamic.Resource(kubevirt.VMs).Namespace(ns).Get(ctx, "rwo", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		owner := metav1.GetControllerOf(dv)
		if owner == nil || owner.Kind != "VirtualMachine" || owner.Name != "rwo" || owner.UID != vm.GetUID() {
			t.Errorf("DataVolume's controller: %+v; want the VM rwo (%s)", owner, vm.GetUID())
		}
		// v1.8.0 GenerateDataVolumeFromTemplate and CreateDataVolumeManifest: the
		// template's annotations, claim adoption allowed, the VM's UID as a label.
		if dv.GetAnnotations()["cdi.kubevirt.io/allowClaimAdoption"] != "true" || dv.GetAnnotations()[stretched.CDIHoldAnnotation] != "true" ||
			dv.GetLabels()[kubevirtv1.CreatedByLabel] != string(vm.GetUID()) {
			t.Errorf("DataVolume metadata: labels %v annotations %v", dv.GetLabels(), dv.GetAnnotations())
		}
		waitFor(t, 30*time.Second, "rwo Provisioning", func() bool {
			u, err := env.Dynamic.Resource(kubevirt.VMs).Namespace(ns).Get(ctx, "rwo", metav1.GetOptions{})
			if err != nil {
				return false
			}
			s, _, _ := unstructured.NestedString(u.Object, "status", "printableStatus")
			return s == string(kubevirtv1.VirtualMachineStatusProvisioning)
		})
		time.Sleep(3 * time.Second) // a VMI would have been created by now
		if _, err := getVMI(ctx, ns, "rwo"); !apierrors.IsNotFound(err) {
			t.Fatalf("a VMI of rwo while its DataVolume imports: %v", err)
		}
		// The plan refuses to move a VM whose disk is still being imported.
		r := sitefail(t, "plan", "--to", "DR", "-n", ns, "rwo")
		if r.code != 2 || !strings.Contains(r.stdout+r.stderr, "DataVolumeNotReady") || !strings.Contains(r.stdout+r.stderr, "ImportInProgress") {
			t.Fatalf("plan of a VM whose DataVolume imports: want exit 2 and DataVolumeNotReady: %s", r)
		}

		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:null}}}`, stretched.CDIHoldAnnotation)
		if _, err := dvs.Patch(ctx, "rwo-root", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"rwo", "rwx"} {
			waitFor(t, time.Minute, name+" Ready on Primary", func() bool { return vmiReady(ctx, ns, name) && siteOf(t, ns, name) == "Primary" })
		}
		dv = getDV("rwo-root")
		progress, _, _ := unstructured.NestedString(dv.Object, "status", "progress")
		claim, _, _ := unstructured.NestedString(dv.Object, "status", "claimName")
		if phase("rwo-root") != "Succeeded" || progress != "100.0%" || claim != "rwo-root" {
			t.Errorf("DataVolume status: %v", dv.Object["status"])
		}
	})

	uids := map[string]types.UID{}
	claims := map[string]types.UID{}
	t.Run("the instance mounts the DataVolume's claim, and its access mode decides LiveMigratable", func(t *testing.T) {
		for _, c := range []struct {
			name       string
			mode       corev1.PersistentVolumeAccessMode
			migratable corev1.ConditionStatus
		}{{"rwo", corev1.ReadWriteOnce, corev1.ConditionFalse}, {"rwx", corev1.ReadWriteMany, corev1.ConditionTrue}} {
			dvName := c.name + "-root"
			dv := getDV(dvName)
			uids[dvName] = dv.GetUID()
			pvc, err := env.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, dvName, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			claims[dvName] = pvc.UID
			volumes = append(volumes, pvc.Spec.VolumeName)
			if owner := metav1.GetControllerOf(pvc); owner == nil || owner.Kind != "DataVolume" || owner.UID != dv.GetUID() {
				t.Errorf("claim %s's controller: %+v; want its DataVolume", dvName, owner)
			}
			waitFor(t, time.Minute, c.name+"'s volume status and LiveMigratable", func() bool {
				v := vmi(t, ns, c.name)
				cond, _ := kubevirt.VMICondition(v, kubevirtv1.VirtualMachineInstanceIsMigratable)
				for _, vs := range v.Status.VolumeStatus {
					if vs.Name == "root" && vs.PersistentVolumeClaimInfo != nil {
						return cond.Status == c.migratable
					}
				}
				return false
			})
			v := vmi(t, ns, c.name)
			if len(v.Spec.Volumes) != 1 || v.Spec.Volumes[0].DataVolume == nil || v.Spec.Volumes[0].DataVolume.Name != dvName {
				t.Errorf("%s's VMI volumes: %+v; want the DataVolume %s", c.name, v.Spec.Volumes, dvName)
			}
			for _, vs := range v.Status.VolumeStatus {
				if vs.Name == "root" && vs.PersistentVolumeClaimInfo != nil && (vs.PersistentVolumeClaimInfo.ClaimName != dvName || len(vs.PersistentVolumeClaimInfo.AccessModes) != 1 || vs.PersistentVolumeClaimInfo.AccessModes[0] != c.mode) {
					t.Errorf("%s's volume status: %+v; want claim %s, %s", c.name, vs.PersistentVolumeClaimInfo, dvName, c.mode)
				}
			}
			// v1.8.0 aggregateDataVolumesConditions: from the DataVolumes' Ready conditions.
			if cond, ok := kubevirt.VMICondition(v, kubevirtv1.VirtualMachineInstanceDataVolumesReady); !ok || cond.Status != corev1.ConditionTrue || cond.Reason != kubevirtv1.VirtualMachineInstanceReasonAllDVsReady {
				t.Errorf("%s's DataVolumesReady: %+v", c.name, cond)
			}
			if got := launcherClaims(t, ns, c.name); len(got) != 1 || got[0] != dvName {
				t.Errorf("%s's launcher mounts claims %v; want %s", c.name, got, dvName)
			}
		}
		if s, r := vmiMigratable(t, ns, "rwo"); s != corev1.ConditionFalse || r != kubevirtv1.VirtualMachineInstanceReasonDisksNotMigratable {
			t.Errorf("rwo: LiveMigratable %s %s", s, r)
		}
	})

	t.Run("move restarts the ReadWriteOnce VM and migrates the ReadWriteMany one; the DataVolumes stay", func(t *testing.T) {
		var out struct {
			VMs []snapshot.VM `json:"vms"`
		}
		mustJSON(t, sitefail(t, "status", "-n", ns, "rwo", "-o", "json"), &out)
		if len(out.VMs) != 1 || !slices.Equal(out.VMs[0].DataVolumes, []string{"rwo-root"}) || !slices.Contains(out.VMs[0].Claims, "rwo-root") {
			t.Fatalf("status of rwo: %+v; want its DataVolume among its claims", out.VMs)
		}
		var p plan.Plan
		mustJSON(t, sitefail(t, "plan", "--to", "DR", "-n", ns, "rwo", "rwx", "-o", "json"), &p)
		actions := map[string]plan.Action{}
		for _, s := range p.Steps {
			actions[s.Name] = s.Action
		}
		if len(p.Blockers) != 0 || actions["rwo"] != plan.ActionRestart || actions["rwx"] != plan.ActionMigrate || !hasIssue(p.Warnings, "ReadWriteOnceVolume") {
			t.Fatalf("plan: actions %v, blockers %+v, warnings %+v; want rwo restarted (ReadWriteOnceVolume), rwx migrated", actions, p.Blockers, p.Warnings)
		}
		r := sitefail(t, "move", "--to", "DR", "-n", ns, "rwo", "rwx")
		if r.code != 0 {
			t.Fatalf("move: %s", r)
		}
		for _, c := range []struct {
			name               string
			starts, migrations int
		}{{"rwo", 2, 0}, {"rwx", 1, 1}} {
			if s := siteOf(t, ns, c.name); s != "DR" || !vmiReady(ctx, ns, c.name) {
				t.Errorf("%s runs on %q after the move", c.name, s)
			}
			if starts, migs := counts(ns, c.name); starts != c.starts || migs != c.migrations {
				t.Errorf("%s: %d starts, %d migrations; want %d and %d", c.name, starts, migs, c.starts, c.migrations)
			}
			dvName := c.name + "-root"
			dv := getDV(dvName)
			pvc, err := env.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, dvName, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if dv.GetUID() != uids[dvName] || pvc.UID != claims[dvName] || phase(dvName) != "Succeeded" {
				t.Errorf("%s: DataVolume %s -> %s (%s), claim %s -> %s; want both kept", c.name, uids[dvName], dv.GetUID(), phase(dvName), claims[dvName], pvc.UID)
			}
			if got := launcherClaims(t, ns, c.name); len(got) != 1 || got[0] != dvName {
				t.Errorf("%s's launcher on DR mounts claims %v; want %s", c.name, got, dvName)
			}
		}
		list, err := dvs.List(ctx, metav1.ListOptions{})
		if err != nil || len(list.Items) != 2 {
			t.Errorf("DataVolumes after the move: %v %d; want the two", err, len(list.Items))
		}
	})
}

// launcherClaims names the claims the VMI's running launcher pod mounts.
func launcherClaims(t *testing.T, ns, name string) []string {
	t.Helper()
	pod, err := env.Kube.CoreV1().Pods(ns).Get(context.Background(), launcherOf(t, ns, name), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			out = append(out, v.PersistentVolumeClaim.ClaimName)
		}
	}
	return out
}

func vmiMigratable(t *testing.T, ns, name string) (corev1.ConditionStatus, string) {
	t.Helper()
	c, _ := kubevirt.VMICondition(vmi(t, ns, name), kubevirtv1.VirtualMachineInstanceIsMigratable)
	return c.Status, c.Reason
}
