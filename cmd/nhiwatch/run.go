package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/platform/telemetry"
)

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", os.Getenv("NHIWATCH_CONFIG"), "configuration file (YAML)")
	exitWhenIdle := fs.Bool("exit-when-idle", false, "stop once every source is read and the pipeline has drained, then print a report")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	cfg, err := LoadConfig(*configPath)
	if err != nil {
		return err
	}
	log := telemetry.NewLogger(cfg.Telemetry, stderr)
	if !cfg.ClickHouse.Enabled() {
		log.Warn("ClickHouse is not configured (clickhouse.addr or NHIWATCH_CLICKHOUSE_ADDR): events and findings will not be stored")
	}
	start := time.Now()
	app, err := NewApp(ctx, cfg, stdout, log)
	if err != nil {
		return err
	}
	defer app.Close()

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx) }()
	if !*exitWhenIdle {
		return <-done
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		stop()
		return <-done
	case err := <-waitIdle(runCtx, app):
		if err != nil {
			stop()
			<-done
			return err
		}
	}
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return report(ctx, app, time.Since(start), stdout)
}

func waitIdle(ctx context.Context, app *App) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- app.WaitIdle(ctx) }()
	return ch
}

// report prints what the run did.
func report(ctx context.Context, app *App, took time.Duration, w io.Writer) error {
	families, err := app.metrics.Registry.Gather()
	if err != nil {
		return err
	}
	sum := func(name string) int64 {
		var total float64
		for _, f := range families {
			if f.GetName() != name {
				continue
			}
			for _, m := range f.GetMetric() {
				total += counter(m)
			}
		}
		return int64(total)
	}
	fmt.Fprintf(w, "\nnhiwatch run finished in %s\n", took.Round(time.Millisecond))
	fmt.Fprintf(w, "  records ingested:        %d\n", sum("nhiwatch_ingest_records_total"))
	fmt.Fprintf(w, "  rejected by ingest:      %d\n", sum("nhiwatch_ingest_rejected_total"))
	fmt.Fprintf(w, "  events normalized:       %d\n", sum("nhiwatch_normalize_events_total"))
	fmt.Fprintf(w, "  rejected by normalize:   %d\n", sum("nhiwatch_normalize_rejected_total"))
	fmt.Fprintf(w, "  skipped (non-final):     %d\n", sum("nhiwatch_normalize_skipped_total"))
	st, err := app.js.Stream(ctx, events.StreamFindings)
	if err == nil {
		if info, err := st.Info(ctx); err == nil {
			fmt.Fprintf(w, "  findings published:      %d\n", info.State.Msgs)
		}
	}
	if app.ch == nil {
		fmt.Fprintln(w, "  ClickHouse:              not configured, nothing stored")
		return nil
	}
	var n uint64
	if err := app.ch.QueryRow(ctx, "SELECT count() FROM events FINAL").Scan(&n); err != nil {
		return fmt.Errorf("count events in ClickHouse: %w", err)
	}
	var f uint64
	if err := app.ch.QueryRow(ctx, "SELECT count() FROM findings FINAL").Scan(&f); err != nil {
		return fmt.Errorf("count findings in ClickHouse: %w", err)
	}
	fmt.Fprintf(w, "  events in ClickHouse:    %d (database %s)\n", n, app.cfg.ClickHouse.Database)
	fmt.Fprintf(w, "  findings in ClickHouse:  %d\n", f)
	return nil
}

func counter(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	}
	return 0
}
