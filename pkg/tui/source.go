package tui

import (
	"context"
	"fmt"
	"reflect"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

// The watch caches hold each object reduced to what the view shows, once per event:
// a VM is decoded from JSON when it changes, not on every redraw, and the caches keep
// a few hundred bytes per object instead of the whole manifest. Each entry embeds the
// object's metadata so that the informer can key it.
type (
	nodeEntry struct {
		metav1.ObjectMeta
		node snapshot.Node
	}
	vmEntry struct {
		metav1.ObjectMeta
		vm snapshot.VM
		// err: the object could not be decoded; the view says so instead of hiding it.
		err error
	}
	vmiEntry struct {
		metav1.ObjectMeta
		inst *snapshot.VMI
		err  error
	}
	podEntry struct {
		metav1.ObjectMeta
		vmi types.UID
	}
	migrationEntry struct {
		metav1.ObjectMeta
		vmi    string
		active bool
		err    error
	}
)

func meta(o metav1.Object) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: o.GetName(), Namespace: o.GetNamespace(), UID: o.GetUID(), ResourceVersion: o.GetResourceVersion()}
}

// reducer turns the objects of one informer into entries. It passes on anything it
// does not know (the informer's tombstones). It never fails: an informer whose
// transform fails drops the event, so a decoding error travels in the entry instead.
type reducer func(obj any) (any, error)

func reduceNode(keys selector.Keys) reducer {
	return func(obj any) (any, error) {
		if n, ok := obj.(*corev1.Node); ok {
			return &nodeEntry{ObjectMeta: meta(n), node: snapshot.NodeFrom(n, keys.Site)}, nil
		}
		return obj, nil
	}
}

func reduceVM(keys selector.Keys) reducer {
	return func(obj any) (any, error) {
		if vm, ok := obj.(*kubevirtv1.VirtualMachine); ok {
			return &vmEntry{ObjectMeta: meta(vm), vm: snapshot.VMFrom(vm, nil, keys)}, nil
		}
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return obj, nil
		}
		vm, err := kubevirt.ToVM(u)
		if err != nil {
			return &vmEntry{ObjectMeta: meta(u), err: fmt.Errorf("VirtualMachine %s/%s: %w", u.GetNamespace(), u.GetName(), err)}, nil
		}
		return &vmEntry{ObjectMeta: meta(u), vm: snapshot.VMFrom(vm, nil, keys)}, nil
	}
}

func reduceVMI(obj any) (any, error) {
	if vmi, ok := obj.(*kubevirtv1.VirtualMachineInstance); ok {
		return &vmiEntry{ObjectMeta: meta(vmi), inst: snapshot.InstanceFrom(vmi)}, nil
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	vmi, err := kubevirt.ToVMI(u)
	if err != nil {
		return &vmiEntry{ObjectMeta: meta(u), err: fmt.Errorf("VirtualMachineInstance %s/%s: %w", u.GetNamespace(), u.GetName(), err)}, nil
	}
	return &vmiEntry{ObjectMeta: meta(u), inst: snapshot.InstanceFrom(vmi)}, nil
}

func reducePod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	uid, _ := snapshot.LauncherOf(p.Labels)
	return &podEntry{ObjectMeta: meta(p), vmi: uid}, nil
}

func reduceMigration(obj any) (any, error) {
	if m, ok := obj.(*kubevirtv1.VirtualMachineInstanceMigration); ok {
		vmi, active := snapshot.ActiveMigration(m)
		return &migrationEntry{ObjectMeta: meta(m), vmi: vmi, active: active}, nil
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	m, err := kubevirt.ToMigration(u)
	if err != nil {
		return &migrationEntry{ObjectMeta: meta(u), err: fmt.Errorf("VirtualMachineInstanceMigration %s/%s: %w", u.GetNamespace(), u.GetName(), err)}, nil
	}
	vmi, active := snapshot.ActiveMigration(m)
	return &migrationEntry{ObjectMeta: meta(u), vmi: vmi, active: active}, nil
}

// visible reports whether an update changes what the view shows. A node's heartbeat,
// a pod's probe time or a VM's resourceVersion alone do not: at 200 nodes the
// heartbeats alone would otherwise rebuild the view several times a second.
func visible(old, cur any) bool {
	switch o := old.(type) {
	case *nodeEntry:
		c, ok := cur.(*nodeEntry)
		return !ok || !reflect.DeepEqual(o.node, c.node)
	case *vmEntry:
		c, ok := cur.(*vmEntry)
		if !ok || o.err != nil || c.err != nil {
			return true
		}
		a, b := o.vm, c.vm
		a.ResourceVersion, b.ResourceVersion = "", ""
		return !reflect.DeepEqual(a, b)
	case *vmiEntry:
		c, ok := cur.(*vmiEntry)
		return !ok || o.err != nil || c.err != nil || !reflect.DeepEqual(o.inst, c.inst)
	case *podEntry:
		c, ok := cur.(*podEntry)
		return !ok || o.vmi != c.vmi
	case *migrationEntry:
		c, ok := cur.(*migrationEntry)
		return !ok || o.err != nil || c.err != nil || o.vmi != c.vmi || o.active != c.active
	}
	return true
}

// Source is the view's watch caches: every event is reduced once, updates that change
// nothing visible are dropped, and a snapshot is composed from the reduced entries at
// most once per interval while something changed.
type Source struct {
	keys                         selector.Keys
	nodes, vms, vmis, pods, migs cache.SharedIndexInformer
	informers                    []cache.SharedIndexInformer
	dirty                        atomic.Bool
}

// NewSource sets up the watches; nothing is read until Run. With a REST config the
// KubeVirt watches decode straight into their Go types (kubevirt.RESTClient), which
// fills the first screen sooner; without one (fake clients) they go through dyn.
func NewSource(kube kubernetes.Interface, dyn dynamic.Interface, cfg *rest.Config, namespace string, keys selector.Keys) (*Source, error) {
	s := &Source{keys: keys}
	if cfg != nil {
		rc, err := kubevirt.RESTClient(cfg)
		if err != nil {
			return nil, err
		}
		s.vms = kubevirt.Informer(rc, kubevirt.VMs.Resource, namespace, &kubevirtv1.VirtualMachine{}, func() runtime.Object { return &kubevirtv1.VirtualMachineList{} }, nil)
		s.vmis = kubevirt.Informer(rc, kubevirt.VMIs.Resource, namespace, &kubevirtv1.VirtualMachineInstance{}, func() runtime.Object { return &kubevirtv1.VirtualMachineInstanceList{} }, nil)
		s.migs = kubevirt.Informer(rc, kubevirt.Migrations.Resource, namespace, &kubevirtv1.VirtualMachineInstanceMigration{}, func() runtime.Object { return &kubevirtv1.VirtualMachineInstanceMigrationList{} }, nil)
	} else {
		df := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 0, namespace, nil)
		s.vms = df.ForResource(kubevirt.VMs).Informer()
		s.vmis = df.ForResource(kubevirt.VMIs).Informer()
		s.migs = df.ForResource(kubevirt.Migrations).Informer()
	}
	s.nodes = informers.NewSharedInformerFactory(kube, 0).Core().V1().Nodes().Informer()
	s.pods = informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = kubevirt.LauncherSelector })).Core().V1().Pods().Informer()
	s.dirty.Store(true)
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { s.dirty.Store(true) },
		UpdateFunc: func(old, cur any) {
			if visible(old, cur) {
				s.dirty.Store(true)
			}
		},
		DeleteFunc: func(any) { s.dirty.Store(true) },
	}
	reducers := []struct {
		inf cache.SharedIndexInformer
		fn  reducer
	}{
		{s.nodes, reduceNode(keys)}, {s.vms, reduceVM(keys)}, {s.vmis, reduceVMI}, {s.pods, reducePod}, {s.migs, reduceMigration},
	}
	for _, r := range reducers {
		if err := r.inf.SetTransform(cache.TransformFunc(r.fn)); err != nil {
			return nil, err
		}
		if _, err := r.inf.AddEventHandler(handler); err != nil {
			return nil, err
		}
		s.informers = append(s.informers, r.inf)
	}
	return s, nil
}

// Run starts the watches, waits for their first LISTs, then sends a snapshot at most
// every interval while anything visible changed, until ctx ends. Errors go to send as
// ErrMsg.
func (s *Source) Run(ctx context.Context, interval time.Duration, send func(any)) {
	synced := make([]cache.InformerSynced, len(s.informers))
	for i, inf := range s.informers {
		go inf.Run(ctx.Done())
		synced[i] = inf.HasSynced
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if s.dirty.Swap(false) {
			if snap, err := s.Snapshot(); err != nil {
				send(ErrMsg{Err: err})
			} else {
				send(SnapshotMsg{Snapshot: snap})
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Snapshot composes the cluster from the reduced entries: no decoding, one copy of
// each VM so that the view never shares what the watches change.
func (s *Source) Snapshot() (*snapshot.Snapshot, error) {
	var nodes []snapshot.Node
	for _, o := range s.nodes.GetStore().List() {
		if e, ok := o.(*nodeEntry); ok {
			nodes = append(nodes, e.node)
		}
	}
	instances := map[string]*snapshot.VMI{}
	for _, o := range s.vmis.GetStore().List() {
		if e, ok := o.(*vmiEntry); ok {
			if e.err != nil {
				return nil, e.err
			}
			instances[e.Namespace+"/"+e.Name] = e.inst
		}
	}
	list := s.vms.GetStore().List()
	vms := make([]snapshot.VM, 0, len(list))
	for _, o := range list {
		if e, ok := o.(*vmEntry); ok {
			if e.err != nil {
				return nil, e.err
			}
			vms = append(vms, e.vm)
		}
	}
	launchers := map[types.UID][]string{}
	for _, o := range s.pods.GetStore().List() {
		if e, ok := o.(*podEntry); ok && e.vmi != "" {
			launchers[e.vmi] = append(launchers[e.vmi], e.Name)
		}
	}
	active := map[string]string{}
	for _, o := range s.migs.GetStore().List() {
		if e, ok := o.(*migrationEntry); ok {
			if e.err != nil {
				return nil, e.err
			}
			if e.active {
				active[e.vmi] = e.Name
			}
		}
	}
	return snapshot.Compose(s.keys, nodes, vms, instances, launchers, active), nil
}
