// Command kubevirt-objects prints, as a YAML stream, the cluster objects that
// virt-operator would install for KubeVirt's control plane: CRDs, RBAC, webhook
// configurations, the subresource APIService and the node-restriction admission policy.
// They come from KubeVirt's own generator code, so the local test cluster runs the
// objects a real installation runs. The test harness applies them, then starts
// virt-api and virt-controller as local processes; virt-operator itself is left out
// (it would deploy pods onto kwok nodes and revert the local wiring).
//
// Webhooks and the APIService are pointed at the Service virt-api in the install
// namespace on --virt-api-port, which the harness backs with an ExternalName Service
// resolving to the local virt-api.
package main

import (
	"flag"
	"fmt"
	"os"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	extv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"kubevirt.io/kubevirt/pkg/virt-operator/resource/generate/components"
	"kubevirt.io/kubevirt/pkg/virt-operator/resource/generate/rbac"
)

func main() {
	namespace := flag.String("namespace", "kubevirt", "KubeVirt's install namespace")
	port := flag.Int("virt-api-port", 0, "port of the local virt-api (webhooks and APIService)")
	caFile := flag.String("ca-bundle", "", "PEM file of the CA that signed virt-api's serving certificate")
	flag.Parse()
	if *port == 0 || *caFile == "" {
		fmt.Fprintln(os.Stderr, "usage: kubevirt-objects --virt-api-port PORT --ca-bundle FILE [--namespace NS]")
		os.Exit(2)
	}
	ca, err := os.ReadFile(*caFile)
	if err != nil {
		fail(err)
	}
	objs, err := objects(*namespace, int32(*port), ca)
	if err != nil {
		fail(err)
	}
	for _, o := range objs {
		data, err := yaml.Marshal(o)
		if err != nil {
			fail(err)
		}
		fmt.Printf("---\n%s", data)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kubevirt-objects:", err)
	os.Exit(1)
}

func objects(ns string, port int32, ca []byte) ([]any, error) {
	out := []any{&corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: ns}}}

	// virt-controller's informers wait for every KubeVirt resource, so all CRDs go in.
	crds := []func() (*extv1.CustomResourceDefinition, error){
		components.NewKubeVirtCrd,
		components.NewVirtualMachineInstanceCrd, components.NewPresetCrd, components.NewReplicaSetCrd,
		components.NewVirtualMachineCrd, components.NewVirtualMachineInstanceMigrationCrd,
		components.NewVirtualMachineSnapshotCrd, components.NewVirtualMachineSnapshotContentCrd,
		components.NewVirtualMachineRestoreCrd, components.NewVirtualMachineInstancetypeCrd,
		components.NewVirtualMachineClusterInstancetypeCrd, components.NewVirtualMachinePoolCrd,
		components.NewMigrationPolicyCrd, components.NewVirtualMachinePreferenceCrd,
		components.NewVirtualMachineClusterPreferenceCrd, components.NewVirtualMachineExportCrd,
		components.NewVirtualMachineCloneCrd, components.NewVirtualMachineBackupCrd,
		components.NewVirtualMachineBackupTrackerCrd,
	}
	for _, f := range crds {
		crd, err := f()
		if err != nil {
			return nil, err
		}
		out = append(out, crd)
	}
	out = append(out, components.NewKubeVirtPriorityClassCR())

	var rbacObjs []runtime.Object
	rbacObjs = append(rbacObjs, rbac.GetAllCluster()...)
	rbacObjs = append(rbacObjs, rbac.GetAllApiServer(ns)...)
	rbacObjs = append(rbacObjs, rbac.GetAllController(ns, true)...)
	rbacObjs = append(rbacObjs, rbac.GetAllHandler(ns)...)
	for _, o := range rbacObjs {
		out = append(out, o)
	}

	svcPort := func(s *admissionregistrationv1.ServiceReference) {
		if s != nil {
			s.Port = &port
		}
	}
	v := components.NewVirtAPIValidatingWebhookConfiguration(ns)
	for i := range v.Webhooks {
		svcPort(v.Webhooks[i].ClientConfig.Service)
		v.Webhooks[i].ClientConfig.CABundle = ca
	}
	out = append(out, v)
	for _, m := range []*admissionregistrationv1.MutatingWebhookConfiguration{
		components.NewVirtAPIMutatingWebhookConfiguration(ns),
		components.NewVirtLauncherPodMutatingWebhookConfiguration(ns),
	} {
		for i := range m.Webhooks {
			svcPort(m.Webhooks[i].ClientConfig.Service)
			m.Webhooks[i].ClientConfig.CABundle = ca
		}
		out = append(out, m)
	}
	for _, a := range components.NewVirtAPIAPIServices(ns) {
		a.Spec.Service.Port = &port
		a.Spec.CABundle = ca
		out = append(out, a)
	}
	policy := components.NewHandlerV1ValidatingAdmissionPolicy("system:serviceaccount:" + ns + ":" + components.HandlerServiceAccountName)
	binding := components.NewHandlerV1ValidatingAdmissionPolicyBinding()
	// The generator leaves the group out of these two (virt-operator sets it on create).
	policy.APIVersion = admissionregistrationv1.SchemeGroupVersion.String()
	binding.APIVersion = admissionregistrationv1.SchemeGroupVersion.String()
	out = append(out, policy, binding)
	return out, nil
}
