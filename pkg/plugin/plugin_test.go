package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sigs.k8s.io/yaml"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/fencing"
	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/snapshot"
)

type fakeFactory struct {
	c  *Clients
	ns string
}

func (f *fakeFactory) Clients() (*Clients, error) { return f.c, nil }
func (f *fakeFactory) Namespace() (string, error) { return f.ns, nil }

func toU(t *testing.T, obj any) *unstructured.Unstructured {
	u, err := kubevirt.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func testVM(t *testing.T, ns, name, tier, site string, running bool) []runtime.Object {
	rs := kubevirtv1.RunStrategyAlways
	if !running {
		rs = kubevirtv1.RunStrategyHalted
	}
	vm := &kubevirtv1.VirtualMachine{
		TypeMeta:   metav1.TypeMeta{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"sitefail.io/tier": tier}},
		Spec: kubevirtv1.VirtualMachineSpec{RunStrategy: &rs, Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{
			Spec: kubevirtv1.VirtualMachineInstanceSpec{NodeSelector: map[string]string{"topology.kubernetes.io/site": site}}}},
	}
	out := []runtime.Object{toU(t, vm)}
	if running {
		vmi := &kubevirtv1.VirtualMachineInstance{
			TypeMeta:   metav1.TypeMeta{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachineInstance"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: "uid-" + "1"},
			Status: kubevirtv1.VirtualMachineInstanceStatus{Phase: kubevirtv1.Running, NodeName: strings.ToLower(site) + "-1", Conditions: []kubevirtv1.VirtualMachineInstanceCondition{
				{Type: kubevirtv1.VirtualMachineInstanceReady, Status: corev1.ConditionTrue},
				{Type: kubevirtv1.VirtualMachineInstanceIsMigratable, Status: corev1.ConditionTrue}}},
		}
		out = append(out, toU(t, vmi))
	}
	return out
}

func testNode(name, site string) *corev1.Node {
	// A KubeVirt worker: its virt-handler labels it schedulable.
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"topology.kubernetes.io/site": site, "kubevirt.io/schedulable": "true"}},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("32Gi")}}}
}

// runCmd runs the root command against fake clients and returns stdout, stderr, error.
func runCmd(t *testing.T, kube *kubefake.Clientset, objs []runtime.Object, args ...string) (string, string, error) {
	t.Helper()
	return runCmdWith(t, kube, fakeDynamic(objs...), args...)
}

// fakeDynamic is the dynamic client of runCmd, for a test that adds reactors to it.
func fakeDynamic(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), fencing.WithListKinds(map[schema.GroupVersionResource]string{
		kubevirt.VMs: "VirtualMachineList", kubevirt.VMIs: "VirtualMachineInstanceList", kubevirt.Migrations: "VirtualMachineInstanceMigrationList", kubevirt.KubeVirts: "KubeVirtList", snapshot.DataVolumes: "DataVolumeList",
	}), objs...)
}

func runCmdWith(t *testing.T, kube *kubefake.Clientset, dyn *dynamicfake.FakeDynamicClient, args ...string) (string, string, error) {
	t.Helper()
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	cmd := NewRootCommand(streams, &fakeFactory{c: &Clients{Kube: kube, Dynamic: dyn, Context: "test"}, ns: "prod"})
	if args[0] != "__complete" {
		// Defaults that keep a developer's own config file out, unless a case sets them.
		for _, flag := range []string{"--config", "--site-label", "--tier-label"} {
			if !slices.ContainsFunc(args, func(a string) bool { return a == flag || strings.HasPrefix(a, flag+"=") }) {
				args = append(args, flag, "")
			}
		}
	}
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func fixture(t *testing.T) (*kubefake.Clientset, []runtime.Object) {
	kube := kubefake.NewSimpleClientset(testNode("primary-1", "Primary"), testNode("dr-1", "DR"))
	var objs []runtime.Object
	objs = append(objs, testVM(t, "prod", "db", "1", "Primary", true)...)
	objs = append(objs, testVM(t, "prod", "cold", "2", "Primary", false)...)
	objs = append(objs, testVM(t, "dev", "web", "1", "DR", true)...)
	return kube, objs
}

func TestPlanOutputs(t *testing.T) {
	kube, objs := fixture(t)
	out, _, err := runCmd(t, kube, objs, "plan", "--tier", "1", "--to", "DR", "-A")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"prod", "db", "live-migrate", "dev", "skip", "tier 1 batch 1: prod/db"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan output lacks %q:\n%s", want, out)
		}
	}
	out, _, err = runCmd(t, kube, objs, "plan", "--all", "--to", "DR", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var p plan.Plan
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	if p.Kind != "Plan" || len(p.Steps) != 2 || p.Steps[0].Name != "db" || p.Steps[1].Action != plan.ActionPatch {
		t.Fatalf("-n prod --all: %+v", p.Steps)
	}
	out, _, err = runCmd(t, kube, objs, "plan", "--all", "--to", "DR", "-o", "yaml")
	if err != nil || !strings.Contains(out, "apiVersion: sitefail.io/v1alpha1") {
		t.Fatalf("yaml: %v\n%s", err, out)
	}
}

func TestNothingToDo(t *testing.T) {
	kube, objs := fixture(t)
	out, _, err := runCmd(t, kube, objs, "plan", "--to", "DR", "dev/web")
	if err != nil || !strings.Contains(out, "Nothing to do") {
		t.Fatalf("%v\n%s", err, out)
	}
	// A script that asked for JSON gets JSON, an empty report, not a sentence (found by
	// the e2e rerun of a move whose VM had reached the target meanwhile).
	out, errOut, err := runCmd(t, kube, objs, "move", "--to", "DR", "dev/web", "-o", "json")
	var rep executor.Report
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil || rep.To != "DR" || len(rep.Failures) != 0 || !strings.Contains(errOut, "Nothing to do") {
		t.Fatalf("move -o json with nothing to do: %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}
}

// TestBadInput is the bad-input table of docs/reliability.md: each case names the
// problem and the fix, exits with its code, and changes nothing.
func TestBadInput(t *testing.T) {
	kube, objs := fixture(t)
	dir := t.TempDir()
	badConfig := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(badConfig, []byte("siteLabel: [unterminated\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	notComponent := filepath.Join(dir, "deployment.yaml")
	if err := os.WriteFile(notComponent, []byte("kind: Deployment\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
		code int
	}{
		{[]string{"plan", "--tier", "one", "--to", "DR"}, "positive integer", 1},
		{[]string{"plan", "--tier", "2-1", "--to", "DR"}, "N <= M", 1},
		{[]string{"plan", "--tier", "1", "--to", "Mars"}, "DR, Primary", 1},
		{[]string{"plan", "--tier", "1"}, "--to is required", 1},
		{[]string{"plan", "--to", "DR"}, "say which VMs move", 1},
		{[]string{"plan", "--to", "DR", "--all", "db"}, "exclude each other", 1},
		{[]string{"plan", "--to", "DR", "--to-other", "--all"}, "--to and --to-other exclude each other", 1},
		{[]string{"plan", "--to", "DR", "--tier", "7"}, "no VM matches", 1},
		{[]string{"plan", "--to", "DR", "nope"}, "no such VM: prod/nope", 1},
		{[]string{"plan", "--to", "DR", "a/b/c"}, "want NAME or NAMESPACE/NAME", 1},
		{[]string{"plan", "--to", "DR", "-A", "db"}, "with -A, name VMs as NAMESPACE/NAME", 1},
		{[]string{"plan", "--to", "DR", "--tier-of", "ghost"}, "--tier-of: no such VM prod/ghost", 1},
		{[]string{"plan", "--to", "DR", "--all", "-o", "xml"}, "not supported", 1},
		{[]string{"plan", "--to", "DR", "--all", "--site-label", "bad key!"}, "--site-label", 1},
		{[]string{"plan", "--to", "DR", "--all", "--config", badConfig}, "want keys siteLabel, tierLabel and witnessSites", 1},
		{[]string{"plan", "--to", "DR", "--all", "--config", filepath.Join(dir, "missing.yaml")}, "missing.yaml", 1},
		{[]string{"move", "--to", "DR", "--all", "--max-in-flight", "0"}, "at least 1", 1},
		{[]string{"move", "--to", "DR", "--all", "--max-per-node", "-1"}, "at least 1", 1},
		{[]string{"move", "--to", "DR", "--all", "--mode", "teleport"}, "auto, migrate, restart", 1},
		{[]string{"move", "--to", "DR", "--all", "--fence", "shoot"}, "--fence", 1},
		{[]string{"move", "--to", "DR", "--all", "--dry-run=maybe"}, "--dry-run", 1},
		{[]string{"move", "--to", "DR", "--all", "--progress", "fireworks"}, "--progress", 1},
		{[]string{"move", "--to", "Primary", "--from", "Primary", "--all"}, "pick a different target", 1},
		{[]string{"failback", "--all", "--to", "DR"}, "takes no --to", 1},
		// Confirming a live site down is refused before anything is written.
		{[]string{"move", "--to", "DR", "--all", "-A", "--confirm-site-down=Primary"}, "node primary-1 of that site is Ready", 1},
		{[]string{"move", "--to", "DR", "--all", "-A", "--confirm-site-down=Mars"}, "no node carries", 1},
		{[]string{"move", "--to", "DR", "--all", "-A", "--confirm-site-down="}, "confirm-site-down", 1},
		{[]string{"drill", "--to", "DR", "--all", "--rto", "soon"}, "--rto", 1},
		{[]string{"drill", "--to", "DR", "--all", "--dry-run=client"}, "--dry-run=server only", 1},
		{[]string{"gitops", "--check", filepath.Join(dir, "missing")}, "--check", 1},
		{[]string{"gitops", "--check", notComponent}, "want a Kustomize Component", 1},
		{[]string{"gitops", "--to", "DR", "--all", "-o", "json"}, "-o applies to --check", 1},
		{[]string{"status", "--site", "Moon"}, "unknown site", 1},
		{[]string{"sites", "label", "node-1"}, "--site is required", 1},
		{[]string{"sites", "label", "primary-1", "--site", "bad site!"}, "bad site!", 1},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			kube.ClearActions()
			_, _, err := runCmd(t, kube, objs, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to mention %q", err, tc.want)
			}
			t.Log(err)
			if Code(err) != tc.code {
				t.Fatalf("exit %d, want %d (%v)", Code(err), tc.code, err)
			}
			for _, a := range kube.Actions() {
				if a.GetVerb() != "list" && a.GetVerb() != "get" && a.GetVerb() != "watch" {
					t.Fatalf("bad input changed something: %v", a)
				}
			}
		})
	}
}

func TestBlockedPlanExitCode(t *testing.T) {
	kube := kubefake.NewSimpleClientset(testNode("primary-1", "Primary"), testNode("dr-1", "DR"))
	kube.Tracker().Delete(corev1.SchemeGroupVersion.WithResource("nodes"), "", "dr-1")
	dr := testNode("dr-1", "DR")
	dr.Status.Conditions[0].Status = corev1.ConditionFalse
	_ = kube.Tracker().Add(dr)
	_, objs := fixture(t)
	_, _, err := runCmd(t, kube, objs, "plan", "--to", "DR", "prod/db")
	if Code(err) != ExitBlocked {
		t.Fatalf("exit %d (%v), want %d", Code(err), err, ExitBlocked)
	}
}

func TestStatusAndSites(t *testing.T) {
	kube, objs := fixture(t)
	out, _, err := runCmd(t, kube, objs, "status", "-A", "-o", "wide")
	if err != nil || !strings.Contains(out, "primary-1") || !strings.Contains(out, "stopped") {
		t.Fatalf("%v\n%s", err, out)
	}
	out, _, err = runCmd(t, kube, objs, "sites")
	if err != nil || !strings.Contains(out, "t1:1 t2:1") {
		t.Fatalf("%v\n%s", err, out)
	}
}

func TestMissingKubeVirt(t *testing.T) {
	kube := kubefake.NewSimpleClientset(testNode("primary-1", "Primary"))
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), fencing.WithListKinds(map[schema.GroupVersionResource]string{
		kubevirt.VMs: "VirtualMachineList", kubevirt.VMIs: "VirtualMachineInstanceList", kubevirt.Migrations: "VirtualMachineInstanceMigrationList", kubevirt.KubeVirts: "KubeVirtList", snapshot.DataVolumes: "DataVolumeList",
	}))
	// A cluster without the CRDs answers 404 to the list.
	dyn.PrependReactor("list", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(a.GetResource().GroupResource(), "")
	})
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	cmd := NewRootCommand(streams, &fakeFactory{c: &Clients{Kube: kube, Dynamic: dyn}, ns: "default"})
	cmd.SetArgs([]string{"status", "--config", ""})
	err := cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "KubeVirt CRDs are not installed") {
		t.Fatalf("%v", err)
	}
}

// An expired or revoked token: the API server answers 401; the message says to log in
// again, and nothing else is tried.
func TestExpiredTokenSaysLogInAgain(t *testing.T) {
	kube := kubefake.NewSimpleClientset()
	kube.PrependReactor("list", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewUnauthorized("token has expired")
	})
	_, objs := fixture(t)
	_, _, err := runCmd(t, kube, objs, "plan", "--to", "DR", "--all")
	if err == nil || !strings.Contains(err.Error(), "refused your credentials") || !strings.Contains(err.Error(), "log in again") || Code(err) != ExitError {
		t.Fatalf("%v (exit %d)", err, Code(err))
	}
}

func TestForbiddenNamesVerbAndResource(t *testing.T) {
	kube := kubefake.NewSimpleClientset()
	kube.PrependReactor("list", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "", fmt.Errorf("RBAC"))
	})
	_, objs := fixture(t)
	_, _, err := runCmd(t, kube, objs, "sites")
	if err == nil || !strings.Contains(err.Error(), `verb "list" on "nodes"`) {
		t.Fatalf("%v", err)
	}
}

func TestToOtherAndTierOf(t *testing.T) {
	kube, objs := fixture(t)
	out, _, err := runCmd(t, kube, objs, "plan", "--to-other", "--tier-of", "db", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var p plan.Plan
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	if p.Request.To != "DR" || p.Selection != "tier 1" || len(p.Steps) != 1 {
		t.Fatalf("--to-other --tier-of db: to %s, %s, %+v", p.Request.To, p.Selection, p.Steps)
	}
	_, _, err = runCmd(t, kube, objs, "plan", "--to-other", "--all", "-A")
	if err == nil || !strings.Contains(err.Error(), "both sites") {
		t.Fatalf("VMs on both sites: %v", err)
	}
}

func TestCompletion(t *testing.T) {
	t.Setenv("SITEFAIL_CONFIG", "/nonexistent/config.yaml")
	kube, objs := fixture(t)
	out, _, err := runCmd(t, kube, objs, "__complete", "plan", "--to", "")
	if err != nil || !strings.Contains(out, "DR\nPrimary\n") {
		t.Fatalf("site completion: %v\n%s", err, out)
	}
	out, _, err = runCmd(t, kube, objs, "__complete", "move", "--to", "DR", "")
	if err != nil || !strings.Contains(out, "cold\ndb\n") {
		t.Fatalf("VM completion: %v\n%s", err, out)
	}
	out, _, err = runCmd(t, kube, objs, "__complete", "plan", "--tier", "")
	if err != nil || !strings.Contains(out, "1\n2\n") {
		t.Fatalf("tier completion: %v\n%s", err, out)
	}
}

func TestGitOpsComponent(t *testing.T) {
	kube, objs := fixture(t)
	out, _, err := runCmd(t, kube, objs, "gitops", "--all", "--to", "DR", "-A")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Kind    string `json:"kind"`
		Patches []struct {
			Target map[string]string `json:"target"`
			Patch  string            `json:"patch"`
		} `json:"patches"`
	}
	if err := yaml.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// dev/web is already on DR: only the two prod VMs are in the delta.
	if doc.Kind != "Component" || len(doc.Patches) != 2 || doc.Patches[0].Target["name"] != "db" {
		t.Fatalf("%s", out)
	}
	if !strings.Contains(doc.Patches[0].Patch, "path: /spec/template/spec/nodeSelector/topology.kubernetes.io~1site") || !strings.Contains(doc.Patches[0].Patch, `value: "DR"`) {
		t.Fatalf("patch %q", doc.Patches[0].Patch)
	}
}

// Site values are strings whatever the site is called: a site named 1 or true must not
// become a number or a boolean in the patch.
func TestGitOpsSiteValuesAreStrings(t *testing.T) {
	for _, site := range []string{"1", "true", "no", "0x1F"} {
		kube := kubefake.NewSimpleClientset(testNode("primary-1", "Primary"), testNode("other-1", site))
		var objs []runtime.Object
		objs = append(objs, testVM(t, "prod", "db", "1", "Primary", true)...)
		out, _, err := runCmd(t, kube, objs, "gitops", "--all", "--to", site, "-A")
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Patches []struct {
				Patch string `json:"patch"`
			} `json:"patches"`
		}
		if err := yaml.Unmarshal([]byte(out), &doc); err != nil || len(doc.Patches) != 1 {
			t.Fatalf("%v\n%s", err, out)
		}
		var ops []map[string]any
		if err := yaml.Unmarshal([]byte(doc.Patches[0].Patch), &ops); err != nil {
			t.Fatal(err)
		}
		if v, ok := ops[0]["value"].(string); !ok || v != site {
			t.Errorf("site %q became %#v in the patch", site, ops[0]["value"])
		}
	}
}

func TestFailbackWithFromPicksVMsByJournal(t *testing.T) {
	kube, objs := fixture(t)
	// dev/web came from Primary according to its journal and is now homed on DR.
	for _, o := range objs {
		u := o.(*unstructured.Unstructured)
		if u.GetKind() == "VirtualMachine" && u.GetName() == "web" {
			u.SetAnnotations(map[string]string{"sitefail.io/move-from": "Primary", "sitefail.io/move-to": "DR"})
		}
	}
	out, _, err := runCmd(t, kube, objs, "failback", "--all", "-A", "--from", "DR", "--dry-run")
	if err != nil || !strings.Contains(out, "to Primary") || !strings.Contains(out, "dev") {
		t.Fatalf("failback --from DR: %v\n%s", err, out)
	}
}

// failback names the selected VMs it leaves out, instead of dropping them silently.
func TestFailbackNamesVMsWithoutJournal(t *testing.T) {
	kube, objs := fixture(t)
	for _, o := range objs {
		u := o.(*unstructured.Unstructured)
		if u.GetKind() == "VirtualMachine" && u.GetName() == "web" {
			u.SetAnnotations(map[string]string{"sitefail.io/move-from": "Primary", "sitefail.io/move-to": "DR"})
		}
	}
	_, errOut, err := runCmd(t, kube, objs, "failback", "--all", "-A", "--dry-run")
	if err != nil || !strings.Contains(errOut, "Not failed back") || !strings.Contains(errOut, "prod/cold, prod/db") {
		t.Fatalf("failback must name the VMs it leaves out: %v\n%s", err, errOut)
	}
}

func TestGitOpsDirWritesComponentAndReadme(t *testing.T) {
	kube, objs := fixture(t)
	dir := t.TempDir()
	if _, _, err := runCmd(t, kube, objs, "gitops", "--all", "--to", "DR", "-A", "--dir", dir); err != nil {
		t.Fatal(err)
	}
	comp, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil || !strings.Contains(string(comp), "kind: Component") {
		t.Fatalf("kustomization.yaml: %v\n%s", err, comp)
	}
	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil || !strings.Contains(string(readme), "kubectl apply -k") || !strings.Contains(string(readme), "components:") {
		t.Fatalf("README.md: %v\n%s", err, readme)
	}
}

// A command that fails still writes its profile: that run is the one worth reading.
func TestProfileIsWrittenWhenTheCommandFails(t *testing.T) {
	out := filepath.Join(t.TempDir(), "cpu.pprof")
	_, _, err := runCmd(t, kubefake.NewSimpleClientset(), nil, "plan", "--tier", "1", "--to", "Nowhere", "--profile", "cpu", "--profile-output", out)
	if err == nil {
		t.Fatal("plan to a site no node carries succeeded")
	}
	if fi, statErr := os.Stat(out); statErr != nil || fi.Size() == 0 {
		t.Fatalf("no profile after a failed command: %v", statErr)
	}
	if _, _, err := runCmd(t, kubefake.NewSimpleClientset(), nil, "sites", "--profile", "mem"); err == nil || !strings.Contains(err.Error(), "want none, cpu, heap or trace") {
		t.Fatalf("--profile mem: %v", err)
	}
}

// The sites table lists tiers in the order a move runs them: untiered last, as --all
// moves them (it listed untiered first).
func TestSitesTableOrdersTiersAsAMoveRunsThem(t *testing.T) {
	if got := tiersSummary(map[string]int{"-": 4, "10": 1, "2": 3, "1": 2}); got != "t1:2 t2:3 t10:1 untiered:4" {
		t.Fatalf("tiers summary %q", got)
	}
}
