package record

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Names, labels and annotations of a stored record.
const (
	NamePrefix = "sitefail-move-"

	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "kubectl-sitefail"
	// LabelRecord is "move" on a record's ConfigMap and "part" on its further parts.
	LabelRecord  = "sitefail.io/record"
	LabelMoveID  = "sitefail.io/move-id"
	LabelKind    = "sitefail.io/move-kind"
	LabelFrom    = "sitefail.io/move-from"
	LabelTo      = "sitefail.io/move-to"
	LabelOutcome = "sitefail.io/move-outcome"

	AnnotationHash    = "sitefail.io/record-sha256"
	AnnotationParts   = "sitefail.io/record-parts"
	AnnotationRuns    = "sitefail.io/record-runs"
	AnnotationSummary = "sitefail.io/record-summary"

	// DataKey holds the gzip of the canonical JSON (the first part of it).
	DataKey = "record.json.gz"

	// EventReason marks the Event that states a record's hash.
	EventReason = "SitefailRecordWritten"

	// DefaultPartSize keeps each ConfigMap well below the API server's 1 MiB object
	// limit, with room for its metadata and annotations.
	DefaultPartSize = 768 << 10
	// DefaultKeep is --keep-records.
	DefaultKeep = 50
)

// Store keeps records as ConfigMaps in one namespace (the move lock's).
type Store struct {
	Kube      kubernetes.Interface
	Namespace string
	// PartSize bounds the compressed bytes each ConfigMap holds (DefaultPartSize).
	PartSize int
	// Now stamps the Events; tests replace it.
	Now func() time.Time
}

func (s *Store) partSize() int {
	if s.PartSize > 0 {
		return s.PartSize
	}
	return DefaultPartSize
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Name is the ConfigMap of record id; part n > 1 lives in Name(id)-n.
func Name(id string) string { return NamePrefix + id }

func partName(id string, n int) string { return fmt.Sprintf("%s-%d", Name(id), n) }

// Encode returns the canonical JSON's gzip and its hash.
func Encode(r *Record) (gz []byte, hash string, err error) {
	raw, err := Canonical(r)
	if err != nil {
		return nil, "", err
	}
	var b bytes.Buffer
	w, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if _, err := w.Write(raw); err != nil {
		return nil, "", err
	}
	if err := w.Close(); err != nil {
		return nil, "", err
	}
	return b.Bytes(), Hash(raw), nil
}

// Save writes the record (parts first, the main ConfigMap last, so that the hash the
// main one states is never ahead of its parts) and an Event stating the hash. note says
// when it was written ("start", "after tier 1", "end").
func (s *Store) Save(ctx context.Context, r *Record, note string) (string, error) {
	gz, hash, err := Encode(r)
	if err != nil {
		return "", err
	}
	size := s.partSize()
	var parts [][]byte
	for len(gz) > size {
		parts = append(parts, gz[:size])
		gz = gz[size:]
	}
	parts = append(parts, gz)
	cms := s.Kube.CoreV1().ConfigMaps(s.Namespace)
	for n := 2; n <= len(parts); n++ {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: partName(r.ID, n), Namespace: s.Namespace,
			Labels:      map[string]string{LabelManagedBy: ManagedBy, LabelRecord: "part", LabelMoveID: labelValue(r.ID)},
			Annotations: map[string]string{AnnotationHash: hash}},
			BinaryData: map[string][]byte{DataKey: parts[n-1]}}
		if err := s.put(ctx, cm); err != nil {
			return "", err
		}
	}
	summary, _ := json.Marshal(r.Summarize())
	from := ""
	if len(r.From) == 1 {
		from = r.From[0]
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: Name(r.ID), Namespace: s.Namespace,
		Labels: map[string]string{LabelManagedBy: ManagedBy, LabelRecord: "move", LabelMoveID: labelValue(r.ID), LabelKind: labelValue(string(r.MoveKind)),
			LabelFrom: labelValue(from), LabelTo: labelValue(r.To), LabelOutcome: labelValue(string(r.Outcome()))},
		Annotations: map[string]string{AnnotationHash: hash, AnnotationParts: strconv.Itoa(len(parts)),
			AnnotationRuns: strings.Join(r.RunIDs(), ","), AnnotationSummary: string(summary)}},
		BinaryData: map[string][]byte{DataKey: parts[0]}}
	if err := s.put(ctx, cm); err != nil {
		return "", err
	}
	// A record that shrank leaves no stale part behind to confuse a reader.
	for n := len(parts) + 1; ctx.Err() == nil; n++ {
		if err := cms.Delete(ctx, partName(r.ID, n), metav1.DeleteOptions{}); err != nil {
			break
		}
	}
	if ctx.Err() == nil {
		s.event(ctx, r, hash, note)
	}
	return hash, nil
}

// labelValue keeps a value within what a label takes; a longer one is left out, since
// labels only narrow listings and the document holds the truth.
func labelValue(v string) string {
	if len(v) > 63 {
		return ""
	}
	return v
}

func (s *Store) put(ctx context.Context, cm *corev1.ConfigMap) error {
	// A cancelled save sends nothing more, whatever the client does with ctx: the caller
	// cancels it when the move's lock is lost, and the next writer owns the record.
	if err := ctx.Err(); err != nil {
		return err
	}
	cms := s.Kube.CoreV1().ConfigMaps(s.Namespace)
	_, err := cms.Create(ctx, cm, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// The one writer holds the move lock: an unconditional update is ours to make.
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	return err
}

// event states the hash on the record. An Event is evidence beside the record, kept
// elsewhere in the API; failing to write one leaves the record as it is.
func (s *Store) event(ctx context.Context, r *Record, hash, note string) {
	now := metav1.NewTime(s.now())
	run := r.Runs[len(r.Runs)-1]
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: Name(r.ID) + ".", Namespace: s.Namespace,
			Annotations: map[string]string{AnnotationHash: hash, LabelMoveID: run.MoveID}},
		InvolvedObject: corev1.ObjectReference{Kind: "ConfigMap", APIVersion: "v1", Namespace: s.Namespace, Name: Name(r.ID)},
		Reason:         EventReason,
		Message:        fmt.Sprintf("MoveRecord %s written (%s, run %d by %s): sha256 %s", r.ID, note, len(r.Runs), run.Actor, hash),
		Type:           corev1.EventTypeNormal,
		Source:         corev1.EventSource{Component: "kubectl-sitefail"},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		ReportingController: "sitefail.io/kubectl-sitefail", ReportingInstance: run.Actor,
	}
	_, _ = s.Kube.CoreV1().Events(s.Namespace).Create(ctx, ev, metav1.CreateOptions{})
}

// Stored is a record as read back: the document, its canonical bytes and the hash its
// ConfigMap states.
type Stored struct {
	Record *Record
	Raw    []byte
	// Hash is the annotation's; Computed is the SHA-256 of Raw.
	Hash, Computed string
	Parts          int
	Created        time.Time
}

// Get reads record id.
func (s *Store) Get(ctx context.Context, id string) (*Stored, error) {
	cms := s.Kube.CoreV1().ConfigMaps(s.Namespace)
	cm, err := cms.Get(ctx, Name(id), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%w %s in namespace %s (see 'kubectl sitefail history --lock-namespace %s')", ErrNoRecord, id, s.Namespace, s.Namespace)
	}
	if err != nil {
		return nil, err
	}
	return s.read(ctx, cm)
}

func (s *Store) read(ctx context.Context, cm *corev1.ConfigMap) (*Stored, error) {
	id := strings.TrimPrefix(cm.Name, NamePrefix)
	hash := cm.Annotations[AnnotationHash]
	parts, err := strconv.Atoi(cm.Annotations[AnnotationParts])
	if err != nil || parts < 1 {
		parts = 1
	}
	gz := append([]byte(nil), cm.BinaryData[DataKey]...)
	for n := 2; n <= parts; n++ {
		p, err := s.Kube.CoreV1().ConfigMaps(s.Namespace).Get(ctx, partName(id, n), metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("record %s: part %d of %d: %w", id, n, parts, err)
		}
		if p.Annotations[AnnotationHash] != hash {
			return nil, fmt.Errorf("record %s: part %d of %d belongs to another version of it (a write was cut short: run the move again, or see the Events in %s)", id, n, parts, s.Namespace)
		}
		gz = append(gz, p.BinaryData[DataKey]...)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, fmt.Errorf("record %s does not decompress: %w", id, err)
	}
	raw, err := io.ReadAll(io.LimitReader(zr, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("record %s does not decompress: %w", id, err)
	}
	var r Record
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("record %s does not decode: %w", id, err)
	}
	if r.APIVersion != APIVersion || r.Kind != Kind {
		return nil, fmt.Errorf("record %s is %s %s, which this version does not read (want %s %s): upgrade the plugin", id, r.APIVersion, r.Kind, APIVersion, Kind)
	}
	r.Integrity = &Integrity{SHA256: hash}
	return &Stored{Record: &r, Raw: raw, Hash: hash, Computed: Hash(raw), Parts: parts, Created: cm.CreationTimestamp.Time}, nil
}

// Listed is one record as history lists it.
type Listed struct {
	Summary
	// Name is the ConfigMap's.
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	RunIDs  []string  `json:"runIDs"`
}

// List returns every record's summary, newest first.
func (s *Store) List(ctx context.Context) ([]Listed, error) {
	list, err := s.Kube.CoreV1().ConfigMaps(s.Namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelRecord + "=move"})
	if err != nil {
		return nil, err
	}
	out := make([]Listed, 0, len(list.Items))
	for i := range list.Items {
		cm := &list.Items[i]
		l := Listed{Name: cm.Name, Created: cm.CreationTimestamp.Time}
		if err := json.Unmarshal([]byte(cm.Annotations[AnnotationSummary]), &l.Summary); err != nil || l.ID == "" {
			// Its summary was lost or edited: list it by what the labels say.
			l.Summary = Summary{ID: strings.TrimPrefix(cm.Name, NamePrefix), Kind: MoveKind(cm.Labels[LabelKind]), To: cm.Labels[LabelTo],
				Outcome: Outcome(cm.Labels[LabelOutcome]), Started: cm.CreationTimestamp.Time}
		}
		if runs := cm.Annotations[AnnotationRuns]; runs != "" {
			l.RunIDs = strings.Split(runs, ",")
		}
		out = append(out, l)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.After(out[j].Started)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

// Latest reads the newest record.
func (s *Store) Latest(ctx context.Context) (*Stored, error) {
	list, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("%w in namespace %s: no move has run here yet, or records went to another --lock-namespace", ErrNoRecord, s.Namespace)
	}
	return s.Get(ctx, list[0].ID)
}

// Resumed finds the record a run resumes: the newest record towards the same site that
// did not succeed and either was run with the same selection (a rerun of the same
// command), or is unfinished and ran a move that a VM of this plan still names in its
// journal. ids are those journal move ids.
func (s *Store) Resumed(ctx context.Context, to, selection string, ids []string) (*Stored, error) {
	list, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, l := range list {
		if l.To != to || l.Outcome == OutcomeSucceeded {
			continue
		}
		journaled := false
		for _, id := range ids {
			journaled = journaled || contains(l.RunIDs, id) || l.ID == id
		}
		if l.Selection == selection || l.Outcome.Unfinished() && journaled {
			return s.Get(ctx, l.ID)
		}
	}
	return nil, nil
}

// Prune deletes the oldest records beyond keep, never one of an unfinished move (its
// rerun completes it) nor except (the record being written).
func (s *Store) Prune(ctx context.Context, keep int, except string) ([]string, error) {
	if keep < 0 {
		return nil, nil
	}
	list, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	var pruned []string
	for i, l := range list {
		if i < keep || l.ID == except || l.Outcome.Unfinished() || l.Outcome == "" {
			continue
		}
		// A cancelled prune deletes nothing more, whatever the client does with ctx.
		if err := ctx.Err(); err != nil {
			return pruned, err
		}
		parts := 1
		if cm, err := s.Kube.CoreV1().ConfigMaps(s.Namespace).Get(ctx, l.Name, metav1.GetOptions{}); err == nil {
			if n, err := strconv.Atoi(cm.Annotations[AnnotationParts]); err == nil {
				parts = n
			}
		}
		if err := s.Kube.CoreV1().ConfigMaps(s.Namespace).Delete(ctx, l.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return pruned, err
		}
		for n := 2; n <= parts; n++ {
			_ = s.Kube.CoreV1().ConfigMaps(s.Namespace).Delete(ctx, partName(l.ID, n), metav1.DeleteOptions{})
		}
		pruned = append(pruned, l.ID)
	}
	return pruned, nil
}

// Verification is the verdict of Verify.
type Verification struct {
	ID       string `json:"id"`
	OK       bool   `json:"ok"`
	Stored   string `json:"storedSha256"`
	Computed string `json:"computedSha256"`
	// Events are the hashes the record's Events state, oldest first.
	Events []string `json:"eventSha256s"`
	Detail string   `json:"detail"`
}

// Verify recomputes the hash of record id and compares it with what its ConfigMap and
// its Events state. Editing the document changes its hash; editing the ConfigMap's
// hash too leaves the Events stating another (until they expire: the API server keeps
// Events for an hour by default).
func (s *Store) Verify(ctx context.Context, id string) (*Verification, *Stored, error) {
	st, err := s.Get(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	v := &Verification{ID: st.Record.ID, Stored: st.Hash, Computed: st.Computed, Events: []string{}}
	evs, err := s.Kube.CoreV1().Events(s.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + Name(st.Record.ID)})
	if err == nil {
		items := evs.Items
		sort.SliceStable(items, func(i, j int) bool { return items[i].LastTimestamp.Before(&items[j].LastTimestamp) })
		for _, e := range items {
			if e.InvolvedObject.Name == Name(st.Record.ID) && e.Reason == EventReason {
				v.Events = append(v.Events, e.Annotations[AnnotationHash])
			}
		}
	}
	canon, cerr := Canonical(st.Record)
	switch {
	case st.Computed != st.Hash:
		v.Detail = fmt.Sprintf("EDITED: the record's SHA-256 is %s, but it was written with %s", st.Computed, st.Hash)
	case cerr != nil || !bytes.Equal(canon, st.Raw):
		v.Detail = "EDITED: the record is not in the canonical form this plugin writes"
	case err != nil:
		v.OK = true
		v.Detail = fmt.Sprintf("the record matches the hash it was written with; its Events could not be read (%v)", err)
	case len(v.Events) == 0:
		v.OK = true
		v.Detail = "the record matches the hash it was written with; no Event states it any more (the API server keeps Events for an hour by default)"
	case !contains(v.Events, st.Hash):
		v.Detail = fmt.Sprintf("EDITED: the record matches the hash on its ConfigMap, but no Event states that hash (the last states %s): the ConfigMap's hash was replaced", v.Events[len(v.Events)-1])
	default:
		v.OK = true
		v.Detail = "the record matches the hash it was written with, and an Event states it"
	}
	return v, st, nil
}

// CanWrite asks the API server whether the caller may write records in the store's
// namespace, and names what is missing.
func (s *Store) CanWrite(ctx context.Context) ([]string, error) {
	var missing []string
	for _, verb := range []struct{ verb, resource string }{{"create", "configmaps"}, {"update", "configmaps"}, {"create", "events"}} {
		r := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb.verb, Resource: verb.resource, Namespace: s.Namespace}}}
		res, err := s.Kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, r, metav1.CreateOptions{})
		if err != nil {
			return nil, err
		}
		if !res.Status.Allowed {
			missing = append(missing, fmt.Sprintf("%s %s in namespace %s", verb.verb, verb.resource, s.Namespace))
		}
	}
	return missing, nil
}
