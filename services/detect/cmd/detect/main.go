// Command detect runs the nhiwatch detect service on its own, against an external NATS
// JetStream server (and ClickHouse where it needs one).
//
//	detect -config nhiwatch.yaml
//
// It reads the same configuration file as `nhiwatch run` (the sections nats, streams,
// clickhouse, telemetry and detect; others are ignored), with NHIWATCH_* environment
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

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nhiwatch/nhiwatch/pkg/platform/base"
	"github.com/nhiwatch/nhiwatch/pkg/platform/chdb"
	"github.com/nhiwatch/nhiwatch/pkg/platform/config"
	"github.com/nhiwatch/nhiwatch/services/detect"
)

// fileConfig is the part of the shared configuration file this binary reads.
type fileConfig struct {
	base.Common `yaml:",inline"`
	Detect      detect.Config `yaml:"detect" envPrefix:"DETECT_"`
	// Other services' sections are accepted and ignored.
	Other map[string]yaml.Node `yaml:",inline"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := realMain(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "detect:", err)
		os.Exit(1)
	}
}

func realMain(ctx context.Context) error {
	path := flag.String("config", os.Getenv("NHIWATCH_CONFIG"), "configuration file (YAML)")
	flag.Parse()
	cfg := fileConfig{Common: base.DefaultCommon(), Detect: detect.DefaultConfig()}
	if err := config.Load(*path, &cfg); err != nil {
		return err
	}
	proc, err := base.Setup(ctx, cfg.Common, "detect")
	if err != nil {
		return err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = proc.Close(closeCtx)
	}()
	var ch driver.Conn
	if cfg.ClickHouse.Enabled() {
		ch, err = chdb.Open(ctx, cfg.ClickHouse)
		if err != nil {
			return err
		}
		defer ch.Close()
	}
	svc, err := detect.New(cfg.Detect, detect.Deps{
		Logger: proc.Logger, Meter: proc.Metrics.Meter("nhiwatch/detect"), JS: proc.JS, Streams: cfg.Streams, ClickHouse: ch,
	})
	if err != nil {
		return err
	}
	proc.ServeAdmin(ctx)
	proc.Logger.Info("starting")
	return svc.Run(ctx)
}
