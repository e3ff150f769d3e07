package cluster

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
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
// its binaries, so a stale build is never reused under the same version.
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
	for _, m := range []string{"cluster", "kwok", "krew", "kubevirt"} {
		copyFile("test/tools/" + m + "/go.mod")
		copyFile("test/tools/" + m + "/go.sum")
	}
	// The project's own mains in the tools modules are part of the keys.
	gens, _ := filepath.Glob(filepath.Join(root, "test/tools/*/cmd/*/*.go"))
	for _, g := range gens {
		rel, _ := filepath.Rel(root, g)
		copyFile(rel)
	}
	keys := func() []string {
		out, err := exec.Command("bash", filepath.Join(tmp, "hack/build-tools.sh"), "keys").Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Fields(string(out))
	}
	before := keys()
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
	if len(before) != 5 || len(after) != 5 {
		t.Fatalf("keys: %v / %v", before, after)
	}
	for i, name := range []string{"kube", "kwok", "krew"} {
		if before[i] != after[i] {
			t.Errorf("%s key changed with the kubevirt module: %s -> %s", name, before[i], after[i])
		}
	}
	if before[3] == after[3] || before[4] == after[4] {
		t.Errorf("an edited kubevirt go.mod keeps its cache keys: %v -> %v", before[3:], after[3:])
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
	if edited := keys(); edited[0] == after[0] {
		t.Errorf("an edited cmd/kube keeps the key %s", edited[0])
	}
}
