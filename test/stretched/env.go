// Package stretched assembles the local stretched cluster, KubeVirt's own control plane
// on it and a set of VMs into one environment for the end-to-end tests, the benchmarks
// and the demo.
package stretched

import (
	"context"
	"io"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/test/cluster"
	"github.com/sitefail/kubectl-sitefail/test/kubevirtstack"
)

// Options configure an environment.
type Options struct {
	Cluster  cluster.Config
	KubeVirt kubevirtstack.Config
	Log      io.Writer
}

// Env is a running environment.
type Env struct {
	*cluster.Cluster
	Dynamic  dynamic.Interface
	KubeVirt *kubevirtstack.Stack
	cancel   context.CancelFunc
	// log takes what the played controllers cannot do.
	log    io.Writer
	binDir string

	mu sync.Mutex
	// instances records every VMI UID seen per VM, to count starts from KubeVirt's objects.
	instances map[string]map[string]bool
	// darkBMCs are the nodes whose BMC does not answer a fence agent.
	darkBMCs map[string]bool
}

// Start brings up the cluster and KubeVirt. Stop tears both down.
func Start(ctx context.Context, o Options) (_ *Env, err error) {
	if o.Cluster.BinDir == "" {
		if o.Cluster.BinDir, err = cluster.BinDirFromEnv(); err != nil {
			return nil, err
		}
	}
	if o.Log != nil {
		o.Cluster.Log = o.Log
		o.KubeVirt.Log = o.Log
	}
	c, err := cluster.Start(ctx, o.Cluster)
	if err != nil {
		return nil, err
	}
	e := &Env{Cluster: c, binDir: o.Cluster.BinDir, instances: map[string]map[string]bool{}, darkBMCs: map[string]bool{}, log: io.Discard}
	if o.Log != nil {
		e.log = o.Log
	}
	defer func() {
		if err != nil {
			e.Stop()
		}
	}()
	if e.Dynamic, err = dynamic.NewForConfig(c.Config); err != nil {
		return nil, err
	}
	if o.KubeVirt.BinDir == "" {
		o.KubeVirt.BinDir = o.Cluster.BinDir
	}
	if len(o.KubeVirt.Sites) == 0 {
		o.KubeVirt.Sites = o.Cluster.Sites
		if len(o.KubeVirt.Sites) == 0 {
			o.KubeVirt.Sites = []string{"Primary", "DR"}
		}
	}
	if e.KubeVirt, err = kubevirtstack.Start(ctx, c, o.KubeVirt); err != nil {
		return nil, err
	}
	bg, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.watchInstances(bg)
	go e.followKwoks(bg, o.KubeVirt.Sites)
	go e.playStorageDriver(bg)
	go e.playCDI(bg)
	go e.playFenceAgents(bg)
	return e, nil
}

// StopSite makes a site go dark: its kwok and its virt-handler stop.
func (e *Env) StopSite(site string) error {
	e.KubeVirt.StopHandler(site)
	return e.Cluster.StopSite(site)
}

// StartSite brings a site back: its kwok and its virt-handler.
func (e *Env) StartSite(site string) error {
	if err := e.Cluster.StartSite(site); err != nil {
		return err
	}
	return e.KubeVirt.StartHandler(site)
}

// StartSiteAfterPowerLoss brings a site back as after a power loss, not a healed
// partition: its handler finds every domain gone and fails their VMIs, whose launcher
// pods end Failed.
func (e *Env) StartSiteAfterPowerLoss(site string) error {
	if err := e.Cluster.StartSite(site); err != nil {
		return err
	}
	return e.KubeVirt.StartHandlerAfterPowerLoss(site)
}

// followKwoks stops a site's handler when its kwok dies by other hands (the demo tells
// the operator to kill it), so that a dark site has no handler either.
func (e *Env) followKwoks(ctx context.Context, sites []string) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, s := range sites {
				if e.KwokPID(s) == 0 {
					e.KubeVirt.StopHandler(s)
				}
			}
		}
	}
}

func (e *Env) watchInstances(ctx context.Context) {
	f := dynamicinformer.NewDynamicSharedInformerFactory(e.Dynamic, 0)
	inf := f.ForResource(kubevirt.VMIs).Informer()
	record := func(obj any) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return
		}
		key := u.GetNamespace() + "/" + u.GetName()
		e.mu.Lock()
		if e.instances[key] == nil {
			e.instances[key] = map[string]bool{}
		}
		e.instances[key][string(u.GetUID())] = true
		e.mu.Unlock()
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: record, UpdateFunc: func(_, n any) { record(n) }})
	go inf.Run(ctx.Done())
	cache.WaitForCacheSync(ctx.Done(), inf.HasSynced)
}

// Counts are what a VM went through, read from KubeVirt's own objects.
type Counts struct {
	// Starts counts distinct VMIs of the VM (the first start included).
	Starts int
	// Migrations counts the VMI's succeeded migrations.
	Migrations int
	// FailedMigrations counts the VMI's migrations that KubeVirt failed.
	FailedMigrations int
}

// Counts reports the VM's starts, and its succeeded and failed migrations so far.
func (e *Env) Counts(ns, name string) Counts {
	e.mu.Lock()
	c := Counts{Starts: len(e.instances[ns+"/"+name])}
	e.mu.Unlock()
	list, err := e.Dynamic.Resource(kubevirt.Migrations).Namespace(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return c
	}
	for i := range list.Items {
		m, err := kubevirt.ToMigration(&list.Items[i])
		if err != nil || m.Spec.VMIName != name {
			continue
		}
		switch m.Status.Phase {
		case kubevirtv1.MigrationSucceeded:
			c.Migrations++
		case kubevirtv1.MigrationFailed:
			c.FailedMigrations++
		}
	}
	return c
}
