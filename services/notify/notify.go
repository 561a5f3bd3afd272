// Package notify routes findings from NHI_FINDINGS to the people and systems that act on
// them. A finding is acknowledged on JetStream only when every destination has it or it went
// to the dead-letter stream.
package notify

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/terminal"
)

// ConsumerName is the durable consumer notify reads NHI_FINDINGS with.
const ConsumerName = "notify"

// Config configures the notify service.
type Config struct {
	// Terminal prints every finding to the terminal writer (Deps.Out).
	Terminal bool `yaml:"terminal" env:"TERMINAL"`
}

// DefaultConfig prints findings to the terminal.
func DefaultConfig() Config { return Config{Terminal: true} }

// Validate reports the first setting that cannot work.
func (c Config) Validate() error { return nil }

// Deps are the service's dependencies.
type Deps struct {
	Logger  *slog.Logger
	Meter   metric.Meter
	JS      jetstream.JetStream
	Streams streams.Config
	// Out receives terminal output; required when Config.Terminal is set.
	Out io.Writer
}

// Service consumes findings and delivers them.
type Service struct {
	cfg       Config
	deps      Deps
	pub       *streams.Publisher
	printer   *terminal.Printer
	delivered metric.Int64Counter
}

// New checks the configuration and dependencies and returns a Service.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case deps.Logger == nil:
		return nil, errors.New("notify: logger is required")
	case deps.Meter == nil:
		return nil, errors.New("notify: meter is required")
	case deps.JS == nil:
		return nil, errors.New("notify: jetstream is required")
	case cfg.Terminal && deps.Out == nil:
		return nil, errors.New("notify: terminal output needs a writer")
	}
	s := &Service{cfg: cfg, deps: deps, pub: streams.NewPublisher(deps.JS)}
	if cfg.Terminal {
		s.printer = terminal.New(deps.Out)
	}
	var err error
	if s.delivered, err = deps.Meter.Int64Counter("nhiwatch_notify_delivered", metric.WithDescription("findings delivered, by destination")); err != nil {
		return nil, err
	}
	return s, nil
}

// Run consumes NHI_FINDINGS until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	if err := streams.Ensure(ctx, s.deps.JS, s.deps.Streams); err != nil {
		return err
	}
	cc := streams.ConsumerConfig(ConsumerName, "notify: findings to destinations", events.SubjectsFindings)
	cons, err := streams.EnsureConsumer(ctx, s.deps.JS, events.StreamFindings, cc)
	if err != nil {
		return err
	}
	return streams.Consume(ctx, cons, streams.ConsumeOptions{
		Workers:    1,
		Stage:      events.StageNotify,
		Publisher:  s.pub,
		MaxDeliver: cc.MaxDeliver,
		Logger:     s.deps.Logger,
	}, s.handle)
}

func (s *Service) handle(ctx context.Context, msg jetstream.Msg) error {
	f, err := events.UnmarshalFinding(msg.Data())
	if err != nil {
		return streams.Permanent(err)
	}
	if s.printer != nil {
		if err := s.printer.Print(f); err != nil {
			return err
		}
		s.delivered.Add(ctx, 1, metric.WithAttributes(attribute.String("destination", "terminal")))
	}
	return nil
}
