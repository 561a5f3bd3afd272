// Package detect runs the detectors over NHI_EVENTS with state per identity and credential,
// publishes findings to NHI_FINDINGS, and writes events and findings to ClickHouse.
//
// Writing to ClickHouse runs on its own durable consumers, so alerts never wait on
// ClickHouse: a slow or absent database delays rows, not findings.
package detect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/sync/errgroup"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/store"
)

// Durable consumer names.
const (
	ConsumerStoreEvents   = "detect-store-events"
	ConsumerStoreFindings = "detect-store-findings"
)

// Config configures the detect service.
type Config struct {
	// StoreBatchRows and StoreFlushInterval bound a ClickHouse insert by size and by age.
	StoreBatchRows     int           `yaml:"store_batch_rows" env:"STORE_BATCH_ROWS"`
	StoreFlushInterval time.Duration `yaml:"store_flush_interval" env:"STORE_FLUSH_INTERVAL"`
	// StoreRetryBackoff is the first wait after a failed insert.
	StoreRetryBackoff time.Duration `yaml:"store_retry_backoff" env:"STORE_RETRY_BACKOFF"`
	// DetectorsConfig configures the detectors (detectors.go).
	DetectorsConfig `yaml:",inline"`
	// Usage configures grants, usage statistics and posture findings (usage.go).
	Usage UsageConfig `yaml:"usage" envPrefix:"USAGE_"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{StoreBatchRows: 20000, StoreFlushInterval: time.Second, StoreRetryBackoff: time.Second, DetectorsConfig: defaultDetectorsConfig(), Usage: DefaultUsageConfig()}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if c.StoreBatchRows < 1 || c.StoreBatchRows > 1_000_000 {
		return fmt.Errorf("detect.store_batch_rows must be 1 to 1000000, got %d", c.StoreBatchRows)
	}
	if c.StoreFlushInterval <= 0 || c.StoreRetryBackoff <= 0 {
		return errors.New("detect: store_flush_interval and store_retry_backoff must be positive")
	}
	if err := c.Usage.Validate(); err != nil {
		return err
	}
	return c.DetectorsConfig.validate()
}

// Deps are the service's dependencies.
type Deps struct {
	Logger  *slog.Logger
	Meter   metric.Meter
	JS      jetstream.JetStream
	Streams streams.Config
	// ClickHouse is the migrated database; nil runs detection without storage (replay).
	ClickHouse driver.Conn
	// Baseline and Expander are optional: inventory activity for the dormancy detector and
	// grant documents for privilege_expansion's permission delta.
	Baseline Baseline
	Expander Expander
}

// Service runs detection and storage.
type Service struct {
	cfg       Config
	deps      Deps
	pub       *streams.Publisher
	detectors *detectorsDeps
}

// New checks the configuration and dependencies and returns a Service.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case deps.Logger == nil:
		return nil, errors.New("detect: logger is required")
	case deps.Meter == nil:
		return nil, errors.New("detect: meter is required")
	case deps.JS == nil:
		return nil, errors.New("detect: jetstream is required")
	}
	if err := deps.Streams.Validate(); err != nil {
		return nil, err
	}
	det, err := buildDetectors(cfg, deps)
	if err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, deps: deps, pub: streams.NewPublisher(deps.JS), detectors: det}, nil
}

// Run runs until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	if err := streams.Ensure(ctx, s.deps.JS, s.deps.Streams); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	if err := s.startDetectors(ctx, g); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if s.deps.ClickHouse != nil {
		if err := s.startStore(ctx, g, ConsumerStoreEvents, "detect: events to ClickHouse", events.StreamEvents, events.SubjectsEvents, store.EventsTable()); err != nil {
			return err
		}
		if err := s.startStore(ctx, g, ConsumerStoreFindings, "detect: findings to ClickHouse", events.StreamFindings, events.SubjectsFindings, store.FindingsTable()); err != nil {
			return err
		}
	} else {
		s.deps.Logger.Warn("no ClickHouse configured: events and findings are not stored")
	}
	if err := s.startUsage(ctx, g, s.cfg.Usage); err != nil {
		return err
	}
	<-ctx.Done()
	return g.Wait()
}

func (s *Service) startStore(ctx context.Context, g *errgroup.Group, durable, desc, stream, filter string, t store.Table) error {
	cc := store.ConsumerConfig(durable, desc, filter, s.cfg.StoreBatchRows)
	cons, err := streams.EnsureConsumer(ctx, s.deps.JS, stream, cc)
	if err != nil {
		return err
	}
	w, err := store.NewWriter(store.WriterConfig{
		BatchRows:     s.cfg.StoreBatchRows,
		FlushInterval: s.cfg.StoreFlushInterval,
		RetryBackoff:  s.cfg.StoreRetryBackoff,
	}, t, s.deps.ClickHouse, s.pub, s.deps.Logger, s.deps.Meter)
	if err != nil {
		return err
	}
	g.Go(func() error { return w.Run(ctx, cons) })
	return nil
}
