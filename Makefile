# kubectl-sitefail
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/sitefail/kubectl-sitefail/pkg/plugin.Version=$(VERSION)
BIN       := bin/kubectl-sitefail

# One set of build flags for every build a target makes: lint, the unit tests, the e2e
# binaries, test/dist's release build and the test cluster's tools then share each
# compiled package in the build cache. Where one of them alone used -trimpath or cgo, it
# recompiled the whole client stack (a cold make test spent minutes of its e2e phase
# on test/dist's build).
export CGO_ENABLED := 0
export GOFLAGS := $(strip $(GOFLAGS) -trimpath)

.PHONY: all build test unit fuzz e2e lint bench demo timeline tools dist image clean sim

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/kubectl-sitefail

## test: lint, unit tests, then the end-to-end suite on a real local control plane
## (the first run on a machine builds it from the Go module proxy; a whole cold make test
## took 24 min 52 s on 2 cores, the end-to-end suite 8 min 17 s of it).
test:
	hack/test.sh

unit:
	$(GO) test -count=1 ./pkg/... ./cmd/...

## fuzz: the tier, site-patch, config-file and journal parsers for a bounded time (seeded with known bad input).
## make test runs every fuzz target on its seed corpus (go test does); the search itself
## is kept out of it: one run failed at its deadline on a loaded machine, and a flaky
## gate is worse than none. FuzzParseRTO (pkg/plugin) needs an instrumented build of
## the whole client stack to fuzz.
FUZZTIME ?= 8s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseTierRange$$' -fuzztime $(FUZZTIME) ./pkg/selector
	$(GO) test -run '^$$' -fuzz '^FuzzSitePatch$$' -fuzztime $(FUZZTIME) ./pkg/selector
	$(GO) test -run '^$$' -fuzz '^FuzzConfigFile$$' -fuzztime $(FUZZTIME) ./pkg/selector
	$(GO) test -run '^$$' -fuzz '^FuzzRead$$' -fuzztime $(FUZZTIME) ./pkg/journal

## sim: the move simulator's long sweep (make test runs the known seeds and 2,000 fresh
## ones): go test ./pkg/executor -run TestSimulate -sim.seed=N -v replays one seed.
SEEDS ?= 100000
sim:
	$(GO) test -count=1 -timeout 60m -run '^TestSimulate$$' ./pkg/executor -sim.seeds=$(SEEDS)

tools:
	hack/build-tools.sh all >/dev/null

## e2e: the end-to-end suite in shards, each on a stretched cluster of its own, side by
## side, with the small test packages beside them (hack/e2e.sh; E2E_RUN=REGEX for some).
e2e: tools
	SITEFAIL_E2E_RUN='$(E2E_RUN)' hack/e2e.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## bench: the Go benchmarks of the pure pieces (benchstat can compare runs), then the
## scale scenario (test/bench: 2 sites of 100 nodes, 5,000 VMs, 1,000 running), which
## writes docs/benchmarks.md. Size it with SITEFAIL_BENCH_NODES, _VMS, _RUNNING,
## _NAMESPACES, _IN_FLIGHT and _BOOT (a duration).
bench: tools
	mkdir -p bin
	bash -o pipefail -c "$(GO) test -run '^\$$' -bench . -benchmem ./pkg/... | tee bin/bench-go.txt"
	SITEFAIL_BENCH=1 SITEFAIL_BENCH_GO=$(CURDIR)/bin/bench-go.txt SITEFAIL_TOOLS_BIN=$$(hack/build-tools.sh all) $(GO) test -count=1 -v -timeout 90m -run '^TestScale$$' ./test/bench/

## demo: a local stretched cluster with VMs, the plugin walking through a failover.
demo: build tools
	SITEFAIL_TOOLS_BIN=$$(hack/build-tools.sh all) $(GO) run ./test/cmd/stretched-cluster -walkthrough -plugin-dir $(CURDIR)/bin -kubeconfig-link $(CURDIR)/.demo/kubeconfig

## timeline: the README's failover timeline, drawn by report --html from the demo's walk-through.
timeline: build tools
	SITEFAIL_TOOLS_BIN=$$(hack/build-tools.sh all) $(GO) run ./test/cmd/stretched-cluster -walkthrough -plugin-dir $(CURDIR)/bin -timeline $(CURDIR)/docs/images/failover-timeline.svg

# GoReleaser reads the commit (whose time dates every file it writes) only in a clone with
# a remote; in one without (a copy, a local clone) it is given the project's own.
GORELEASER_ENV := $(if $(shell git remote 2>/dev/null),,GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=remote.origin.url GIT_CONFIG_VALUE_0=https://github.com/sitefail/kubectl-sitefail.git)

## dist: GoReleaser's snapshot release (archives for every platform, checksums.txt, the
## krew manifest dist/krew/sitefail.yaml), then the image from its linux/amd64 binary.
dist:
	$(GORELEASER_ENV) $$(hack/build-tools.sh goreleaser)/goreleaser release --snapshot --clean
	hack/image.sh dist/kubectl-sitefail_linux_amd64_v1/kubectl-sitefail

## image: dist/image.tar (an OCI layout, also loadable by docker load) and dist/image/,
## from make build's binary and kubectl built from source; no Docker, no base image.
image: build
	hack/image.sh $(BIN)

clean:
	rm -rf bin dist .demo
