package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/platform/chdbtest"
	"github.com/nhiwatch/nhiwatch/services/ingest"
)

const stratusDir = "../../testdata/cloudtrail/stratus-red-team"

// stratusRecords counts the records of the shared Stratus Red Team files and their distinct
// (recipientAccountId, eventID) pairs, independently of the pipeline.
func stratusRecords(t *testing.T) (records, distinct int) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(stratusDir, "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no stratus files: %v", err)
	}
	seen := map[string]bool{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var recs []struct {
			EventID            string `json:"eventID"`
			RecipientAccountID string `json:"recipientAccountId"`
		}
		if err := json.Unmarshal(data, &recs); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for _, r := range recs {
			records++
			seen[r.RecipientAccountID+"/"+r.EventID] = true
		}
	}
	return records, len(seen)
}

// e2eConfig is an all-in-one configuration over the stratus files with small batches, so
// that a run is many messages and can be interrupted in the middle.
func e2eConfig(t *testing.T, storeDir string, sources ...string) Config {
	cfg := DefaultConfig()
	cfg.EmbeddedNATS.StoreDir = storeDir
	cfg.ClickHouse = chdbtest.Config(t)
	cfg.Streams.Partitions = 8
	cfg.Ingest.MaxBatchRecords = 5
	cfg.Normalize.Workers = 2
	cfg.Detect.StoreBatchRows = 50
	cfg.Detect.StoreFlushInterval = 100 * time.Millisecond
	cfg.Notify.Terminal = true
	for _, name := range sources {
		files := ingest.DefaultFilesConfig()
		files.Paths = []string{stratusDir}
		files.ChunkRecords = 5
		cfg.Ingest.Sources = append(cfg.Ingest.Sources, ingest.SourceConfig{
			Name: name, Type: "files", Provider: "aws", Files: &files,
		})
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// runUntilIdle runs the app until the pipeline has drained.
func runUntilIdle(t *testing.T, cfg Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	app, err := NewApp(ctx, cfg, io.Discard, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx) }()
	if err := app.WaitIdle(ctx); err != nil {
		t.Fatalf("pipeline did not drain: %v", err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// assertExactlyOnce checks that ClickHouse holds every record once: the count with FINAL,
// the distinct ids and the records sent are equal.
func assertExactlyOnce(t *testing.T, cfg Config, want int) {
	t.Helper()
	ctx := context.Background()
	conn, err := openClickHouse(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var final, distinct uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM events FINAL").Scan(&final); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT uniqExact(event_id) FROM events").Scan(&distinct); err != nil {
		t.Fatal(err)
	}
	if final != uint64(want) || distinct != uint64(want) {
		t.Errorf("ClickHouse holds %d events with FINAL and %d distinct ids, want %d of each", final, distinct, want)
	}
}

func TestEndToEndStratusExactlyOnce(t *testing.T) {
	records, distinct := stratusRecords(t)
	if records != distinct {
		t.Fatalf("sample has %d records but %d distinct ids", records, distinct)
	}
	store := t.TempDir()
	cfg := e2eConfig(t, store, "stratus")
	runUntilIdle(t, cfg)
	assertExactlyOnce(t, cfg, records)

	t.Run("ingested twice", func(t *testing.T) {
		// A second source reads the same files: new record ids, the same events.
		twice := e2eConfig(t, store, "stratus", "stratus-again")
		twice.ClickHouse = cfg.ClickHouse
		runUntilIdle(t, twice)
		assertExactlyOnce(t, twice, records)
	})
}

func TestEndToEndStopAndRestartMidway(t *testing.T) {
	records, _ := stratusRecords(t)
	store := t.TempDir()
	cfg := e2eConfig(t, store, "stratus")

	// First run: stop as soon as part of the files has been ingested.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	app, err := NewApp(ctx, cfg, io.Discard, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx) }()
	for {
		st, err := app.js.Stream(ctx, events.StreamRaw)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs >= 10 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("first run: %v", err)
	}
	app.Close()
	stored := countEvents(t, cfg)
	if stored >= uint64(records) {
		t.Logf("the first run stored all %d events before it was stopped; the restart still has to add none", stored)
	}

	// Second run on the same JetStream store resumes from the cursors.
	runUntilIdle(t, cfg)
	assertExactlyOnce(t, cfg, records)
}

func countEvents(t *testing.T, cfg Config) uint64 {
	t.Helper()
	conn, err := openClickHouse(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n uint64
	if err := conn.QueryRow(context.Background(), "SELECT count() FROM events FINAL").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
