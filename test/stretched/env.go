// Package stretched assembles the local stretched cluster, the KubeVirt simulator and a
// set of VMs into one environment for the end-to-end tests, the benchmarks and the demo.
package stretched

import (
	"context"
	"fmt"
	"io"
	"time"

	"k8s.io/client-go/dynamic"

	"github.com/sitefail/kubectl-sitefail/test/cluster"
	"github.com/sitefail/kubectl-sitefail/test/kubevirtsim"
)

// Options configure an environment.
type Options struct {
	Cluster cluster.Config
	Sim     kubevirtsim.Config
	Log     io.Writer
}

// Env is a running environment.
type Env struct {
	*cluster.Cluster
	Dynamic dynamic.Interface
	Sim     *kubevirtsim.Sim
	cancel  context.CancelFunc
}

// Start brings up the cluster and the simulator. Stop tears both down.
func Start(ctx context.Context, o Options) (_ *Env, err error) {
	if o.Cluster.BinDir == "" {
		if o.Cluster.BinDir, err = cluster.BinDirFromEnv(); err != nil {
			return nil, err
		}
	}
	if o.Log != nil {
		o.Cluster.Log = o.Log
	}
	c, err := cluster.Start(ctx, o.Cluster)
	if err != nil {
		return nil, err
	}
	e := &Env{Cluster: c}
	defer func() {
		if err != nil {
			e.Stop()
		}
	}()
	if e.Dynamic, err = dynamic.NewForConfig(c.Config); err != nil {
		return nil, err
	}
	if err := kubevirtsim.InstallCRDs(ctx, e.Dynamic, c.Kube.Discovery()); err != nil {
		return nil, err
	}
	simCtx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.Sim = kubevirtsim.New(c.Kube, e.Dynamic, o.Sim)
	if err := e.Sim.Run(simCtx, 4); err != nil {
		return nil, err
	}
	cert, err := cluster.ServingCert("localhost", "127.0.0.1")
	if err != nil {
		return nil, err
	}
	if err := e.Sim.ServeAPI(simCtx, cert); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for !e.Sim.APIAvailable(ctx) {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the simulated virt-api (APIService v1.subresources.kubevirt.io) did not become Available in 60s\n--- kube-apiserver log ---\n%s", c.LogTail("kube-apiserver", 20))
		}
		time.Sleep(300 * time.Millisecond)
	}
	return e, nil
}

// Stop ends the simulator and the cluster.
func (e *Env) Stop() {
	if e.cancel != nil {
		e.cancel()
	}
	e.Cluster.Stop()
}
