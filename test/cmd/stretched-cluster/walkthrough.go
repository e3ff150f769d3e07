package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/test/cluster"
	"github.com/sitefail/kubectl-sitefail/test/stretched"
)

// walkthrough runs the plugin the way an operator would during a rehearsal, printing
// each command and its output.
func walkthrough(ctx context.Context, env *stretched.Env, kubeconfig, pluginDir, primary, dr string) error {
	path := os.Getenv("PATH")
	if pluginDir != "" {
		path = pluginDir + string(os.PathListSeparator) + path
	}
	run := func(ok bool, args ...string) error {
		fmt.Printf("\n$ kubectl sitefail %s\n", strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, "kubectl", append([]string{"sitefail"}, args...)...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "PATH="+path)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
		err := cmd.Run()
		if err != nil && ok {
			return fmt.Errorf("kubectl sitefail %s: %w", strings.Join(args, " "), err)
		}
		return nil
	}
	say := func(s string) { fmt.Printf("\n### %s\n", s) }

	say("The two sites and what runs where")
	if err := run(true, "sites"); err != nil {
		return err
	}
	if err := run(true, "status", "-A", "--tier", "1"); err != nil {
		return err
	}
	say("Rehearsal: relocate tier 1 to " + dr + " while both sites are up")
	if err := run(true, "plan", "--tier", "1", "--to", dr, "-A"); err != nil {
		return err
	}
	if err := run(true, "move", "--tier", "1", "--to", dr, "-A", "--progress", "lines"); err != nil {
		return err
	}
	say("Site " + primary + " goes dark (its kubelets stop answering)")
	if err := env.StopSite(primary); err != nil {
		return err
	}
	if err := env.WaitNodesMatching(ctx, 2*time.Minute, "topology.kubernetes.io/site="+primary, func(n *corev1.Node) bool { return !cluster.NodeReady(n) }); err != nil {
		return err
	}
	if err := run(true, "sites"); err != nil {
		return err
	}
	say("Failover without naming the dead site is refused (split-brain guard)")
	_ = run(false, "move", "--all", "--to", dr, "-A")
	say("Failover of everything, tier by tier, throttled")
	if err := run(true, "move", "--all", "--to", dr, "-A", "--confirm-site-down="+primary, "--progress", "lines"); err != nil {
		return err
	}
	if err := run(true, "sites"); err != nil {
		return err
	}
	say("Site " + primary + " is back: fail tier 1 back")
	if err := env.StartSite(primary); err != nil {
		return err
	}
	if err := env.WaitNodesMatching(ctx, 2*time.Minute, "topology.kubernetes.io/site="+primary, func(n *corev1.Node) bool { return cluster.NodeReady(n) && len(n.Spec.Taints) == 0 }); err != nil {
		return err
	}
	if err := run(true, "failback", "--tier", "1", "-A", "--progress", "lines"); err != nil {
		return err
	}
	return run(true, "status", "-A", "--tier", "1")
}
