//go:build faults

package faults

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/platform/chdbtest"
	"github.com/nhiwatch/nhiwatch/tests/internal/expect"
	"github.com/nhiwatch/nhiwatch/tests/internal/harness"
	"github.com/nhiwatch/nhiwatch/tests/internal/inspect"
	"github.com/nhiwatch/nhiwatch/tests/internal/load"
)

// scenario is one run of a fresh pipeline (its own nats-server store and ClickHouse
// database) over a load written while it runs, with faults injected meanwhile.
type scenario struct {
	files []load.File
	// want computes what the pipeline must end with once the files are written; nil reads
	// every file with expect (harness.Pipeline.Expect).
	want func(p *harness.Pipeline) (*expect.Outcome, error)
	// interval between two files written.
	interval time.Duration
	// write writes the files, when they must be written another way than one every interval
	// alongside the fault (e.g. by the fault itself).
	write   func(ctx context.Context, p *harness.Pipeline) error
	options func(*harness.Options)
	// fault runs while the files are written and returns when its faults are over.
	fault func(ctx context.Context, p *harness.Pipeline) error
	// drain bounds the wait for the pipeline to finish after the load and the faults.
	drain time.Duration
}

// outcome is how a scenario ended.
type outcome struct {
	p    *harness.Pipeline
	want *expect.Outcome
	res  harness.Result
	// took is from the first file written to the pipeline drained.
	took time.Duration
}

// run runs s and fails t when the pipeline does not drain; the caller checks the result.
func (s scenario) run(t *testing.T) outcome {
	t.Helper()
	opts := harness.Options{Bins: bins, ClickHouse: chdbtest.Config(t)}
	if s.options != nil {
		s.options(&opts)
	}
	if s.drain == 0 {
		s.drain = 3 * time.Minute
	}
	p := harness.Start(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	start := time.Now()
	wrote := make(chan error, 1)
	go func() {
		if s.write != nil {
			wrote <- s.write(ctx, p)
			return
		}
		wrote <- load.WriteAll(ctx, p.Root, s.files, s.interval)
	}()
	faulted := make(chan error, 1)
	go func() {
		if s.fault == nil {
			faulted <- nil
			return
		}
		faulted <- s.fault(ctx, p)
	}()
	if err := <-wrote; err != nil {
		t.Fatalf("write load: %v", err)
	}
	if err := <-faulted; err != nil {
		t.Fatalf("inject faults: %v", err)
	}
	if s.want == nil {
		s.want = func(p *harness.Pipeline) (*expect.Outcome, error) { return p.Expect(s.files, nil) }
	}
	want, err := s.want(p)
	if err != nil {
		t.Fatal(err)
	}
	drainCtx, cancelDrain := context.WithTimeout(ctx, s.drain)
	defer cancelDrain()
	if err := p.WaitDrained(drainCtx, want); err != nil {
		t.Fatal(err)
	}
	o := outcome{p: p, want: want, took: time.Since(start)}
	if o.res, err = p.Result(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d records in %d files: %d events stored (%d rows before merges), %d dead letters, %d findings; drained in %v",
		want.Records, len(s.files), o.res.Events.Final, o.res.Events.Rows, len(o.res.DeadLetters), len(o.res.FindingSet()), o.took.Round(time.Millisecond))
	return o
}

// killRandomly kill -9s svc kills times while the load runs, each at a random moment when
// the service holds work in flight (or after a bounded wait for such a moment), and starts
// it again after a random pause.
func killRandomly(rng *rand.Rand, svc string, kills int) func(ctx context.Context, p *harness.Pipeline) error {
	return func(ctx context.Context, p *harness.Pipeline) error {
		for i := 0; i < kills; i++ {
			if err := sleep(ctx, jitter(rng, 300*time.Millisecond, 1500*time.Millisecond)); err != nil {
				return err
			}
			busy := waitBusy(ctx, p, svc, 3*time.Second)
			if err := p.Kill(svc); err != nil {
				return err
			}
			down := jitter(rng, 0, time.Second)
			p.Logf("kill -9 %s (%d/%d, work in flight: %v), down for %v", svc, i+1, kills, busy, down.Round(time.Millisecond))
			if err := sleep(ctx, down); err != nil {
				return err
			}
			if err := p.Restart(svc); err != nil {
				return err
			}
		}
		return nil
	}
}

// waitBusy waits up to max until svc holds work in flight: for ingest, NHI_RAW growing; for
// the others, one of their durable consumers with unacknowledged messages. It reports
// whether it saw that.
func waitBusy(ctx context.Context, p *harness.Pipeline, svc string, max time.Duration) bool {
	deadline := time.Now().Add(max)
	var lastSeq uint64
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if svc == harness.Ingest {
			if st, err := p.JS.Stream(ctx, events.StreamRaw); err == nil {
				if info, err := st.Info(ctx); err == nil {
					if lastSeq != 0 && info.State.LastSeq > lastSeq {
						return true
					}
					lastSeq = info.State.LastSeq
				}
			}
		} else if cs, err := inspect.Consumers(ctx, p.JS); err == nil {
			for _, c := range cs {
				if strings.HasPrefix(c.Name, svc) && c.AckPending > 0 {
					return true
				}
			}
		}
		time.Sleep(15 * time.Millisecond)
	}
	return false
}

func jitter(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func newRNG(seed int64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), stream))
}

// notifyWorkers is notify's default number of workers: how many findings it may have in
// flight when it dies.
const notifyWorkers = 4

// loadSpec is the load of the fault tests: 3000 records over 30 files.
func loadSpec(seed int64) load.Spec { return load.DefaultSpec(seed) }
