package cluster

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// A component that dies at start gives an error with its log tail, and nothing is left
// running.
func TestStartFailureShowsLogTailAndCleansUp(t *testing.T) {
	bin := t.TempDir()
	for _, name := range []string{"etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager", "kwok"} {
		script := "#!/bin/sh\necho \"" + name + ": listen tcp 127.0.0.1: bind: address already in use\" >&2\nexit 1\n"
		if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	_, err := Start(ctx, Config{BinDir: bin, WorkDir: dir})
	if err == nil {
		t.Fatal("started with failing binaries")
	}
	for _, want := range []string{"etcd exited during startup", "last lines of etcd", "address already in use"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestMissingBinaryIsNamed(t *testing.T) {
	_, err := Start(context.Background(), Config{BinDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "missing binary etcd") || !strings.Contains(err.Error(), "build-tools.sh") {
		t.Fatalf("%v", err)
	}
}

// Editing a tools module's go.mod (a replace line, a pin) changes the cache directory of
// every binary it can resolve, so a stale build is never reused under the same version:
// the workspace's control plane and KubeVirt together, kwok and krew each alone.
func TestToolsCacheKeyFollowsGoMod(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	copyFile := func(rel string) {
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(tmp, rel)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tmp, rel), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile("hack/build-tools.sh")
	copyFile("test/tools/go.work")
	copyFile("test/tools/go.work.sum")
	// Every tools module's go.mod and go.sum, and the project's own mains in them: all
	// are part of the keys.
	for _, glob := range []string{"test/tools/*/go.mod", "test/tools/*/go.sum", "test/tools/*/cmd/*/*.go"} {
		files, _ := filepath.Glob(filepath.Join(root, glob))
		for _, f := range files {
			rel, _ := filepath.Rel(root, f)
			copyFile(rel)
		}
	}
	// The keys by their name without the hash: kube, kwok, krew, kubevirt and the
	// objects generator first, in this order, then the others.
	keys := func() []string {
		out, err := exec.Command("bash", filepath.Join(tmp, "hack/build-tools.sh"), "keys").Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Fields(string(out))
	}
	before := keys()
	if len(before) < 5 || !strings.HasPrefix(before[0], "kube-") || !strings.HasPrefix(before[1], "kwok-") || !strings.HasPrefix(before[2], "krew-") ||
		!strings.HasPrefix(before[3], "kubevirt-v") || !strings.HasPrefix(before[4], "kubevirt-objects-") {
		t.Fatalf("keys in an unexpected order: %v", before)
	}
	gomod := filepath.Join(tmp, "test/tools/kubevirt/go.mod")
	f, err := os.OpenFile(gomod, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("\nreplace example.com/edited => example.com/edited v1.0.1\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	after := keys()
	if len(after) != len(before) {
		t.Fatalf("keys: %v / %v", before, after)
	}
	// kube, kubevirt and the objects generator share the workspace's build list.
	for _, i := range []int{0, 3, 4} {
		if before[i] == after[i] {
			t.Errorf("an edited kubevirt go.mod keeps the workspace key %s", before[i])
		}
	}
	fencing := slices.IndexFunc(before, func(k string) bool { return strings.HasPrefix(k, "fencing-crds-") })
	if fencing < 0 {
		t.Fatalf("no fencing CRDs key: %v", before)
	}
	nhc := slices.IndexFunc(before, func(k string) bool { return strings.HasPrefix(k, "nhc-") })
	if nhc < 0 {
		t.Fatalf("no node-healthcheck-operator key: %v", before)
	}
	for _, i := range []int{1, 2, fencing, nhc} {
		if before[i] != after[i] {
			t.Errorf("a key outside the workspace changed with the kubevirt module: %s -> %s", before[i], after[i])
		}
	}
	// The multi-call control plane is this project's code: an edit rebuilds it.
	main := filepath.Join(tmp, "test/tools/cluster/cmd/kube/main.go")
	b, err := os.ReadFile(main)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(main, append(b, "\n// edited\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	edited := keys()
	if edited[0] == after[0] {
		t.Errorf("an edited cmd/kube keeps the key %s", edited[0])
	}
	// krew is not in the workspace: its own go.mod is its whole key (kwok's likewise).
	appendTo := func(rel, line string) {
		f, err := os.OpenFile(filepath.Join(tmp, rel), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(line); err != nil {
			t.Fatal(err)
		}
	}
	// The fencing CRDs and node-healthcheck-operator's manager come from the modules its
	// go.sum pins: a new pin copies and builds them again.
	appendTo("test/tools/fencing/go.sum", "example.com/edited v1.0.1 h1:AAAA=\n")
	if k := keys(); k[fencing] == edited[fencing] || k[nhc] == edited[nhc] || k[0] != edited[0] || k[2] != edited[2] {
		t.Errorf("an edited fencing go.sum: keys %v -> %v, want only the fencing CRDs' and the NHC manager's changed", edited, k)
	}
	appendTo("test/tools/krew/go.mod", "\nreplace example.com/edited => example.com/edited v1.0.1\n")
	if k := keys(); k[2] == edited[2] || k[0] != edited[0] {
		t.Errorf("an edited krew go.mod: keys %v -> %v, want only krew's changed", edited, k)
	}
	// go.work itself resolves the control plane and KubeVirt.
	appendTo("test/tools/go.work", "\nreplace example.com/edited => example.com/edited v1.0.1\n")
	if k := keys(); k[0] == edited[0] || k[3] == edited[3] || k[1] != edited[1] {
		t.Errorf("an edited go.work keeps a workspace key: %v -> %v", edited, k)
	}
	// GoReleaser and the image builder are each their own module, and the image builder
	// is this project's code; CDI's CRDs come from the module its go.sum pins.
	for _, c := range []struct{ file, key string }{
		{"test/tools/goreleaser/go.mod", "goreleaser-"},
		{"test/tools/image/cmd/sitefail-image/main.go", "image-"},
		{"test/tools/cdi/go.sum", "cdi-crds-"},
	} {
		if !slices.ContainsFunc(keys(), func(k string) bool { return strings.HasPrefix(k, c.key) }) {
			t.Fatalf("no %s key: %v", c.key, keys())
		}
		prev := keys()
		appendTo(c.file, "\n// edited\n")
		next := keys()
		for i := range prev {
			if changed := prev[i] != next[i]; changed != strings.HasPrefix(prev[i], c.key) {
				t.Errorf("an edited %s: key %s -> %s", c.file, prev[i], next[i])
			}
		}
	}
}
