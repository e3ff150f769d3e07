package e2e

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/test/cluster"
	"github.com/sitefail/kubectl-sitefail/test/stretched"
)

// TestUIFailover runs `kubectl sitefail ui` in a real terminal (tmux), takes the Primary
// site down, checks that the stranded VMs are flagged, and fails tier 1 over from the
// keyboard. It runs last: it needs tier 1 back on Primary, where TestFailback left it.
// The ui shows prod only: a tier-1 VM another test left behind in its own namespace
// was caught in this failover twice (5/6 done, never DONE).
func TestUIFailover(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed")
	}
	session := "sitefail-e2e"
	tmux := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("tmux", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	cmdline := "env KUBECONFIG=" + env.Kubeconfig + " PATH=" + binDir + ":" + os.Getenv("PATH") + " SITEFAIL_CONFIG=/nonexistent/none.yaml kubectl sitefail ui -n prod; sleep 60"
	tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", cmdline)
	defer exec.Command("tmux", "kill-session", "-t", session).Run()
	screen := func() string { return tmux("capture-pane", "-t", session, "-p") }
	waitFor := func(what string, timeout time.Duration) string {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for {
			s := screen()
			if strings.Contains(s, what) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("screen never showed %q:\n%s", what, s)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitFor("Primary UP", 30*time.Second)

	if err := env.StopSite("Primary"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = env.StartSite("Primary")
		_ = env.WaitNodesMatching(context.Background(), 90*time.Second, "topology.kubernetes.io/site=Primary", cluster.NodeReady)
	}()
	if err := env.WaitNodesMatching(context.Background(), 90*time.Second, "topology.kubernetes.io/site=Primary", func(n *corev1.Node) bool { return !cluster.NodeReady(n) }); err != nil {
		t.Fatal(err)
	}
	waitFor("✖ S prod/db-1", 30*time.Second)
	before := map[string]stretched.Counts{}
	for _, name := range []string{"db-1", "db-2", "db-3", "ldap"} {
		before[name] = env.Counts("prod", name)
	}
	waitFor("Primary DOWN", 5*time.Second)

	tmux("send-keys", "-t", session, "Right")
	tmux("send-keys", "-t", session, "1")
	tmux("send-keys", "-t", session, "p")
	waitFor("PLAN tier 1", 10*time.Second)
	tmux("send-keys", "-t", session, "m")
	waitFor(`Type "Primary"`, 10*time.Second)
	tmux("send-keys", "-t", session, "-l", "Primary")
	tmux("send-keys", "-t", session, "Enter")
	s := waitFor("DONE", 2*time.Minute)
	if !strings.Contains(s, "failed 0") && !strings.Contains(s, "0 failed") {
		t.Fatalf("failover from the UI reported failures:\n%s", s)
	}
	for _, name := range []string{"db-1", "db-2", "db-3", "ldap"} {
		if site := siteOf(t, "prod", name); site != "DR" {
			t.Errorf("prod/%s on %q after the UI failover\n%s", name, site, screen())
		}
		// A failover releases each VM once: one new instance. (Migrations cannot be
		// compared: KubeVirt garbage-collects the old instance's VMIMs with it.)
		if got := env.Counts("prod", name); got.Starts != before[name].Starts+1 {
			t.Errorf("prod/%s: counts %+v after the UI failover, %+v before; want exactly one start more", name, got, before[name])
		}
	}
}
