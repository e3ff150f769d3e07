package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sitefail/kubectl-sitefail/test/cluster"
	"github.com/sitefail/kubectl-sitefail/test/stretched"
)

const controlPlaneNS = "controlplane"

// The control plane goes away in the middle of a move: kube-apiserver is stopped for
// 20 s, then etcd is killed and started again. Each time the move either finishes or
// stops at a safe point, saying so (exit 4: its lock could not be renewed, so it stopped
// writing), and running the same command again finishes it: every VM on the target,
// Ready, with exactly one migration per move.
func TestMoveSurvivesControlPlaneRestarts(t *testing.T) {
	ctx := context.Background()
	var vms []stretched.VMSpec
	for i := 0; i < 10; i++ {
		vms = append(vms, stretched.VMSpec{Namespace: controlPlaneNS, Name: fmt.Sprintf("vm-%d", i), Tier: 1 + i/5, Site: "Primary"})
	}
	if err := env.CreateVMs(ctx, vms); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Kube.CoreV1().Namespaces().Delete(ctx, controlPlaneNS, metav1.DeleteOptions{}) })
	for _, v := range vms {
		v := v
		waitFor(t, 3*time.Minute, v.Name+" Ready on Primary", func() bool { return vmiReady(ctx, v.Namespace, v.Name) && siteOf(t, v.Namespace, v.Name) == "Primary" })
	}

	outage := func(what, to string, cut func() error, down time.Duration, restore func() error) {
		t.Helper()
		args := []string{"move", "--all", "--to", to, "-n", controlPlaneNS, "--max-in-flight", "2", "--progress", "lines"}
		cmd, out := startProcess(t, args...)
		waitFor(t, 2*time.Minute, "two VMs moved before the "+what+" outage", func() bool { return strings.Count(out.String(), " done, ") >= 2 })
		if err := cut(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(down)
		if err := restore(); err != nil {
			t.Fatal(err)
		}
		if err := env.WaitAPIServer(ctx, 90*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := env.KubeVirt.Recover(ctx); err != nil {
			t.Fatal(err)
		}
		// Nodes missed heartbeats while the API server was away and are Unknown until kwok
		// renews them; a plan made before that is blocked (NodeNotReady), as it should be.
		for _, site := range []string{"Primary", "DR"} {
			if err := env.WaitNodesMatching(ctx, 90*time.Second, "topology.kubernetes.io/site="+site, cluster.NodeReady); err != nil {
				t.Fatal(err)
			}
		}
		code := waitExit(t, cmd, 4*time.Minute)
		t.Logf("%s outage: the move exited %d:\n%s", what, code, out.String())
		switch code {
		case 0:
		case 4:
			if !strings.Contains(out.String(), "lock") {
				t.Errorf("exit 4 without naming the lost lock:\n%s", out.String())
			}
		default:
			t.Fatalf("after a %s outage the move must finish or stop at a safe point (exit 0 or 4), got %d", what, code)
		}
		r := sitefail(t, args...)
		if r.code != 0 {
			t.Fatalf("the rerun after the %s outage: %s", what, r)
		}
		for _, v := range vms {
			if s := siteOf(t, controlPlaneNS, v.Name); s != to {
				t.Errorf("%s runs on %q after the %s outage and the rerun", v.Name, s, what)
			}
		}
	}
	outage("kube-apiserver", "DR", func() error { return env.Kill("kube-apiserver") }, 20*time.Second, func() error { return env.Respawn("kube-apiserver") })
	outage("etcd", "Primary", func() error { return env.Kill("etcd") }, 5*time.Second, func() error { return env.Respawn("etcd") })

	// There and back: one start each, and exactly one migration per move.
	for _, v := range vms {
		if c := env.Counts(controlPlaneNS, v.Name); c.Starts != 1 || c.Migrations != 2 {
			t.Errorf("%s: %d starts and %d migrations, want 1 and 2", v.Name, c.Starts, c.Migrations)
		}
	}
}

// waitExit waits for the process and returns its exit code.
func waitExit(t *testing.T, cmd *exec.Cmd, timeout time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		return cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("the move did not exit within %s", timeout)
		return -1
	}
}
