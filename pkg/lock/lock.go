// Package lock makes sure only one move runs per cluster, through a coordination.k8s.io
// Lease that names the move and the operator holding it.
package lock

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

const (
	// DefaultName is the Lease's name.
	DefaultName = "sitefail-move"
	// DefaultNamespace holds the Lease unless --lock-namespace says otherwise.
	DefaultNamespace = "kube-system"
	// Duration is how long a holder that stops renewing keeps the lock.
	Duration         = 60 * time.Second
	annotationMoveID = "sitefail.io/move-id"
)

// HeldError says who holds the lock.
type HeldError struct {
	Holder, MoveID string
	Renewed        time.Time
	Stale          bool
}

func (e *HeldError) Error() string {
	if e.Stale {
		return fmt.Sprintf("another move (%s by %s) holds the lock but stopped renewing it at %s: if that process is gone, take the lock over with --take-over-stale-lock",
			e.MoveID, e.Holder, e.Renewed.Format(time.RFC3339))
	}
	return fmt.Sprintf("another move is running: %s by %s (lock renewed %s); wait for it to finish", e.MoveID, e.Holder, e.Renewed.Format(time.RFC3339))
}

// Lock is a held Lease.
type Lock struct {
	kube      kubernetes.Interface
	namespace string
	name      string
	holder    string
	cancel    context.CancelFunc
	done      chan struct{}
}

// Acquire takes the Lease for this move. A Lease held by a live holder fails at once;
// a stale one is taken over only when takeOverStale is set.
func Acquire(ctx context.Context, kube kubernetes.Interface, namespace, name, holder, moveID string, takeOverStale bool, now func() time.Time) (*Lock, error) {
	leases := kube.CoordinationV1().Leases(namespace)
	t := metav1.NewMicroTime(now())
	spec := coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: ptr.To(int32(Duration / time.Second)), AcquireTime: &t, RenewTime: &t}
	existing, err := leases.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Annotations: map[string]string{annotationMoveID: moveID}}, Spec: spec}
		if _, err := leases.Create(ctx, l, metav1.CreateOptions{}); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return Acquire(ctx, kube, namespace, name, holder, moveID, takeOverStale, now)
			}
			return nil, fmt.Errorf("create lock lease %s/%s: %w", namespace, name, err)
		}
	case err != nil:
		return nil, fmt.Errorf("read lock lease %s/%s: %w", namespace, name, err)
	default:
		if h := ptr.Deref(existing.Spec.HolderIdentity, ""); h != "" {
			renewed := time.Time{}
			if existing.Spec.RenewTime != nil {
				renewed = existing.Spec.RenewTime.Time
			}
			dur := time.Duration(ptr.Deref(existing.Spec.LeaseDurationSeconds, 60)) * time.Second
			stale := now().After(renewed.Add(dur))
			if !stale || !takeOverStale {
				return nil, &HeldError{Holder: h, MoveID: existing.Annotations[annotationMoveID], Renewed: renewed, Stale: stale}
			}
		}
		existing.Spec = spec
		if existing.Annotations == nil {
			existing.Annotations = map[string]string{}
		}
		existing.Annotations[annotationMoveID] = moveID
		// The update carries the resourceVersion we read: if another move took the
		// lock in between, this fails with a conflict instead of stealing it.
		if _, err := leases.Update(ctx, existing, metav1.UpdateOptions{}); err != nil {
			if apierrors.IsConflict(err) {
				return nil, fmt.Errorf("another move took the lock at the same moment; check 'kubectl get lease -n %s %s'", namespace, name)
			}
			return nil, fmt.Errorf("take lock lease %s/%s: %w", namespace, name, err)
		}
	}
	rctx, cancel := context.WithCancel(context.Background())
	l := &Lock{kube: kube, namespace: namespace, name: name, holder: holder, cancel: cancel, done: make(chan struct{})}
	go l.renew(rctx, now)
	return l, nil
}

func (l *Lock) renew(ctx context.Context, now func() time.Time) {
	defer close(l.done)
	tick := time.NewTicker(Duration / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			leases := l.kube.CoordinationV1().Leases(l.namespace)
			cur, err := leases.Get(ctx, l.name, metav1.GetOptions{})
			if err != nil || ptr.Deref(cur.Spec.HolderIdentity, "") != l.holder {
				continue
			}
			t := metav1.NewMicroTime(now())
			cur.Spec.RenewTime = &t
			_, _ = leases.Update(ctx, cur, metav1.UpdateOptions{})
		}
	}
}

// Release stops renewing and frees the Lease, if it is still ours.
func (l *Lock) Release(ctx context.Context) error {
	l.cancel()
	<-l.done
	leases := l.kube.CoordinationV1().Leases(l.namespace)
	cur, err := leases.Get(ctx, l.name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if ptr.Deref(cur.Spec.HolderIdentity, "") != l.holder {
		return nil
	}
	cur.Spec.HolderIdentity = nil
	cur.Spec.RenewTime = nil
	_, err = leases.Update(ctx, cur, metav1.UpdateOptions{})
	return err
}
