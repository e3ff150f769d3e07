package move

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sitefail/kubectl-sitefail/pkg/executor"
	"github.com/sitefail/kubectl-sitefail/pkg/plan"
	"github.com/sitefail/kubectl-sitefail/pkg/record"
)

// Records configures the move's audit record (pkg/record).
type Records struct {
	// Command and Version name what ran, for the record.
	Command, Version string
	// Kind is failback or drill when the command says so; the plan decides otherwise.
	Kind  record.MoveKind
	Drill *record.Drill
	// Objective gives a tier's RTO objective, recorded beside its RTO.
	Objective func(tier int) (time.Duration, bool)
	// Keep is --keep-records: the newest records kept when this one is written.
	Keep int
	// OnRecord receives the finished record, stored or not (a drill's report).
	OnRecord func(*record.Record)
}

// recordWriteTimeout bounds each write of the record: a slow API server delays the move
// by no more than this at its start, and never between tiers.
const recordWriteTimeout = 10 * time.Second

// recording keeps one run's record: built from the progress events in any case, stored
// in the lock namespace when the operator may write there. Nothing it does fails or
// blocks the move; a write that fails is a warning.
type recording struct {
	cfg   Config
	store *record.Store
	rec   *record.Recorder
	// valid is the lock's: once it is lost, the record belongs to whoever holds it.
	valid func() error
	// lost closes when the move loses its lock.
	lost <-chan struct{}

	mu      sync.Mutex
	warned  bool
	stop    chan struct{}
	stopped chan struct{}
}

// checkRecords says, before the lock, whether this move can keep its record, warning
// when it cannot.
func checkRecords(ctx context.Context, cfg Config) *record.Store {
	if cfg.Records == nil || cfg.DryRun != DryRunNone {
		return nil
	}
	store := &record.Store{Kube: cfg.Kube, Namespace: cfg.LockNamespace}
	missing, err := store.CanWrite(ctx)
	if err == nil && len(missing) == 0 {
		return store
	}
	why := fmt.Sprintf("you lack %s", strings.Join(missing, ", "))
	if err != nil {
		why = fmt.Sprintf("checking permissions failed (%v)", err)
	}
	warn(cfg, fmt.Sprintf("this move keeps no record in the cluster: %s; the move goes on. Bind the sitefail-move-lock Role of deploy/rbac in %s to keep records ('kubectl sitefail history')", why, cfg.LockNamespace))
	return nil
}

func warn(cfg Config, msg string) {
	if cfg.OnWarning != nil {
		cfg.OnWarning(msg)
	}
}

// startRecording begins the run's record, as a further run of the record of the move it
// resumes when there is one, and writes it before the first change.
func startRecording(ctx context.Context, cfg Config, store *record.Store, p *plan.Plan, moveID, actor string, valid func() error, lost <-chan struct{}) *recording {
	if cfg.Records == nil || cfg.DryRun != DryRunNone {
		return nil
	}
	o := cfg.Records
	var prev *record.Record
	if store != nil {
		rctx, cancel := context.WithTimeout(ctx, recordWriteTimeout)
		st, err := store.Resumed(rctx, p.Request.To, p.Selection, journalIDs(p))
		cancel()
		switch {
		case err != nil:
			warn(cfg, fmt.Sprintf("could not look for the record of a move this one resumes (%v): it starts a record of its own", err))
		case st != nil:
			prev = st.Record
		}
	}
	info := record.RunInfo{MoveID: moveID, Actor: actor, Command: o.Command, Version: o.Version, Kind: o.Kind, Drill: o.Drill,
		Objective: o.Objective, Confirmed: cfg.ConfirmedDown, Fence: string(cfg.Fence)}
	r := &recording{cfg: cfg, store: store, rec: record.NewRecorder(prev, info, p, time.Now()), valid: valid, lost: lost,
		stop: make(chan struct{}), stopped: make(chan struct{})}
	r.save("start")
	go r.writeAfterTiers()
	return r
}

// journalIDs are the moves whose unfinished steps this plan takes up.
func journalIDs(p *plan.Plan) []string {
	seen := map[string]bool{}
	var ids []string
	for _, st := range p.Steps {
		if st.JournalMoveID != "" && !seen[st.JournalMoveID] {
			seen[st.JournalMoveID] = true
			ids = append(ids, st.JournalMoveID)
		}
	}
	return ids
}

// writeAfterTiers writes the record each time a tier finishes, off the executor's path:
// a crash then loses at most the timestamps of the tier under way.
func (r *recording) writeAfterTiers() {
	defer close(r.stopped)
	for {
		select {
		case <-r.rec.TierDone():
			r.save("after a tier")
		case <-r.stop:
			return
		}
	}
}

// replan takes the plan built again after a storage fence.
func (r *recording) replan(p *plan.Plan) {
	if r != nil {
		r.rec.Replan(p, time.Now())
	}
}

// storageFence notes what a storage fence did, and writes the record at once: it is the
// move's first write, and a move it stops goes no further.
func (r *recording) storageFence(note string) {
	if r != nil {
		r.rec.StorageFence(note)
		r.save("storage fence")
	}
}

func (r *recording) event(e executor.Event) {
	if r != nil {
		r.rec.Event(e)
	}
}

// finish closes the run, writes the record a last time, prunes old ones and hands the
// record to the caller.
func (r *recording) finish(rep *executor.Report, err error, lockLost bool) {
	if r == nil {
		return
	}
	close(r.stop)
	<-r.stopped
	r.rec.Finish(rep, err, time.Now(), lockLost)
	r.save("end")
	if r.store != nil && r.valid() == nil {
		// Its deletes stop when the lock is lost, as a save's writes do.
		ctx, cancel := r.writeContext()
		defer cancel()
		if _, err := r.store.Prune(ctx, r.cfg.Records.Keep, r.rec.ID()); err != nil {
			warn(r.cfg, fmt.Sprintf("could not prune old move records (%v)", err))
		}
	}
	if r.cfg.Records.OnRecord != nil {
		r.cfg.Records.OnRecord(r.rec.Snapshot())
	}
}

// writeContext bounds a write of the record, and ends it when the lock is lost, not only
// when it times out: a save or prune that began just before the loss must not touch what
// a move that took the lock over writes into the same records (found by review).
func (r *recording) writeContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), recordWriteTimeout)
	go func() {
		select {
		case <-r.lost:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// save writes the record as it stands, unless the move lost its lock: then another move
// may be resuming this very record, and its runs must not be overwritten.
func (r *recording) save(note string) {
	if r.store == nil || r.valid() != nil {
		return
	}
	ctx, cancel := r.writeContext()
	defer cancel()
	if _, err := r.store.Save(ctx, r.rec.Snapshot(), note); err != nil {
		r.mu.Lock()
		defer r.mu.Unlock()
		if !r.warned {
			r.warned = true
			warn(r.cfg, fmt.Sprintf("could not write the move's record %s in %s (%v); the move goes on", record.Name(r.rec.ID()), r.cfg.LockNamespace, err))
		}
	}
}
