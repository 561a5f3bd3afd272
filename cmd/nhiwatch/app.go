package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/natsembed"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
	"github.com/nhiwatch/nhiwatch/pkg/platform/base"
	"github.com/nhiwatch/nhiwatch/pkg/platform/chdb"
	"github.com/nhiwatch/nhiwatch/pkg/platform/telemetry"
	"github.com/nhiwatch/nhiwatch/services/detect"
	"github.com/nhiwatch/nhiwatch/services/ingest"
	"github.com/nhiwatch/nhiwatch/services/normalize"
	"github.com/nhiwatch/nhiwatch/services/notify"
)

// App is the four services in one process: the union of the separate binaries, each with
// its own NATS connection, on the same JetStream code paths.
type App struct {
	cfg     Config
	log     *slog.Logger
	metrics *telemetry.Metrics
	tracing *telemetry.Tracing
	lag     *telemetry.ConsumerLag
	health  *telemetry.Health
	ns      *server.Server
	conns   []*nats.Conn
	js      jetstream.JetStream
	ch      driver.Conn

	Ingest    *ingest.Service
	Normalize *normalize.Service
	Detect    *detect.Service
	Notify    *notify.Service
}

// NewApp starts the embedded NATS server when no URL is configured, connects each service,
// opens ClickHouse when configured and builds the services. Close releases it all.
func NewApp(ctx context.Context, cfg Config, stdout io.Writer, log *slog.Logger) (_ *App, err error) {
	a := &App{cfg: cfg, log: log, health: telemetry.NewHealth()}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if a.metrics, err = telemetry.NewMetrics(); err != nil {
		return nil, err
	}
	if a.tracing, err = telemetry.NewTracing(ctx, cfg.Telemetry, "run"); err != nil {
		return nil, err
	}
	telemetry.InstallGlobals(a.tracing.Provider, a.metrics.Provider)
	var extra []nats.Option
	if cfg.NATS.URL == "" {
		opts := natsembed.Options{StoreDir: cfg.EmbeddedNATS.StoreDir, DontListen: true}
		if cfg.EmbeddedNATS.Listen != "" {
			host, port, err := net.SplitHostPort(cfg.EmbeddedNATS.Listen)
			if err != nil {
				return nil, fmt.Errorf("embedded_nats.listen: %w", err)
			}
			opts.Host, opts.DontListen = host, false
			if opts.Port, err = strconv.Atoi(port); err != nil {
				return nil, fmt.Errorf("embedded_nats.listen port: %w", err)
			}
		}
		if err := os.MkdirAll(cfg.EmbeddedNATS.StoreDir, 0o750); err != nil {
			return nil, fmt.Errorf("embedded nats store: %w", err)
		}
		if a.ns, err = natsembed.Start(opts); err != nil {
			return nil, err
		}
		dir, _ := filepath.Abs(cfg.EmbeddedNATS.StoreDir)
		log.Info("embedded NATS JetStream started", "store_dir", dir, "listen", cfg.EmbeddedNATS.Listen)
		extra = append(extra, nats.InProcessServer(a.ns))
	}
	connect := func(name string) (jetstream.JetStream, error) {
		nc, js, err := base.ConnectNATS(ctx, cfg.NATS, "nhiwatch-"+name, log.With("service", name), extra...)
		if err != nil {
			return nil, err
		}
		a.conns = append(a.conns, nc)
		return js, nil
	}
	if a.js, err = connect("run"); err != nil {
		return nil, err
	}
	if err := streams.Ensure(ctx, a.js, cfg.Streams); err != nil {
		return nil, err
	}
	base.AddReadiness(a.health, a.conns[0], a.js)
	if a.lag, err = telemetry.NewConsumerLag(a.metrics.Meter("nhiwatch"), a.js, base.PipelineStreams(), log); err != nil {
		return nil, err
	}
	if cfg.ClickHouse.Enabled() {
		if a.ch, err = chdb.Open(ctx, cfg.ClickHouse); err != nil {
			return nil, err
		}
		ch := a.ch
		a.health.AddCheck("clickhouse", func(ctx context.Context) error { return ch.Ping(ctx) })
	}
	meter := a.metrics.Meter("nhiwatch")
	js, err := connect("ingest")
	if err != nil {
		return nil, err
	}
	if a.Ingest, err = ingest.New(cfg.Ingest, ingest.Deps{Logger: log.With("service", "ingest"), Meter: meter, JS: js, Streams: cfg.Streams}); err != nil {
		return nil, err
	}
	if js, err = connect("normalize"); err != nil {
		return nil, err
	}
	if a.Normalize, err = normalize.New(cfg.Normalize, normalize.Deps{Logger: log.With("service", "normalize"), Meter: meter, JS: js, Streams: cfg.Streams}); err != nil {
		return nil, err
	}
	if js, err = connect("detect"); err != nil {
		return nil, err
	}
	if a.Detect, err = detect.New(cfg.Detect, detect.Deps{Logger: log.With("service", "detect"), Meter: meter, JS: js, Streams: cfg.Streams, ClickHouse: a.ch}); err != nil {
		return nil, err
	}
	if js, err = connect("notify"); err != nil {
		return nil, err
	}
	if a.Notify, err = notify.New(cfg.Notify, notify.Deps{
		Logger: log.With("service", "notify"), Meter: meter, JS: js, Streams: cfg.Streams, Out: stdout,
		ClickHouse: a.ch, Version: version,
	}); err != nil {
		return nil, err
	}
	return a, nil
}

// Run runs the four services until ctx ends or one of them fails.
func (a *App) Run(ctx context.Context) error {
	if a.cfg.Telemetry.AdminAddr != "" {
		go func() {
			if err := telemetry.ServeAdmin(ctx, a.cfg.Telemetry.AdminAddr, telemetry.AdminHandler(a.metrics, a.health), a.log); err != nil {
				a.log.Error("admin endpoint stopped", "error", err)
			}
		}()
	}
	g, gctx := errgroup.WithContext(ctx)
	go a.lag.Run(gctx, a.cfg.Telemetry.LagInterval)
	g.Go(func() error { return a.Ingest.Run(gctx) })
	g.Go(func() error { return a.Normalize.Run(gctx) })
	g.Go(func() error { return a.Detect.Run(gctx) })
	g.Go(func() error { return a.Notify.Run(gctx) })
	err := g.Wait()
	if ctx.Err() != nil {
		// Stopped from outside: a service interrupted while still setting up (creating a
		// consumer, say) reports the cancellation as an error, which is no failure here.
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			a.log.Debug("error while stopping", "error", err)
		}
		return nil
	}
	return err
}

// WaitIdle returns once every source has finished and every consumer of the pipeline has
// nothing pending or unacknowledged, twice in a row.
func (a *App) WaitIdle(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-a.Ingest.Done():
	}
	calm := 0
	for calm < 3 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		busy, err := a.busy(ctx)
		if err != nil {
			return err
		}
		if busy {
			calm = 0
		} else {
			calm++
		}
	}
	return nil
}

// busy reports whether any consumer of the pipeline streams has work left.
func (a *App) busy(ctx context.Context) (bool, error) {
	for _, name := range []string{events.StreamRaw, events.StreamEvents, events.StreamFindings} {
		st, err := a.js.Stream(ctx, name)
		if err != nil {
			return false, err
		}
		lister := st.ListConsumers(ctx)
		for info := range lister.Info() {
			if info.NumPending > 0 || info.NumAckPending > 0 || info.NumRedelivered > 0 && info.NumAckPending > 0 {
				return true, nil
			}
		}
		if err := lister.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
			return false, err
		}
	}
	return false, nil
}

// Close disconnects, closes ClickHouse and stops the embedded server.
func (a *App) Close() {
	for _, nc := range a.conns {
		_ = nc.Drain()
	}
	if a.ch != nil {
		_ = a.ch.Close()
	}
	if a.metrics != nil {
		_ = a.metrics.Shutdown(context.Background())
	}
	if a.tracing != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = a.tracing.Shutdown(ctx)
		cancel()
	}
	if a.ns != nil {
		a.ns.Shutdown()
		a.ns.WaitForShutdown()
	}
}

// openClickHouse opens the configured database.
func openClickHouse(ctx context.Context, cfg Config) (driver.Conn, error) {
	return chdb.Open(ctx, cfg.ClickHouse)
}
