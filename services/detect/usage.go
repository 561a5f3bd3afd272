package detect

import (
	"context"

	"golang.org/x/sync/errgroup"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/grants"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/usage"
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
