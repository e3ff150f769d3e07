// Command stretched-cluster starts the local stretched cluster with KubeVirt's own
// controllers and a demo set of VMs, prints how to use it, and runs until interrupted.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sitefail/kubectl-sitefail/test/cluster"
	"github.com/sitefail/kubectl-sitefail/test/kubevirtstack"
	"github.com/sitefail/kubectl-sitefail/test/stretched"
)

func main() {
	nodes := flag.Int("nodes-per-site", 4, "nodes per site")
	primary := flag.String("primary", "Primary", "name of the first site")
	dr := flag.String("dr", "DR", "name of the second site")
	boot := flag.Duration("boot-delay", 2*time.Second, "how long the fake virt-handler takes to boot a VM (and to migrate one)")
	kubeconfigLink := flag.String("kubeconfig-link", "", "also copy the kubeconfig here")
	verbose := flag.Bool("v", false, "log component starts")
	walk := flag.Bool("walkthrough", false, "drive the plugin through a relocate, a site loss, a failover and a failback before waiting")
	pluginDir := flag.String("plugin-dir", "", "directory holding kubectl-sitefail (put first on PATH for the walk-through)")
	timeline := flag.String("timeline", "", "after the walk-through, write its failover's SVG timeline (report --html) to this file and stop")
	flag.Parse()

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	start := time.Now()
	fmt.Fprintln(os.Stderr, "Starting the local stretched cluster (etcd, kube-apiserver, scheduler, controller-manager, one kwok per site, KubeVirt v1.8.0 virt-api and virt-controller, a fake virt-handler per site)...")
	o := stretched.Options{
		Cluster:  cluster.Config{Sites: []string{*primary, *dr}, NodesPerSite: *nodes},
		KubeVirt: kubevirtstack.Config{BootDelay: *boot, MigrationDelay: *boot},
	}
	if *verbose {
		o.Log = os.Stderr
	}
	env, err := stretched.Start(ctx, o)
	if err != nil {
		fail(err)
	}
	defer env.Stop()
	if err := env.CreateVMs(ctx, stretched.DemoVMs(*primary, *dr)); err != nil {
		fail(err)
	}
	if err := env.WaitSettled(ctx, 3*time.Minute); err != nil {
		fail(err)
	}
	kc := env.Kubeconfig
	if *kubeconfigLink != "" {
		data, err := os.ReadFile(kc)
		if err == nil {
			_ = os.MkdirAll(filepath.Dir(*kubeconfigLink), 0o755)
			if err = os.WriteFile(*kubeconfigLink, data, 0o600); err == nil {
				kc = *kubeconfigLink
			}
		}
	}
	ready := time.Since(start).Round(time.Second)
	if *walk {
		if err := walkthrough(ctx, env, kc, *pluginDir, *primary, *dr); err != nil {
			fail(err)
		}
		if *timeline != "" {
			if err := writeTimeline(ctx, kc, *pluginDir, *timeline); err != nil {
				fail(err)
			}
			fmt.Printf("\nWrote %s.\n", *timeline)
			return
		}
	}
	fmt.Printf(`
Local stretched cluster ready in %s: sites %s and %s, %d nodes each, %d VMs.

In another terminal:
  export KUBECONFIG=%s
  export PATH="$PWD/bin:$PATH"          # kubectl finds the plugin as 'kubectl sitefail'

  kubectl sitefail sites                # sites, health, capacity, VMs per tier
  kubectl sitefail status -A            # where every VM runs
  kubectl sitefail plan --tier 1 --to %s -A
  kubectl sitefail move --tier 1 --to %s -A
  kubectl sitefail status -A --tier 1

Make site %s go dark (its kwok stops; its nodes turn NotReady in about 20s):
  kill %d
then fail the rest over:
  kubectl sitefail move --all --to %s -A --confirm-site-down=%s

Ctrl-C here stops the cluster and removes everything it started.
`, ready, *primary, *dr, *nodes, len(stretched.DemoVMs(*primary, *dr)), kc, *dr, *dr, *primary, env.KwokPID(*primary), *dr, *primary)
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "Stopping the cluster...")
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "error:", err)
	os.Exit(1)
}
