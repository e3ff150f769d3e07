package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/test/stretched"
)

// bindShippedRoles applies deploy/rbac and binds the operator user to both roles and
// the reader user to the read-only one.
func bindShippedRoles(t *testing.T) {
	t.Helper()
	kubectl := func(args ...string) {
		t.Helper()
		out, err := exec.Command("kubectl", append([]string{"--kubeconfig", env.Kubeconfig}, args...)...).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "AlreadyExists") && !strings.Contains(string(out), "already exists") {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
	}
	kubectl("apply", "-f", "../../deploy/rbac/")
	kubectl("create", "clusterrolebinding", "sitefail-reader-viewer", "--clusterrole=sitefail-viewer", "--user=reader")
	kubectl("create", "clusterrolebinding", "sitefail-operator-viewer", "--clusterrole=sitefail-viewer", "--user=operator")
	kubectl("create", "clusterrolebinding", "sitefail-operator", "--clusterrole=sitefail-operator", "--user=operator")
	kubectl("create", "rolebinding", "sitefail-operator-lock", "-n", "kube-system", "--role=sitefail-move-lock", "--user=operator")
	// RBAC reaches the authorizer through a watch: give it a moment.
	time.Sleep(time.Second)
}

// Least privilege: the shipped read-only role plans and reads but cannot move (and says
// exactly what it lacks, changing nothing); the operator role completes a failover;
// --as impersonation goes through the same checks.
func TestShippedRolesAreEnoughAndNoMore(t *testing.T) {
	withEdge(t, []stretched.VMSpec{
		edgeVM("app", 1, nil),
		edgeVM("ops", 1, func(v *stretched.VMSpec) { v.RunStrategy = kubevirtv1.RunStrategyManual }),
	})
	bindShippedRoles(t)

	for _, who := range [][]string{{"--context", "sitefail-reader"}, {"--as", "reader"}} {
		r := sitefail(t, append(who, "plan", "-n", safetyNS, "--all", "--to", "DR")...)
		if r.code != 0 || !strings.Contains(r.stdout, "live-migrate") {
			t.Fatalf("%v plan: %s", who, r)
		}
		r = sitefail(t, append(who, "status", "-A")...)
		if r.code != 0 {
			t.Fatalf("%v status: %s", who, r)
		}
		r = sitefail(t, append(who, "move", "-n", safetyNS, "--all", "--to", "DR")...)
		if r.code != 1 || !strings.Contains(r.stderr, "patch virtualmachines.kubevirt.io") || !strings.Contains(r.stderr, "create leases.coordination.k8s.io") {
			t.Fatalf("%v move must fail in preflight naming every missing permission: %s", who, r)
		}
		if s := templateSite(t, "app"); s != edge {
			t.Fatalf("%v: a refused move changed the template to %s", who, s)
		}
	}

	if err := env.StopSite(edge); err != nil {
		t.Fatal(err)
	}
	waitEdge(t, false)
	r := sitefail(t, "--context", "sitefail-operator", "move", "-n", safetyNS, "--all", "--to", "DR", "--confirm-site-down="+edge, "--progress", "lines")
	if r.code != 0 {
		t.Fatalf("operator failover: %s", r)
	}
	for _, name := range []string{"app", "ops"} {
		if s := siteOf(t, safetyNS, name); s != "DR" {
			t.Errorf("%s runs on %q after the operator's failover", name, s)
		}
	}
}
