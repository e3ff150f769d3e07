package kubecluster

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
)

// CrashEnv names a test hook: "before-WRITE:N" or "after-WRITE:N" makes the process exit
// at once, without cleanup (as SIGKILL would), around the Nth write of that kind. WRITE is
// one of patch, annotate, restart, start, migrate, release, fence. The fault suite uses it
// to kill a move at exact points; it does nothing unless set.
const CrashEnv = "SITEFAIL_TEST_CRASH"

// WithCrashPoint wraps c with the hook named by spec; an empty spec returns c.
func WithCrashPoint(c executor.Cluster, spec string) (executor.Cluster, error) {
	if spec == "" {
		return c, nil
	}
	when, rest, ok := strings.Cut(spec, "-")
	write, nth, ok2 := strings.Cut(rest, ":")
	n, err := strconv.Atoi(nth)
	if !ok || !ok2 || err != nil || n < 1 || (when != "before" && when != "after") {
		return nil, fmt.Errorf("%s=%q: want before-WRITE:N or after-WRITE:N", CrashEnv, spec)
	}
	return &crashing{Cluster: c, when: when, write: write, n: n}, nil
}

type crashing struct {
	executor.Cluster
	when, write string
	n           int
	mu          sync.Mutex
	seen        int
}

func (c *crashing) do(write string, fn func() error) error {
	if write != c.write {
		return fn()
	}
	c.mu.Lock()
	c.seen++
	hit := c.seen == c.n
	c.mu.Unlock()
	if hit && c.when == "before" {
		os.Exit(137)
	}
	err := fn()
	if hit && c.when == "after" {
		os.Exit(137)
	}
	return err
}

func (c *crashing) PatchSite(ctx context.Context, st plan.Step, j map[string]string) error {
	return c.do("patch", func() error { return c.Cluster.PatchSite(ctx, st, j) })
}

func (c *crashing) Annotate(ctx context.Context, st plan.Step, j map[string]string) error {
	return c.do("annotate", func() error { return c.Cluster.Annotate(ctx, st, j) })
}

func (c *crashing) Restart(ctx context.Context, ns, name string) error {
	return c.do("restart", func() error { return c.Cluster.Restart(ctx, ns, name) })
}

func (c *crashing) Start(ctx context.Context, ns, name string) error {
	return c.do("start", func() error { return c.Cluster.Start(ctx, ns, name) })
}

func (c *crashing) Migrate(ctx context.Context, ns, vmi, name, to string) error {
	return c.do("migrate", func() error { return c.Cluster.Migrate(ctx, ns, vmi, name, to) })
}

func (c *crashing) ForceDeleteLaunchers(ctx context.Context, ns, uid, site string) error {
	return c.do("release", func() error { return c.Cluster.ForceDeleteLaunchers(ctx, ns, uid, site) })
}

func (c *crashing) FenceNodes(ctx context.Context, site string, nodes []string) error {
	return c.do("fence", func() error { return c.Cluster.FenceNodes(ctx, site, nodes) })
}
