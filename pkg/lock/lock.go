// Package lock makes sure only one move runs per cluster, through a coordination.k8s.io
// Lease that names the move, the operator, and the host and process holding it.
//
// A move that can no longer prove it holds the Lease must stop writing: Lost is closed
// when the Lease names another holder or has not been renewed for RenewDeadline, after
// which another move may take it over.
package lock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

const (
	// DefaultName is the Lease's name.
	DefaultName = "sitefail-move"
	// DefaultNamespace holds the Lease unless --lock-namespace says otherwise.
	DefaultNamespace = "kube-system"
	// Duration is how long a holder that stops renewing keeps the lock.
	Duration = 20 * time.Second
	// RenewEvery is the renewal period.
	RenewEvery = 3 * time.Second
	// RenewDeadline is how long a holder keeps writing without a successful renewal:
	// well inside Duration, so it has stopped before anyone may take the lock over.
	RenewDeadline = 12 * time.Second

	annotationMoveID = "sitefail.io/move-id"
	annotationHost   = "sitefail.io/holder-host"
	annotationPID    = "sitefail.io/holder-pid"
	// annotationMachine is the boot and PID namespace the pid belongs to: a host name is
	// shared by containers, hostNetwork pods and cloned hosts, a pid is meaningful only
	// within one boot and one PID namespace.
	annotationMachine = "sitefail.io/holder-machine"
)

// HeldError says who holds the lock.
type HeldError struct {
	Holder, MoveID string
	Host           string
	PID            int
	Machine        string
	// Namespace is set when the holder's Lease is in another namespace than ours.
	Namespace string
	Renewed   time.Time
	Stale     bool
}

func (e *HeldError) Error() string {
	where := ""
	if e.Host != "" {
		where = fmt.Sprintf(" on host %s (pid %d)", e.Host, e.PID)
	}
	if e.Stale {
		return fmt.Sprintf("the lock is held by move %s of %s%s, which stopped renewing it at %s: it may have crashed or lost its connection. "+
			"If that process is gone, take the lock over with --take-over-stale-lock", e.MoveID, e.Holder, where, e.Renewed.Format(time.RFC3339))
	}
	if e.Namespace != "" {
		where += " with --lock-namespace " + e.Namespace
	}
	return fmt.Sprintf("another move is running: %s by %s%s (lock renewed %s); wait for it to finish", e.MoveID, e.Holder, where, e.Renewed.Format(time.RFC3339))
}

// Options name the Lease and its holder.
type Options struct {
	Namespace, Name string
	// Holder names the operator and move; MoveID is recorded beside it.
	Holder, MoveID string
	// TakeOverStale allows taking a Lease whose holder stopped renewing it.
	TakeOverStale bool
	// Host and PID identify this process; a Lease held by a process of this host that no
	// longer exists is taken at once (a crashed run being resumed). Defaults: this host
	// and process.
	Host string
	PID  int
	// Machine is this process's boot id and PID namespace (default: read from /proc; ""
	// where they cannot be read). Only a holder of the same Machine is looked up by pid.
	Machine string
	// Alive reports whether a process of this host exists (default: signal 0).
	Alive func(pid int) bool
	Now   func() time.Time
	// RenewEvery and RenewDeadline override the package defaults (tests).
	RenewEvery, RenewDeadline time.Duration
	// Observe is how long a Lease that looks stale by its renewTime is watched before it
	// is taken over: a live holder renews within it, whatever its clock says (default:
	// two renewal periods and a second).
	Observe time.Duration
}

func (o *Options) defaults() {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.Host == "" {
		o.Host, _ = os.Hostname()
	}
	if o.PID == 0 {
		o.PID = os.Getpid()
		if o.Machine == "" {
			o.Machine = thisMachine()
		}
	}
	if o.Alive == nil {
		o.Alive = processAlive
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RenewEvery == 0 {
		o.RenewEvery = RenewEvery
	}
	if o.RenewDeadline == 0 {
		o.RenewDeadline = RenewDeadline
	}
	if o.Observe == 0 {
		// Longer than a holder may go on writing without a renewal (RenewDeadline), plus
		// a renewal period either side.
		o.Observe = o.RenewDeadline + 2*o.RenewEvery
	}
}

// thisMachine names the boot and the PID namespace of this process, where the system
// says them (Linux); "" elsewhere, and then a crashed holder's Lease is taken without
// the flag only once it is stale.
func thisMachine() string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(boot)) + "/" + ns
}

// Lock is a held Lease.
type Lock struct {
	kube   kubernetes.Interface
	o      Options
	cancel context.CancelFunc
	done   chan struct{}

	lostOnce sync.Once
	lost     chan struct{}
	mu       sync.Mutex
	err      error
	// renewed is the wall-clock time of the last successful renewal (or the take).
	renewed time.Time
	// Warning says what could not be checked when the lock was taken.
	Warning string
}

// wall strips the monotonic reading: Go's monotonic clock does not advance while the
// machine sleeps (a suspended laptop, a paused VM), and a lock must count that time.
func wall(t time.Time) time.Time { return t.Round(0) }

// Valid says whether the move may still write: not lost, and renewed less than
// RenewDeadline ago by the wall clock. Writes check it at the instant they go out, since
// after a pause of the process they may run before the renewal loop notices anything.
func (l *Lock) Valid() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	if since := wall(l.o.Now()).Sub(l.renewed); since >= l.o.RenewDeadline {
		return fmt.Errorf("could not renew the lock for %s: another move may take it over, so this one stopped writing", since.Round(time.Second))
	}
	return nil
}

// Acquire takes the Lease for this move. A Lease held by a live holder fails at once;
// one whose holder process on this host is gone is taken at once; another stale one is
// taken over only with TakeOverStale.
func Acquire(ctx context.Context, kube kubernetes.Interface, o Options) (*Lock, error) {
	o.defaults()
	// A transient failure (throttling, a server error, a conflict with a concurrent
	// writer) is worth another look: the next attempt reads the Lease again, so a real
	// holder still refuses.
	var l *Lock
	err := retry.OnError(retry.DefaultBackoff, func(err error) bool {
		return ctx.Err() == nil && (apierrors.IsTooManyRequests(err) || apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) ||
			apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsConflict(err))
	}, func() (err error) {
		l, err = acquire(ctx, kube, o)
		return err
	})
	if apierrors.IsConflict(err) {
		return nil, fmt.Errorf("another move took the lock at the same moment; check 'kubectl get lease -n %s %s'", o.Namespace, o.Name)
	}
	return l, err
}

func acquire(ctx context.Context, kube kubernetes.Interface, o Options) (*Lock, error) {
	leases := kube.CoordinationV1().Leases(o.Namespace)
	t := metav1.NewMicroTime(o.Now())
	spec := coordinationv1.LeaseSpec{HolderIdentity: &o.Holder, LeaseDurationSeconds: ptr.To(int32(Duration / time.Second)), AcquireTime: &t, RenewTime: &t}
	ann := map[string]string{annotationMoveID: o.MoveID, annotationHost: o.Host, annotationPID: strconv.Itoa(o.PID), annotationMachine: o.Machine}
	existing, err := leases.Get(ctx, o.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, Annotations: ann}, Spec: spec}
		if _, err := leases.Create(ctx, l, metav1.CreateOptions{}); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return acquire(ctx, kube, o)
			}
			return nil, fmt.Errorf("create lock lease %s/%s: %w", o.Namespace, o.Name, err)
		}
	case err != nil:
		return nil, fmt.Errorf("read lock lease %s/%s: %w", o.Namespace, o.Name, err)
	default:
		if h := ptr.Deref(existing.Spec.HolderIdentity, ""); h != "" {
			held := heldError(existing, o.Now())
			if !mayTake(held, o) {
				return nil, held
			}
			if held.Stale {
				// Stale by the holder's clock and ours, which may disagree: it is stale
				// only if it is not renewed while we watch, on our clock alone.
				if live, err := renewedWithin(ctx, leases, existing, o.Observe); err != nil {
					return nil, err
				} else if live != nil {
					h := heldError(live, o.Now())
					h.Stale = false
					return nil, h
				}
			}
		}
		// Stamped now, after the observation: the Lease's time is when we took it.
		t = metav1.NewMicroTime(o.Now())
		existing.Spec = spec
		if existing.Annotations == nil {
			existing.Annotations = map[string]string{}
		}
		for k, v := range ann {
			existing.Annotations[k] = v
		}
		// The update carries the resourceVersion we read: if another move took the
		// lock in between, this fails with a conflict instead of stealing it.
		if _, err := leases.Update(ctx, existing, metav1.UpdateOptions{}); err != nil {
			return nil, fmt.Errorf("take lock lease %s/%s: %w", o.Namespace, o.Name, err)
		}
	}
	rctx, cancel := context.WithCancel(context.Background())
	l := &Lock{kube: kube, o: o, cancel: cancel, done: make(chan struct{}), lost: make(chan struct{}), renewed: wall(t.Time)}
	go l.renew(rctx)
	// Only after ours is taken: two movers that took theirs at once in two namespaces
	// then both see the other, and both stop, rather than both go on.
	held, warn := elsewhere(ctx, kube, o)
	if held != nil {
		_ = l.Unlock(context.Background())
		return nil, held
	}
	l.Warning = warn
	return l, nil
}

// elsewhere looks for a live move holding the lock in another namespace (another
// --lock-namespace): the Lease excludes movers only within one namespace. It returns the
// holder, or a warning when Leases cannot be listed across namespaces.
func elsewhere(ctx context.Context, kube kubernetes.Interface, o Options) (*HeldError, string) {
	list, err := kube.CoordinationV1().Leases(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + o.Name})
	if err != nil {
		return nil, fmt.Sprintf("could not check other namespaces for a move holding the lock (%v): use the same --lock-namespace as every other operator", err)
	}
	for i := range list.Items {
		l := &list.Items[i]
		if l.Namespace == o.Namespace || ptr.Deref(l.Spec.HolderIdentity, "") == "" {
			continue
		}
		h := heldError(l, o.Now())
		if h.Stale {
			// Stale by its holder's clock, which may be behind ours: watched, as a
			// takeover would.
			live, err := renewedWithin(ctx, kube.CoordinationV1().Leases(l.Namespace), l, o.Observe)
			if err != nil {
				return nil, fmt.Sprintf("could not watch the lock Lease in namespace %s (%v)", l.Namespace, err)
			}
			if live == nil {
				continue
			}
			h = heldError(live, o.Now())
			h.Stale = false
		}
		h.Namespace = l.Namespace
		return h, ""
	}
	return nil, ""
}

// mayTake decides whether a held Lease may be taken, for every combination of where its
// holder runs and whether it renews:
//   - the holder's process is gone on this very boot and PID namespace: at once (a
//     crashed run being resumed);
//   - the same host name, anywhere else (or where the machine cannot be told): only once
//     the Lease is stale, since the pid there means nothing here; no flag is needed;
//   - any other holder: only stale, and only with --take-over-stale-lock.
func mayTake(held *HeldError, o Options) bool {
	pidGone := held.PID > 0 && held.PID != o.PID && !o.Alive(held.PID)
	switch {
	case held.Host == o.Host && held.Machine != "" && held.Machine == o.Machine && pidGone:
		return true
	case held.Host == o.Host && pidGone:
		return held.Stale
	default:
		return held.Stale && o.TakeOverStale
	}
}

// renewedWithin watches the Lease for d and returns it if its holder renewed it (or
// anyone changed it) meanwhile; nil when it stayed as it was read.
func renewedWithin(ctx context.Context, leases coordinationv1client.LeaseInterface, read *coordinationv1.Lease, d time.Duration) (*coordinationv1.Lease, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(d):
	}
	cur, err := leases.Get(ctx, read.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read lock lease %s: %w", read.Name, err)
	}
	if cur.ResourceVersion != read.ResourceVersion || !cur.Spec.RenewTime.Equal(read.Spec.RenewTime) {
		return cur, nil
	}
	return nil, nil
}

func heldError(l *coordinationv1.Lease, now time.Time) *HeldError {
	renewed := time.Time{}
	if l.Spec.RenewTime != nil {
		renewed = l.Spec.RenewTime.Time
	}
	dur := time.Duration(ptr.Deref(l.Spec.LeaseDurationSeconds, int32(Duration/time.Second))) * time.Second
	pid, _ := strconv.Atoi(l.Annotations[annotationPID])
	return &HeldError{Holder: ptr.Deref(l.Spec.HolderIdentity, ""), MoveID: l.Annotations[annotationMoveID],
		Host: l.Annotations[annotationHost], PID: pid, Machine: l.Annotations[annotationMachine], Renewed: renewed, Stale: now.After(renewed.Add(dur))}
}

// Lost is closed when the lock can no longer be trusted; Err then says why.
func (l *Lock) Lost() <-chan struct{} { return l.lost }

// Err says why the lock was lost, nil while it is held.
func (l *Lock) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

func (l *Lock) lose(err error) {
	l.lostOnce.Do(func() {
		l.mu.Lock()
		l.err = err
		l.mu.Unlock()
		close(l.lost)
	})
}

func (l *Lock) renew(ctx context.Context) {
	defer close(l.done)
	tick := time.NewTicker(l.o.RenewEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		err := l.renewOnce(ctx)
		var taken *HeldError
		switch {
		case errors.As(err, &taken):
			l.lose(fmt.Errorf("the lock was taken over by move %s of %s: stopped writing", taken.MoveID, taken.Holder))
			return
		case apierrors.IsNotFound(err):
			// Someone deleted the Lease: another move may create it at any moment.
			l.lose(errors.New("the lock's Lease was deleted: stopped writing"))
			return
		case err == nil:
			l.mu.Lock()
			l.renewed = wall(l.o.Now())
			l.mu.Unlock()
		case ctx.Err() != nil:
			return
		case l.Valid() != nil:
			l.lose(fmt.Errorf("%v (%v)", l.Valid(), err))
			return
		}
	}
}

func (l *Lock) renewOnce(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, l.o.RenewEvery)
	defer cancel()
	leases := l.kube.CoordinationV1().Leases(l.o.Namespace)
	cur, err := leases.Get(rctx, l.o.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if ptr.Deref(cur.Spec.HolderIdentity, "") != l.o.Holder || cur.Annotations[annotationPID] != strconv.Itoa(l.o.PID) || cur.Annotations[annotationHost] != l.o.Host || cur.Annotations[annotationMachine] != l.o.Machine {
		return heldError(cur, l.o.Now())
	}
	t := metav1.NewMicroTime(l.o.Now())
	cur.Spec.RenewTime = &t
	_, err = leases.Update(rctx, cur, metav1.UpdateOptions{})
	return err
}

// Unlock stops renewing and frees the Lease, if it is still ours.
func (l *Lock) Unlock(ctx context.Context) error {
	l.cancel()
	<-l.done
	return retry.OnError(retry.DefaultBackoff, func(err error) bool {
		return ctx.Err() == nil && !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err)
	}, func() error { return l.release(ctx) })
}

func (l *Lock) release(ctx context.Context) error {
	leases := l.kube.CoordinationV1().Leases(l.o.Namespace)
	cur, err := leases.Get(ctx, l.o.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if ptr.Deref(cur.Spec.HolderIdentity, "") != l.o.Holder || cur.Annotations[annotationPID] != strconv.Itoa(l.o.PID) {
		return nil
	}
	cur.Spec.HolderIdentity = nil
	cur.Spec.RenewTime = nil
	_, err = leases.Update(ctx, cur, metav1.UpdateOptions{})
	return err
}
