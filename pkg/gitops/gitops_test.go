package gitops

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sitefail/kubectl-sitefail/pkg/journal"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

func TestComponentParsesBack(t *testing.T) {
	p := &plan.Plan{SiteLabel: "example.com/site~x", Request: plan.Request{To: "1"}, Steps: []plan.Step{
		{Namespace: "a", Name: "vm1", To: "1", Action: plan.ActionMigrate},
		{Namespace: "a", Name: "vm2", To: "1", Action: plan.ActionSkip},
		{Namespace: "b", Name: "vm3", To: "1", Action: plan.ActionPatch},
	}}
	var b bytes.Buffer
	if err := WriteComponent(&b, p); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `path: /spec/template/spec/nodeSelector/example.com~1site~0x`) || !strings.Contains(b.String(), `value: "1"`) {
		t.Fatalf("escaped path and quoted value expected:\n%s", b.String())
	}
	d, err := Parse(b.Bytes(), "example.com/site~x")
	if err != nil {
		t.Fatal(err)
	}
	if len(d) != 2 || d["a/vm1"] != "1" || d["b/vm3"] != "1" {
		t.Fatalf("parsed %v", d)
	}
}

func TestParseRefusesWhatItCannotCompare(t *testing.T) {
	for name, tc := range map[string]struct{ doc, want string }{
		"not yaml":     {"patches: [", "not a Kustomize file"},
		"deployment":   {"kind: Deployment\n", "want a Kustomize Component"},
		"other key":    {"kind: Component\npatches:\n- target: {kind: VirtualMachine, namespace: a, name: b}\n  patch: '[{op: replace, path: /spec/template/spec/nodeSelector/zone, value: x}]'\n", "patches no VM's site key"},
		"unquoted":     {"kind: Component\npatches:\n- target: {kind: VirtualMachine, namespace: a, name: b}\n  patch: '[{op: replace, path: /spec/template/spec/nodeSelector/topology.kubernetes.io~1site, value: 1}]'\n", "not a string"},
		"label target": {"kind: Component\npatches:\n- target: {kind: VirtualMachine, labelSelector: tier=1}\n  patch: '[{op: replace, path: /spec/template/spec/nodeSelector/topology.kubernetes.io~1site, value: DR}]'\n", "not one VirtualMachine"},
	} {
		if _, err := Parse([]byte(tc.doc), selector.DefaultSiteKey); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: want an error containing %q, got %v", name, tc.want, err)
		}
	}
}

func TestCompare(t *testing.T) {
	moved := func(from, to string) map[string]string {
		return map[string]string{journal.From: from, journal.To: to, journal.MoveID: "sf-1", journal.Phase: journal.PhaseDone}
	}
	s := &snapshot.Snapshot{VMs: []snapshot.VM{
		{Namespace: "a", Name: "in-sync", HomeSite: "DR", Annotations: moved("Primary", "DR")},
		{Namespace: "a", Name: "not-moved", HomeSite: "Primary"},
		{Namespace: "a", Name: "uncommitted", HomeSite: "DR", Annotations: moved("Primary", "DR")},
		{Namespace: "a", Name: "failed-back", HomeSite: "Primary", Annotations: moved("DR", "Primary")},
		{Namespace: "a", Name: "home-on-dr", HomeSite: "DR"},
		{Namespace: "b", Name: "elsewhere", HomeSite: "DR", Annotations: moved("Primary", "DR")},
	}}
	d := Delta{"a/in-sync": "DR", "a/not-moved": "DR", "a/gone": "DR", "c/other-ns": "DR"}
	got := Compare(d, s, "a", "")
	names := []string{}
	for _, dr := range got {
		names = append(names, dr.Namespace+"/"+dr.Name+"="+dr.Git+">"+dr.Cluster)
	}
	want := "a/gone=DR> a/not-moved=DR>Primary a/uncommitted=>DR"
	if strings.Join(names, " ") != want {
		t.Fatalf("drift:\n got %s\nwant %s", strings.Join(names, " "), want)
	}
	if len(Compare(Delta{}, s, "", "")) != 0 {
		t.Fatalf("an empty delta without --to names no site to check")
	}
	if n := len(Compare(Delta{}, s, "", "DR")); n != 3 {
		t.Fatalf("an empty delta for DR: the VMs moved there are drift, got %d", n)
	}
}
