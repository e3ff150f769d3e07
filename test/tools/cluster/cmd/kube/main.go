// Command kube is the test cluster's control plane in one binary: etcd, kube-apiserver,
// kube-scheduler and kube-controller-manager, each run by the name the binary is
// linked as (hack/build-tools.sh makes the links). A cold build links one large binary
// instead of four, which is most of what the last three cost once the first is
// compiled. Each branch is that command's own main, as Kubernetes v1.34.4 and etcd
// ship it.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	_ "time/tzdata" // CronJob time zones, as kube-apiserver and the controller manager embed them

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // the JSON log format
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go's metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // the version metric
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	switch name := filepath.Base(os.Args[0]); name {
	case "etcd":
		etcdmain.Main(os.Args)
	case "kube-apiserver":
		os.Exit(cli.Run(apiserver.NewAPIServerCommand()))
	case "kube-scheduler":
		os.Exit(cli.Run(scheduler.NewSchedulerCommand()))
	case "kube-controller-manager":
		os.Exit(cli.Run(controllermanager.NewControllerManagerCommand()))
	default:
		fmt.Fprintf(os.Stderr, "kube: run me as etcd, kube-apiserver, kube-scheduler or kube-controller-manager (a link of that name), not %q\n", name)
		os.Exit(2)
	}
}
