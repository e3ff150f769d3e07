package tui

import (
	"context"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

// Watch keeps watch caches of nodes, VMs, VMIs, launcher pods and migrations, and sends
// the model a new snapshot at most every interval while anything changed, so a burst
// of events becomes one redraw.
func Watch(ctx context.Context, kube kubernetes.Interface, dyn dynamic.Interface, namespace string, keys selector.Keys, interval time.Duration, send func(any)) error {
	df := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 0, namespace, nil)
	vms := df.ForResource(kubevirt.VMs).Informer()
	vmis := df.ForResource(kubevirt.VMIs).Informer()
	migs := df.ForResource(kubevirt.Migrations).Informer()
	nf := informers.NewSharedInformerFactory(kube, 0)
	nodes := nf.Core().V1().Nodes().Informer()
	pf := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = kubevirt.LauncherSelector }))
	pods := pf.Core().V1().Pods().Informer()

	var dirty atomic.Bool
	dirty.Store(true)
	mark := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { dirty.Store(true) },
		UpdateFunc: func(any, any) { dirty.Store(true) },
		DeleteFunc: func(any) { dirty.Store(true) },
	}
	all := []cache.SharedIndexInformer{vms, vmis, migs, nodes, pods}
	for _, inf := range all {
		if _, err := inf.AddEventHandler(mark); err != nil {
			return err
		}
		go inf.Run(ctx.Done())
	}
	synced := make([]cache.InformerSynced, len(all))
	for i, inf := range all {
		synced[i] = inf.HasSynced
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return ctx.Err()
	}
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if dirty.Swap(false) {
				s, err := snapshot.Assemble(keys, snapshot.Objects{
					Nodes: typed[*corev1.Node](nodes), Pods: typed[*corev1.Pod](pods),
					VMs: typed[*unstructured.Unstructured](vms), VMIs: typed[*unstructured.Unstructured](vmis),
					Migrations: typed[*unstructured.Unstructured](migs),
				})
				if err != nil {
					send(ErrMsg{Err: err})
				} else {
					send(SnapshotMsg{Snapshot: s})
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return nil
}

func typed[T any](inf cache.SharedIndexInformer) []T {
	items := inf.GetStore().List()
	out := make([]T, 0, len(items))
	for _, o := range items {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}
