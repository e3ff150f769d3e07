package faultproxy

import (
	"net/http/httptest"
	"testing"
)

func TestKindNamesVerbAndResource(t *testing.T) {
	for _, tc := range []struct{ method, url, want string }{
		{"GET", "/api/v1/nodes", "LIST nodes"},
		{"GET", "/api/v1/nodes?watch=true", "WATCH nodes"},
		{"GET", "/api/v1/namespaces/p/pods", "LIST pods"},
		{"DELETE", "/api/v1/namespaces/p/pods/launcher-1", "DELETE pods"},
		{"PATCH", "/apis/kubevirt.io/v1/namespaces/p/virtualmachines/db", "PATCH virtualmachines"},
		{"PUT", "/apis/subresources.kubevirt.io/v1/namespaces/p/virtualmachines/db/restart", "PUT virtualmachines/restart"},
		{"POST", "/apis/kubevirt.io/v1/namespaces/p/virtualmachineinstancemigrations", "POST virtualmachineinstancemigrations"},
		{"GET", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/sitefail-move", "GET leases"},
	} {
		r := httptest.NewRequest(tc.method, tc.url, nil)
		watch := r.URL.Query().Get("watch") == "true"
		if got := kind(r, watch); got != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.method, tc.url, got, tc.want)
		}
	}
}
