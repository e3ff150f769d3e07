package e2e

import (
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/sitefail/kubectl-sitefail/pkg/kubevirt"
	"github.com/sitefail/kubectl-sitefail/pkg/lock"
)

func vmGVR() schema.GroupVersionResource { return kubevirt.VMs }

func leaseObject(holder string, renewed metav1.MicroTime, seconds int32) *coordinationv1.Lease {
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: lock.DefaultName, Namespace: "kube-system", Annotations: map[string]string{"sitefail.io/move-id": "sf-test"}},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, RenewTime: &renewed, AcquireTime: &renewed, LeaseDurationSeconds: &seconds},
	}
}
