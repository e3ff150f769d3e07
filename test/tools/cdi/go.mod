// Pins CDI (the Containerized Data Importer) at the version KubeVirt v1.8.0's go.mod
// requires for containerized-data-importer-api: the test cluster installs the CRDs of the
// objects virt-controller watches once it sees CDI (hack/build-tools.sh cdi copies them
// out of the module cache). No code of CDI's is built: the go.sum lines verify the files.
// The checksum database answered 404 for this module where it was pinned: go.sum holds
// the hashes of what the module proxy served, and pins them from then on.
module github.com/sitefail/kubectl-sitefail/test/tools/cdi

go 1.24.0

require kubevirt.io/containerized-data-importer v1.64.0
