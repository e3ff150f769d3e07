// Package dist tests the release as users get it: GoReleaser's archives, checksums and
// krew manifest (what `make dist` builds), validated by krew's own validator and
// installed by krew; and the container image (`make image`), read layer by layer.
package dist

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

const repoRoot = "../.."

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func toolsBin(t *testing.T) string {
	t.Helper()
	tools := os.Getenv("SITEFAIL_TOOLS_BIN")
	if tools == "" {
		t.Skip("SITEFAIL_TOOLS_BIN is not set: run through 'make test', which builds the tools")
	}
	return tools
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// commitTime is what the release stamps on every file instead of the build's time.
func commitTime(t *testing.T) time.Time {
	t.Helper()
	s := strings.TrimSpace(run(t, repoRoot, nil, "git", "log", "-1", "--format=%ct"))
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return time.Unix(sec, 0)
}

// gitRemoteEnv gives GoReleaser the remote it needs to read the commit (the Makefile's
// GORELEASER_ENV), in a clone that has none.
func gitRemoteEnv(t *testing.T) []string {
	t.Helper()
	if strings.TrimSpace(run(t, repoRoot, nil, "git", "remote")) != "" {
		return nil
	}
	return []string{"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=remote.origin.url", "GIT_CONFIG_VALUE_0=https://github.com/sitefail/kubectl-sitefail.git"}
}

type goreleaserConfig map[string]any

// hostOnlyConfig is the committed .goreleaser.yaml with its build narrowed to this
// machine's platform and its output moved to dist: everything else (names, flags,
// archive files, the krew section) is the release's own. Cross-building the other four
// platforms would add minutes to a cold make test and prove nothing the host's does not.
func hostOnlyConfig(t *testing.T, dist string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, ".goreleaser.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg goreleaserConfig
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	builds, _ := cfg["builds"].([]any)
	if len(builds) != 1 {
		t.Fatalf("want one build in .goreleaser.yaml, got %d", len(builds))
	}
	build := builds[0].(map[string]any)
	// The release's platforms, which the narrowing below would hide.
	for key, want := range map[string]string{"goos": "[darwin linux windows]", "goarch": "[amd64 arm64]"} {
		var got []string
		for _, v := range build[key].([]any) {
			got = append(got, v.(string))
		}
		if s := "[" + strings.Join(slices.Sorted(slices.Values(got)), " ") + "]"; s != want {
			t.Errorf(".goreleaser.yaml builds %s %s, want %s", key, s, want)
		}
	}
	build["goos"] = []string{runtime.GOOS}
	build["goarch"] = []string{runtime.GOARCH}
	delete(build, "ignore")
	cfg["dist"] = dist
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "goreleaser.yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

type krewManifest struct {
	Metadata struct{ Name string }
	Spec     struct {
		Version   string
		Platforms []struct {
			URI, Sha256, Bin string
			Selector         struct {
				MatchLabels map[string]string `json:"matchLabels"`
			}
		}
	}
}

func TestReleaseInstallsThroughKrew(t *testing.T) {
	tools := toolsBin(t)
	goreleaser := filepath.Join(tools, "goreleaser")
	run(t, repoRoot, nil, goreleaser, "check")

	dir := t.TempDir()
	dist := filepath.Join(dir, "dist")
	cfg := hostOnlyConfig(t, dist)
	run(t, repoRoot, gitRemoteEnv(t), goreleaser, "release", "--snapshot", "--clean", "--config", cfg)

	manifestPath := filepath.Join(dist, "krew", "sitefail.yaml")
	body, err := os.ReadFile(manifestPath)
	if err != nil {
		t.Fatal(err)
	}
	var m krewManifest
	if err := yaml.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	version := m.Spec.Version
	archiveName := "kubectl-sitefail_" + version + "_" + runtime.GOOS + "_" + runtime.GOARCH + ".tar.gz"
	archive := filepath.Join(dist, archiveName)
	sum := sha256File(t, archive)

	// checksums.txt and the manifest both carry the archive's real sum.
	sums, err := os.ReadFile(filepath.Join(dist, "checksums.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(sums), sum+"  "+archiveName+"\n") {
		t.Errorf("checksums.txt lacks %s  %s:\n%s", sum, archiveName, sums)
	}
	if m.Metadata.Name != "sitefail" || len(m.Spec.Platforms) != 1 {
		t.Fatalf("manifest:\n%s", body)
	}
	p := m.Spec.Platforms[0]
	wantURI := "https://github.com/sitefail/kubectl-sitefail/releases/download/" + version + "/" + archiveName
	if p.Sha256 != sum || p.URI != wantURI || p.Selector.MatchLabels["os"] != runtime.GOOS || p.Selector.MatchLabels["arch"] != runtime.GOARCH {
		t.Errorf("manifest platform %+v, want uri %s and sha256 %s", p, wantURI, sum)
	}

	// The archive: the binary, LICENSE and the completion shim, executable where they
	// run, every file dated from the commit (so the same commit gives the same archive).
	when := commitTime(t)
	files := map[string]*tar.Header{}
	readTarGz(t, archive, func(h *tar.Header, _ io.Reader) { files[h.Name] = h })
	for name, mode := range map[string]int64{"kubectl-sitefail": 0o755, "LICENSE": 0o644, "kubectl_complete-sitefail": 0o755} {
		h := files[name]
		if h == nil {
			t.Errorf("%s lacks %s (has %v)", archiveName, name, slices.Sorted(maps.Keys(files)))
			continue
		}
		if h.Mode&0o111 != mode&0o111 {
			t.Errorf("%s: %s has mode %o", archiveName, name, h.Mode)
		}
		if !h.ModTime.Equal(when) {
			t.Errorf("%s: %s dated %s, want the commit's %s", archiveName, name, h.ModTime, when)
		}
	}
	if len(files) != 3 {
		t.Errorf("%s holds %v, want the binary, LICENSE and the shim", archiveName, slices.Sorted(maps.Keys(files)))
	}

	// The validator's own install step downloads every platform's uri, which exists only
	// once the release is published; the install below does the same with the local
	// archive for this platform.
	out := run(t, repoRoot, nil, filepath.Join(tools, "validate-krew-manifest"), "-manifest", manifestPath, "-skip-install")
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
	run(t, dir, env, "kubectl", "krew", "install", "--manifest="+manifestPath, "--archive="+archive)
	out = run(t, dir, env, "kubectl", "sitefail", "version")
	if !strings.HasPrefix(out, "kubectl-sitefail "+version+" ") {
		t.Fatalf("installed plugin says %q, want version %s", out, version)
	}
	if _, err := os.Stat(filepath.Join(krewRoot, "store", "sitefail", version, "kubectl_complete-sitefail")); err != nil {
		t.Fatalf("completion shim not installed: %v", err)
	}
}

func readTarGz(t *testing.T, path string, each func(*tar.Header, io.Reader)) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	readTar(t, zr, each)
}

func readTar(t *testing.T, r io.Reader, each func(*tar.Header, io.Reader)) {
	t.Helper()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		each(h, tr)
	}
}
