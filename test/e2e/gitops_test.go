package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/sitefail/kubectl-sitefail/pkg/gitops"
	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/pkg/selector"
	"github.com/sitefail/kubectl-sitefail/test/stretched"
)

// The GitOps delta, built by Kustomize itself and applied to the cluster, leaves every
// VM template exactly as `move` leaves it: the site key changed, every other selector
// key, affinity and toleration as it was. Two namespaces hold the same VMs; one is moved
// through Git (gitops, kustomize build, apply), the other by `move`.
func TestGitOpsDeltaBuildsToWhatMoveProduces(t *testing.T) {
	ctx := context.Background()
	viaGit, viaMove := "gitops-git", "gitops-move"
	t.Cleanup(func() {
		for _, ns := range []string{viaGit, viaMove} {
			_ = env.Kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		}
	})
	// What Git holds: the normal state, with placement details the delta must not touch.
	manifests := map[string][]*kubevirtv1.VirtualMachine{}
	for _, ns := range []string{viaGit, viaMove} {
		if _, err := env.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		for i, site := range []string{"Primary", "Primary", "DR"} {
			vm := stretched.VMSpec{Namespace: ns, Name: fmt.Sprintf("app-%d", i), Tier: 1, Site: site,
				RunStrategy: kubevirtv1.RunStrategyHalted, ExtraSelector: map[string]string{"type": "kwok"}}.VM()
			vm.TypeMeta = metav1.TypeMeta{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine"}
			spec := &vm.Spec.Template.Spec
			spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "vm", Effect: corev1.TaintEffectNoSchedule}}
			spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{
				Weight: 10, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "rack", Operator: corev1.NodeSelectorOpIn, Values: []string{"r1"}}}},
			}}}}
			obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(vm)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := env.Dynamic.Resource(kubevirt.VMs).Namespace(ns).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			manifests[ns] = append(manifests[ns], vm)
		}
	}

	r := sitefail(t, "gitops", "--all", "--to", "DR", "-n", viaGit)
	if r.code != 0 {
		t.Fatalf("gitops: %s", r)
	}
	component := t.TempDir()
	if err := os.WriteFile(filepath.Join(component, "kustomization.yaml"), []byte(r.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := sitefail(t, "gitops", "--check", component, "-n", viaGit); r.code != 5 || !strings.Contains(r.stdout, "the next sync moves it to DR") {
		t.Fatalf("before the sync, Git places app-0 and app-1 on DR and the cluster on Primary: want drift (exit 5): %s", r)
	}
	built := kustomizeBuild(t, manifests[viaGit], r.stdout)
	if len(built) != 3 {
		t.Fatalf("kustomize build gave %d objects, want 3", len(built))
	}
	// The delta changes the site key of the VMs not on DR yet and nothing else.
	for i, vm := range built {
		want := manifests[viaGit][i].DeepCopy()
		want.Spec.Template.Spec.NodeSelector[selector.DefaultSiteKey] = "DR"
		if got, want := specYAML(t, vm), specYAML(t, want); got != want {
			t.Errorf("%s: built spec differs from the manifest beyond the site key:\n got %s\nwant %s", vm.Name, got, want)
		}
	}
	// Break glass: apply the build to the cluster, as `kubectl apply -k` would.
	for _, vm := range built {
		data, err := yaml.Marshal(vm)
		if err != nil {
			t.Fatal(err)
		}
		force := true
		if _, err := env.Dynamic.Resource(kubevirt.VMs).Namespace(viaGit).Patch(ctx, vm.Name, types.ApplyPatchType, data,
			metav1.PatchOptions{FieldManager: "gitops-test", Force: &force}); err != nil {
			t.Fatalf("apply %s: %v", vm.Name, err)
		}
	}
	if r := sitefail(t, "move", "--all", "--to", "DR", "-n", viaMove); r.code != 0 {
		t.Fatalf("move: %s", r)
	}
	for _, m := range manifests[viaMove] {
		got, want := clusterTemplate(t, viaGit, m.Name), clusterTemplate(t, viaMove, m.Name)
		if g, w := templateYAML(t, got), templateYAML(t, want); g != w {
			t.Errorf("%s: the template applied from Git differs from the one move wrote:\n git %s\nmove %s", m.Name, g, w)
		}
		if got.Spec.NodeSelector[selector.DefaultSiteKey] != "DR" || got.Spec.NodeSelector["type"] != "kwok" ||
			len(got.Spec.Tolerations) != 1 || got.Spec.Affinity == nil {
			t.Errorf("%s: placement after the delta: %+v", m.Name, got.Spec)
		}
	}
	if r := sitefail(t, "gitops", "--check", component, "-n", viaGit); r.code != 0 || !strings.Contains(r.stdout, "No drift") {
		t.Errorf("after the apply the cluster matches the delta: %s", r)
	}
	// The direct move in the other namespace is not in Git: its controller would revert it.
	var check struct{ Drift []gitops.Drift }
	r = sitefail(t, "gitops", "--check", component, "-n", viaMove, "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &check); err != nil || r.code != 5 || len(check.Drift) != 2 || check.Drift[0].Cluster != "DR" || check.Drift[0].Git != "" {
		t.Errorf("want app-0 and app-1 of %s reported as moved and not in Git (exit 5): %v %s", viaMove, err, r)
	}
	// The cluster now matches the delta: nothing is left to move in either namespace.
	for _, ns := range []string{viaGit, viaMove} {
		r := sitefail(t, "gitops", "--all", "--to", "DR", "-n", ns)
		if r.code != 0 || strings.Contains(r.stdout, "op: replace") {
			t.Errorf("%s: after the move the delta should be empty: %s", ns, r)
		}
	}
}

// kustomizeBuild lays out the manifests as a base, the component as printed, and an
// overlay that uses both, in memory, and builds the overlay with Kustomize's library.
func kustomizeBuild(t *testing.T, vms []*kubevirtv1.VirtualMachine, component string) []*kubevirtv1.VirtualMachine {
	t.Helper()
	fs := filesys.MakeFsInMemory()
	var base strings.Builder
	for _, vm := range vms {
		data, err := yaml.Marshal(vm)
		if err != nil {
			t.Fatal(err)
		}
		base.WriteString("---\n")
		base.Write(data)
	}
	files := map[string]string{
		"/repo/base/vms.yaml":                    base.String(),
		"/repo/base/kustomization.yaml":          "resources:\n- vms.yaml\n",
		"/repo/components/dr/kustomization.yaml": component,
		"/repo/overlays/dr/kustomization.yaml":   "resources:\n- ../../base\ncomponents:\n- ../../components/dr\n",
	}
	for path, content := range files {
		if err := fs.WriteFile(path, []byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fs, "/repo/overlays/dr")
	if err != nil {
		t.Fatalf("kustomize build: %v\ncomponent:\n%s", err, component)
	}
	var out []*kubevirtv1.VirtualMachine
	for _, res := range rm.Resources() {
		data, err := res.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		vm := &kubevirtv1.VirtualMachine{}
		if err := yaml.UnmarshalStrict(data, vm); err != nil {
			t.Fatalf("built object: %v\n%s", err, data)
		}
		out = append(out, vm)
	}
	return out
}

func specYAML(t *testing.T, vm *kubevirtv1.VirtualMachine) string {
	t.Helper()
	data, err := yaml.Marshal(vm.Spec)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// templateYAML renders a template without the firmware UUID and serial, which KubeVirt sets
// per VM and so differ between the two namespaces.
func templateYAML(t *testing.T, tmpl *kubevirtv1.VirtualMachineInstanceTemplateSpec) string {
	t.Helper()
	tmpl = tmpl.DeepCopy()
	if fw := tmpl.Spec.Domain.Firmware; fw != nil {
		fw.UUID, fw.Serial = "", ""
	}
	data, err := yaml.Marshal(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func clusterTemplate(t *testing.T, ns, name string) *kubevirtv1.VirtualMachineInstanceTemplateSpec {
	t.Helper()
	u, err := env.Dynamic.Resource(kubevirt.VMs).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vm := &kubevirtv1.VirtualMachine{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, vm); err != nil {
		t.Fatal(err)
	}
	return vm.Spec.Template
}

// A VM that Argo CD manages is refused without --allow-gitops-drift, with the
// controller and both ways out named and nothing changed, and moved with it.
func TestArgoManagedVMNeedsTheFlag(t *testing.T) {
	ctx := context.Background()
	const ns = "argo"
	t.Cleanup(func() { _ = env.Kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}) })
	if err := env.CreateVMs(ctx, []stretched.VMSpec{{Namespace: ns, Name: "app", Tier: 1, Site: "Primary",
		Labels: map[string]string{"argocd.argoproj.io/instance": "vms"}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "argo/app Ready on Primary", func() bool { return vmiReady(ctx, ns, "app") && siteOf(t, ns, "app") == "Primary" })

	r := sitefail(t, "move", "--to", "DR", "-n", ns, "app")
	if r.code != 2 || !strings.Contains(r.stderr, "argocd") || !strings.Contains(r.stderr, "kubectl sitefail gitops") || !strings.Contains(r.stderr, "--allow-gitops-drift") {
		t.Fatalf("want a refusal naming argocd, the delta and the flag (exit 2): %s", r)
	}
	u, err := env.Dynamic.Resource(kubevirt.VMs).Namespace(ns).Get(ctx, "app", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sel, _, _ := unstructured.NestedStringMap(u.Object, "spec", "template", "spec", "nodeSelector"); sel[selector.DefaultSiteKey] != "Primary" {
		t.Fatalf("a refused move changed the template: %v", sel)
	}
	r = sitefail(t, "move", "--to", "DR", "-n", ns, "app", "--allow-gitops-drift")
	if r.code != 0 {
		t.Fatalf("move --allow-gitops-drift: %s", r)
	}
	if s := siteOf(t, ns, "app"); s != "DR" {
		t.Fatalf("argo/app runs on %q after the move", s)
	}
}
