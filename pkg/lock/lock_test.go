package lock

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func opts(holder string, pid int) Options {
	return Options{Holder: holder, MoveID: "sf-" + holder, Host: "host-a", PID: pid,
		Alive: func(p int) bool { return p != 666 }, RenewEvery: 10 * time.Millisecond, RenewDeadline: 60 * time.Millisecond}
}

func TestSecondMoveIsRefusedWhileTheFirstRenews(t *testing.T) {
	kube := fake.NewClientset()
	l, err := Acquire(context.Background(), kube, opts("alice", 100))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Unlock(context.Background()) }()
	_, err = Acquire(context.Background(), kube, opts("bob", 101))
	var held *HeldError
	if !errors.As(err, &held) || held.Stale || !strings.Contains(err.Error(), "is running") || !strings.Contains(err.Error(), "sf-alice") {
		t.Fatalf("second acquire: %v", err)
	}
}

// A crashed run on this host leaves the Lease behind; rerunning the same command must
// take it at once, as the README promises, not after a minute and a flag.
func TestRerunOnTheSameHostTakesTheLockOfADeadProcess(t *testing.T) {
	kube := fake.NewClientset()
	o := opts("alice", 666)
	o.Machine = "boot-1/pidns-1"
	crashed, err := Acquire(context.Background(), kube, o)
	if err != nil {
		t.Fatal(err)
	}
	crashed.cancel() // stops renewing, as SIGKILL would
	<-crashed.done
	o = opts("alice-rerun", 200)
	o.Machine = "boot-1/pidns-1"
	l, err := Acquire(context.Background(), kube, o)
	if err != nil {
		t.Fatalf("rerun after a crash: %v", err)
	}
	_ = l.Unlock(context.Background())
}

func TestStaleHolderElsewhereIsNeverCalledRunning(t *testing.T) {
	kube := fake.NewClientset()
	o := opts("alice", 100)
	o.Host = "host-b"
	old := time.Now().Add(-time.Hour)
	o.Now = func() time.Time { return old }
	first, err := Acquire(context.Background(), kube, o)
	if err != nil {
		t.Fatal(err)
	}
	first.cancel()
	<-first.done
	_, err = Acquire(context.Background(), kube, opts("bob", 101))
	var held *HeldError
	if !errors.As(err, &held) || !held.Stale || strings.Contains(err.Error(), "is running") || !strings.Contains(err.Error(), "--take-over-stale-lock") {
		t.Fatalf("stale holder on another host: %v", err)
	}
	ob := opts("bob", 101)
	ob.TakeOverStale = true
	l, err := Acquire(context.Background(), kube, ob)
	if err != nil {
		t.Fatalf("take over: %v", err)
	}
	_ = l.Unlock(context.Background())
}

func TestTakeOverStopsTheFirstHolder(t *testing.T) {
	kube := fake.NewClientset()
	first, err := Acquire(context.Background(), kube, opts("alice", 100))
	if err != nil {
		t.Fatal(err)
	}
	// Someone takes the Lease over (as --take-over-stale-lock would after a pause).
	lease, _ := kube.CoordinationV1().Leases(DefaultNamespace).Get(context.Background(), DefaultName, metav1.GetOptions{})
	other := "bob"
	lease.Spec.HolderIdentity = &other
	lease.Annotations[annotationMoveID] = "sf-bob"
	if _, err := kube.CoordinationV1().Leases(DefaultNamespace).Update(context.Background(), lease, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-first.Lost():
	case <-time.After(2 * time.Second):
		t.Fatal("the first holder did not notice the takeover")
	}
	if err := first.Err(); err == nil || !strings.Contains(err.Error(), "sf-bob") {
		t.Fatalf("Err: %v", err)
	}
	_ = first.Unlock(context.Background())
	if l, _ := kube.CoordinationV1().Leases(DefaultNamespace).Get(context.Background(), DefaultName, metav1.GetOptions{}); *l.Spec.HolderIdentity != "bob" {
		t.Fatalf("release freed a lock that is not ours: holder %v", l.Spec.HolderIdentity)
	}
}

func TestRenewalFailuresLoseTheLockBeforeItExpires(t *testing.T) {
	kube := fake.NewClientset()
	l, err := Acquire(context.Background(), kube, opts("alice", 100))
	if err != nil {
		t.Fatal(err)
	}
	kube.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewServiceUnavailable("etcd is down")
	})
	select {
	case <-l.Lost():
	case <-time.After(2 * time.Second):
		t.Fatal("renewal failures did not lose the lock")
	}
	if !strings.Contains(l.Err().Error(), "could not renew") {
		t.Fatalf("Err: %v", l.Err())
	}
	if RenewDeadline >= Duration {
		t.Fatalf("RenewDeadline %s must end before the Lease expires (%s)", RenewDeadline, Duration)
	}
}

// H1: a process on another machine, container or PID namespace that shares the host
// name (cloned jump hosts, hostNetwork pods, laptops called localhost.localdomain) sees
// the live holder's pid as gone. It must not take a Lease that is still renewed.
func TestH1SameHostNameElsewhereNeverTakesALiveLease(t *testing.T) {
	kube := fake.NewClientset()
	o := opts("alice", 666) // 666 "does not exist" from where bob looks
	o.Machine = "boot-1/pidns-1"
	first, err := Acquire(context.Background(), kube, o)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = first.Unlock(context.Background()) }()
	ob := opts("bob", 200)
	ob.Machine = "boot-2/pidns-9" // same host name, another machine or container
	_, err = Acquire(context.Background(), kube, ob)
	var held *HeldError
	if !errors.As(err, &held) || held.Stale {
		t.Fatalf("a same-named host took a live, renewing Lease: %v", err)
	}
	select {
	case <-first.Lost():
		t.Fatalf("the first holder lost its lock: %v", first.Err())
	default:
	}
}

// H1, the rerun after a crash on the very same machine and PID namespace still takes
// the Lease at once: there kill(pid, 0) means something.
func TestH1RerunOnTheSameMachineTakesTheLockOfADeadProcess(t *testing.T) {
	kube := fake.NewClientset()
	o := opts("alice", 666)
	o.Machine = "boot-1/pidns-1"
	crashed, err := Acquire(context.Background(), kube, o)
	if err != nil {
		t.Fatal(err)
	}
	crashed.cancel()
	<-crashed.done
	ob := opts("alice-rerun", 200)
	ob.Machine = "boot-1/pidns-1"
	l, err := Acquire(context.Background(), kube, ob)
	if err != nil {
		t.Fatalf("rerun on the same machine after a crash: %v", err)
	}
	_ = l.Unlock(context.Background())
}

// N8: a Lease deleted under a running move is lost at the next renewal, not retried as a
// transient error for 12 s while a second move creates a new one and starts writing.
func TestN8DeletedLeaseIsLostAtOnce(t *testing.T) {
	kube := fake.NewClientset()
	o := opts("alice", 100)
	o.RenewDeadline = time.Hour
	l, err := Acquire(context.Background(), kube, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := kube.CoordinationV1().Leases(DefaultNamespace).Delete(context.Background(), DefaultName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Lost():
	case <-time.After(2 * time.Second):
		t.Fatal("a deleted Lease did not lose the lock")
	}
	if !strings.Contains(l.Err().Error(), "deleted") {
		t.Fatalf("Err: %v", l.Err())
	}
}

// N7: staleness compared two hosts' clocks. A live holder whose clock runs an hour
// behind looks stale by its renewTime; it still renews, which a takeover must see.
func TestN7LiveHolderWithASkewedClockIsNotTakenOver(t *testing.T) {
	kube := fake.NewClientset()
	o := opts("alice", 100)
	o.Host = "host-b"
	o.Now = func() time.Time { return time.Now().Add(-time.Hour) } // its clock is behind
	first, err := Acquire(context.Background(), kube, o)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = first.Unlock(context.Background()) }()
	ob := opts("bob", 101)
	ob.TakeOverStale = true
	ob.Observe = 100 * time.Millisecond
	_, err = Acquire(context.Background(), kube, ob)
	var held *HeldError
	if !errors.As(err, &held) || held.Stale {
		t.Fatalf("took over a Lease that is renewed, by a clock that is behind: %v", err)
	}
	select {
	case <-first.Lost():
		t.Fatalf("the live holder lost its lock: %v", first.Err())
	default:
	}
}

// N11: two operators with different --lock-namespace values each took "the" lock and
// moved at once. The second sees the first's live Lease in the other namespace.
func TestN11AMoveInAnotherLockNamespaceRefusesTheSecond(t *testing.T) {
	kube := fake.NewClientset()
	first, err := Acquire(context.Background(), kube, opts("alice", 100))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = first.Unlock(context.Background()) }()
	o := opts("bob", 101)
	o.Namespace = "ops"
	_, err = Acquire(context.Background(), kube, o)
	var held *HeldError
	if !errors.As(err, &held) || !strings.Contains(err.Error(), "--lock-namespace "+DefaultNamespace) {
		t.Fatalf("a move in another lock namespace: %v", err)
	}
	// It left nothing held behind in its own namespace.
	if l, err := kube.CoordinationV1().Leases("ops").Get(context.Background(), DefaultName, metav1.GetOptions{}); err == nil && l.Spec.HolderIdentity != nil {
		t.Fatalf("the refused move still holds its own Lease: %v", *l.Spec.HolderIdentity)
	}
}

// Review finding: writes stop by themselves when the renewal loop has not renewed for
// RenewDeadline by the wall clock (a paused process, a suspended machine), not only when
// the loop notices and cancels.
func TestValidRefusesWritesOnceRenewalsAreOverdue(t *testing.T) {
	kube := fake.NewClientset()
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	o := opts("alice", 100)
	o.Now, o.RenewEvery, o.RenewDeadline = clock, time.Hour, 12*time.Second // the loop never ticks
	l, err := Acquire(context.Background(), kube, o)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Unlock(context.Background()) }()
	if err := l.Valid(); err != nil {
		t.Fatalf("just taken: %v", err)
	}
	mu.Lock()
	now = now.Add(13 * time.Second) // the process was paused
	mu.Unlock()
	if err := l.Valid(); err == nil {
		t.Fatal("13 s without a renewal and the lock still allows writes")
	}
}

// Review finding: a takeover watches a stale-looking Lease for longer than its holder
// may go on writing without a renewal.
func TestObservationOutlastsTheHoldersWriteWindow(t *testing.T) {
	o := Options{}
	o.defaults()
	if o.Observe <= o.RenewDeadline+o.RenewEvery {
		t.Fatalf("observe %s; the holder writes up to %s after its last renewal, plus a renewal period", o.Observe, o.RenewDeadline)
	}
}
