package usage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/grants"
)

// SnapshotBucket is the JetStream object store holding the imported inventory snapshots,
// one object per scope, in the model's own JSON form.
const SnapshotBucket = "NHI_GRANTS"

// SnapshotStore keeps imported snapshots in JetStream, so every detect replica (and a
// restarted one) starts from the same inventory.
type SnapshotStore struct{ os jetstream.ObjectStore }

// OpenSnapshotStore creates or opens the snapshot bucket.
func OpenSnapshotStore(ctx context.Context, js jetstream.JetStream) (*SnapshotStore, error) {
	os, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: SnapshotBucket, Description: "nhiwatch inventory snapshots (grants)",
	})
	if err != nil {
		return nil, fmt.Errorf("grants snapshot store: %w", err)
	}
	return &SnapshotStore{os: os}, nil
}

// objectName is the object of a scope: scopes hold ':' and '/', so the name is a hash.
func objectName(scope string) string {
	sum := sha256.Sum256([]byte(scope))
	return "snapshot-" + hex.EncodeToString(sum[:12])
}

// Put stores a snapshot, replacing the one of the same scope.
func (s *SnapshotStore) Put(ctx context.Context, snap *grants.Snapshot) error {
	b, err := json.Marshal(snap)
	if err != nil {
		return err
	}
	_, err = s.os.Put(ctx, jetstream.ObjectMeta{Name: objectName(snap.Scope), Description: snap.Scope}, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("store snapshot %s: %w", snap.Scope, err)
	}
	return nil
}

// LoadAll reads every stored snapshot.
func (s *SnapshotStore) LoadAll(ctx context.Context) ([]*grants.Snapshot, error) {
	infos, err := s.os.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	var out []*grants.Snapshot
	for _, info := range infos {
		if info.Deleted {
			continue
		}
		snap, err := s.get(ctx, info.Name)
		if err != nil {
			return nil, err
		}
		out = append(out, snap)
	}
	return out, nil
}

func (s *SnapshotStore) get(ctx context.Context, name string) (*grants.Snapshot, error) {
	b, err := s.os.GetBytes(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("read snapshot %s: %w", name, err)
	}
	var snap grants.Snapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		return nil, fmt.Errorf("%w: stored snapshot %s: %v", grants.ErrFormat, name, err)
	}
	return &snap, nil
}

// SyncConfig configures the grants side of the usage statistics.
type SyncConfig struct {
	// SnapshotDir is scanned every ScanInterval; new or changed export files in it are
	// imported. Empty disables the scan (import with `nhiwatch grants import`).
	SnapshotDir  string        `yaml:"snapshot_dir" env:"SNAPSHOT_DIR"`
	ScanInterval time.Duration `yaml:"scan_interval" env:"SCAN_INTERVAL"`
	// ReconcileInterval is how often the whole grant state is rewritten to ClickHouse.
	ReconcileInterval time.Duration `yaml:"reconcile_interval" env:"RECONCILE_INTERVAL"`
	// Cluster and GCPResource complete export files that do not name them.
	Cluster     string `yaml:"cluster" env:"CLUSTER"`
	GCPResource string `yaml:"gcp_resource" env:"GCP_RESOURCE"`
}

// DefaultSyncConfig returns the defaults.
func DefaultSyncConfig() SyncConfig {
	return SyncConfig{ScanInterval: 5 * time.Minute, ReconcileInterval: 15 * time.Minute, Cluster: "default"}
}

// Validate reports the first setting that cannot work.
func (c SyncConfig) Validate() error {
	if c.ScanInterval <= 0 || c.ReconcileInterval <= 0 {
		return errors.New("usage: scan_interval and reconcile_interval must be positive")
	}
	return nil
}

// Sync keeps the grants table current. It reads every NHI_EVENTS message on an ordered
// consumer of its own (not a shared durable one), so each replica's model holds every
// grant change; it starts from the stream's first message to rebuild the model after a
// restart. Rows are derived from the model, so replicas write identical rows and a
// ReplacingMergeTree keeps one.
type Sync struct {
	cfg   SyncConfig
	model *grants.Model
	conn  driver.Conn
	js    jetstream.JetStream
	log   *slog.Logger
	now   func() time.Time
	seen  map[string]string // snapshot file → content hash
}

// NewSync returns a Sync over model.
func NewSync(cfg SyncConfig, model *grants.Model, conn driver.Conn, js jetstream.JetStream, log *slog.Logger) (*Sync, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if model == nil || conn == nil || js == nil || log == nil {
		return nil, errors.New("usage: sync needs a model, ClickHouse, JetStream and a logger")
	}
	return &Sync{cfg: cfg, model: model, conn: conn, js: js, log: log, now: time.Now, seen: map[string]string{}}, nil
}

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
	store, err := OpenSnapshotStore(ctx, s.js)
	if err != nil {
		return err
	}
	if err := s.loadSnapshots(ctx, store); err != nil {
		return err
	}
	cons, err := s.js.OrderedConsumer(ctx, events.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.SubjectsEvents}, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("usage sync: consumer: %w", err)
	}
	watch, err := store.os.Watch(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return fmt.Errorf("usage sync: watch snapshots: %w", err)
	}
	defer func() { _ = watch.Stop() }()
	reconcile := time.NewTicker(s.cfg.ReconcileInterval)
	defer reconcile.Stop()
	scan := time.NewTicker(s.cfg.ScanInterval)
	defer scan.Stop()
	s.scanDir(ctx, store)
	needReconcile := true
	for ctx.Err() == nil {
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(500*time.Millisecond))
		if err == nil {
			var rows []GrantRow
			var uses []GrantUse
			for msg := range batch.Messages() {
				r, u := s.apply(msg)
				rows, uses = append(rows, r...), append(uses, u...)
			}
			if err := WriteGrants(ctx, s.conn, rows); err != nil {
				s.log.Warn("grant rows not written; the next reconcile rewrites them", "error", err)
				needReconcile = true
			}
			if err := WriteGrantUses(ctx, s.conn, uses); err != nil {
				// Uses are not reconciled: they are lost until the stream is replayed
				// (a restart replays it from the start).
				s.log.Warn("grant usage rows not written", "rows", len(uses), "error", err)
			}
		} else if ctx.Err() == nil {
			s.log.Warn("usage sync fetch failed", "error", err)
		}
		select {
		case <-reconcile.C:
			needReconcile = true
		case <-scan.C:
			s.scanDir(ctx, store)
		case info := <-watch.Updates():
			if info != nil && !info.Deleted {
				if snap, err := store.get(ctx, info.Name); err != nil {
					s.log.Warn("stored snapshot unreadable", "error", err)
				} else if err := s.model.Import(snap); err == nil {
					s.log.Info("snapshot in force", "scope", snap.Scope, "format", snap.Format)
					needReconcile = true
				}
			}
		default:
		}
		if needReconcile && ctx.Err() == nil {
			n, err := Reconcile(ctx, s.conn, s.model, s.now())
			if err != nil {
				s.log.Warn("grants reconcile failed; retrying later", "error", err)
			} else {
				s.log.Debug("grants reconciled", "rows", n)
				needReconcile = false
			}
		}
	}
	return nil
}

func (s *Sync) loadSnapshots(ctx context.Context, store *SnapshotStore) error {
	snaps, err := store.LoadAll(ctx)
	if err != nil {
		return err
	}
	for _, snap := range snaps {
		if err := s.model.Import(snap); err != nil {
			return err
		}
	}
	return nil
}

// apply evaluates the requests of one message's events against the grants in force before
// each (the grant entries they used) and applies their grant changes (the changed rows).
func (s *Sync) apply(msg jetstream.Msg) ([]GrantRow, []GrantUse) {
	b, err := events.UnmarshalEventBatch(msg.Data())
	if err != nil {
		return nil, nil // the events writer dead-letters malformed batches
	}
	var rows []GrantRow
	var uses []GrantUse
	for _, ev := range b.Events {
		if ev.Partition != b.Partition {
			continue
		}
		at := time.Unix(0, ev.TimeUnixNano).UTC()
		if Counts(ev) && IsUse(ev.GetOutcome().GetResult()) {
			r := grants.RequestFromEvent(ev)
			for _, e := range s.model.Evaluate(r).Matched {
				uses = append(uses, GrantUse{EventID: ev.Id, At: at, Entry: e, Permission: r.Permission})
			}
		}
		for _, ch := range s.model.Apply(ev) {
			kind := ""
			if inv, ok := s.model.Identity(ch.Entry.Identity); ok {
				kind = inv.Kind
			}
			rows = append(rows, GrantRow{Entry: ch.Entry, Kind: kind, Active: ch.Active, Source: "event:" + ev.Id, Version: at})
		}
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
		s.log.Warn("snapshot directory unreadable", "dir", s.cfg.SnapshotDir, "error", err)
		return
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, name := range names {
		path := filepath.Join(s.cfg.SnapshotDir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			s.log.Warn("snapshot file unreadable", "file", path, "error", err)
			continue
		}
		sum := sha256.Sum256(data)
		h := hex.EncodeToString(sum[:])
		if s.seen[path] == h {
			continue
		}
		snaps, err := grants.ReadFile(path, grants.ImportOptions{Cluster: s.cfg.Cluster, GCPResource: s.cfg.GCPResource})
		if err != nil {
			s.log.Warn("snapshot file refused", "file", path, "error", err)
			s.seen[path] = h
			continue
		}
		for _, snap := range snaps {
			if err := store.Put(ctx, snap); err != nil {
				s.log.Warn("snapshot not stored", "file", path, "error", err)
				return
			}
		}
		s.seen[path] = h
		s.log.Info("snapshot imported", "file", path, "snapshots", len(snaps))
	}
}
