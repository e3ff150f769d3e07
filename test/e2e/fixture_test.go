package e2e

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/test/stretched"
)

// fixture: 3 tiers over two namespaces, all homed on Primary, with the run strategies
// and shapes the plan must tell apart.
func fixture() []stretched.VMSpec {
	running := true
	var out []stretched.VMSpec
	add := func(s stretched.VMSpec) {
		if s.Site == "" {
			s.Site = "Primary"
		}
		out = append(out, s)
	}
	for i := 1; i <= 3; i++ {
		add(stretched.VMSpec{Namespace: "prod", Name: fmt.Sprintf("db-%d", i), Tier: 1})
	}
	add(stretched.VMSpec{Namespace: "prod", Name: "ldap", Tier: 1, Disk: corev1.ReadWriteOnce})
	add(stretched.VMSpec{Namespace: "prod", Name: "cold", Tier: 1, RunStrategy: kubevirtv1.RunStrategyHalted, ExtraSelector: map[string]string{"disk": "ssd"}})
	for i := 1; i <= 6; i++ {
		add(stretched.VMSpec{Namespace: "shop", Name: fmt.Sprintf("web-%d", i), Tier: 2})
	}
	add(stretched.VMSpec{Namespace: "shop", Name: "legacy", Tier: 2, Running: &running})
	add(stretched.VMSpec{Namespace: "shop", Name: "manual", Tier: 2, RunStrategy: kubevirtv1.RunStrategyManual})
	for i := 1; i <= 5; i++ {
		add(stretched.VMSpec{Namespace: "shop", Name: fmt.Sprintf("batch-%d", i), Tier: 3, RunStrategy: kubevirtv1.RunStrategyRerunOnFailure})
	}
	add(stretched.VMSpec{Namespace: "shop", Name: "misc", Labels: map[string]string{"sitefail.io/tier": "gold"}})
	return out
}
