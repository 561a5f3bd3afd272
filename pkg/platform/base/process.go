package base

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nhiwatch/nhiwatch/pkg/platform/telemetry"
)

// Process is what a service binary sets up before it builds its service: logs, metrics,
// traces, health checks and the NATS connection.
type Process struct {
	Logger  *slog.Logger
	Metrics *telemetry.Metrics
	Health  *telemetry.Health
	NC      *nats.Conn
	JS      jetstream.JetStream
	// Tracing is the tracer provider, installed as the OpenTelemetry global; a no-op unless
	// an OTLP endpoint is configured.
	Tracing *telemetry.Tracing
	// Lag exports the backlog of every durable consumer of the nhiwatch streams; ServeAdmin
	// keeps it fresh.
	Lag    *telemetry.ConsumerLag
	common Common
	ch     driver.Conn
	closer []func() error
}

// Setup validates the common configuration, sets up logs, metrics and traces (installed as
// the OpenTelemetry globals, which the JetStream helpers of pkg/events use) and connects to
// NATS. extra options are passed to nats.Connect (the all-in-one passes nats.InProcessServer).
//
// /readyz then checks that NATS is connected, that the nhiwatch streams exist, and, when
// ClickHouse is configured, that its database answers a ping. Configure ClickHouse only for
// the services that use it.
func Setup(ctx context.Context, c Common, name string, extra ...nats.Option) (_ *Process, err error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	log := telemetry.NewLogger(c.Telemetry, os.Stderr).With("service", name)
	m, err := telemetry.NewMetrics()
	if err != nil {
		return nil, err
	}
	tr, err := telemetry.NewTracing(ctx, c.Telemetry, name)
	if err != nil {
		return nil, err
	}
	telemetry.InstallGlobals(tr.Provider, m.Provider)
	p := &Process{Logger: log, Metrics: m, Tracing: tr, Health: telemetry.NewHealth(), common: c}
	defer func() {
		if err != nil {
			_ = p.Close(context.Background())
		}
	}()
	if p.NC, p.JS, err = ConnectNATS(ctx, c.NATS, "nhiwatch-"+name, log, extra...); err != nil {
		return nil, err
	}
	AddReadiness(p.Health, p.NC, p.JS)
	if c.ClickHouse.Enabled() {
		check, closeCH, err := ClickHouseCheck(c.ClickHouse)
		if err != nil {
			return nil, err
		}
		p.closer = append(p.closer, closeCH)
		p.Health.AddCheck("clickhouse", check)
	}
	if p.Lag, err = telemetry.NewConsumerLag(m.Meter("nhiwatch/jetstream"), p.JS, PipelineStreams(), log); err != nil {
		return nil, err
	}
	if tr.Enabled() {
		log.Info("tracing enabled", "otlp_endpoint", c.Telemetry.OTLPEndpoint)
	}
	return p, nil
}

// ServeAdmin serves /metrics, /healthz and /readyz until ctx ends, when configured, and
// refreshes the consumer lag gauges meanwhile.
func (p *Process) ServeAdmin(ctx context.Context) {
	if p.common.Telemetry.AdminAddr == "" {
		return
	}
	if p.Lag != nil {
		go p.Lag.Run(ctx, p.common.Telemetry.LagInterval)
	}
	go func() {
		if err := telemetry.ServeAdmin(ctx, p.common.Telemetry.AdminAddr, telemetry.AdminHandler(p.Metrics, p.Health), p.Logger); err != nil {
			p.Logger.Error("admin endpoint stopped", "error", err)
		}
	}()
}

// Close drains the NATS connection and flushes metrics and traces.
func (p *Process) Close(ctx context.Context) error {
	var errs []error
	if p.NC != nil {
		if err := p.NC.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, fmt.Errorf("nats drain: %w", err))
		}
	}
	for _, c := range p.closer {
		errs = append(errs, c())
	}
	if p.Lag != nil {
		errs = append(errs, p.Lag.Close())
	}
	if p.Tracing != nil {
		errs = append(errs, p.Tracing.Shutdown(ctx))
	}
	if p.Metrics != nil {
		if err := p.Metrics.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
