// Package dist tests the release as users get it: the archives and the krew manifest
// that `make dist` builds, validated by krew's own validator and installed by krew.
package dist

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestKrewManifestValidatesAndInstalls(t *testing.T) {
	tools := os.Getenv("SITEFAIL_TOOLS_BIN")
	if tools == "" {
		t.Skip("SITEFAIL_TOOLS_BIN is not set: run through 'make test', which builds krew")
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("installs the linux/amd64 archive; this is %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	dir := t.TempDir()
	distDir := filepath.Join(dir, "dist")
	manifest := filepath.Join(dir, "sitefail.yaml")
	const version = "v0.1.0-test.1"
	// Only the platform it installs: cross-building all five (make dist) costs a cold CI
	// run about 15 minutes, and the script treats every platform alike.
	run(t, []string{"DIST_DIR=" + distDir, "MANIFEST_OUT=" + manifest, "VERSION=" + version, "PLATFORMS=linux/amd64"}, "../../hack/dist.sh")

	sums, err := os.ReadFile(filepath.Join(distDir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"linux_amd64"} {
		if !strings.Contains(string(sums), "kubectl-sitefail_"+version+"_"+p+".tar.gz") {
			t.Errorf("no archive for %s in SHA256SUMS:\n%s", p, sums)
		}
	}
	body, _ := os.ReadFile(manifest)
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		sum := strings.Fields(line)[0]
		if !strings.Contains(string(body), "sha256: "+sum) {
			t.Errorf("manifest lacks the real sum %s", sum)
		}
	}

	// The validator's own install step downloads every platform's uri, which exists only
	// once the release is published; the install below does the same with the local
	// archive for this platform.
	out := run(t, nil, filepath.Join(tools, "validate-krew-manifest"), "-manifest", manifest, "-skip-install")
	if !strings.Contains(out, "structural validation OK") || !strings.Contains(out, "all spec.platform[] items are used") {
		t.Fatalf("validator output:\n%s", out)
	}

	// Install it for real into a throwaway krew root, then run it as kubectl would.
	krewRoot := filepath.Join(dir, "krew")
	pathDir := filepath.Join(dir, "path")
	if err := os.MkdirAll(pathDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(tools, "krew"), filepath.Join(pathDir, "kubectl-krew")); err != nil {
		t.Fatal(err)
	}
	env := []string{"KREW_ROOT=" + krewRoot, "PATH=" + filepath.Join(krewRoot, "bin") + ":" + pathDir + ":" + os.Getenv("PATH")}
	archive := filepath.Join(distDir, "kubectl-sitefail_"+version+"_linux_amd64.tar.gz")
	run(t, env, "kubectl", "krew", "install", "--manifest="+manifest, "--archive="+archive)
	out = run(t, env, "kubectl", "sitefail", "version")
	if !strings.Contains(out, version) {
		t.Fatalf("installed plugin says %q, want version %s", out, version)
	}
	if _, err := os.Stat(filepath.Join(krewRoot, "store", "sitefail", version, "kubectl_complete-sitefail")); err != nil {
		t.Fatalf("completion shim not installed: %v", err)
	}
}
