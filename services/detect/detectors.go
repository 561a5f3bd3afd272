package detect

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nhiwatch/nhiwatch/services/detect/internal/catalog"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/detectors"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/engine"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/netclass"
)

// DetectorsConfig configures the detectors and the partition engine that runs them.
type DetectorsConfig struct {
	// Catalog is the YAML catalog of identities (owners, kinds, boundaries, thresholds,
	// suppressions); empty runs with the defaults and no owners.
	Catalog string `yaml:"catalog" env:"CATALOG"`
	// CatalogReload is how often the catalog file is checked for changes.
	CatalogReload time.Duration `yaml:"catalog_reload" env:"CATALOG_RELOAD"`
	// AWSIPRanges is AWS's ip-ranges.json; with it, an EC2 instance credential used from an
	// address outside AWS is an out_of_boundary finding.
	AWSIPRanges string `yaml:"aws_ip_ranges" env:"AWS_IP_RANGES"`
	// WorkerID names this worker in partition leases; empty picks host-pid-random.
	WorkerID string `yaml:"worker_id" env:"WORKER_ID"`
	// LeaseTTL is how long a partition lease lasts unless renewed: the longest a dead
	// worker's partitions wait for another worker.
	LeaseTTL time.Duration `yaml:"lease_ttl" env:"LEASE_TTL"`
	// CheckpointInterval and CheckpointMessages bound the work between checkpoints of a
	// partition (states and position to KV, then acks).
	CheckpointInterval time.Duration `yaml:"checkpoint_interval" env:"CHECKPOINT_INTERVAL"`
	CheckpointMessages int           `yaml:"checkpoint_messages" env:"CHECKPOINT_MESSAGES"`
}

// Baseline supplies inventory activity (creation, last use) of identities and credentials
// to the dormancy detector. Implementations must be safe for concurrent use.
type Baseline = detectors.Baseline

// Activity is what an inventory knows of an identity's or credential's use.
type Activity = detectors.Activity

// Expander tells which permissions a grant change adds, for privilege_expansion findings.
type Expander = detectors.Expander

func defaultDetectorsConfig() DetectorsConfig {
	d := engine.DefaultConfig()
	return DetectorsConfig{CatalogReload: 5 * time.Second, LeaseTTL: d.LeaseTTL, CheckpointInterval: d.CheckpointInterval, CheckpointMessages: d.CheckpointMessages}
}

func (c DetectorsConfig) validate() error {
	switch {
	case c.CatalogReload <= 0:
		return errors.New("detect.catalog_reload must be positive")
	case c.LeaseTTL < time.Second:
		return fmt.Errorf("detect.lease_ttl must be at least 1s, got %s", c.LeaseTTL)
	case c.CheckpointInterval <= 0 || c.CheckpointInterval > c.LeaseTTL/2:
		return fmt.Errorf("detect.checkpoint_interval must be positive and at most half the lease TTL, got %s", c.CheckpointInterval)
	case c.CheckpointMessages < 1:
		return errors.New("detect.checkpoint_messages must be positive")
	}
	return nil
}

// detectorsDeps is what the detector engine needs, built by New.
type detectorsDeps struct {
	catalog *catalog.Holder
	det     *detectors.Detector
	engine  atomic.Pointer[engine.Engine]
}

// buildDetectors loads the catalog and the address ranges and builds the detectors.
func buildDetectors(cfg Config, deps Deps) (*detectorsDeps, error) {
	holder, err := catalog.NewHolder(cfg.Catalog, deps.Logger.With("component", "catalog"))
	if err != nil {
		return nil, fmt.Errorf("detect: %w", err)
	}
	var ranges *netclass.Ranges
	if cfg.AWSIPRanges != "" {
		if ranges, err = netclass.LoadAWSRanges(cfg.AWSIPRanges); err != nil {
			return nil, fmt.Errorf("detect: %w", err)
		}
	}
	det := detectors.New(detectors.Env{
		Catalog:    holder,
		Partitions: deps.Streams.Partitions,
		AWSRanges:  ranges,
		Baseline:   deps.Baseline,
		Expander:   deps.Expander,
	})
	return &detectorsDeps{catalog: holder, det: det}, nil
}

// startDetectors runs the catalog reloader and the partition engine.
func (s *Service) startDetectors(ctx context.Context, g *errgroup.Group) error {
	ecfg := engine.DefaultConfig()
	ecfg.WorkerID = s.cfg.WorkerID
	ecfg.LeaseTTL = s.cfg.LeaseTTL
	ecfg.CheckpointInterval = s.cfg.CheckpointInterval
	ecfg.CheckpointMessages = s.cfg.CheckpointMessages
	eng, err := engine.New(ctx, ecfg, s.deps.JS, s.deps.Streams, s.detectors.det, s.deps.Logger.With("component", "detectors"), s.deps.Meter)
	if err != nil {
		return err
	}
	s.detectors.engine.Store(eng)
	g.Go(func() error {
		s.detectors.catalog.Watch(ctx, s.cfg.CatalogReload)
		return nil
	})
	g.Go(func() error { return eng.Run(ctx) })
	return nil
}

// Partitions returns the NHI_EVENTS partitions this worker runs the detectors on (empty
// before Run has claimed any).
func (s *Service) Partitions() []uint32 {
	eng := s.detectors.engine.Load()
	if eng == nil {
		return nil
	}
	return eng.Owned()
}
