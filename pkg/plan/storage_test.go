package plan

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

func hostnames(names ...string) *corev1.NodeSelector {
	return &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
		{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: names}}}}}
}

func TestStorageTopology(t *testing.T) {
	rwo := []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	rwx := []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
	storage := func() *snapshot.Storage {
		return &snapshot.Storage{
			Claims: map[string]snapshot.Claim{
				"a/local":      {VolumeName: "pv-local", AccessModes: rwo},
				"a/stretched":  {VolumeName: "pv-stretched", AccessModes: rwx},
				"a/both":       {VolumeName: "pv-both", AccessModes: rwx},
				"a/unbound":    {StorageClass: "zonal", AccessModes: rwx},
				"a/unbound-ok": {StorageClass: "everywhere", AccessModes: rwx},
				"a/imported":   {VolumeName: "pv-stretched", AccessModes: rwx},
				"a/wffc":       {StorageClass: "everywhere", AccessModes: rwx},
				"a/populating": {StorageClass: "everywhere", AccessModes: rwx},
				"a/broken":     {VolumeName: "pv-stretched", AccessModes: rwx},
			},
			VolumeAffinity: map[string]*corev1.NodeSelector{"pv-local": hostnames("p1"), "pv-both": hostnames("p1", "d2")},
			Classes: map[string]snapshot.StorageClass{
				"zonal":      {AllowedTopologies: []corev1.TopologySelectorTerm{{MatchLabelExpressions: []corev1.TopologySelectorLabelRequirement{{Key: siteKey, Values: []string{"Primary"}}}}}},
				"everywhere": {AllowedTopologies: []corev1.TopologySelectorTerm{{MatchLabelExpressions: []corev1.TopologySelectorLabelRequirement{{Key: siteKey, Values: []string{"Primary", "DR"}}}}}},
			},
			DataVolumePhases: map[string]string{"a/imported": "ImportInProgress", "a/done": "Succeeded",
				"a/wffc": "WaitForFirstConsumer", "a/populating": "PendingPopulation", "a/broken": "Failed"},
		}
	}
	tests := []struct {
		name        string
		claims, dvs []string
		running     bool
		block, warn string
		// message is a word the blocker's message must hold.
		message string
	}{
		{name: "local volume on the source site", claims: []string{"local"}, block: "StorageNotOnTarget"},
		{name: "stretched volume", claims: []string{"stretched"}, running: true},
		{name: "volume reachable from one DR node", claims: []string{"both"}},
		{name: "unbound claim of a class limited to the source", claims: []string{"unbound"}, block: "StorageNotOnTarget"},
		{name: "unbound claim of a class on both sites", claims: []string{"unbound-ok"}},
		{name: "DataVolume still importing", claims: []string{"imported"}, dvs: []string{"imported"}, block: "DataVolumeNotReady"},
		// KubeVirt v1.8.0 starts the VM on these (vm.go handleDataVolumes): the claim binds,
		// or is populated, where the VM's first pod runs, which after the move is the target.
		{name: "DataVolume waiting for its first consumer", claims: []string{"wffc"}, dvs: []string{"wffc"}},
		{name: "DataVolume pending population", claims: []string{"populating"}, dvs: []string{"populating"}},
		{name: "DataVolume failed", claims: []string{"broken"}, dvs: []string{"broken"}, block: "DataVolumeNotReady", message: "failed"},
		{name: "ReadWriteOnce disk of a running VM", claims: []string{"local"}, running: true, block: "StorageNotOnTarget", warn: "ReadWriteOnceVolume"},
		{name: "a claim the snapshot does not hold", claims: []string{"missing"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := twoSites(snapshot.NodeReady)
			node := ""
			if tc.running {
				node = "p1"
			}
			v := vm("a", "vm", 1, "Primary", kubevirtv1.RunStrategyAlways, node, false)
			if !tc.running {
				v.RunStrategy = kubevirtv1.RunStrategyHalted
			}
			v.Claims, v.DataVolumes = tc.claims, tc.dvs
			s.VMs = []snapshot.VM{v}
			s.Storage = storage()
			p := build(t, s, Request{To: "DR", All: true})
			for _, code := range []string{"StorageNotOnTarget", "DataVolumeNotReady"} {
				if got := hasIssue(p.Blockers, code, "a/vm"); got != (tc.block == code) {
					t.Errorf("blocker %s: %v, want %v (%+v)", code, got, tc.block == code, p.Blockers)
				}
			}
			if got := hasIssue(p.Warnings, "ReadWriteOnceVolume", "a/vm"); got != (tc.warn != "") {
				t.Errorf("ReadWriteOnceVolume warning: %v, want %v (%+v)", got, tc.warn != "", p.Warnings)
			}
			for _, b := range p.Blockers {
				if tc.message != "" && b.Code == tc.block && !strings.Contains(b.Message, tc.message) {
					t.Errorf("blocker %s: %q lacks %q", b.Code, b.Message, tc.message)
				}
				if b.Code == "StorageNotOnTarget" && !strings.Contains(b.Message, "DR") {
					t.Errorf("the blocker must name the target and the fix: %s", b.Message)
				}
			}
		})
	}
}

func TestStorageUncheckedIsAWarning(t *testing.T) {
	s := twoSites(snapshot.NodeReady)
	s.VMs = []snapshot.VM{vm("a", "vm", 1, "Primary", kubevirtv1.RunStrategyAlways, "p1", true)}
	s.Storage = &snapshot.Storage{Unread: "cannot list persistentvolumes: forbidden"}
	p := build(t, s, Request{To: "DR", All: true})
	if !hasIssue(p.Warnings, "StorageUnchecked", "") || p.Blocked(false) {
		t.Fatalf("want a StorageUnchecked warning and no blocker: %+v %+v", p.Warnings, p.Blockers)
	}
}
