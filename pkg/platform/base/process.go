package base

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nhiwatch/nhiwatch/pkg/platform/telemetry"
)

// Process is what a service binary sets up before it builds its service: logs, metrics,
// health checks and the NATS connection.
type Process struct {
	Logger  *slog.Logger
	Metrics *telemetry.Metrics
	Health  *telemetry.Health
	NC      *nats.Conn
	JS      jetstream.JetStream
	common  Common
}

// Setup validates the common configuration and connects to NATS. extra options are passed
// to nats.Connect (the all-in-one passes nats.InProcessServer).
func Setup(ctx context.Context, c Common, name string, extra ...nats.Option) (*Process, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	log := telemetry.NewLogger(c.Telemetry, os.Stderr).With("service", name)
	m, err := telemetry.NewMetrics()
	if err != nil {
		return nil, err
	}
	nc, js, err := ConnectNATS(ctx, c.NATS, "nhiwatch-"+name, log, extra...)
	if err != nil {
		return nil, err
	}
	h := telemetry.NewHealth()
	h.AddCheck("nats", func(context.Context) error {
		if !nc.IsConnected() {
			return errors.New("not connected")
		}
		return nil
	})
	return &Process{Logger: log, Metrics: m, Health: h, NC: nc, JS: js, common: c}, nil
}

// ServeAdmin serves /metrics, /healthz and /readyz until ctx ends, when configured.
func (p *Process) ServeAdmin(ctx context.Context) {
	if p.common.Telemetry.AdminAddr == "" {
		return
	}
	go func() {
		if err := telemetry.ServeAdmin(ctx, p.common.Telemetry.AdminAddr, telemetry.AdminHandler(p.Metrics, p.Health), p.Logger); err != nil {
			p.Logger.Error("admin endpoint stopped", "error", err)
		}
	}()
}

// Close drains the NATS connection and flushes metrics.
func (p *Process) Close(ctx context.Context) error {
	var errs []error
	if p.NC != nil {
		if err := p.NC.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, fmt.Errorf("nats drain: %w", err))
		}
	}
	if p.Metrics != nil {
		if err := p.Metrics.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
