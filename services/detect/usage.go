package detect

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/catalog"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/grants"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/usage"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/usage/ocsf"
)

// UsageReport is usage against grants for one identity (see docs/usage-vs-granted.md).
type UsageReport = usage.Report

// SnapshotOptions say what an inventory export does not say itself (the Kubernetes cluster
// of an RBAC export, the resource of a bare GCP IAM policy, when it was taken).
type SnapshotOptions = grants.ImportOptions

// Snapshot is the grants of one scope as an inventory export showed them.
type Snapshot = grants.Snapshot

// ReadSnapshots reads inventory exports (AWS authorization details and credential reports,
// GCP IAM policies and roles, Kubernetes RBAC lists), detecting each file's format.
func ReadSnapshots(paths []string, opts SnapshotOptions) ([]*Snapshot, error) {
	var out []*Snapshot
	for _, p := range paths {
		s, err := grants.ReadFile(p, opts)
		if err != nil {
			return nil, err
		}
		out = append(out, s...)
	}
	return out, nil
}

// ErrOlderSnapshot is returned by StoreSnapshot for a snapshot older than the one stored
// for its scope.
var ErrOlderSnapshot = usage.ErrOlderSnapshot

// StoreSnapshot stores an inventory snapshot in the NHI_GRANTS object store, where every
// running detect worker puts it in force at once (and rewrites the grants table), and
// every worker started later loads it. A snapshot older than the one stored for its scope
// is refused with ErrOlderSnapshot.
func StoreSnapshot(ctx context.Context, js jetstream.JetStream, sc streams.Config, snap *Snapshot) error {
	store, err := usage.OpenSnapshotStore(ctx, js, sc)
	if err != nil {
		return err
	}
	return store.Put(ctx, snap)
}

// WriteStoredGrants writes to ClickHouse the grants and credentials of every snapshot in
// NHI_GRANTS, versioned at, so that the statistics are current even when no detect worker
// runs. It marks no grant inactive: only the workers can judge that, since they also hold
// the grant changes of the event stream. It returns the grant and credential rows written.
func WriteStoredGrants(ctx context.Context, js jetstream.JetStream, sc streams.Config, conn driver.Conn, at time.Time) (grantRows, credentialRows int, err error) {
	snaps, err := StoredSnapshots(ctx, js, sc)
	if err != nil {
		return 0, 0, err
	}
	model := grants.NewModel()
	for _, s := range snaps {
		if err := model.Import(s); err != nil {
			return 0, 0, err
		}
	}
	return usage.WriteModel(ctx, conn, model, at)
}

// StoredSnapshots returns the snapshots stored in NHI_GRANTS.
func StoredSnapshots(ctx context.Context, js jetstream.JetStream, sc streams.Config) ([]*Snapshot, error) {
	store, err := usage.OpenSnapshotStore(ctx, js, sc)
	if err != nil {
		return nil, err
	}
	return store.LoadAll(ctx)
}

// UsageReplay measures usage against grants in process, for tools: import snapshots,
// observe events in time order, then read the reports. It needs no server.
type UsageReplay struct {
	tracker *usage.Tracker
}

// NewUsageReplay returns an empty replay.
func NewUsageReplay() *UsageReplay {
	return &UsageReplay{tracker: usage.NewTracker(grants.NewModel())}
}

// Import puts snapshots in force.
func (r *UsageReplay) Import(snaps ...*Snapshot) error {
	for _, s := range snaps {
		if err := r.tracker.Model().Import(s); err != nil {
			return err
		}
	}
	return nil
}

// Observe counts one event and applies the grant changes it made.
func (r *UsageReplay) Observe(ev *events.Event) { r.tracker.Observe(ev) }

// Reports returns one report per identity seen in the events or listed by the snapshots,
// sorted by identity.
func (r *UsageReplay) Reports() []UsageReport { return r.tracker.Reports() }

// PostureOptions configure the posture findings of a replay.
type PostureOptions struct {
	// Catalog is the catalog file (owners, kinds, suppressions); empty knows no owner.
	Catalog string
	// Now is when the posture is evaluated; zero means the time of the last event observed.
	Now time.Time
	// KeyRotationAge and StandingAdminWindow default to 90 days.
	KeyRotationAge, StandingAdminWindow time.Duration
}

// Posture evaluates the posture findings of the replayed state, as the detect service does
// (posture_no_owner, posture_key_rotation, posture_standing_admin), sorted by detector and
// identity. Observation is taken to span the events observed.
func (r *UsageReplay) Posture(opts PostureOptions) ([]*events.Finding, error) {
	cfg := usage.DefaultPostureConfig()
	if opts.KeyRotationAge > 0 {
		cfg.KeyRotationAge = opts.KeyRotationAge
	}
	if opts.StandingAdminWindow > 0 {
		cfg.StandingAdminWindow = opts.StandingAdminWindow
	}
	in := usage.PostureInput{Model: r.tracker.Model(), Activity: r.tracker.Activity(), Now: opts.Now, ObservedSince: r.tracker.Activity().Since()}
	if in.Now.IsZero() {
		in.Now = lastActivity(r.tracker.Activity())
	}
	if in.Now.IsZero() {
		in.Now = time.Now().UTC()
	}
	if opts.Catalog != "" {
		cat, err := catalog.Load(opts.Catalog)
		if err != nil {
			return nil, fmt.Errorf("posture: %w", err)
		}
		in.Owners = usage.CatalogOwners(catalog.Static(cat))
	}
	var out []*events.Finding
	for _, c := range usage.EvaluatePosture(cfg, in) {
		out = append(out, c.FindingAt(in.Now))
	}
	return out, nil
}

func lastActivity(a *usage.Activities) time.Time {
	var last time.Time
	for _, x := range a.All() {
		if x.Last.After(last) {
			last = x.Last
		}
	}
	return last
}

// UsageOCSF renders a usage report as an OCSF 1.6 IAM Analysis Finding (class_uid 2008),
// analysed at at; schemas/ocsf/iam_analysis_finding.schema.json is its JSON Schema.
func UsageOCSF(rep UsageReport, at time.Time, productVersion string) ([]byte, error) {
	return ocsf.Render(rep, ocsf.Options{Time: at, ProductVersion: productVersion})
}

// ConsumerUsage is the durable consumer that writes permission usage to ClickHouse.
const ConsumerUsage = "detect-usage"

// UsageConfig configures grants, the usage statistics and the posture findings.
type UsageConfig = usage.SyncConfig

// DefaultUsageConfig returns the defaults.
func DefaultUsageConfig() UsageConfig { return usage.DefaultSyncConfig() }

// startUsage starts the grants side of detect: permission usage to ClickHouse from a
// durable consumer (the store writer), and the grants sync (its own ordered consumer, its
// own grant model loaded from the NHI_GRANTS snapshots) which writes grants and grant usage
// to ClickHouse when there is one and raises the posture findings.
func (s *Service) startUsage(ctx context.Context, g *errgroup.Group, cfg UsageConfig) error {
	if s.deps.ClickHouse != nil {
		if err := s.startStore(ctx, g, ConsumerUsage, "detect: permission usage to ClickHouse", events.StreamEvents, events.SubjectsEvents, usage.UsageTable()); err != nil {
			if ctx.Err() != nil {
				return nil // shut down while starting
			}
			return err
		}
	}
	sync, err := usage.NewSync(cfg, usage.SyncDeps{
		Model: grants.NewModel(), JS: s.deps.JS, Streams: s.deps.Streams, ClickHouse: s.deps.ClickHouse,
		Log: s.deps.Logger.With("component", "grants"), Meter: s.deps.Meter, Publisher: s.pub,
		Owners: usage.CatalogOwners(s.detectors.catalog), WorkerID: s.cfg.WorkerID,
	})
	if err != nil {
		return err
	}
	g.Go(func() error { return sync.Run(ctx) })
	return nil
}
