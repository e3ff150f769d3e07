package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
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
		// Enough for the site-loss view too: the etcd static pods and the
		// NodeHealthChecks (the test cluster has their CRD) are read, not left unread.
		r = sitefail(t, append(who, "sites", "-o", "json")...)
		if r.code != 0 || strings.Contains(r.stdout, `"unread"`) || !strings.Contains(r.stdout, `"remediationIfLost"`) {
			t.Fatalf("%v sites -o json must read etcd pods and NodeHealthChecks: %s", who, r)
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

// The daily drill check: the shipped sitefail-drill-check account passes
// `drill --dry-run=server` (plan, every permission, every patch through admission) and
// changes nothing; the same account's real move is refused by the shipped policy.
func TestDrillDryRunServerWithTheDrillCheckAccount(t *testing.T) {
	withEdge(t, []stretched.VMSpec{edgeVM("app", 1, nil), edgeVM("db", 2, nil)})
	bindShippedRoles(t)
	ctx := context.Background()
	expiry := int64(600)
	tok, err := env.Kube.CoreV1().ServiceAccounts("sitefail").CreateToken(ctx, "sitefail-drill-check",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := env.KubeconfigFor("drill-check", tok.Status.Token)
	if err != nil {
		t.Fatal(err)
	}
	asCheck := []string{"KUBECONFIG=" + kubeconfig}
	// The policy reaches admission through a watch: wait until it refuses a real write.
	sa := kubernetes.NewForConfigOrDie(env.ConfigFor(tok.Status.Token))
	waitFor(t, time.Minute, "the dry-run-only policy in force", func() bool {
		ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-"}, InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: safetyNS, Name: "probe"}, Reason: "Probe"}
		_, err := sa.CoreV1().Events(safetyNS).Create(ctx, ev, metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), "may only send dry-run requests") {
			t.Logf("probe: %v", err)
			return false
		}
		return true
	})

	r := sitefailEnv(t, asCheck, "drill", "-n", safetyNS, "--all", "--to", "DR", "--dry-run=server")
	if r.code != 0 || !strings.Contains(r.stdout, "all 2 patch(es) accepted") {
		t.Fatalf("drill --dry-run=server as sitefail-drill-check: %s", r)
	}
	r = sitefailEnv(t, asCheck, "move", "-n", safetyNS, "--all", "--to", "DR")
	if r.code == 0 || !strings.Contains(r.stderr, "may only send dry-run requests") {
		t.Fatalf("a real move by sitefail-drill-check must be refused: %s", r)
	}
	for _, name := range []string{"app", "db"} {
		if s := templateSite(t, name); s != edge {
			t.Errorf("%s: template moved to %s by a dry run or a refused move", name, s)
		}
		if s := siteOf(t, safetyNS, name); s != edge {
			t.Errorf("%s runs on %q", name, s)
		}
	}
	if r := sitefail(t, "drill", "-n", safetyNS, "--all", "--to", "DR", "--dry-run=client"); r.code != 1 || !strings.Contains(r.stderr, "--dry-run=server only") {
		t.Errorf("drill --dry-run=client: %s", r)
	}
}
