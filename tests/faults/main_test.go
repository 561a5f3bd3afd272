//go:build faults

// Package faults is the system-level fault suite: the real service binaries, each its own
// process, over a real nats-server with JetStream on file storage and the test ClickHouse,
// fed by real ingest files sources, while the tests kill -9 services, restart NATS, cut
// ClickHouse away, mix poison into the input and plant secrets in it. Each test asserts a
// guarantee of docs/reliability.md: nothing lost, nothing duplicated, nothing leaked.
//
// The tests build with the tag "faults" and run with `make test-faults` (CI runs it from
// .ci/run). A failing run prints its seed; -seed=N replays the same load and the same fault
// schedule.
package faults

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nhiwatch/nhiwatch/tests/internal/harness"
	"github.com/nhiwatch/nhiwatch/tests/internal/load"
)

var (
	seedFlag = flag.Int64("seed", 0, "seed of the loads and fault schedules (0: from the clock)")
	raceFlag = flag.Bool("race-binaries", os.Getenv("FAULTS_RACE") == "1", "build the services with the race detector")
)

var (
	bins      harness.Binaries
	templates *load.Templates
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := harness.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "nhiwatch-faults-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	if bins, err = harness.Build(ctx, root, dir, *raceFlag); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "faults: built the services and nats-server in %v (race detector: %v)\n", time.Since(start).Round(time.Millisecond), *raceFlag)
	if templates, err = load.LoadTemplates(filepath.Join(root, "testdata")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// seed returns the seed of a test and logs how to replay it.
func seed(t *testing.T) int64 {
	s := *seedFlag
	if s == 0 {
		s = time.Now().UnixNano() % 1_000_000_007
	}
	t.Logf("seed %d (replay with -seed=%d)", s, s)
	return s
}
