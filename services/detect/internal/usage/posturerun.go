package usage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/grants"
)

// Posture state in the NHI_POSTURE bucket:
//
//	f.<hash of detector, identity, cause>  the open posture conditions: the finding published
//	a.<hash of identity>                    the activity summary of an identity (Activity)
//	c.<hash of credential>                  the last use of a credential
//	observed                                when this deployment began observing events
//
// The open conditions make publishing idempotent: a condition that still holds at the next
// evaluation is not published again, whichever worker evaluates; one that ends is
// forgotten, so if it comes back it is a new finding. The activity summary outlives the
// NHI_EVENTS retention, so "no admin action in 90 days" holds across restarts.
const (
	postureOpenPrefix     = "f."
	postureActivityPrefix = "a."
	postureCredPrefix     = "c."
	postureObservedKey    = "observed"
	// PostureSource is the Nhi-Source header of posture findings.
	PostureSource = "posture"
)

func postureKey(prefix string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return prefix + hex.EncodeToString(h.Sum(nil)[:16])
}

// openCondition is the record of a posture finding published and still open.
type openCondition struct {
	ID       string    `json:"id"`
	Detector string    `json:"detector"`
	Identity string    `json:"identity"`
	Cause    string    `json:"cause"`
	Opened   time.Time `json:"opened"`
}

type credentialUse struct {
	ID   string    `json:"id"`
	Last time.Time `json:"last"`
}

// PostureRunner evaluates posture findings and publishes the new ones to NHI_FINDINGS.
// The grants sync calls it from one goroutine, while it holds the posture lease.
type PostureRunner struct {
	cfg      PostureConfig
	kv       jetstream.KeyValue
	pub      *streams.Publisher
	owners   Owners
	log      *slog.Logger
	now      func() time.Time
	observed time.Time

	published, evaluations metric.Int64Counter
}

// NewPostureRunner opens the posture bucket. owners may be nil (no catalog).
func NewPostureRunner(ctx context.Context, cfg PostureConfig, js jetstream.JetStream, sc streams.Config, pub *streams.Publisher,
	owners Owners, log *slog.Logger, meter metric.Meter, now func() time.Time) (*PostureRunner, error) {
	if cfg.KeyRotationAge <= 0 || cfg.StandingAdminWindow <= 0 {
		return nil, errors.New("usage: posture thresholds must be positive")
	}
	if js == nil || pub == nil || log == nil || meter == nil || now == nil {
		return nil, errors.New("usage: posture needs JetStream, a publisher, a logger, a meter and a clock")
	}
	kv, err := streams.EnsureBucket(ctx, js, sc, events.BucketPosture, "posture findings open and the activity they are evaluated from", 1)
	if err != nil {
		return nil, fmt.Errorf("posture bucket: %w", err)
	}
	r := &PostureRunner{cfg: cfg, kv: kv, pub: pub, owners: owners, log: log, now: now}
	if r.published, err = meter.Int64Counter("nhiwatch_posture_findings", metric.WithDescription("posture findings published")); err != nil {
		return nil, err
	}
	if r.evaluations, err = meter.Int64Counter("nhiwatch_posture_evaluations", metric.WithDescription("posture evaluations, by result")); err != nil {
		return nil, err
	}
	return r, nil
}

// LoadActivity merges the persisted activity summary into act and reads when observation
// began (recording now when this is the deployment's first start).
func (r *PostureRunner) LoadActivity(ctx context.Context, act *Activities) error {
	w, err := r.kv.WatchFiltered(ctx, []string{postureActivityPrefix + ">", postureCredPrefix + ">"}, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("read activity summary: %w", err)
	}
	defer func() { _ = w.Stop() }()
	for e := range w.Updates() {
		if e == nil {
			break // every current value was delivered
		}
		if key := e.Key(); len(key) > 2 && key[:2] == postureCredPrefix {
			var c credentialUse
			if json.Unmarshal(e.Value(), &c) == nil {
				act.MergeCredential(c.ID, c.Last)
			}
			continue
		}
		var a Activity
		if json.Unmarshal(e.Value(), &a) == nil {
			act.Merge(a)
		}
	}
	e, err := r.kv.Get(ctx, postureObservedKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		// The deployment's first start; another worker may record its own first.
		now := r.now().UTC()
		if _, err := r.kv.Create(ctx, postureObservedKey, []byte(now.Format(time.RFC3339Nano))); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("record observation start: %w", err)
		}
		e, err = r.kv.Get(ctx, postureObservedKey)
	}
	if err != nil {
		return fmt.Errorf("read observation start: %w", err)
	}
	t, err := time.Parse(time.RFC3339Nano, string(e.Value()))
	if err != nil {
		return fmt.Errorf("observation start %q: %w", e.Value(), err)
	}
	r.observed = t
	return nil
}

// observedSince is when observation began: when the deployment first started, or the
// earliest event seen when older logs were replayed into it.
func (r *PostureRunner) observedSince(act *Activities) time.Time {
	since := r.observed
	if s := act.Since(); !s.IsZero() && (since.IsZero() || s.Before(since)) {
		since = s
	}
	return since
}

// Evaluate evaluates the posture of model and act, publishes the findings of conditions
// that are new, forgets the conditions that ended and persists the activity that changed.
// It returns how many findings it published.
func (r *PostureRunner) Evaluate(ctx context.Context, model *grants.Model, act *Activities) (int, error) {
	n, err := r.evaluate(ctx, model, act)
	result := "ok"
	if err != nil {
		result = "error"
	}
	r.evaluations.Add(ctx, 1, metric.WithAttributes(attribute.String("result", result)))
	return n, err
}

func (r *PostureRunner) evaluate(ctx context.Context, model *grants.Model, act *Activities) (int, error) {
	now := r.now().UTC()
	conds := EvaluatePosture(r.cfg, PostureInput{Model: model, Activity: act, Owners: r.owners, Now: now, ObservedSince: r.observedSince(act)})
	open, err := r.openConditions(ctx)
	if err != nil {
		return 0, err
	}
	var msgs []*nats.Msg
	var opened []openCondition
	var findings []*events.Finding
	for _, c := range conds {
		key := postureKey(postureOpenPrefix, c.Detector, c.Identity, c.Cause)
		if _, ok := open[key]; ok {
			delete(open, key) // still open: published before
			continue
		}
		f := c.FindingAt(now)
		data, err := events.Marshal(f)
		if err != nil {
			return 0, err
		}
		m := nats.NewMsg(events.FindingSubject(f.Severity, f.Detector))
		m.Header.Set(events.HeaderMsgID, f.Id)
		m.Header.Set(events.HeaderSource, PostureSource)
		m.Data = data
		msgs = append(msgs, m)
		opened = append(opened, openCondition{ID: f.Id, Detector: c.Detector, Identity: c.Identity, Cause: c.Cause, Opened: now})
		findings = append(findings, f)
	}
	// Published before recorded: a failure in between publishes the same ids again (the
	// same day's), which NHI_FINDINGS and every consumer de-duplicate.
	if err := r.pub.PublishAll(ctx, msgs); err != nil {
		return 0, fmt.Errorf("publish posture findings: %w", err)
	}
	for i, o := range opened {
		b, _ := json.Marshal(o)
		if _, err := r.kv.Put(ctx, postureKey(postureOpenPrefix, o.Detector, o.Identity, o.Cause), b); err != nil {
			return i, fmt.Errorf("record open posture finding: %w", err)
		}
		f := findings[i]
		r.published.Add(ctx, 1, metric.WithAttributes(attribute.String("detector", f.Detector), attribute.String("severity", f.Severity.Label())))
		r.log.Info("posture finding", "detector", f.Detector, "identity", f.Identity.GetId(), "severity", f.Severity.Label(), "finding_id", f.Id)
	}
	for key, o := range open {
		if err := r.kv.Delete(ctx, key); err != nil {
			return len(opened), fmt.Errorf("forget ended posture condition: %w", err)
		}
		r.log.Info("posture condition ended", "detector", o.Detector, "identity", o.Identity, "finding_id", o.ID)
	}
	if err := r.persistActivity(ctx, act); err != nil {
		return len(opened), err
	}
	return len(opened), nil
}

// openConditions returns the posture conditions open, by key.
func (r *PostureRunner) openConditions(ctx context.Context) (map[string]openCondition, error) {
	w, err := r.kv.Watch(ctx, postureOpenPrefix+">", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read open posture findings: %w", err)
	}
	defer func() { _ = w.Stop() }()
	out := map[string]openCondition{}
	for e := range w.Updates() {
		if e == nil {
			break
		}
		var o openCondition
		if json.Unmarshal(e.Value(), &o) == nil {
			out[e.Key()] = o
		}
	}
	return out, nil
}

func (r *PostureRunner) persistActivity(ctx context.Context, act *Activities) error {
	ids, creds := act.TakeChanged()
	for i, a := range ids {
		b, _ := json.Marshal(a)
		if _, err := r.kv.Put(ctx, postureKey(postureActivityPrefix, a.Identity), b); err != nil {
			act.Restore(ids[i:], creds)
			return fmt.Errorf("persist activity: %w", err)
		}
	}
	for id, last := range creds {
		b, _ := json.Marshal(credentialUse{ID: id, Last: last})
		if _, err := r.kv.Put(ctx, postureKey(postureCredPrefix, id), b); err != nil {
			act.Restore(nil, creds)
			return fmt.Errorf("persist credential use: %w", err)
		}
	}
	return nil
}
