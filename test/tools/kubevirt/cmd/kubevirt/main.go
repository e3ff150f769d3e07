// Command kubevirt is KubeVirt v1.8.0's virt-api and virt-controller in one binary,
// each run by the name the binary is linked as (hack/build-tools.sh makes the links):
// a cold build links one large binary instead of two. Each branch is that command's
// own main.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	klog "kubevirt.io/client-go/log"
	"kubevirt.io/kubevirt/pkg/service"
	virtapi "kubevirt.io/kubevirt/pkg/virt-api"
	"kubevirt.io/kubevirt/pkg/virt-controller/watch"
)

func main() {
	switch name := filepath.Base(os.Args[0]); name {
	case "virt-api":
		klog.InitializeLogging("virt-api")
		app := virtapi.NewVirtApi()
		service.Setup(app)
		app.Execute()
	case "virt-controller":
		watch.Execute()
	default:
		fmt.Fprintf(os.Stderr, "kubevirt: run me as virt-api or virt-controller (a link of that name), not %q\n", name)
		os.Exit(2)
	}
}
