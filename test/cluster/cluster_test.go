package cluster

import (
	"context"
	"os"
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
