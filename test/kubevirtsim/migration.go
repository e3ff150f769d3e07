package kubevirtsim

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
)

func (s *Sim) enqueueMigrationByUID(key string) {
	ns, uid := splitNS(key)
	for _, o := range s.migs.GetStore().List() {
		u := o.(*unstructured.Unstructured)
		if u.GetNamespace() == ns && string(u.GetUID()) == uid {
			s.queue.Add("mig|" + ns + "/" + u.GetName())
		}
	}
}

func splitNS(key string) (string, string) {
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			return key[:i], key[i+1:]
		}
	}
	return "", key
}

func (s *Sim) getMigration(key string) *kubevirtv1.VirtualMachineInstanceMigration {
	obj, ok, _ := s.migs.GetStore().GetByKey(key)
	if !ok {
		return nil
	}
	m, err := kubevirt.ToMigration(obj.(*unstructured.Unstructured))
	if err != nil {
		return nil
	}
	return m
}

func (s *Sim) updateMigrationStatus(ctx context.Context, m *kubevirtv1.VirtualMachineInstanceMigration) error {
	u, err := toUnstructured(m, migGVK)
	if err != nil {
		return err
	}
	_, err = s.dyn.Resource(kubevirt.Migrations).Namespace(m.Namespace).UpdateStatus(ctx, u, metav1.UpdateOptions{})
	return err
}

func (s *Sim) failMigration(ctx context.Context, m *kubevirtv1.VirtualMachineInstanceMigration, vmi *kubevirtv1.VirtualMachineInstance, reason string) (time.Duration, error) {
	m.Status.Phase = kubevirtv1.MigrationFailed
	// KubeVirt reports why in a condition; the phase is what sitefail reads.
	m.Status.PhaseTransitionTimestamps = append(m.Status.PhaseTransitionTimestamps, kubevirtv1.VirtualMachineInstanceMigrationPhaseTransitionTimestamp{Phase: kubevirtv1.MigrationFailed, PhaseTransitionTimestamp: metav1.Now()})
	m.Status.Conditions = append(m.Status.Conditions, kubevirtv1.VirtualMachineInstanceMigrationCondition{Type: "Failed", Status: corev1.ConditionTrue, Message: reason})
	if vmi != nil && vmi.Status.MigrationState != nil && string(vmi.Status.MigrationState.MigrationUID) == string(m.UID) {
		vmi.Status.MigrationState.Failed = true
		vmi.Status.MigrationState.Completed = true
		now := metav1.Now()
		vmi.Status.MigrationState.EndTimestamp = &now
		if err := s.updateVMI(ctx, vmi); err != nil {
			return 0, err
		}
		for _, p := range s.podsOf(vmi) {
			if p.Labels[migrationJobLabel] == string(m.UID) {
				_ = s.kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
			}
		}
	}
	return 0, s.updateMigrationStatus(ctx, m)
}

// syncMigration drives a migration: a target pod that follows the VMI's own
// nodeSelector (and avoids the source node), then the switch-over.
func (s *Sim) syncMigration(ctx context.Context, key string) (time.Duration, error) {
	m := s.getMigration(key)
	if m == nil || m.Status.Phase == kubevirtv1.MigrationSucceeded || m.Status.Phase == kubevirtv1.MigrationFailed {
		return 0, nil
	}
	vmi := s.getVMI(m.Namespace + "/" + m.Spec.VMIName)
	if vmi == nil || vmi.DeletionTimestamp != nil || vmi.Status.Phase != kubevirtv1.Running {
		return s.failMigration(ctx, m, vmi, "the VMI is not running")
	}
	if m.DeletionTimestamp != nil {
		return s.failMigration(ctx, m, vmi, "migration canceled")
	}
	ms := vmi.Status.MigrationState
	mine := ms != nil && string(ms.MigrationUID) == string(m.UID)
	if m.Status.Phase == "" || m.Status.Phase == kubevirtv1.MigrationPending {
		if c, ok := kubevirt.VMICondition(vmi, kubevirtv1.VirtualMachineInstanceIsMigratable); !ok || c.Status != corev1.ConditionTrue {
			return s.failMigration(ctx, m, vmi, "VMI is not live-migratable: "+c.Reason)
		}
		if ms != nil && !ms.Completed && !mine {
			return s.failMigration(ctx, m, vmi, "another migration is in progress")
		}
		source := vmi.Status.NodeName
		aff := vmi.Spec.Affinity.DeepCopy()
		if aff == nil {
			aff = &corev1.Affinity{}
		}
		if aff.NodeAffinity == nil {
			aff.NodeAffinity = &corev1.NodeAffinity{}
		}
		avoid := corev1.NodeSelectorRequirement{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpNotIn, Values: []string{source}}
		req := aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution
		if req == nil || len(req.NodeSelectorTerms) == 0 {
			aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{avoid}}}}
		} else {
			for i := range req.NodeSelectorTerms {
				req.NodeSelectorTerms[i].MatchExpressions = append(req.NodeSelectorTerms[i].MatchExpressions, avoid)
			}
		}
		p := launcherPod(vmi, vmi.Spec.NodeSelector, aff, string(m.UID))
		if _, err := s.kube.CoreV1().Pods(vmi.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return 0, err
		}
		now := metav1.Now()
		vmi.Status.MigrationState = &kubevirtv1.VirtualMachineInstanceMigrationState{MigrationUID: m.UID, SourceNode: source, StartTimestamp: &now}
		if err := s.updateVMI(ctx, vmi); err != nil {
			return 0, err
		}
		m.Status.Phase = kubevirtv1.MigrationScheduling
		return 0, s.updateMigrationStatus(ctx, m)
	}
	if !mine {
		return s.failMigration(ctx, m, vmi, "the VMI lost track of this migration")
	}
	var target *corev1.Pod
	for _, p := range s.podsOf(vmi) {
		if p.Labels[migrationJobLabel] == string(m.UID) {
			target = p
		}
	}
	if target == nil {
		return s.failMigration(ctx, m, vmi, "target pod disappeared")
	}
	switch {
	case target.Spec.NodeName == "":
		return 0, nil // the scheduler has not placed it (yet); the pod event requeues us
	case target.Status.Phase != corev1.PodRunning:
		return 0, s.advance(ctx, m, vmi, target, kubevirtv1.MigrationScheduled)
	}
	if m.Status.Phase != kubevirtv1.MigrationRunning {
		return s.cfg.MigrationDelay, s.advance(ctx, m, vmi, target, kubevirtv1.MigrationRunning)
	}
	started := target.Status.StartTime
	if started != nil && time.Since(started.Time) < s.cfg.MigrationDelay {
		return s.cfg.MigrationDelay - time.Since(started.Time) + 50*time.Millisecond, nil
	}
	// Switch over: the VMI now runs on the target node; the source pod goes away.
	source := vmi.Status.NodeName
	now := metav1.Now()
	vmi.Status.NodeName = target.Spec.NodeName
	vmi.Status.MigrationState.Completed = true
	vmi.Status.MigrationState.EndTimestamp = &now
	if err := s.updateVMI(ctx, vmi); err != nil {
		return 0, err
	}
	for _, p := range s.podsOf(vmi) {
		if p.Spec.NodeName == source && p.Name != target.Name {
			_ = s.kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
		}
	}
	m.Status.Phase = kubevirtv1.MigrationSucceeded
	if err := s.updateMigrationStatus(ctx, m); err != nil {
		return 0, err
	}
	s.count(vmi.Namespace+"/"+vmi.Name, func(c *Counts) { c.Migrations++ })
	return 0, nil
}

// advance moves a migration to phase, recording its target on the VMI; it writes
// nothing when the migration is already there.
func (s *Sim) advance(ctx context.Context, m *kubevirtv1.VirtualMachineInstanceMigration, vmi *kubevirtv1.VirtualMachineInstance, target *corev1.Pod, phase kubevirtv1.VirtualMachineInstanceMigrationPhase) error {
	if m.Status.Phase == phase {
		return nil
	}
	m.Status.Phase = phase
	vmi.Status.MigrationState.TargetNode = target.Spec.NodeName
	vmi.Status.MigrationState.TargetPod = target.Name
	if err := s.updateVMI(ctx, vmi); err != nil {
		return err
	}
	return s.updateMigrationStatus(ctx, m)
}
