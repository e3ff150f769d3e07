package dist

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/x509"
	"debug/elf"
	"encoding/json"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

type ociDescriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

// TestImage builds the image as `make image` does, has go-containerregistry validate
// it, then reads it with nothing but the standard library: the config, every layer, and
// the two binaries, which must run on their own.
func TestImage(t *testing.T) {
	tools := toolsBin(t)
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("the image is linux/amd64 and its binaries run here; this is %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	dir := t.TempDir()
	const version = "v0.1.0-imagetest.1"
	plugin := filepath.Join(dir, "kubectl-sitefail")
	run(t, repoRoot, []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath",
		"-ldflags", "-s -w -X github.com/sitefail/kubectl-sitefail/pkg/plugin.Version="+version, "-o", plugin, "./cmd/kubectl-sitefail")
	out1, out2 := filepath.Join(dir, "one"), filepath.Join(dir, "two")
	run(t, repoRoot, []string{"IMAGE_OUT=" + out1}, "hack/image.sh", plugin)
	image := filepath.Join(out1, "image.tar")

	out := run(t, dir, nil, filepath.Join(tools, "sitefail-image"), "validate", image)
	if !strings.Contains(out, "valid image sha256:") || !strings.Contains(out, "linux/amd64") {
		t.Fatalf("validate said:\n%s", out)
	}
	// Same inputs, same bytes: a rebuilt release image keeps its digest.
	run(t, repoRoot, []string{"IMAGE_OUT=" + out2}, "hack/image.sh", plugin)
	if a, b := sha256File(t, image), sha256File(t, filepath.Join(out2, "image.tar")); a != b {
		t.Errorf("two builds of one image differ: %s and %s", a, b)
	}

	blobs := map[string][]byte{}
	readTar(t, mustOpen(t, image), func(h *tar.Header, r io.Reader) {
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			blobs[h.Name] = b
		}
	})
	blob := func(d ociDescriptor) []byte {
		t.Helper()
		b, ok := blobs["blobs/"+strings.Replace(d.Digest, ":", "/", 1)]
		if !ok || int64(len(b)) != d.Size {
			t.Fatalf("blob %s (%d bytes) missing or of another size", d.Digest, d.Size)
		}
		return b
	}
	var layoutFile struct{ ImageLayoutVersion string }
	mustUnmarshal(t, blobs["oci-layout"], &layoutFile)
	if layoutFile.ImageLayoutVersion != "1.0.0" {
		t.Errorf("oci-layout: %q", blobs["oci-layout"])
	}
	var index struct{ Manifests []ociDescriptor }
	mustUnmarshal(t, blobs["index.json"], &index)
	if len(index.Manifests) != 1 {
		t.Fatalf("index.json: %s", blobs["index.json"])
	}
	var manifest struct {
		Config ociDescriptor
		Layers []ociDescriptor
	}
	mustUnmarshal(t, blob(index.Manifests[0]), &manifest)
	var config struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Config       struct {
			User       string
			Entrypoint []string
			Env        []string
			Labels     map[string]string
		} `json:"config"`
	}
	mustUnmarshal(t, blob(manifest.Config), &config)
	c := config.Config
	uid, err := strconv.Atoi(strings.SplitN(c.User, ":", 2)[0])
	if err != nil || uid == 0 {
		t.Errorf("config user %q: want a numeric non-root uid (the kubelet checks runAsNonRoot by number)", c.User)
	}
	if strings.Join(c.Entrypoint, " ") != "kubectl" {
		t.Errorf("entrypoint %q, want kubectl", c.Entrypoint)
	}
	if config.OS != "linux" || config.Architecture != "amd64" || c.Labels["org.opencontainers.image.version"] != version {
		t.Errorf("config: %s/%s, labels %v", config.OS, config.Architecture, c.Labels)
	}

	// The filesystem, the layers applied in order (no layer here deletes anything).
	files := map[string]*tar.Header{}
	contents := map[string][]byte{}
	for _, l := range manifest.Layers {
		zr, err := gzip.NewReader(bytes.NewReader(blob(l)))
		if err != nil {
			t.Fatalf("layer %s: %v", l.Digest, err)
		}
		readTar(t, zr, func(h *tar.Header, r io.Reader) {
			name := strings.TrimSuffix(h.Name, "/")
			files[name] = h
			if h.Typeflag == tar.TypeReg {
				b, err := io.ReadAll(r)
				if err != nil {
					t.Fatal(err)
				}
				contents[name] = b
			}
		})
	}
	if !strings.Contains(string(contents["etc/passwd"]), ":"+strconv.Itoa(uid)+":") {
		t.Errorf("/etc/passwd has no user %d:\n%s", uid, contents["etc/passwd"])
	}
	home := envOf(c.Env, "HOME")
	if h := files[strings.TrimPrefix(home, "/")]; h == nil || h.Typeflag != tar.TypeDir || h.Uid != uid {
		t.Errorf("HOME %q is not a directory owned by %d: %+v", home, uid, h)
	}
	certs := contents["etc/ssl/certs/ca-certificates.crt"]
	n := 0
	for rest := certs; ; n++ {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			t.Fatalf("CA bundle certificate %d: %v", n, err)
		}
	}
	if n < 100 {
		t.Errorf("CA bundle holds %d certificates", n)
	}

	// The binaries, taken out of the layers, run by themselves: static, and kubectl finds
	// the plugin on the image's PATH as the entrypoint does.
	binDir := filepath.Join(dir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kubectl", "kubectl-sitefail"} {
		path := strings.TrimPrefix(envOf(c.Env, "PATH"), "/") + "/" + name
		h := files[path]
		if h == nil || h.Mode&0o111 == 0 {
			t.Fatalf("%s is not an executable in the image: %+v", path, h)
		}
		if err := os.WriteFile(filepath.Join(binDir, name), contents[path], 0o755); err != nil {
			t.Fatal(err)
		}
		// Running here proves little about linking (this machine has a libc; the image
		// has none): no program interpreter means no dynamic loader is needed.
		f, err := elf.Open(filepath.Join(binDir, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s in the image is dynamically linked", name)
			}
		}
		f.Close()
	}
	env := []string{"PATH=" + binDir, "HOME=" + dir}
	if out := run(t, dir, env, filepath.Join(binDir, "kubectl"), "version", "--client"); !strings.Contains(out, "Client Version: v1.") {
		t.Errorf("kubectl version --client: %s", out)
	}
	if out := run(t, dir, env, filepath.Join(binDir, "kubectl"), "sitefail", "version"); !strings.HasPrefix(out, "kubectl-sitefail "+version+" ") {
		t.Errorf("kubectl sitefail version: %s", out)
	}
}

func envOf(env []string, key string) string {
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, key+"="); ok {
			return v
		}
	}
	return ""
}

func mustOpen(t *testing.T, path string) io.Reader {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(b)
}

func mustUnmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
}
