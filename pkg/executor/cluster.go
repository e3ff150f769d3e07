package executor

import (
	"context"

	"github.com/sitefail/kubectl-sitefail/pkg/plan"
)

// Instance is what the executor observes of a VM's running instance.
type Instance struct {
	UID         string
	NodeName    string
	Site        string
	Phase       string
	Ready       bool
	Terminating bool
	// Paused: the guest is paused by a user (its Ready condition stays False until
	// unpaused); an I/O error's pause does not count.
	Paused bool
	// SelectorSite is the site key of the instance's own nodeSelector (LiveUpdate copies
	// the template's into it).
	SelectorSite string
	// DomainNeverRan: a migration handed the instance to its node, but that node never
	// reported the domain running there (no target domain-ready time). KubeVirt v1.8.0
	// finalizes such a migration as Succeeded and shows the instance Ready from its pod;
	// the guest is not running, and the instance soon fails.
	DomainNeverRan bool
}

// Final reports whether the instance has ended (it will not run again).
func (i *Instance) Final() bool { return i.Phase == "Succeeded" || i.Phase == "Failed" }

// MigrationState is what the executor observes of a migration.
type MigrationState struct {
	Name    string
	Exists  bool
	Phase   string
	Done    bool
	Success bool
	// Reason is KubeVirt's failure reason for a failed migration, when it gave one.
	Reason string
	// TargetPlaced: KubeVirt scheduled the target pod and it became ready (the
	// migration reached Scheduled). A migration failed without it failed at the target
	// site, where a restart would meet the same scheduler.
	TargetPlaced bool
}

// Cluster is what the executor drives, composed of the narrow ports its steps use. The
// real one talks to the API server and watches; tests use an in-memory fake. Writes must
// be idempotent: the executor may repeat one after a crash or a retriable error.
type Cluster interface {
	Writer
	Releaser
	Watcher
	Recorder
}

// Writer changes VMs on live sites: the template and journal, restarts, starts and
// migrations.
type Writer interface {
	// PatchSite sets the VM template's site key to step.To and writes the journal, in one
	// request, preconditioned on the VM's UID.
	PatchSite(ctx context.Context, step plan.Step, journal map[string]string) error
	// Annotate writes journal annotations on the step's VM. Like PatchSite, it is
	// preconditioned on the VM's UID when the step has one: a VM deleted and recreated
	// under the same name mid-move is another VM, and its writes fail as NotFound.
	Annotate(ctx context.Context, step plan.Step, journal map[string]string) error
	Restart(ctx context.Context, namespace, name string) error
	Start(ctx context.Context, namespace, name string) error
	// Migrate creates the named migration for the VMI; an existing one is not an error.
	// The migration carries the move's id and target site (to) in its labels.
	Migrate(ctx context.Context, namespace, vmi, migration, to string) error
}

// Releaser lets instances go from a dead site ("release" means only this here: the
// throttle frees slots, the lock unlocks), each checked by the guard at the write.
type Releaser interface {
	// ForceDeleteLaunchers force-deletes the launcher pods of the instance. It checks
	// each pod's node with CheckRelease(site, node) immediately before deleting it.
	ForceDeleteLaunchers(ctx context.Context, namespace, instanceUID, site string) error
	// FenceNodes taints the nodes node.kubernetes.io/out-of-service, checking each with
	// CheckRelease(site, node) immediately before.
	FenceNodes(ctx context.Context, site string, nodes []string) error
	// CheckRelease says why an instance of the confirmed-down site, on node (empty when
	// unknown), must not be released now: a node of the site is Ready again, the node is
	// not a NotReady node of that site (or, deleted, was not known in it), or the site is
	// unnamed (unlabeled nodes). It reads the API server at that instant, not the
	// snapshot the plan was made from.
	CheckRelease(ctx context.Context, site, node string) error
}

// Watcher reads the watch caches that the executor's waits block on.
type Watcher interface {
	// Instance returns the VM's current instance from the watch cache; nil when none.
	Instance(namespace, name string) *Instance
	// Migration returns a migration's state from the watch cache.
	Migration(namespace, name string) MigrationState
	// ActiveMigration returns the unfinished migration of a VMI that a sitefail move
	// created towards site to (its sitefail.io/move-to label), if any, from the watch
	// cache: a resumed move continues such a migration, and never one towards another
	// site (a failback does not follow the interrupted move's migration).
	ActiveMigration(namespace, vmi, to string) (MigrationState, bool)
	// UnfinishedMigration returns any unfinished migration of a VMI, whoever created it
	// (a drain's evacuation, say): KubeVirt refuses a second one while it runs.
	UnfinishedMigration(namespace, vmi string) (MigrationState, bool)
	// Changed returns a channel closed at the next change of any watched object, so
	// waits block on watch events instead of polling the API.
	Changed() <-chan struct{}
}

// Recorder leaves Kubernetes Events for an auditor.
type Recorder interface {
	// Record emits a Kubernetes Event on the VM.
	Record(namespace, name, reason, message string)
}
