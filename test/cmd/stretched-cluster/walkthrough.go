package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/plugin"
	"github.com/sitefail/kubectl-sitefail/pkg/record"
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
	// expect runs the plugin and checks its exit code: a step meant to be refused must
	// be refused the documented way, not fail for some other reason.
	expect := func(want int, args ...string) error {
		fmt.Printf("\n$ kubectl sitefail %s\n", strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, "kubectl", append([]string{"sitefail"}, args...)...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "PATH="+path)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			return fmt.Errorf("kubectl sitefail %s: %w", strings.Join(args, " "), err)
		}
		if code != want {
			return fmt.Errorf("kubectl sitefail %s: exit %d, want %d", strings.Join(args, " "), code, want)
		}
		return nil
	}
	run := func(args ...string) error { return expect(plugin.ExitOK, args...) }
	say := func(s string) { fmt.Printf("\n### %s\n", s) }

	say("The two sites and what runs where")
	if err := run("sites"); err != nil {
		return err
	}
	if err := run("status", "-A", "--tier", "1"); err != nil {
		return err
	}
	say("Rehearsal: relocate tier 1 to " + dr + " while both sites are up")
	if err := run("plan", "--tier", "1", "--to", dr, "-A"); err != nil {
		return err
	}
	if err := run("move", "--tier", "1", "--to", dr, "-A", "--progress", "lines"); err != nil {
		return err
	}
	say("Site " + primary + " goes dark (its kubelets stop answering)")
	if err := env.StopSite(primary); err != nil {
		return err
	}
	if err := env.WaitNodesMatching(ctx, 2*time.Minute, "topology.kubernetes.io/site="+primary, func(n *corev1.Node) bool { return !cluster.NodeReady(n) }); err != nil {
		return err
	}
	// Wide: each node's fencing evidence, or its absence, before the confirmation.
	if err := run("sites", "-o", "wide"); err != nil {
		return err
	}
	say("Failover without naming the dead site is refused (split-brain guard)")
	if err := expect(plugin.ExitBlocked, "move", "--all", "--to", dr, "-A"); err != nil {
		return err
	}
	say("Failover of everything, tier by tier, throttled")
	if err := run("move", "--all", "--to", dr, "-A", "--confirm-site-down="+primary, "--progress", "lines"); err != nil {
		return err
	}
	if err := run("sites"); err != nil {
		return err
	}
	say("Site " + primary + " is back: fail tier 1 back")
	if err := env.StartSite(primary); err != nil {
		return err
	}
	if err := env.WaitNodesMatching(ctx, 2*time.Minute, "topology.kubernetes.io/site="+primary, func(n *corev1.Node) bool { return cluster.NodeReady(n) && len(n.Spec.Taints) == 0 }); err != nil {
		return err
	}
	if err := run("failback", "--tier", "1", "-A", "--progress", "lines"); err != nil {
		return err
	}
	return run("status", "-A", "--tier", "1")
}

// writeTimeline writes the SVG timeline of the walk-through's failover, as `report
// --html` draws it, to file: the README's picture, made from the demo so that it
// follows the renderer.
func writeTimeline(ctx context.Context, kubeconfig, pluginDir, file string) error {
	sitefail := func(args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, "kubectl", append([]string{"sitefail"}, args...)...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "PATH="+pluginDir+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("kubectl sitefail %s: %w", strings.Join(args, " "), err)
		}
		return out, nil
	}
	out, err := sitefail("history", "-o", "json")
	if err != nil {
		return err
	}
	var list struct {
		Items []record.Listed `json:"items"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		return fmt.Errorf("history -o json: %w", err)
	}
	id := ""
	for _, r := range list.Items {
		if r.Kind == record.KindFailover {
			id = r.ID
			break
		}
	}
	if id == "" {
		return errors.New("the walk-through left no failover record")
	}
	page, err := sitefail("report", id, "-o", "html")
	if err != nil {
		return err
	}
	start, end := bytes.Index(page, []byte("<svg")), bytes.LastIndex(page, []byte("</svg>"))
	if start < 0 || end < start {
		return fmt.Errorf("report %s -o html holds no SVG timeline", id)
	}
	svg := append([]byte(`<?xml version="1.0" encoding="UTF-8"?>`+"\n"), page[start:end+len("</svg>")]...)
	// The page styles the timeline's classes; a picture on its own carries them inside.
	if s, e := bytes.Index(page, []byte("<style>")), bytes.Index(page, []byte("</style>")); s >= 0 && e > s {
		style := page[s : e+len("</style>")]
		open := bytes.IndexByte(svg[len(`<?xml version="1.0" encoding="UTF-8"?>`)+1:], '>') + len(`<?xml version="1.0" encoding="UTF-8"?>`) + 2
		svg = append(svg[:open:open], append(append([]byte("\n"), style...), svg[open:]...)...)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	return os.WriteFile(file, append(svg, '\n'), 0o644)
}
