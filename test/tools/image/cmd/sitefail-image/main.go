// Command sitefail-image builds the kubectl-sitefail container image without a Docker
// daemon and without pulling a base image: the image is assembled layer by layer from
// files this machine already has, so it builds wherever Go builds, and the same inputs
// give the same digest.
//
//	sitefail-image build -plugin BIN -kubectl BIN -o dist/image.tar [-layout dist/image]
//	sitefail-image validate dist/image.tar
//
// The tarball is an OCI image layout (what skopeo, crane and containerd read) that also
// carries Docker's manifest.json, so `docker load` and `crane push dist/image.tar` take
// it as it is.
package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// The user the image runs as. Numeric, so that the kubelet can enforce runAsNonRoot
// without resolving a name; 65532 is the "nonroot" of distroless and Chainguard images,
// which clusters' policies often already allow.
const (
	uid  = 65532
	home = "/home/sitefail"
	bin  = "/usr/local/bin"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "build":
		err = build(os.Args[2:])
	case "validate":
		if len(os.Args) != 3 {
			usage()
		}
		err = validateTarball(os.Args[2])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sitefail-image:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: sitefail-image build -plugin BIN -kubectl BIN -o TAR [flags] | validate TAR")
	os.Exit(2)
}

type options struct {
	plugin, kubectl, out, layoutDir, ref, version, revision, source, arch string
	epoch                                                                 int64
}

func build(args []string) error {
	var o options
	flags := flag.NewFlagSet("build", flag.ExitOnError)
	flags.StringVar(&o.plugin, "plugin", "", "the static linux kubectl-sitefail binary")
	flags.StringVar(&o.kubectl, "kubectl", "", "the static linux kubectl binary")
	flags.StringVar(&o.out, "o", "dist/image.tar", "the OCI layout tarball to write")
	flags.StringVar(&o.layoutDir, "layout", "", "also leave the OCI layout directory here (crane push DIR keeps the OCI manifest's digest)")
	flags.StringVar(&o.ref, "ref", "", "the image reference recorded in the tarball (tag included)")
	flags.StringVar(&o.version, "version", "", "org.opencontainers.image.version")
	flags.StringVar(&o.revision, "revision", "", "org.opencontainers.image.revision")
	flags.StringVar(&o.source, "source", "", "org.opencontainers.image.source: the repository a registry links the package to")
	flags.StringVar(&o.arch, "arch", "amd64", "the binaries' GOARCH")
	flags.Int64Var(&o.epoch, "epoch", 0, "seconds since 1970 for every timestamp (SOURCE_DATE_EPOCH; the commit time)")
	_ = flags.Parse(args)
	if o.plugin == "" || o.kubectl == "" || flags.NArg() != 0 {
		return errors.New("build needs -plugin and -kubectl")
	}
	img, err := image(o)
	if err != nil {
		return err
	}
	if err := write(img, o); err != nil {
		return err
	}
	// What is checked is what was written: an image in memory carries empty maps where its
	// own serialized form has none, which validation (rightly) calls a mismatch.
	return validateTarball(o.out)
}

func image(o options) (v1.Image, error) {
	when := time.Unix(o.epoch, 0).UTC()
	for _, b := range []string{o.plugin, o.kubectl} {
		if err := checkStatic(b, o.arch); err != nil {
			return nil, err
		}
	}
	certs, err := caBundle()
	if err != nil {
		return nil, err
	}
	// Base files first, then kubectl (changes with its pin), then the plugin (changes
	// with every commit): a new release shares the first two layers with the last.
	base := []file{
		dir("etc/", 0o755, 0), dir("etc/ssl/", 0o755, 0), dir("etc/ssl/certs/", 0o755, 0),
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, body: certs},
		{name: "etc/passwd", mode: 0o644, body: []byte("root:x:0:0:root:/root:/sbin/nologin\nsitefail:x:" + strconv.Itoa(uid) + ":" + strconv.Itoa(uid) + ":sitefail:" + home + ":/sbin/nologin\n")},
		{name: "etc/group", mode: 0o644, body: []byte("root:x:0:\nsitefail:x:" + strconv.Itoa(uid) + ":\n")},
		dir("home/", 0o755, 0),
		// kubectl keeps its discovery cache under $HOME/.kube.
		dir(home[1:]+"/", 0o700, uid),
		dir("tmp/", 0o1777, 0),
		dir("usr/", 0o755, 0), dir("usr/local/", 0o755, 0), dir(bin[1:]+"/", 0o755, 0),
	}
	kubectl, err := binFile(o.kubectl, "kubectl")
	if err != nil {
		return nil, err
	}
	plugin, err := binFile(o.plugin, "kubectl-sitefail")
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, files := range [][]file{base, {kubectl}, {plugin}} {
		l, err := layer(files, when)
		if err != nil {
			return nil, err
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return nil, err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", o.arch
	cf.Created = v1.Time{Time: when}
	var labels map[string]string
	for k, v := range map[string]string{"version": o.version, "revision": o.revision, "source": o.source} {
		if v != "" {
			if labels == nil {
				labels = map[string]string{}
			}
			labels["org.opencontainers.image."+k] = v
		}
	}
	cf.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", uid, uid),
		Entrypoint: []string{"kubectl"},
		// Without arguments the container says which plugin and kubectl it holds.
		Cmd:        []string{"sitefail", "version"},
		Env:        []string{"PATH=" + bin, "HOME=" + home, "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
		WorkingDir: home,
		Labels:     labels,
	}
	for i := range cf.History {
		cf.History[i].Created = v1.Time{Time: when}
	}
	return mutate.ConfigFile(img, cf)
}

// checkStatic refuses a binary the empty base cannot run: one that needs a dynamic
// loader, or one built for another system.
func checkStatic(path, arch string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: not a linux binary: %w", path, err)
	}
	defer f.Close()
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
	if f.Machine != want {
		return fmt.Errorf("%s is built for %s, the image is linux/%s", path, f.Machine, arch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked (build it with CGO_ENABLED=0): the image has no libc", path)
		}
	}
	return nil
}

// caBundle writes the Mozilla roots that the pinned golang.org/x/crypto/x509roots
// module carries. Roots with a constraint (a distrust-after date) are left out: a PEM
// file cannot carry the date, and trusting them without it would trust more than NSS.
func caBundle() ([]byte, error) {
	var buf bytes.Buffer
	n := 0
	for r := range bundle.Roots() {
		if r.Constraint != nil {
			continue
		}
		if err := pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate}); err != nil {
			return nil, err
		}
		n++
	}
	if n < 100 {
		return nil, fmt.Errorf("only %d CA roots in the bundle", n)
	}
	return buf.Bytes(), nil
}

type file struct {
	name string
	mode int64
	uid  int
	body []byte
	dir  bool
}

func dir(name string, mode int64, owner int) file {
	return file{name: name, mode: mode, uid: owner, dir: true}
}

func binFile(path, name string) (file, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return file{}, err
	}
	return file{name: bin[1:] + "/" + name, mode: 0o755, body: b}, nil
}

// layer makes a gzip layer whose bytes depend only on the files and the time.
func layer(files []file, when time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Uid: f.uid, Gid: f.uid, ModTime: when, Format: tar.FormatPAX, Typeflag: tar.TypeReg, Size: int64(len(f.body))}
		if f.dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
}

// write lays the image out as an OCI layout, then tars the layout in a fixed order with
// fixed times, adding Docker's manifest.json beside index.json.
func write(img v1.Image, o options) error {
	dir := o.layoutDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "sitefail-image")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	} else if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	var opts []layout.Option
	opts = append(opts, layout.WithPlatform(v1.Platform{OS: "linux", Architecture: o.arch}))
	if o.ref != "" {
		// The OCI name is the tag (skopeo's oci:DIR:TAG); containerd's import reads the full reference.
		tag := o.ref[strings.LastIndex(o.ref, ":")+1:]
		opts = append(opts, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag, "io.containerd.image.name": o.ref}))
	}
	if err := p.AppendImage(img, opts...); err != nil {
		return err
	}
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	docker := []map[string]any{{"Config": "blobs/" + m.Config.Digest.Algorithm + "/" + m.Config.Digest.Hex, "Layers": []string{}}}
	var ls []string
	for _, l := range m.Layers {
		ls = append(ls, "blobs/"+l.Digest.Algorithm+"/"+l.Digest.Hex)
	}
	docker[0]["Layers"] = ls
	if o.ref != "" {
		docker[0]["RepoTags"] = []string{o.ref}
	}
	dj, err := json.Marshal(docker)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	return tarDir(dir, o.out, map[string][]byte{"manifest.json": dj}, time.Unix(o.epoch, 0).UTC())
}

func tarDir(dir, out string, extra map[string][]byte, when time.Time) error {
	var names []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			rel += "/"
		}
		names = append(names, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return err
	}
	for n := range extra {
		names = append(names, n)
	}
	sort.Strings(names)
	f, err := os.Create(out + ".tmp")
	if err != nil {
		return err
	}
	defer os.Remove(out + ".tmp")
	tw := tar.NewWriter(f)
	for _, n := range names {
		h := &tar.Header{Name: n, ModTime: when, Format: tar.FormatPAX}
		var body []byte
		switch {
		case extra[n] != nil:
			body = extra[n]
		case strings.HasSuffix(n, "/"):
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		default:
			if body, err = os.ReadFile(filepath.Join(dir, n)); err != nil {
				return err
			}
		}
		if h.Typeflag != tar.TypeDir {
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, 0o644, int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(body); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(out+".tmp", out)
}

// validateTarball runs go-containerregistry's full validation (every blob's digest and
// size, diff IDs against the uncompressed layers, the config against the manifest) on
// each image of the layout inside the tarball.
func validateTarball(path string) error {
	dir, err := os.MkdirTemp("", "sitefail-image-validate")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := untar(path, dir); err != nil {
		return err
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return fmt.Errorf("%s is not an OCI image layout: %w", path, err)
	}
	if err := validate.Index(idx); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	if len(im.Manifests) == 0 {
		return fmt.Errorf("%s holds no image", path)
	}
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return err
		}
		if err := validate.Image(img); err != nil {
			return fmt.Errorf("%s: image %s: %w", path, d.Digest, err)
		}
		fmt.Printf("%s: valid image %s (%s)\n", path, d.Digest, d.Platform)
	}
	// The same image read the way Docker and `crane push FILE` read it.
	timg, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		return fmt.Errorf("%s as a Docker tarball: %w", path, err)
	}
	if err := validate.Image(timg); err != nil {
		return fmt.Errorf("%s as a Docker tarball: %w", path, err)
	}
	return nil
}

func untar(path, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if !filepath.IsLocal(h.Name) {
			return fmt.Errorf("%s: entry %q leaves the layout", path, h.Name)
		}
		target := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				return err
			}
			if err := os.WriteFile(target, b, 0o644); err != nil {
				return err
			}
		}
	}
}
