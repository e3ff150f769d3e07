package virthandler

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"
)

// heartbeat labels this site's nodes as v1.8.0's handler does (pkg/virt-handler/
// heartbeat/heartbeat.go): kubevirt.io/schedulable=false and a heartbeat at once, true
// once the device plugins are up (DevicePluginDelay), then a heartbeat every interval.
// A handler that dies (its site went dark) writes nothing more: virt-controller's node
// controller sets the label false once the heartbeat is five minutes old. A handler
// stopped on purpose labels its nodes false first (Unschedule).
func (h *Handler) heartbeat(ctx context.Context) {
	defer close(h.beatDone)
	h.beat(ctx, false)
	select {
	case <-ctx.Done():
		return
	case <-time.After(h.cfg.DevicePluginDelay):
	}
	every := h.cfg.HeartbeatInterval
	if every <= 0 {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		h.beat(ctx, true)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Unschedule labels the site's nodes kubevirt.io/schedulable=false, as a handler does
// when it stops (its DaemonSet pod deleted, a drain of virt-handler). Call it after the
// handler's context ended: it waits for the last heartbeat, which would undo it.
func (h *Handler) Unschedule(ctx context.Context) {
	select {
	case <-h.beatDone:
	case <-ctx.Done():
		return
	}
	h.beat(ctx, false)
}

func (h *Handler) beat(ctx context.Context, schedulable bool) {
	now, _ := json.Marshal(metav1.Now())
	patch := []byte(fmt.Sprintf(`{"metadata":{"labels":{%q:"%t"},"annotations":{%q:%s}}}`,
		kubevirtv1.NodeSchedulable, schedulable, kubevirtv1.VirtHandlerHeartbeat, now))
	for _, obj := range h.nodes.GetStore().List() {
		n := obj.(*corev1.Node)
		// Written with the kubelet's (admin) identity: KubeVirt's node-restriction
		// admission policy lets a handler patch only the node named in its token's
		// authentication.kubernetes.io/node-name, which a static token cannot carry.
		// A failed beat is retried at the next one, as the real handler does.
		_, _ = h.kubelet.CoreV1().Nodes().Patch(ctx, n.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	}
}
