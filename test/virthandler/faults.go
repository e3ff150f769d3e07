package virthandler

import (
	"strconv"
	"strings"
	"time"

	kubevirtv1 "kubevirt.io/api/core/v1"
)

// Fault switches, per VMI: an annotation on the VMI, or on its VM's template (KubeVirt
// copies template annotations into each new VMI). The default is the happy path. Each
// mirrors a way KubeVirt v1.8.0 fails; the README cites the source.
const (
	// MigrationFailAnnotation: the source reports the migration failed, with the value
	// as its failure reason, once memory transfer has started.
	MigrationFailAnnotation = "sitefail.test/migration-fail"
	// MigrationTargetInactiveAnnotation: the target receives the domain, acknowledges
	// the hand-off and finalizes the migration (v1.8.0's migrationNeedsFinalization does
	// not ask for a running domain), so virt-controller marks it Succeeded and the VMI
	// Ready from the target pod; but the domain never runs there, and the handler that
	// now owns the VMI reports it Failed. The value is how long after the hand-off (a Go
	// duration; "true" means 60s). KubeVirt then starts an Always VM again and leaves a
	// Manual VM stopped.
	MigrationTargetInactiveAnnotation = "sitefail.test/migration-target-inactive"
	// MigrationDelayAnnotation (a Go duration) overrides Config.MigrationDelay: a long
	// one keeps a migration in flight while a test kills its source site.
	MigrationDelayAnnotation = "sitefail.test/migration-delay"
	// BootDelayAnnotation (a Go duration) overrides Config.BootDelay: a slow boot keeps
	// an instance starting while a test looks at it.
	BootDelayAnnotation = "sitefail.test/boot-delay"
	// BootFailAnnotation names a site: on that site's nodes the launcher's QEMU fails at
	// start, and the VMI goes Failed (so an Always VM backs off, CrashLoopBackOff).
	BootFailAnnotation = "sitefail.test/boot-fail"
	// PausedAnnotation ("true") pauses the guest, as virtctl pause does through the real
	// handler's API: the VMI's Paused condition, and its launcher pod's
	// kubevirt.io/virtual-machine-unpaused readiness gate False, so the pod and the VMI
	// are not Ready. A migrated guest stays paused on the target.
	PausedAnnotation = "sitefail.test/paused"
	// ShutdownAnnotation makes a shutdown slow: a Go duration, or "ignores-acpi" for a
	// guest that ignores the shutdown request and is killed after its
	// terminationGracePeriodSeconds (KubeVirt's default 30 when unset).
	ShutdownAnnotation = "sitefail.test/shutdown"
)

// Faults are the same switches for every VMI of one site (Stack.SetFaults); a VMI's own
// annotation wins.
type Faults struct {
	MigrationFail string
	BootFail      bool
	Shutdown      string
}

// SetFaults changes this handler's site-wide faults; the zero value is the happy path.
func (h *Handler) SetFaults(f Faults) {
	h.mu.Lock()
	h.faults = f
	h.mu.Unlock()
	// Waiting VMIs see the change at once.
	for _, k := range h.vmis.GetStore().ListKeys() {
		h.queue.Add(k)
	}
}

func (h *Handler) siteFaults() Faults {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.faults
}

// migrationFailure is the reason this VMI's migration fails with, "" for none.
func (h *Handler) migrationFailure(vmi *kubevirtv1.VirtualMachineInstance) string {
	if r := vmi.Annotations[MigrationFailAnnotation]; r != "" {
		return r
	}
	return h.siteFaults().MigrationFail
}

func (h *Handler) migrationDelay(vmi *kubevirtv1.VirtualMachineInstance) time.Duration {
	if d, err := time.ParseDuration(vmi.Annotations[MigrationDelayAnnotation]); err == nil {
		return d
	}
	return h.cfg.MigrationDelay
}

func (h *Handler) bootDelay(vmi *kubevirtv1.VirtualMachineInstance) time.Duration {
	if d, err := time.ParseDuration(vmi.Annotations[BootDelayAnnotation]); err == nil {
		return d
	}
	return h.cfg.BootDelay
}

// bootFails reports that QEMU fails to start on this handler's site.
func (h *Handler) bootFails(vmi *kubevirtv1.VirtualMachineInstance) bool {
	if s, ok := vmi.Annotations[BootFailAnnotation]; ok {
		return strings.EqualFold(s, h.cfg.Site)
	}
	return h.siteFaults().BootFail
}

// shutdownDelay is how long the domain takes to end once the VMI is deleted.
func (h *Handler) shutdownDelay(vmi *kubevirtv1.VirtualMachineInstance) time.Duration {
	v, ok := vmi.Annotations[ShutdownAnnotation]
	if !ok {
		v = h.siteFaults().Shutdown
	}
	switch v {
	case "":
		return 0
	case "ignores-acpi":
		grace := kubevirtv1.DefaultGracePeriodSeconds
		if g := vmi.Spec.TerminationGracePeriodSeconds; g != nil {
			grace = *g
		}
		return time.Duration(grace) * time.Second
	}
	if d, err := time.ParseDuration(v); err == nil {
		return d
	}
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Second
	}
	return 0
}

// targetInactiveWait is how long after the hand-off a domain that never ran on the
// target is found shut off; ok is false without that fault.
func targetInactiveWait(vmi *kubevirtv1.VirtualMachineInstance) (wait time.Duration, ok bool) {
	v, ok := vmi.Annotations[MigrationTargetInactiveAnnotation]
	if !ok || v == "" {
		return 0, false
	}
	if d, err := time.ParseDuration(v); err == nil {
		return d, true
	}
	return 60 * time.Second, true
}
