#!/usr/bin/env bash
# Builds the test cluster's binaries from the pinned tools modules and caches them by
# version, so that only the first run on a machine pays the cold build.
# Prints the directory that holds them.
#   hack/build-tools.sh cluster|kwok|krew|kubevirt|fencing|cdi|kubectl|goreleaser|image|all|keys
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${SITEFAIL_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubectl-sitefail/tools}
kube_version=v1.34.4
kwok_version=v0.7.0
krew_version=v0.4.4
kubevirt_version=v1.8.0
goreleaser_version=v2.15.1
ggcr_version=v0.21.3
nhc_version=v0.12.0
# Each cache directory is keyed by the version and a hash of what resolves its build: a
# changed pin or replace rebuilds, where a version alone would silently reuse the old
# binaries. The control plane and KubeVirt resolve as one workspace (test/tools/go.work),
# so an edit of either go.mod, or of go.work, can change both: their keys cover the
# whole workspace. kwok, krew and node-healthcheck-operator (the fencing module) are
# built each in its own module. The multi-call mains (cmd/kube, cmd/kubevirt) and the
# objects generator are this project's code, and the build flags are part of what a
# binary is: both go into the keys.
# hash FILE...: the names (globs too) are read inside test/tools.
ldflags='-s -w'
hash() { (cd "$root/test/tools" && { cat $@; echo "$ldflags"; } | sha256sum | cut -c1-12); }
workspace='go.work go.work.sum cluster/go.mod cluster/go.sum kubevirt/go.mod kubevirt/go.sum'
kube_key=$kube_version-$(hash $workspace 'cluster/cmd/kube/*.go')
kwok_key=$kwok_version-$(hash kwok/go.mod kwok/go.sum)
krew_key=$krew_version-$(hash krew/go.mod krew/go.sum)
kubevirt_key=$kubevirt_version-$(hash $workspace 'kubevirt/cmd/kubevirt/*.go')
kubevirt_objects=$(hash $workspace 'kubevirt/cmd/kubevirt-objects/*.go')
fencing_key=$(hash fencing/go.mod fencing/go.sum)
cdi_key=$(hash cdi/go.mod cdi/go.sum)
nhc_key=$nhc_version-$(hash fencing/go.mod fencing/go.sum)
goreleaser_key=$goreleaser_version-$(hash goreleaser/go.mod goreleaser/go.sum)
image_key=$ggcr_version-$(hash image/go.mod image/go.sum 'image/cmd/*/*.go')
# kubectl goes into images, where `kubectl version` must say what it is (unstamped it says
# v0.0.0-master and warns of a skew with every server): stamped as Kubernetes' own build
# stamps it, so it has a directory of its own.
kubectl_ldflags=$ldflags
for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
	kubectl_ldflags+=" -X $p.gitVersion=$kube_version -X $p.gitMajor=${kube_version:1:1} -X $p.gitMinor=$(echo "$kube_version" | cut -d. -f2) -X $p.gitTreeState=clean"
done
kubectl_key=$kube_version-$(ldflags=$kubectl_ldflags hash $workspace)

build() { # dir outdir pkg... (NAME=pkg names a binary whose package path does not)
	local dir=$1 out=$2; shift 2
	mkdir -p "$out"
	for pkg in "$@"; do
		local name=${pkg##*/}
		# A major-version suffix is not the command's name (go install names it alike).
		case $name in v[0-9]*) name=${pkg%/*} name=${name##*/} ;; esac
		case $pkg in *=*) name=${pkg%%=*} pkg=${pkg#*=} ;; esac
		if [ ! -x "$out/$name" ]; then
			echo "building $name into $out" >&2
			# Stripped: a test binary's symbols are never read, and the linker skips
			# writing DWARF (stack traces still carry function names and lines).
			local work=off
			case $dir in cluster | kubevirt) work="$root/test/tools/go.work" ;; esac
			(cd "$root/test/tools/$dir" && GOWORK=$work CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -o "$out/$name.tmp" "$pkg") >&2
			mv "$out/$name.tmp" "$out/$name"
		fi
	done
}

# names outdir binary name...: links each name to a multi-call binary, which runs the
# command it is called as.
names() {
	local out=$1 bin=$2; shift 2
	for name in "$@"; do
		# Left alone when right: a running cluster of this tree may be starting one.
		[ "$(readlink "$out/$name")" = "$bin" ] || ln -sfn "$bin" "$out/$name"
	done
}

# The cache directories this tree would use, one per line (tested by test/cluster).
keys() {
	printf '%s\n' "kube-$kube_key" "kwok-$kwok_key" "krew-$krew_key" "kubevirt-$kubevirt_key" "kubevirt-objects-$kubevirt_objects" "fencing-crds-$fencing_key" \
		"goreleaser-$goreleaser_key" "image-$image_key" "kubectl-$kubectl_key" "nhc-$nhc_key" "cdi-crds-$cdi_key"
}

what=${1:-all}
if [ "$what" = keys ]; then
	keys
	exit 0
fi
# The tools modules build side by side: most of a cold build is downloading modules and
# linking (one core each), which overlap with another module's compiling.
pids=()
spawn() { "$@" & pids+=($!); }
build_kubevirt() {
	build kubevirt "$cache/kubevirt-$kubevirt_key" ./cmd/kubevirt
	names "$cache/kubevirt-$kubevirt_key" kubevirt virt-api virt-controller
	build kubevirt "$cache/kubevirt-objects-$kubevirt_objects" ./cmd/kubevirt-objects
}
case $what in
cluster|all)
	build_cluster() {
		build cluster "$cache/kube-$kube_key" ./cmd/kube
		names "$cache/kube-$kube_key" kube etcd kube-apiserver kube-scheduler kube-controller-manager
	}
	spawn build_cluster
	;;&
kwok|all)
	spawn build kwok "$cache/kwok-$kwok_key" sigs.k8s.io/kwok/cmd/kwok
	;;&
kubevirt|all)
	spawn build_kubevirt
	;;&
fencing|all)
	# The fencing and remediation CRDs, copied from their pinned modules (go.sum verifies
	# the download); the stack installs every file of the directory.
	fencing_crds() {
		local out="$cache/fencing-crds-$fencing_key"
		[ -d "$out" ] && return 0
		local dirs
		dirs=$(cd "$root/test/tools/fencing" && GOWORK=off go mod download -json \
			github.com/csi-addons/kubernetes-csi-addons github.com/medik8s/fence-agents-remediation \
			github.com/medik8s/node-healthcheck-operator | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
		mkdir -p "$out.tmp"
		for d in $dirs; do
			for f in "$d"/config/crd/bases/*networkfence*.yaml "$d"/config/crd/bases/fence-agents-remediation.medik8s.io_fenceagentsremediations.yaml \
				"$d"/config/crd/bases/fence-agents-remediation.medik8s.io_fenceagentsremediationtemplates.yaml \
				"$d"/config/crd/bases/remediation.medik8s.io_nodehealthchecks.yaml; do
				[ -f "$f" ] && cp "$f" "$out.tmp/"
			done
		done
		[ "$(ls "$out.tmp" | wc -l)" = 5 ] || { echo "build-tools: expected 5 fencing CRDs, found: $(ls "$out.tmp")" >&2; return 1; }
		rm -rf "$out" && mv "$out.tmp" "$out"
	}
	spawn fencing_crds
	# node-healthcheck-operator's manager, built from its module at the version the CRDs
	# come from; the e2e tests start it when they ask for it (test/stretched).
	spawn build fencing "$cache/nhc-$nhc_key" nhc-manager=github.com/medik8s/node-healthcheck-operator/cmd
	;;&
cdi|all)
	# CDI's CRDs of the objects virt-controller watches once it sees CDI: DataVolume,
	# DataSource, StorageProfile, CDI and CDIConfig. The module ships no YAML file: CDI's
	# operator installs them from the YAML its generator wrote into
	# pkg/operator/resources/crds_generated.go (a map of raw strings, CDICRDs), so each is
	# cut out of that file as the operator decodes it (createDataVolumeCRD and the like).
	cdi_crds() {
		local out="$cache/cdi-crds-$cdi_key"
		[ -d "$out" ] && return 0
		local dir
		dir=$(cd "$root/test/tools/cdi" && GOWORK=off go mod download -json kubevirt.io/containerized-data-importer |
			sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
		local src="$dir/pkg/operator/resources/crds_generated.go"
		mkdir -p "$out.tmp"
		for key in datavolume datasource storageprofile cdi cdiconfig; do
			awk -v key="$key" '
				index($0, "\t\"" key "\": `") == 1 { on = 1; $0 = substr($0, length(key) + 7) }
				on && $0 == "`," { exit }
				on { print }' "$src" >"$out.tmp/$key.yaml"
			grep -q '^kind: CustomResourceDefinition$' "$out.tmp/$key.yaml" ||
				{ echo "build-tools: no CRD $key in $src" >&2; return 1; }
		done
		rm -rf "$out" && mv "$out.tmp" "$out"
	}
	spawn cdi_crds
	;;&
krew|all)
	spawn build krew "$cache/krew-$krew_key" sigs.k8s.io/krew/cmd/krew sigs.k8s.io/krew/cmd/validate-krew-manifest
	;;&
goreleaser|all)
	spawn build goreleaser "$cache/goreleaser-$goreleaser_key" github.com/goreleaser/goreleaser/v2
	;;&
image|all)
	# The image builder and crane; kubectl for the image comes from the kubectl target.
	spawn build image "$cache/image-$image_key" ./cmd/sitefail-image github.com/google/go-containerregistry/cmd/crane
	;;&
kubectl|all)
	# For the image (test/dist tests it), and where the machine has no kubectl of its own.
	build_kubectl() { ldflags=$kubectl_ldflags build cluster "$cache/kubectl-$kubectl_key" k8s.io/kubernetes/cmd/kubectl; }
	spawn build_kubectl
	;;&
cluster|kwok|krew|kubevirt|fencing|cdi|goreleaser|image|kubectl|all) ;;
*) echo "usage: $0 cluster|kwok|krew|kubevirt|fencing|cdi|kubectl|goreleaser|image|all|keys" >&2; exit 2 ;;
esac
failed=0
for pid in "${pids[@]}"; do
	wait "$pid" || failed=1
done
[ "$failed" = 0 ] || { echo "build-tools: a tools build failed (its output is above)" >&2; exit 1; }

# One directory of links so that callers need a single path. It is named after this
# tree's keys: two checkouts of different trees on one machine (worktrees) each have
# their own, where one shared directory was relinked under a running test by the other's
# build. A link already right is left alone, so that a tree's own concurrent runs never
# find it missing.
bin="$cache/bin-$(keys | sha256sum | cut -c1-12)"
mkdir -p "$bin"
link() { # target name
	[ "$(readlink "$bin/$2")" = "$1" ] || ln -sfn "$1" "$bin/$2"
}
for d in "$cache/kube-$kube_key" "$cache/kwok-$kwok_key" "$cache/krew-$krew_key" \
	"$cache/kubevirt-$kubevirt_key" "$cache/kubevirt-objects-$kubevirt_objects" "$cache/goreleaser-$goreleaser_key" \
	"$cache/image-$image_key" "$cache/kubectl-$kubectl_key" "$cache/nhc-$nhc_key"; do
	[ -d "$d" ] || continue
	for f in "$d"/*; do
		case $f in *.tmp) continue ;; esac
		link "$f" "$(basename "$f")"
	done
done
[ -d "$cache/fencing-crds-$fencing_key" ] && link "$cache/fencing-crds-$fencing_key" fencing-crds
[ -d "$cache/cdi-crds-$cdi_key" ] && link "$cache/cdi-crds-$cdi_key" cdi-crds
echo "$bin"
