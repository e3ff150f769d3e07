//go:build tools

// Package tools pins KubeVirt's control-plane commands that the test cluster builds.
package tools

import (
	_ "kubevirt.io/kubevirt/cmd/virt-api"
	_ "kubevirt.io/kubevirt/cmd/virt-controller"
)
