package usage

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/grants"
)

// SyncConfig configures the grants side of detect: snapshot imports, the ClickHouse
// statistics and the posture findings.
type SyncConfig struct {
	// SnapshotDir is scanned every ScanInterval (by one worker); new or changed export
	// files in it are imported. Empty disables the scan (import with `nhiwatch grants import`).
	SnapshotDir  string        `yaml:"snapshot_dir" env:"SNAPSHOT_DIR"`
	ScanInterval time.Duration `yaml:"scan_interval" env:"SCAN_INTERVAL"`
	// ReconcileInterval is how often the whole grant state is rewritten to ClickHouse.
	ReconcileInterval time.Duration `yaml:"reconcile_interval" env:"RECONCILE_INTERVAL"`
	// Cluster and GCPResource complete export files that do not name them.
	Cluster     string `yaml:"cluster" env:"CLUSTER"`
	GCPResource string `yaml:"gcp_resource" env:"GCP_RESOURCE"`
	// Posture turns the posture findings on (posture_no_owner, posture_key_rotation,
	// posture_standing_admin). They are evaluated every PostureInterval and after every
	// snapshot import, by the one worker holding the grants lease.
	Posture         bool          `yaml:"posture" env:"POSTURE"`
	PostureInterval time.Duration `yaml:"posture_interval" env:"POSTURE_INTERVAL"`
	// KeyRotationAge: an active long-term key last rotated longer ago is a finding.
	KeyRotationAge time.Duration `yaml:"key_rotation_age" env:"KEY_ROTATION_AGE"`
	// StandingAdminWindow: an admin-equivalent grant with no admin action for this long is
	// a finding.
	StandingAdminWindow time.Duration `yaml:"standing_admin_window" env:"STANDING_ADMIN_WINDOW"`
	// LeaseTTL bounds how long the grants lease outlives a worker that died: another worker
	// takes over the snapshot scan and the posture evaluation after it.
	LeaseTTL time.Duration `yaml:"lease_ttl" env:"LEASE_TTL"`
}

// DefaultSyncConfig returns the defaults: posture off (it reports every NHI the catalog
// does not own, so turn it on with a catalog), evaluated hourly, 90-day thresholds.
func DefaultSyncConfig() SyncConfig {
	p := DefaultPostureConfig()
	return SyncConfig{
		ScanInterval: 5 * time.Minute, ReconcileInterval: 15 * time.Minute, Cluster: "default",
		Posture: false, PostureInterval: time.Hour, KeyRotationAge: p.KeyRotationAge, StandingAdminWindow: p.StandingAdminWindow,
		LeaseTTL: 30 * time.Second,
	}
}

// Validate reports the first setting that cannot work.
func (c SyncConfig) Validate() error {
	switch {
	case c.ScanInterval <= 0 || c.ReconcileInterval <= 0:
		return errors.New("detect.usage: scan_interval and reconcile_interval must be positive")
	case c.PostureInterval < time.Second:
		return fmt.Errorf("detect.usage.posture_interval must be at least 1s, got %s", c.PostureInterval)
	case c.KeyRotationAge < 24*time.Hour || c.StandingAdminWindow < 24*time.Hour:
		return errors.New("detect.usage: key_rotation_age and standing_admin_window must be at least 24h")
	case c.LeaseTTL < time.Second:
		return fmt.Errorf("detect.usage.lease_ttl must be at least 1s, got %s", c.LeaseTTL)
	}
	if c.SnapshotDir != "" {
		if st, err := os.Stat(c.SnapshotDir); err != nil || !st.IsDir() {
			return fmt.Errorf("detect.usage.snapshot_dir %q is not a readable directory", c.SnapshotDir)
		}
	}
	return nil
}

// PostureConfig returns the posture thresholds.
func (c SyncConfig) PostureConfig() PostureConfig {
	return PostureConfig{KeyRotationAge: c.KeyRotationAge, StandingAdminWindow: c.StandingAdminWindow}
}

// SyncDeps are what a Sync works with.
type SyncDeps struct {
	Model   *grants.Model
	JS      jetstream.JetStream
	Streams streams.Config
	Log     *slog.Logger
	Meter   metric.Meter
	// ClickHouse is optional: without it the sync keeps the model and the posture, and
	// writes no statistics.
	ClickHouse driver.Conn
	// Publisher publishes posture findings (required when posture is on).
	Publisher *streams.Publisher
	// Owners is the catalog (optional).
	Owners Owners
	// WorkerID names this worker in the grants lease; empty picks host-pid-random.
	WorkerID string
	Now      func() time.Time
}

// LeaseKey is the key of the grants lease in NHI_LEASES: its holder scans the snapshot
// directory and evaluates posture.
const LeaseKey = "grants.leader"

// Sync keeps the grant model current and derives everything from it. It reads every
// NHI_EVENTS message on an ordered consumer of its own (not a shared durable one), so each
// replica's model holds every grant change; it starts from the stream's first message to
// rebuild the model after a restart. Grant rows are derived from the model, so replicas
// write identical rows and a ReplacingMergeTree keeps one. The worker holding the grants
// lease also scans the snapshot directory and evaluates posture, once it has caught up
// with the stream.
type Sync struct {
	cfg      SyncConfig
	d        SyncDeps
	activity *Activities
	seen     map[string]string // snapshot file → content hash
	lastSeq  uint64            // NHI_EVENTS sequence of the last message applied
}

// NewSync checks the configuration and dependencies and returns a Sync.
func NewSync(cfg SyncConfig, d SyncDeps) (*Sync, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Model == nil || d.JS == nil || d.Log == nil || d.Meter == nil {
		return nil, errors.New("usage: sync needs a model, JetStream, a logger and a meter")
	}
	if cfg.Posture && d.Publisher == nil {
		return nil, errors.New("usage: posture findings need a publisher")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.WorkerID == "" {
		d.WorkerID = defaultWorkerID()
	}
	return &Sync{cfg: cfg, d: d, activity: NewActivities(), seen: map[string]string{}}, nil
}

func defaultWorkerID() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}

// Activity returns the activity the sync has observed.
func (s *Sync) Activity() *Activities { return s.activity }

// Run loads the stored snapshots, replays NHI_EVENTS and then follows it until ctx ends.
// A shutdown during start-up is not an error.
func (s *Sync) Run(ctx context.Context) error {
	err := s.run(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (s *Sync) run(ctx context.Context) error {
	store, err := OpenSnapshotStore(ctx, s.d.JS, s.d.Streams)
	if err != nil {
		return err
	}
	// Watch before loading, so that a snapshot stored in between is seen (twice at worst:
	// importing it again changes nothing).
	watch, err := store.os.Watch(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return fmt.Errorf("usage sync: watch snapshots: %w", err)
	}
	defer func() { _ = watch.Stop() }()
	updates := watch.Updates()
	if err := s.loadSnapshots(ctx, store); err != nil {
		return err
	}
	leases, err := streams.EnsureBucket(ctx, s.d.JS, s.d.Streams, events.BucketLeases, "which detect worker owns which partition", 1)
	if err != nil {
		return err
	}
	lease, err := NewLease(leases, LeaseKey, s.d.WorkerID, s.cfg.LeaseTTL, s.d.Now)
	if err != nil {
		return err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if err := lease.Release(rctx); err != nil {
			s.d.Log.Warn("grants lease not released; it expires on its own", "error", err)
		}
	}()
	var posture *PostureRunner
	if s.cfg.Posture {
		posture, err = NewPostureRunner(ctx, s.cfg.PostureConfig(), s.d.JS, s.d.Streams, s.d.Publisher, s.d.Owners, s.d.Log, s.d.Meter, s.d.Now)
		if err != nil {
			return err
		}
		if err := posture.LoadActivity(ctx, s.activity); err != nil {
			return err
		}
	}
	cons, err := s.consumer(ctx)
	if err != nil {
		return err
	}
	reconcile := time.NewTicker(s.cfg.ReconcileInterval)
	defer reconcile.Stop()
	scan := time.NewTicker(s.cfg.ScanInterval)
	defer scan.Stop()
	evaluate := time.NewTicker(s.cfg.PostureInterval)
	defer evaluate.Stop()

	needReconcile, postureDue, scanDue, caughtUp := s.d.ClickHouse != nil, true, true, false
	var retryAt time.Time
	for ctx.Err() == nil {
		done, err := s.follow(ctx, cons)
		if err != nil {
			// The consumer gave up (NATS unreachable): wait, then resume after the last
			// message applied.
			if ctx.Err() == nil {
				s.d.Log.Warn("usage sync: reading NHI_EVENTS failed; resuming", "error", err)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			if c, err := s.consumer(ctx); err == nil {
				cons = c
			}
			continue
		}
		caughtUp = caughtUp || done
		if updates == nil && ctx.Err() == nil {
			// The snapshot watcher stopped (NATS went away): watch again, then load every
			// snapshot to catch those stored meanwhile.
			if w, err := store.os.Watch(ctx, jetstream.UpdatesOnly()); err == nil {
				_ = watch.Stop()
				watch, updates = w, w.Updates()
				if err := s.loadSnapshots(ctx, store); err == nil {
					needReconcile, postureDue = s.d.ClickHouse != nil, true
				}
			}
		}
		leader, err := lease.Hold(ctx)
		if err != nil && ctx.Err() == nil {
			s.d.Log.Warn("grants lease", "error", err)
		}
		select {
		case <-reconcile.C:
			needReconcile = s.d.ClickHouse != nil
		case <-scan.C:
			scanDue = true
		case <-evaluate.C:
			postureDue = true
		case info, ok := <-updates:
			imported, open := s.drainSnapshots(ctx, store, updates, info, ok)
			if !open {
				updates = nil // watched again below
			}
			if imported {
				needReconcile, postureDue = s.d.ClickHouse != nil, true
			}
		default:
		}
		if scanDue && leader {
			s.scanDir(ctx, store)
			scanDue = false
		}
		if needReconcile && ctx.Err() == nil {
			n, err := Reconcile(ctx, s.d.ClickHouse, s.d.Model, s.d.Now())
			if err != nil {
				s.d.Log.Warn("grants reconcile failed; retrying later", "error", err)
			} else {
				s.d.Log.Debug("grants reconciled", "rows", n)
				needReconcile = false
			}
		}
		if posture != nil && postureDue && caughtUp && leader && !s.d.Now().Before(retryAt) && ctx.Err() == nil {
			n, err := posture.Evaluate(ctx, s.d.Model, s.activity)
			if err != nil {
				s.d.Log.Warn("posture evaluation failed; retrying", "published", n, "error", err)
				retryAt = s.d.Now().Add(5 * time.Second)
				continue
			}
			s.d.Log.Debug("posture evaluated", "published", n)
			postureDue = false
		}
	}
	return nil
}

// consumer opens an ordered consumer on NHI_EVENTS from the first message, or after the
// last one applied. It gives up quickly when NATS is unreachable, so that shutdown is never
// stuck in its retries; the sync opens a new one.
func (s *Sync) consumer(ctx context.Context) (jetstream.Consumer, error) {
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.SubjectsEvents}, DeliverPolicy: jetstream.DeliverAllPolicy, MaxResetAttempts: 2,
	}
	if s.lastSeq > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, s.lastSeq+1
	}
	cons, err := s.d.JS.OrderedConsumer(ctx, events.StreamEvents, cfg)
	if err != nil {
		return nil, fmt.Errorf("usage sync: consumer: %w", err)
	}
	return cons, nil
}

// follow applies the next batch of NHI_EVENTS; it reports whether the sync has caught up
// with the end of the stream.
func (s *Sync) follow(ctx context.Context, cons jetstream.Consumer) (bool, error) {
	batch, err := cons.Fetch(256, jetstream.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		return false, err
	}
	var rows []GrantRow
	var uses []GrantUse
	n, caughtUp := 0, false
	for msg := range batch.Messages() {
		if ctx.Err() != nil {
			return false, nil // stopping: the rest is read again at the next start
		}
		n++
		r, u := s.apply(msg)
		rows, uses = append(rows, r...), append(uses, u...)
		if meta, err := msg.Metadata(); err == nil {
			s.lastSeq = meta.Sequence.Stream
			caughtUp = meta.NumPending == 0
		}
	}
	if s.d.ClickHouse != nil {
		if err := WriteGrants(ctx, s.d.ClickHouse, rows); err != nil {
			s.d.Log.Warn("grant rows not written; the next reconcile rewrites them", "error", err)
		}
		if err := WriteGrantUses(ctx, s.d.ClickHouse, uses); err != nil {
			// Uses are not reconciled: they are lost until the stream is replayed
			// (a restart replays it from the start).
			s.d.Log.Warn("grant usage rows not written", "rows", len(uses), "error", err)
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
		return caughtUp, err
	}
	return caughtUp || n == 0, nil
}

func (s *Sync) loadSnapshots(ctx context.Context, store *SnapshotStore) error {
	snaps, err := store.LoadAll(ctx)
	if err != nil {
		return err
	}
	for _, snap := range snaps {
		if err := s.d.Model.Import(snap); err != nil {
			return err
		}
	}
	return nil
}

// drainSnapshots puts in force the snapshot the watcher reported and every one pending
// after it, so that snapshots stored together come into force together. It reports whether
// any was imported and whether the watcher is still open.
func (s *Sync) drainSnapshots(ctx context.Context, store *SnapshotStore, updates <-chan *jetstream.ObjectInfo, info *jetstream.ObjectInfo, ok bool) (imported, open bool) {
	for ok {
		imported = s.importStored(ctx, store, info) || imported
		select {
		case info, ok = <-updates:
		default:
			return imported, true
		}
	}
	return imported, false
}

// importStored puts a snapshot stored in NHI_GRANTS in force; it reports whether it did.
func (s *Sync) importStored(ctx context.Context, store *SnapshotStore, info *jetstream.ObjectInfo) bool {
	if info == nil || info.Deleted {
		return false
	}
	snap, err := store.get(ctx, info.Name)
	if err != nil {
		s.d.Log.Warn("stored snapshot unreadable", "error", err)
		return false
	}
	if err := s.d.Model.Import(snap); err != nil {
		s.d.Log.Warn("stored snapshot refused", "scope", snap.Scope, "error", err)
		return false
	}
	s.d.Log.Info("snapshot in force", "scope", snap.Scope, "format", snap.Format, "taken", snap.Taken)
	return true
}

// apply evaluates the requests of one message's events against the grants in force before
// each (the grant entries they used), applies their grant changes (the changed rows) and
// records their activity.
func (s *Sync) apply(msg jetstream.Msg) ([]GrantRow, []GrantUse) {
	b, err := events.UnmarshalEventBatch(msg.Data())
	if err != nil {
		return nil, nil // the events writer dead-letters malformed batches
	}
	var rows []GrantRow
	var uses []GrantUse
	for _, ev := range b.Events {
		if ev.Partition != b.Partition {
			continue // a copy for a grantee's partition: the actor's partition has it too
		}
		rows, uses = s.applyEvent(ev, rows, uses)
	}
	return rows, uses
}

// applyEvent is apply for one event: it appends the event's grant usage and changed grant
// rows (when there is ClickHouse to write them to).
func (s *Sync) applyEvent(ev *events.Event, rows []GrantRow, uses []GrantUse) ([]GrantRow, []GrantUse) {
	s.activity.Observe(ev)
	at := time.Unix(0, ev.TimeUnixNano).UTC()
	if s.d.ClickHouse != nil && Counts(ev) && IsUse(ev.GetOutcome().GetResult()) {
		r := grants.RequestFromEvent(ev)
		for _, e := range s.d.Model.Evaluate(r).Matched {
			uses = append(uses, GrantUse{EventID: ev.Id, At: at, Entry: e, Permission: r.Permission})
		}
	}
	for _, ch := range s.d.Model.Apply(ev) {
		kind := ""
		if inv, ok := s.d.Model.Identity(ch.Entry.Identity); ok {
			kind = inv.Kind
		}
		rows = append(rows, GrantRow{Entry: ch.Entry, Kind: kind, Active: ch.Active, Source: "event:" + ev.Id, Version: at})
	}
	return rows, uses
}

// scanDir imports export files of the snapshot directory that are new or changed.
func (s *Sync) scanDir(ctx context.Context, store *SnapshotStore) {
	if s.cfg.SnapshotDir == "" {
		return
	}
	entries, err := os.ReadDir(s.cfg.SnapshotDir)
	if err != nil {
		s.d.Log.Warn("snapshot directory unreadable", "dir", s.cfg.SnapshotDir, "error", err)
		return
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if e.Type().IsRegular() && e.Name()[0] != '.' {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, name := range names {
		path := filepath.Join(s.cfg.SnapshotDir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			s.d.Log.Warn("snapshot file unreadable", "file", path, "error", err)
			continue
		}
		sum := sha256.Sum256(data)
		h := hex.EncodeToString(sum[:])
		if s.seen[path] == h {
			continue
		}
		snaps, err := grants.ReadFile(path, grants.ImportOptions{Cluster: s.cfg.Cluster, GCPResource: s.cfg.GCPResource})
		if err != nil {
			s.d.Log.Warn("snapshot file refused", "file", path, "error", err)
			s.seen[path] = h
			continue
		}
		for _, snap := range snaps {
			err := store.Put(ctx, snap)
			switch {
			case errors.Is(err, ErrOlderSnapshot):
				s.d.Log.Info("snapshot file older than the stored snapshot; skipped", "file", path, "scope", snap.Scope)
			case err != nil:
				s.d.Log.Warn("snapshot not stored; retrying at the next scan", "file", path, "error", err)
				return
			}
		}
		s.seen[path] = h
		s.d.Log.Info("snapshot imported", "file", path, "snapshots", len(snaps))
	}
}
