package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/journal"
	"github.com/sitefail/kubectl-sitefail/pkg/kubecluster"
	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/test/stretched"
)

const crashNS = "crash"

// crashPoints kill one 200-VM move again and again, each time at a named write (the
// process exits at once, as SIGKILL would), then run it to the end. They cover: after the
// patch and before the next journal entry, after the journal and before a restart or a
// migration, after a migration is created, after a release and before the explicit
// start, and before the first write of a run that resumes between tiers.
var crashPoints = []string{
	"after-patch:1", "before-annotate:2", "after-annotate:4", "after-migrate:2",
	"before-restart:1", "after-restart:3", "after-release:1", "before-start:1",
	"after-start:1", "before-migrate:1", "after-release:5", "before-patch:1",
	"after-annotate:9", "after-patch:20",
}

type crashKind int

const (
	kindMigrate crashKind = iota
	kindRestart
	kindFailover
	kindManual
	kindHalted
)

// TestCrashAtEveryPointFinishesOnce: a 200-VM move of mixed actions (live migrations and
// restarts from Primary, failovers of Always, RerunOnFailure and Manual VMs from the dead
// Edge site, patch-only of stopped VMs), killed at each crash point and run again. At
// the end every VM is where it should be, each went through exactly one restart,
// migration or release (counted from KubeVirt's own objects: VMI UIDs and succeeded
// migrations), and every journal says done.
func TestCrashAtEveryPointFinishesOnce(t *testing.T) {
	kinds := map[string]crashKind{}
	var vms []stretched.VMSpec
	add := func(n, tier int, site string, kind crashKind, mod func(*stretched.VMSpec)) {
		for i := 0; i < n; i++ {
			v := stretched.VMSpec{Namespace: crashNS, Name: fmt.Sprintf("t%d-k%d-%d", tier, kind, i), Tier: tier, Site: site, Memory: "256Mi"}
			if mod != nil {
				mod(&v)
			}
			kinds[v.Name] = kind
			vms = append(vms, v)
		}
	}
	notMigratable := func(v *stretched.VMSpec) { v.Disk = corev1.ReadWriteOnce }
	add(30, 1, "Primary", kindMigrate, nil)
	add(20, 1, "Primary", kindRestart, notMigratable)
	add(40, 2, edge, kindFailover, nil)
	add(10, 2, edge, kindManual, func(v *stretched.VMSpec) { v.RunStrategy = kubevirtv1.RunStrategyManual })
	add(30, 3, "Primary", kindMigrate, nil)
	add(20, 3, "Primary", kindRestart, notMigratable)
	add(20, 3, "Primary", kindHalted, func(v *stretched.VMSpec) { v.RunStrategy = kubevirtv1.RunStrategyHalted })
	add(30, 3, edge, kindFailover, func(v *stretched.VMSpec) { v.RunStrategy = kubevirtv1.RunStrategyRerunOnFailure })
	withEdge(t, vms)
	if err := env.StopSite(edge); err != nil {
		t.Fatal(err)
	}
	waitEdge(t, false)

	args := []string{"move", "-n", crashNS, "--all", "--to", "DR", "--confirm-site-down=" + edge, "--max-in-flight", "20", "--progress", "lines"}
	crashed := 0
	for _, point := range crashPoints {
		r := sitefailEnv(t, []string{kubecluster.CrashEnv + "=" + point}, args...)
		switch r.code {
		case 137:
			crashed++
		case 0:
			t.Logf("the move finished before %s: %d crash points fired", point, crashed)
		default:
			t.Fatalf("run with crash point %s: %s", point, r)
		}
		if r.code == 0 {
			break
		}
	}
	if crashed < 12 {
		t.Errorf("only %d crash points fired; the test wants at least 12", crashed)
	}
	r := sitefail(t, args...)
	if r.code != 0 {
		t.Fatalf("final run: %s", r)
	}

	ctx := context.Background()
	for _, v := range vms {
		kind := kinds[v.Name]
		u, err := env.Dynamic.Resource(kubevirt.VMs).Namespace(crashNS).Get(ctx, v.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sel, _, _ := unstructured.NestedStringMap(u.Object, "spec", "template", "spec", "nodeSelector")
		j := journal.Read(u.GetAnnotations())
		if sel["topology.kubernetes.io/site"] != "DR" || j.Phase != journal.PhaseDone || j.To != "DR" {
			t.Errorf("%s: template %v, journal %+v", v.Name, sel, j)
		}
		c := env.Counts(crashNS, v.Name)
		switch kind {
		case kindHalted:
			if c.Starts != 0 {
				t.Errorf("%s (stopped) was started %d times", v.Name, c.Starts)
			}
			continue
		case kindMigrate:
			if c.Starts != 1 || c.Migrations != 1 {
				t.Errorf("%s: %d starts, %d migrations; want exactly one migration", v.Name, c.Starts, c.Migrations)
			}
		default:
			if c.Starts != 2 || c.Migrations != 0 {
				t.Errorf("%s: %d starts, %d migrations; want the first start and exactly one restart or release", v.Name, c.Starts, c.Migrations)
			}
		}
		if !vmiReady(ctx, crashNS, v.Name) || siteOf(t, crashNS, v.Name) != "DR" {
			t.Errorf("%s is not Ready on DR", v.Name)
		}
	}
	if t.Failed() {
		t.Logf("final run:\n%s", strings.TrimSpace(r.stdout))
	}
}
