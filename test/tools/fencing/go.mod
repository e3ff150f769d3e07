// Pins the fencing and remediation projects whose CRDs the test cluster installs
// (hack/build-tools.sh fencing copies them out of the module cache). No code of theirs
// is built: the go.sum lines verify the files.
module github.com/sitefail/kubectl-sitefail/test/tools/fencing

go 1.24.0

require (
	github.com/csi-addons/kubernetes-csi-addons v0.12.0
	github.com/medik8s/fence-agents-remediation v0.8.0
	github.com/medik8s/node-healthcheck-operator v0.12.0
)
