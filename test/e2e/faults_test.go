package e2e

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/test/cluster"
	"github.com/sitefail/kubectl-sitefail/test/faultproxy"
	"github.com/sitefail/kubectl-sitefail/test/stretched"
)

// startFaultProxy starts a fault proxy in front of the API server (cfg's Target and Cert
// are filled in), stopped at the end of the test, and a kubeconfig through it.
func startFaultProxy(t *testing.T, name string, cfg faultproxy.Config) (*faultproxy.Proxy, string) {
	t.Helper()
	cert, err := cluster.ServingCert("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Target, cfg.Cert = env.Host, cert
	proxy, err := faultproxy.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Stop)
	path, err := env.KubeconfigVia(name, proxy.URL, cluster.AdminToken)
	if err != nil {
		t.Fatal(err)
	}
	return proxy, path
}

// TestMoveThroughAFaultyAPIServer: a failover and relocation of mixed VMs through a proxy
// that fails 15% of requests (429 with Retry-After, 500, 503, 409 on writes) and cuts
// watches. The move completes with the same guarantees: every VM on DR, each through
// exactly one migration, restart or release; retries are reported once per kind.
func TestMoveThroughAFaultyAPIServer(t *testing.T) {
	notMigratable := func(v *stretched.VMSpec) { v.Disk = corev1.ReadWriteOnce }
	var vms []stretched.VMSpec
	for i := 0; i < 6; i++ {
		vms = append(vms, stretched.VMSpec{Namespace: "faults", Name: "mig-" + string(rune('a'+i)), Tier: 1, Site: "Primary", Memory: "256Mi"})
		vms = append(vms, stretched.VMSpec{Namespace: "faults", Name: "rst-" + string(rune('a'+i)), Tier: 1, Site: "Primary", Memory: "256Mi"})
		notMigratable(&vms[len(vms)-1])
		vms = append(vms, stretched.VMSpec{Namespace: "faults", Name: "edge-" + string(rune('a'+i)), Tier: 2, Site: edge, Memory: "256Mi"})
	}
	vms = append(vms, stretched.VMSpec{Namespace: "faults", Name: "edge-manual", Tier: 2, Site: edge, Memory: "256Mi", RunStrategy: kubevirtv1.RunStrategyManual})
	withEdge(t, vms)
	if err := env.StopSite(edge); err != nil {
		t.Fatal(err)
	}
	waitEdge(t, false)

	proxy, path := startFaultProxy(t, "faulty", faultproxy.Config{Rate: 0.15, WatchRate: 1, WatchResetAfter: 3 * time.Second, Seed: 20261126})

	r := sitefailEnv(t, []string{"KUBECONFIG=" + path}, "move", "-n", "faults", "--all", "--to", "DR", "--confirm-site-down="+edge, "--max-in-flight", "6", "--progress", "lines")
	c := proxy.Counts()
	t.Logf("proxy: %+v", c)
	if r.code != 0 {
		t.Fatalf("move through the fault proxy: %s", r)
	}
	if c.TooMany == 0 || c.Internal == 0 || c.Unavailable == 0 || c.Conflicts == 0 || c.WatchResets == 0 {
		t.Fatalf("the proxy injected too little to prove anything: %+v", c)
	}
	out := r.stdout + r.stderr
	for _, kind := range []string{"HTTP 500", "HTTP 503"} {
		if n := strings.Count(out, "answered "+kind); n > 1 {
			t.Errorf("%s reported %d times; want once per kind", kind, n)
		}
	}
	for _, v := range vms {
		c := env.Counts("faults", v.Name)
		wantStarts, wantMigs := 2, 0
		if strings.HasPrefix(v.Name, "mig-") {
			wantStarts, wantMigs = 1, 1
		}
		if c.Starts != wantStarts || c.Migrations != wantMigs || siteOf(t, "faults", v.Name) != "DR" {
			t.Errorf("%s: %d starts, %d migrations on %q; want %d and %d on DR\n%s", v.Name, c.Starts, c.Migrations, siteOf(t, "faults", v.Name), wantStarts, wantMigs, r)
		}
	}
}
