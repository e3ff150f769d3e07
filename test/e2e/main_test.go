// Package e2e drives the real kubectl-sitefail binary, through kubectl's plugin
// mechanism, against the local stretched cluster running KubeVirt's own controllers.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/test/cluster"
	"github.com/sitefail/kubectl-sitefail/test/kubevirtstack"
	"github.com/sitefail/kubectl-sitefail/test/stretched"
)

var (
	env    *stretched.Env
	binDir string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv("SITEFAIL_SKIP_E2E") != "" {
		fmt.Println("SITEFAIL_SKIP_E2E set: skipping the end-to-end suite")
		return 0
	}
	if _, err := exec.LookPath("kubectl"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: kubectl is not on PATH")
		return 1
	}
	var err error
	binDir, err = os.MkdirTemp("", "sitefail-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(binDir)
	if prebuilt := os.Getenv("SITEFAIL_PLUGIN_BIN"); prebuilt != "" {
		// hack/e2e.sh builds it once for all its shards.
		if err := os.Symlink(prebuilt, filepath.Join(binDir, "kubectl-sitefail")); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
	} else {
		build := exec.Command("go", "build", "-o", filepath.Join(binDir, "kubectl-sitefail"), "../../cmd/kubectl-sitefail")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: build plugin:", err)
			return 1
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env, err = stretched.Start(ctx, stretched.Options{
		Cluster:  cluster.Config{Sites: []string{"Primary", "DR"}, NodesPerSite: 3, UnlabeledNodes: 2},
		KubeVirt: kubevirtstack.Config{BootDelay: time.Second, MigrationDelay: time.Second},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: start cluster:", err)
		return 1
	}
	defer env.Stop()
	if err := env.CreateVMs(ctx, fixture()); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: create VMs:", err)
		return 1
	}
	if err := env.WaitSettled(ctx, 3*time.Minute); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	return m.Run()
}

// result is one run of `kubectl sitefail ...`.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// sitefail runs the plugin as an operator would: kubectl finds it on PATH.
func sitefail(t *testing.T, args ...string) result {
	t.Helper()
	return sitefailCtx(t, context.Background(), args...)
}

func sitefailCtx(t *testing.T, ctx context.Context, args ...string) result {
	t.Helper()
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"sitefail"}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig, "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"), "SITEFAIL_CONFIG=/nonexistent/none.yaml")
	return runResult(t, cmd)
}

// runResult runs cmd and returns its output and exit code.
func runResult(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", cmd.Args, err)
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

func mustJSON(t *testing.T, r result, v any) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("command failed: %s", r)
	}
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("decode JSON: %v\n%s", err, r)
	}
}

// siteOf reads, from the cluster itself, the site of the node the VM's VMI runs on.
func siteOf(t *testing.T, ns, name string) string {
	t.Helper()
	u, err := env.Dynamic.Resource(kubevirt.VMIs).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	vmi, err := kubevirt.ToVMI(u)
	if err != nil || vmi.Status.NodeName == "" {
		return ""
	}
	n, err := env.Kube.CoreV1().Nodes().Get(context.Background(), vmi.Status.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n.Labels["topology.kubernetes.io/site"]
}

// syncBuffer is a bytes.Buffer safe to read while a process writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startProcess(t *testing.T, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "kubectl-sitefail"), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig, "SITEFAIL_CONFIG=/nonexistent/none.yaml")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out
}

func contains(t *testing.T, s, want string) {
	t.Helper()
	if !strings.Contains(s, want) {
		t.Fatalf("output lacks %q:\n%s", want, s)
	}
}
