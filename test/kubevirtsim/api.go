package kubevirtsim

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	kubevirtv1 "kubevirt.io/api/core/v1"

	corev1 "k8s.io/api/core/v1"

	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
)

var apiServiceGVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

// ServeAPI serves the subresources.kubevirt.io/v1 endpoints (restart, start, stop,
// migrate) on 127.0.0.1 over TLS and registers them with kube-apiserver through an
// APIService backed by an ExternalName Service, as virt-api is. It returns when the
// APIService is Available.
func (s *Sim) ServeAPI(ctx context.Context, cert tls.Certificate) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := l.Addr().(*net.TCPAddr).Port
	srv := &http.Server{Handler: s, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	go func() { _ = srv.ServeTLS(l, "", "") }()
	go func() { <-ctx.Done(); _ = srv.Close() }()

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kubevirt"}}
	if _, err := s.kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "virt-api", Namespace: "kubevirt"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "localhost",
			Ports: []corev1.ServicePort{{Name: "https", Port: int32(port), TargetPort: intstr.FromInt32(int32(port))}}}}
	if _, err := s.kube.CoreV1().Services("kubevirt").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("virt-api service: %w", err)
	}
	as := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
		"metadata": map[string]any{"name": "v1.subresources.kubevirt.io"},
		"spec": map[string]any{
			"group": "subresources.kubevirt.io", "version": "v1",
			"groupPriorityMinimum": int64(1000), "versionPriority": int64(15),
			"insecureSkipTLSVerify": true,
			"service":               map[string]any{"namespace": "kubevirt", "name": "virt-api", "port": int64(port)},
		},
	}}
	if _, err := s.dyn.Resource(apiServiceGVR).Create(ctx, as, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("APIService: %w", err)
	}
	return nil
}

// APIAvailable reports whether kube-apiserver sees the subresource API as Available.
func (s *Sim) APIAvailable(ctx context.Context) bool {
	u, err := s.dyn.Resource(apiServiceGVR).Get(ctx, "v1.subresources.kubevirt.io", metav1.GetOptions{})
	if err != nil {
		return false
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Available" && m["status"] == "True" {
			return true
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	st := metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure, Code: int32(code), Reason: reason, Message: msg}
	if code < 300 {
		st.Status = metav1.StatusSuccess
	}
	writeJSON(w, code, st)
}

// ServeHTTP answers discovery and the VM subresources.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimSuffix(r.URL.Path, "/")
	const prefix = "/apis/subresources.kubevirt.io/v1"
	switch {
	case path == prefix:
		writeJSON(w, http.StatusOK, metav1.APIResourceList{
			TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
			GroupVersion: kubevirt.SubresourceGroupVersion.String(),
			APIResources: []metav1.APIResource{
				{Name: "virtualmachines/restart", Namespaced: true, Kind: "VirtualMachine", Verbs: []string{"update"}},
				{Name: "virtualmachines/start", Namespaced: true, Kind: "VirtualMachine", Verbs: []string{"update"}},
				{Name: "virtualmachines/stop", Namespaced: true, Kind: "VirtualMachine", Verbs: []string{"update"}},
				{Name: "virtualmachines/migrate", Namespaced: true, Kind: "VirtualMachine", Verbs: []string{"update"}},
			},
		})
		return
	case path == "/apis/subresources.kubevirt.io":
		writeJSON(w, http.StatusOK, metav1.APIGroup{TypeMeta: metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"}, Name: "subresources.kubevirt.io",
			Versions:         []metav1.GroupVersionForDiscovery{{GroupVersion: "subresources.kubevirt.io/v1", Version: "v1"}},
			PreferredVersion: metav1.GroupVersionForDiscovery{GroupVersion: "subresources.kubevirt.io/v1", Version: "v1"}})
		return
	case path == "/healthz" || path == "/readyz":
		w.WriteHeader(http.StatusOK)
		return
	}
	// /apis/subresources.kubevirt.io/v1/namespaces/NS/virtualmachines/NAME/VERB
	parts := strings.Split(strings.TrimPrefix(path, prefix+"/"), "/")
	if !strings.HasPrefix(path, prefix+"/") || len(parts) != 5 || parts[0] != "namespaces" || parts[2] != "virtualmachines" {
		writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, "not found")
		return
	}
	if r.Method != http.MethodPut {
		writeStatus(w, http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed, "only PUT")
		return
	}
	ns, name, verb := parts[1], parts[3], parts[4]
	var body struct {
		DryRun []string `json:"dryRun"`
	}
	_ = json.NewDecoder(r.Body).Decode(&body)
	code, msg := s.subresource(r.Context(), ns, name, verb, len(body.DryRun) > 0)
	if code >= 300 {
		reason := metav1.StatusReasonConflict
		switch code {
		case http.StatusNotFound:
			reason = metav1.StatusReasonNotFound
		case http.StatusInternalServerError:
			reason = metav1.StatusReasonInternalError
		case http.StatusBadRequest:
			reason = metav1.StatusReasonBadRequest
		}
		writeStatus(w, code, reason, msg)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// subresource applies KubeVirt's rules for restart, start, stop and migrate.
func (s *Sim) subresource(ctx context.Context, ns, name, verb string, dryRun bool) (int, string) {
	u, err := s.dyn.Resource(kubevirt.VMs).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return http.StatusNotFound, fmt.Sprintf("virtualmachine %s/%s not found", ns, name)
	}
	if err != nil {
		return http.StatusInternalServerError, err.Error()
	}
	vm, err := kubevirt.ToVM(u)
	if err != nil {
		return http.StatusInternalServerError, err.Error()
	}
	strategy := kubevirt.RunStrategy(vm)
	vmiObj, err := s.dyn.Resource(kubevirt.VMIs).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	hasVMI := err == nil && vmiObj.GetDeletionTimestamp() == nil
	switch verb {
	case "restart":
		if strategy == kubevirtv1.RunStrategyHalted || strategy == kubevirtv1.RunStrategyOnce {
			return http.StatusConflict, fmt.Sprintf("RunStrategy %s does not support manual restart requests", strategy)
		}
		if !hasVMI {
			return http.StatusConflict, "VM is not running"
		}
		if dryRun {
			return http.StatusAccepted, ""
		}
		uid := vmiObj.GetUID()
		if err := s.dyn.Resource(kubevirt.VMIs).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}); err != nil {
			return http.StatusInternalServerError, err.Error()
		}
		if strategy == kubevirtv1.RunStrategyManual {
			if err := s.setDesired(ctx, vm, "running"); err != nil {
				return http.StatusInternalServerError, err.Error()
			}
		}
		s.count(ns+"/"+name, func(c *Counts) { c.Restarts++ })
		return http.StatusAccepted, ""
	case "start":
		switch strategy {
		case kubevirtv1.RunStrategyAlways:
			return http.StatusConflict, "Always does not support manual start requests"
		case kubevirtv1.RunStrategyOnce:
			return http.StatusConflict, "Once does not support manual start requests"
		}
		if hasVMI {
			if p, _, _ := unstructured.NestedString(vmiObj.Object, "status", "phase"); p != string(kubevirtv1.Succeeded) && p != string(kubevirtv1.Failed) {
				return http.StatusConflict, "VM is already running"
			}
		}
		if dryRun {
			return http.StatusAccepted, ""
		}
		if strategy == kubevirtv1.RunStrategyHalted {
			return s.setRunStrategy(ctx, vm, kubevirtv1.RunStrategyAlways)
		}
		if hasVMI {
			// A finished instance of a Manual VM is replaced by the start.
			if err := s.deleteVMI(ctx, mustVMI(vmiObj)); err != nil {
				return http.StatusInternalServerError, err.Error()
			}
		}
		if err := s.setDesired(ctx, vm, "running"); err != nil {
			return http.StatusInternalServerError, err.Error()
		}
		return http.StatusAccepted, ""
	case "stop":
		if !hasVMI && strategy != kubevirtv1.RunStrategyAlways {
			return http.StatusConflict, "VM is not running"
		}
		if dryRun {
			return http.StatusAccepted, ""
		}
		switch strategy {
		case kubevirtv1.RunStrategyAlways, kubevirtv1.RunStrategyOnce:
			return s.setRunStrategy(ctx, vm, kubevirtv1.RunStrategyHalted)
		}
		if err := s.setDesired(ctx, vm, "stopped"); err != nil {
			return http.StatusInternalServerError, err.Error()
		}
		return http.StatusAccepted, ""
	case "migrate":
		if !hasVMI {
			return http.StatusConflict, "VM is not running"
		}
		if dryRun {
			return http.StatusAccepted, ""
		}
		m := &kubevirtv1.VirtualMachineInstanceMigration{ObjectMeta: metav1.ObjectMeta{GenerateName: "kubevirt-migrate-vm-", Namespace: ns},
			Spec: kubevirtv1.VirtualMachineInstanceMigrationSpec{VMIName: name}}
		mu, err := toUnstructured(m, migGVK)
		if err != nil {
			return http.StatusInternalServerError, err.Error()
		}
		if _, err := s.dyn.Resource(kubevirt.Migrations).Namespace(ns).Create(ctx, mu, metav1.CreateOptions{}); err != nil {
			return http.StatusInternalServerError, err.Error()
		}
		return http.StatusAccepted, ""
	}
	return http.StatusNotFound, "unknown subresource " + verb
}

func mustVMI(u *unstructured.Unstructured) *kubevirtv1.VirtualMachineInstance {
	vmi, err := kubevirt.ToVMI(u)
	if err != nil {
		return &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Name: u.GetName(), Namespace: u.GetNamespace(), UID: u.GetUID()}}
	}
	return vmi
}

// setRunStrategy switches the VM's strategy, translating the deprecated spec.running.
func (s *Sim) setRunStrategy(ctx context.Context, vm *kubevirtv1.VirtualMachine, rs kubevirtv1.VirtualMachineRunStrategy) (int, string) {
	var patch string
	if vm.Spec.Running != nil {
		patch = fmt.Sprintf(`{"spec":{"running":%t}}`, rs == kubevirtv1.RunStrategyAlways)
	} else {
		patch = fmt.Sprintf(`{"spec":{"runStrategy":%q}}`, rs)
	}
	if _, err := s.dyn.Resource(kubevirt.VMs).Namespace(vm.Namespace).Patch(ctx, vm.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return http.StatusInternalServerError, err.Error()
	}
	return http.StatusAccepted, ""
}
