package base

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/nhiwatch/nhiwatch/pkg/platform/chdb"
	"github.com/nhiwatch/nhiwatch/pkg/platform/config"
)

// Service is what a service binary runs.
type Service interface {
	Run(ctx context.Context) error
}

// Validator is a service configuration.
type Validator interface {
	Validate() error
}

// Main is the whole main function of a service binary. It reads the shared configuration
// file (-config, or NHIWATCH_CONFIG): the common sections and the section called name,
// starting from defaults, with NHIWATCH_* environment overrides; sets up the process (logs,
// metrics, traces, NATS, health); calls build; serves the admin endpoint; and runs the service
// until SIGINT or SIGTERM. It exits with status 1 on failure.
func Main[C Validator](name string, defaults C, build func(ctx context.Context, p *Process, cfg C) (Service, error)) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, name, defaults, build)
	stop()
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

func run[C Validator](ctx context.Context, name string, cfg C, build func(ctx context.Context, p *Process, cfg C) (Service, error)) error {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	path := fs.String("config", os.Getenv("NHIWATCH_CONFIG"), "configuration file (YAML)")
	_ = fs.Parse(os.Args[1:])
	common := DefaultCommon()
	if err := config.LoadService(*path, name, &common, &cfg); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	proc, err := Setup(ctx, common, name)
	if err != nil {
		return err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = proc.Close(closeCtx)
	}()
	svc, err := build(ctx, proc, cfg)
	if err != nil {
		return err
	}
	proc.ServeAdmin(ctx)
	proc.Logger.Info("starting")
	if err := svc.Run(ctx); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// Common returns the process's common configuration (streams layout, ClickHouse, …).
func (p *Process) Common() Common { return p.common }

// ClickHouse opens the configured database (applying migrations) once and closes it with
// the process; it returns nil when no ClickHouse is configured.
func (p *Process) ClickHouse(ctx context.Context) (driver.Conn, error) {
	if !p.common.ClickHouse.Enabled() {
		return nil, nil
	}
	if p.ch != nil {
		return p.ch, nil
	}
	conn, err := chdb.Open(ctx, p.common.ClickHouse)
	if err != nil {
		return nil, err
	}
	p.ch = conn
	p.closer = append(p.closer, conn.Close)
	return conn, nil
}
