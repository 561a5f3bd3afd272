// Command notify runs the nhiwatch notify service on its own, against an external NATS
// JetStream server (and ClickHouse where it needs one).
//
//	notify -config nhiwatch.yaml
//
// It reads the same configuration file as `nhiwatch run` (the sections nats, streams,
// clickhouse, telemetry and notify; others are ignored), with NHIWATCH_* environment
// variables on top, e.g. NHIWATCH_NATS_URL=nats://nats:4222.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/nhiwatch/nhiwatch/pkg/platform/base"
	"github.com/nhiwatch/nhiwatch/pkg/platform/chdb"
	"github.com/nhiwatch/nhiwatch/pkg/platform/config"
	"github.com/nhiwatch/nhiwatch/services/notify"
)

// fileConfig is the part of the shared configuration file this binary reads.
type fileConfig struct {
	base.Common `yaml:",inline"`
	Notify      notify.Config `yaml:"notify" envPrefix:"NOTIFY_"`
	// Other services' sections are accepted and ignored.
	Other map[string]yaml.Node `yaml:",inline"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := realMain(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "notify:", err)
		os.Exit(1)
	}
}

func realMain(ctx context.Context) error {
	path := flag.String("config", os.Getenv("NHIWATCH_CONFIG"), "configuration file (YAML)")
	flag.Parse()
	cfg := fileConfig{Common: base.DefaultCommon(), Notify: notify.DefaultConfig()}
	if err := config.Load(*path, &cfg); err != nil {
		return err
	}
	proc, err := base.Setup(ctx, cfg.Common, "notify")
	if err != nil {
		return err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = proc.Close(closeCtx)
	}()
	deps := notify.Deps{
		Logger: proc.Logger, Meter: proc.Metrics.Meter("nhiwatch/notify"), JS: proc.JS, Streams: cfg.Streams, Out: os.Stdout,
	}
	if cfg.ClickHouse.Enabled() {
		// Triage changes go to finding_status and finding_status_log; the API lists findings
		// from the findings table.
		conn, err := chdb.Open(ctx, cfg.ClickHouse)
		if err != nil {
			return err
		}
		defer conn.Close()
		deps.ClickHouse = conn
	}
	svc, err := notify.New(cfg.Notify, deps)
	if err != nil {
		return err
	}
	proc.ServeAdmin(ctx)
	proc.Logger.Info("starting")
	return svc.Run(ctx)
}
