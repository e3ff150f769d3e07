package executor

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

var errCrashed = fmt.Errorf("process crashed")

type fakeVM struct {
	ns, name string
	uid      string
	tier     int
	home     string
	strategy kubevirtv1.VirtualMachineRunStrategy
	// startRequested: a restart's start request, pending until the instance is gone.
	startRequested bool
	migratable     bool
	inst           *Instance
	annotations    map[string]string
	restarts       int
	migrations     int
	crashLoops     int
	readyAt        time.Time
}

// fakeCluster is an in-memory KubeVirt: instances start after a delay, LiveUpdate
// copies the site, migrations and restarts move instances. It records the throttle's
// behaviour and can fail or "crash" on demand.
type fakeCluster struct {
	mu         sync.Mutex
	vms        map[string]*fakeVM
	migs       map[string]*MigrationState
	migVMI     map[string]string
	migTo      map[string]string
	changed    chan struct{}
	delay      time.Duration
	nodes      map[string][]string // site -> nodes
	uid        int
	starting   map[string]bool
	peak       int
	tierStarts map[int][]time.Time
	tierReady  map[int][]time.Time
	// failures: call name -> errors to return before succeeding
	failures map[string][]error
	// crashAt: the write call number at which the process dies; applyCrash says whether
	// that call took effect before the crash.
	// down marks sites whose nodes are NotReady; releases records released VMs.
	down map[string]bool
	// deleted marks Node objects deleted from the cluster (their site unknown to it).
	deleted  map[string]bool
	releases map[string]int
	starts   map[string]int
	// onRelease runs after each release, with mu held (a site coming back, say).
	onRelease func()
	// onWrite runs at the start of each write, with mu held, given the call's name.
	onWrite func(call string)
	writes  int
	// writeLatency makes each write take that long outside the lock, so that writes
	// overlap as they do against an API server; peakWrites is the most at once.
	writeLatency         time.Duration
	inWrites, peakWrites atomic.Int64
	crashAt              int
	applyCrash           bool
	crashed              bool
	// violate, when set, is told of every write that breaks a safety rule at the instant
	// it lands (the simulator's invariants); callers hold mu.
	violate func(rule string)
	// bootFails makes new instances of these VMs fail to boot.
	bootFails map[string]bool
	// migFails makes migrations of these VMs fail, with KubeVirt's reason.
	migFails map[string]string
	// migUnplaced makes migrations of these VMs fail before their target pod is ever
	// scheduled: KubeVirt deletes a target pod left unschedulable past its timeout.
	migUnplaced map[string]bool
	// migTargetDies makes migrations of these VMs hand the instance over to the target,
	// where its domain never runs: the migration Succeeded, the instance Ready from its
	// pod, then Failed.
	migTargetDies map[string]bool
	// onMigrate, called with mu held, refuses a migration as virt-api's webhook would.
	onMigrate func(ns, vmi string) error
}

// releasesUnproven says why ending inst would release an instance that may still run
// unseen: its node is deleted, or its site is down. Callers hold mu.
func (f *fakeCluster) releasesUnproven(inst *Instance) string {
	if inst == nil || inst.Final() {
		return ""
	}
	if f.deleted[inst.NodeName] {
		return "its node " + inst.NodeName + " is deleted"
	}
	for site, nodes := range f.nodes {
		for _, n := range nodes {
			if n == inst.NodeName && f.down[site] {
				return "its site " + site + " is down"
			}
		}
	}
	return ""
}

func newFake(delay time.Duration) *fakeCluster {
	return &fakeCluster{vms: map[string]*fakeVM{}, migs: map[string]*MigrationState{}, migVMI: map[string]string{}, migTo: map[string]string{}, changed: make(chan struct{}), delay: delay,
		nodes: map[string][]string{"Primary": {"p1", "p2"}, "DR": {"d1", "d2", "d3"}}, starting: map[string]bool{},
		tierStarts: map[int][]time.Time{}, tierReady: map[int][]time.Time{}, failures: map[string][]error{}, migFails: map[string]string{}, migUnplaced: map[string]bool{}, migTargetDies: map[string]bool{},
		down: map[string]bool{}, deleted: map[string]bool{}, releases: map[string]int{}, starts: map[string]int{}}
}

func (f *fakeCluster) add(ns, name string, tier int, home string, running, migratable bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	vm := &fakeVM{ns: ns, name: name, uid: "vm-" + ns + "-" + name, tier: tier, home: home, strategy: kubevirtv1.RunStrategyAlways, migratable: migratable, annotations: map[string]string{}}
	if running {
		f.uid++
		vm.inst = &Instance{UID: fmt.Sprint("uid-", f.uid), NodeName: f.nodes[home][0], Site: home, Phase: "Running", Ready: true, SelectorSite: home}
	} else {
		vm.strategy = kubevirtv1.RunStrategyHalted
	}
	f.vms[ns+"/"+name] = vm
}

func (f *fakeCluster) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// write gates every mutating call: injected errors, then the crash point.
func (f *fakeCluster) write(call string, apply func()) error {
	if f.writeLatency > 0 {
		n := f.inWrites.Add(1)
		for p := f.peakWrites.Load(); n > p && !f.peakWrites.CompareAndSwap(p, n); p = f.peakWrites.Load() {
		}
		time.Sleep(f.writeLatency)
		f.inWrites.Add(-1)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.onWrite != nil {
		f.onWrite(call)
	}
	if f.crashed {
		return errCrashed
	}
	if errs := f.failures[call]; len(errs) > 0 {
		f.failures[call] = errs[1:]
		return errs[0]
	}
	f.writes++
	if f.crashAt > 0 && f.writes == f.crashAt {
		f.crashed = true
		if f.applyCrash {
			apply()
			f.notifyLocked()
		}
		return errCrashed
	}
	apply()
	// Like the move's watches, which follow VMIs and migrations but not VMs, a journal
	// annotation is not a change anyone waits for.
	if call != "annotate" {
		f.notifyLocked()
	}
	return nil
}

func (f *fakeCluster) PatchSite(_ context.Context, st plan.Step, j map[string]string) error {
	if err := f.sameVM(st); err != nil {
		return err
	}
	return f.write("patch", func() {
		vm := f.vms[st.Key()]
		vm.home = st.To
		for k, v := range j {
			vm.annotations[k] = v
		}
		// LiveUpdate, a moment later.
		if vm.inst != nil {
			inst := vm.inst
			time.AfterFunc(f.delay/4, func() {
				f.mu.Lock()
				defer f.mu.Unlock()
				if vm.inst == inst {
					inst.SelectorSite = vm.home
				}
				f.notifyLocked()
			})
		}
	})
}

func (f *fakeCluster) Annotate(_ context.Context, st plan.Step, j map[string]string) error {
	if err := f.sameVM(st); err != nil {
		return err
	}
	return f.write("annotate", func() {
		for k, v := range j {
			f.vms[st.Key()].annotations[k] = v
		}
	})
}

// sameVM is the API server's UID precondition on a merge patch: a VM deleted and
// recreated under the same name is another VM.
func (f *fakeCluster) sameVM(st plan.Step) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	vm := f.vms[st.Key()]
	if vm == nil || st.UID != "" && vm.uid != st.UID {
		return apierrors.NewNotFound(schema.GroupResource{Group: "kubevirt.io", Resource: "virtualmachines"}, st.Name)
	}
	return nil
}

// startOn schedules a new instance of vm on site; callers hold mu.
func (f *fakeCluster) startOn(vm *fakeVM, site string) {
	f.uid++
	node := f.nodes[site][f.uid%len(f.nodes[site])]
	inst := &Instance{UID: fmt.Sprint("uid-", f.uid), NodeName: node, Site: site, Phase: "Scheduled", SelectorSite: site}
	vm.inst = inst
	// A boot failure is the target site's (a missing network, a device): the same VM
	// boots on the other site.
	fails := f.bootFails[vm.ns+"/"+vm.name] && site == "DR"
	f.begin(vm, func() bool {
		if vm.inst != inst {
			return false
		}
		if fails {
			inst.Phase = "Failed"
			f.recreateLater(vm, inst)
			return false
		}
		inst.Phase, inst.Ready = "Running", true
		return true
	})
}

// recreateLater is KubeVirt's reaction to a failed instance of a VM it restarts by
// itself (Always, RerunOnFailure): after a back-off, a new instance from the template,
// a few times (CrashLoopBackOff). Callers hold mu.
func (f *fakeCluster) recreateLater(vm *fakeVM, failed *Instance) {
	if vm.strategy != kubevirtv1.RunStrategyAlways && vm.strategy != kubevirtv1.RunStrategyRerunOnFailure || vm.crashLoops >= 5 {
		return
	}
	vm.crashLoops++
	time.AfterFunc(time.Duration(vm.crashLoops)*f.delay, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if vm.inst == failed {
			f.startOn(vm, vm.home)
			f.notifyLocked()
		}
	})
}

// begin records a VM starting on the target and, after the delay, lets done finish it
// (done reports whether the VM came up); callers hold mu, done runs with mu held.
func (f *fakeCluster) begin(vm *fakeVM, done func() bool) {
	key := vm.ns + "/" + vm.name
	f.starting[key] = true
	if n := len(f.starting); n > f.peak {
		f.peak = n
	}
	f.tierStarts[vm.tier] = append(f.tierStarts[vm.tier], time.Now())
	time.AfterFunc(f.delay, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if done() {
			vm.readyAt = time.Now()
			f.tierReady[vm.tier] = append(f.tierReady[vm.tier], time.Now())
		}
		delete(f.starting, key)
		f.notifyLocked()
	})
}

func (f *fakeCluster) Restart(_ context.Context, ns, name string) error {
	return f.write("restart", func() {
		vm := f.vms[ns+"/"+name]
		if why := f.releasesUnproven(vm.inst); why != "" && f.violate != nil {
			f.violate(fmt.Sprintf("restart of %s/%s without the failover proof: %s", ns, name, why))
		}
		vm.restarts++
		f.startOn(vm, vm.home)
	})
}

func (f *fakeCluster) Start(_ context.Context, ns, name string) error {
	return f.write("start", func() {
		vm := f.vms[ns+"/"+name]
		if vm.inst != nil && !vm.inst.Final() {
			return
		}
		f.starts[ns+"/"+name]++
		f.startOn(vm, vm.home)
	})
}

func (f *fakeCluster) Migrate(_ context.Context, ns, vmi, name, to string) error {
	if f.onMigrate != nil {
		f.mu.Lock()
		err := f.onMigrate(ns, vmi)
		f.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return f.write("migrate", func() {
		if _, ok := f.migs[ns+"/"+name]; ok {
			return
		}
		vm := f.vms[ns+"/"+vmi]
		if why := f.releasesUnproven(vm.inst); why != "" && f.violate != nil {
			f.violate(fmt.Sprintf("migration of %s/%s off an instance that may still run: %s", ns, vmi, why))
		}
		m := &MigrationState{Name: name, Exists: true, Phase: "Running"}
		f.migs[ns+"/"+name] = m
		f.migTo[ns+"/"+name] = to
		f.migVMI[ns+"/"+name] = ns + "/" + vmi
		target := vm.inst.SelectorSite
		reason := f.migFails[ns+"/"+vmi]
		unplaced := f.migUnplaced[ns+"/"+vmi]
		targetDies := f.migTargetDies[ns+"/"+vmi]
		f.begin(vm, func() bool {
			if unplaced {
				// The target pod never left Pending: KubeVirt deleted it and failed the
				// migration, with no reason on the VMIM.
				m.Phase, m.Done = "Failed", true
				return false
			}
			m.TargetPlaced = true
			if reason != "" {
				// The source reports the failure; the guest keeps running there.
				m.Phase, m.Done, m.Reason = "Failed", true, reason
				return false
			}
			if targetDies {
				// v1.8.0's order: the target takes the instance over and finalizes the
				// migration (Succeeded), the instance shows Ready from its pod, and only
				// then is the domain found shut off and the instance Failed.
				inst := vm.inst
				inst.Site, inst.NodeName, inst.DomainNeverRan = target, f.nodes[target][0], true
				m.Phase, m.Done, m.Success = "Succeeded", true, true
				time.AfterFunc(f.delay, func() {
					f.mu.Lock()
					defer f.mu.Unlock()
					if vm.inst == inst && !inst.Final() {
						inst.Phase = "Failed"
						f.recreateLater(vm, inst)
						f.notifyLocked()
					}
				})
				return false
			}
			vm.migrations++
			m.Phase, m.Done, m.Success = "Succeeded", true, true
			vm.inst.Site, vm.inst.NodeName = target, f.nodes[target][0]
			return true
		})
	})
}

// shutDown makes the VM's instance Terminating. Its shutdown needs its node: it ends
// only while its site is up, after a while; then an Always VM comes back from its
// template (a restart), any other stays stopped. Callers hold no lock.
func (f *fakeCluster) shutDown(vm *fakeVM) {
	f.mu.Lock()
	inst := vm.inst
	inst.Terminating, inst.Ready = true, false
	f.mu.Unlock()
	var check func()
	check = func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if vm.inst != inst {
			return
		}
		if f.down[inst.Site] || f.deleted[inst.NodeName] {
			time.AfterFunc(f.delay, check)
			return
		}
		f.shutDownLocked(vm)
		f.notifyLocked()
	}
	time.AfterFunc(3*f.delay, check)
}

// shutDownLocked ends the VM's shutting-down instance: an Always VM, or one with a start
// request pending (a restart), comes back from its template; any other stays stopped.
// Callers hold mu.
func (f *fakeCluster) shutDownLocked(vm *fakeVM) {
	vm.inst = nil
	if vm.strategy == kubevirtv1.RunStrategyAlways || vm.startRequested {
		vm.startRequested = false
		f.startOn(vm, vm.home)
	}
}

// powerBackLocked is a site coming back after a power loss: every instance that was on
// it died with its launcher. virt-handler marks them Failed when it starts; one being
// deleted is gone. KubeVirt then does what each run strategy says. Callers hold mu.
func (f *fakeCluster) powerBackLocked(site string) {
	for _, vm := range f.vms {
		inst := vm.inst
		if inst == nil || inst.Final() || inst.Site != site {
			continue
		}
		if inst.Terminating {
			f.shutDownLocked(vm)
			continue
		}
		inst.Phase, inst.Ready = "Failed", false
		f.recreateLater(vm, inst)
	}
}

// drain starts a migration that is not the move's (a drain's evacuation), within the
// VM's site; it ends after the fake's delay.
func (f *fakeCluster) drain(ns, vmi string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	name := "kubevirt-evacuation-" + vmi
	m := &MigrationState{Name: name, Exists: true, Phase: "Running"}
	f.migs[ns+"/"+name], f.migVMI[ns+"/"+name] = m, ns+"/"+vmi
	vm := f.vms[ns+"/"+vmi]
	time.AfterFunc(2*f.delay, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		m.Phase, m.Done, m.Success = "Succeeded", true, true
		vm.inst.NodeName = f.nodes[vm.inst.Site][len(f.nodes[vm.inst.Site])-1]
		f.notifyLocked()
	})
}

func (f *fakeCluster) ForceDeleteLaunchers(_ context.Context, ns, uid, site string) error {
	f.mu.Lock()
	var node string
	for _, vm := range f.vms {
		if vm.inst != nil && vm.inst.UID == uid {
			node = vm.inst.NodeName
		}
	}
	err := f.checkReleaseLocked(site, node)
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return f.write("release", func() {
		for k, vm := range f.vms {
			if vm.inst != nil && vm.inst.UID == uid {
				f.releaseLocked(k, vm)
			}
		}
		if f.onRelease != nil {
			f.onRelease()
		}
	})
}

// releaseLocked ends a released instance: KubeVirt recreates it from the template, or,
// for Manual and Once, leaves it Failed. Callers hold mu.
func (f *fakeCluster) releaseLocked(k string, vm *fakeVM) {
	f.releases[k]++
	switch {
	case vm.inst.Terminating && vm.strategy != kubevirtv1.RunStrategyAlways && !vm.startRequested:
		// Its deletion completes once the launcher is gone; nothing recreates it.
		vm.inst = nil
		return
	case vm.inst.Terminating && vm.startRequested:
		// A restart in progress: KubeVirt starts it from the template once it is gone.
		vm.startRequested = false
		vm.restarts++
		f.startOn(vm, vm.home)
		return
	case vm.strategy == kubevirtv1.RunStrategyManual || vm.strategy == kubevirtv1.RunStrategyOnce || vm.strategy == kubevirtv1.RunStrategyHalted:
		// KubeVirt does not start these again by itself.
		vm.inst.Phase, vm.inst.Ready = "Failed", false
		return
	}
	vm.restarts++
	f.startOn(vm, vm.home)
}

// FenceNodes taints the nodes out-of-service, which releases every instance on them at
// once, as KubeVirt does: each is recreated from its template, or stays down (Manual, Once).
func (f *fakeCluster) FenceNodes(_ context.Context, site string, nodes []string) error {
	f.mu.Lock()
	for _, n := range nodes {
		if err := f.checkReleaseLocked(site, n); err != nil {
			f.mu.Unlock()
			return err
		}
	}
	f.mu.Unlock()
	return f.write("fence", func() {
		on := map[string]bool{}
		for _, n := range nodes {
			on[n] = true
		}
		for _, k := range slices.Sorted(maps.Keys(f.vms)) {
			if vm := f.vms[k]; vm.inst != nil && on[vm.inst.NodeName] && !vm.inst.Final() {
				f.releaseLocked(k, vm)
			}
		}
	})
}

func (f *fakeCluster) CheckRelease(_ context.Context, site, node string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.checkReleaseLocked(site, node)
}

func (f *fakeCluster) checkReleaseLocked(site, node string) error {
	if site == "" {
		return fmt.Errorf("%w: node %s has no site", ErrNotReleasable, node)
	}
	if !f.down[site] {
		return fmt.Errorf("%w: node %s of site %s is Ready again", ErrSiteAlive, f.nodes[site][0], site)
	}
	if node == "" {
		return nil
	}
	for _, n := range f.nodes[site] {
		if n == node { // deleted since, but known in the site: as kubecluster's nodeSite
			return nil
		}
	}
	return fmt.Errorf("%w: node %s is not in site %s", ErrNotReleasable, node, site)
}

func (f *fakeCluster) Instance(ns, name string) *Instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	vm := f.vms[ns+"/"+name]
	if vm == nil || vm.inst == nil {
		return nil
	}
	c := *vm.inst
	return &c
}

func (f *fakeCluster) Migration(ns, name string) MigrationState {
	f.mu.Lock()
	defer f.mu.Unlock()
	if m := f.migs[ns+"/"+name]; m != nil {
		return *m
	}
	return MigrationState{}
}

func (f *fakeCluster) ActiveMigration(ns, vmi, to string) (MigrationState, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, m := range f.migs {
		if f.migVMI[k] == ns+"/"+vmi && !m.Done && f.migTo[k] == to {
			return *m, true
		}
	}
	return MigrationState{}, false
}

func (f *fakeCluster) UnfinishedMigration(ns, vmi string) (MigrationState, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.unfinishedLocked(ns, vmi)
}

func (f *fakeCluster) unfinishedLocked(ns, vmi string) (MigrationState, bool) {
	for _, k := range slices.Sorted(maps.Keys(f.migs)) {
		if m := f.migs[k]; f.migVMI[k] == ns+"/"+vmi && !m.Done {
			return *m, true
		}
	}
	return MigrationState{}, false
}

func (f *fakeCluster) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

func (f *fakeCluster) Record(string, string, string, string) {}

// snapshot renders the fake's state for the planner, as a fresh LIST would.
func (f *fakeCluster) snapshot() *snapshot.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &snapshot.Snapshot{Keys: selector.DefaultKeys(), ActiveMigrations: map[string]string{}}
	sites := make([]string, 0, len(f.nodes))
	for site := range f.nodes {
		sites = append(sites, site)
	}
	sort.Strings(sites)
	for _, site := range sites {
		for _, n := range f.nodes[site] {
			if f.deleted[n] {
				continue
			}
			state := snapshot.NodeReady
			if f.down[site] {
				state = snapshot.NodeNotReady
			}
			s.Nodes = append(s.Nodes, snapshot.Node{Name: n, Site: site, State: state, CPUMilli: 64000, MemoryBytes: 256 << 30,
				Labels: map[string]string{selector.DefaultSiteKey: site}})
		}
	}
	for k, m := range f.migs {
		if !m.Done {
			s.ActiveMigrations[f.migVMI[k]] = m.Name
		}
	}
	for _, k := range slices.Sorted(maps.Keys(f.vms)) {
		vm := f.vms[k]
		v := snapshot.VM{Namespace: vm.ns, Name: vm.name, UID: types.UID(vm.uid), Tier: vm.tier, HomeSite: vm.home, RunStrategy: vm.strategy, Annotations: vm.annotations, StartRequested: vm.startRequested,
			NodeSelector: map[string]string{selector.DefaultSiteKey: vm.home}, HasSelector: true, CPUMilli: 100, MemoryBytes: 1 << 30}
		if vm.inst != nil {
			v.Instance = &snapshot.VMI{UID: types.UID(vm.inst.UID), Phase: vm.inst.Phase, NodeName: vm.inst.NodeName, Ready: vm.inst.Ready,
				LiveMigratable: vm.migratable, Terminating: vm.inst.Terminating, Paused: vm.inst.Paused, PausedByUser: vm.inst.Paused, NodeSelector: map[string]string{selector.DefaultSiteKey: vm.inst.SelectorSite}}
			if !vm.migratable {
				v.Instance.NotMigratable = "DisksNotLiveMigratable"
			}
		}
		s.VMs = append(s.VMs, v)
	}
	s.Derive()
	return s
}

func tooMany() error {
	return apierrors.NewTooManyRequests("slow down", 0)
}

func conflict() error {
	return apierrors.NewConflict(schema.GroupResource{Group: "kubevirt.io", Resource: "virtualmachines"}, "x", fmt.Errorf("changed"))
}

func serverError() error {
	return apierrors.NewInternalError(fmt.Errorf("etcd hiccup"))
}
