// Package engine runs the detectors over NHI_EVENTS: one goroutine per partition this
// worker holds a lease on, each with a durable pull consumer (detect-p<NNN>), the
// partition's identity states in memory and persisted in the NHI_DETECT_STATE KV bucket,
// and findings published to NHI_FINDINGS before the events that raised them are
// acknowledged. Several workers share the partitions through leases in NHI_LEASES; when one
// stops or dies, the others take its partitions over and resume from their checkpoints.
package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
	"github.com/nhiwatch/nhiwatch/pkg/platform/telemetry"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/detectors"
)

// Config tunes the engine.
type Config struct {
	// WorkerID names this worker in leases and checkpoints; empty picks host-pid-random.
	WorkerID string
	// LeaseTTL is how long a lease lasts unless renewed; a dead worker's partitions are
	// taken over after at most this long.
	LeaseTTL time.Duration
	// CheckpointInterval and CheckpointMessages bound the work between checkpoints.
	CheckpointInterval time.Duration
	CheckpointMessages int
	// Fetch is how many messages one fetch pulls.
	Fetch int
	// AckWait is the consumers' ack wait.
	AckWait time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{LeaseTTL: 10 * time.Second, CheckpointInterval: 250 * time.Millisecond, CheckpointMessages: 1000, Fetch: 256, AckWait: 30 * time.Second}
}

// Engine is one detect worker.
type Engine struct {
	cfg     Config
	js      jetstream.JetStream
	streams streams.Config
	stateKV jetstream.KeyValue
	leaseKV jetstream.KeyValue
	det     *detectors.Detector
	pub     *streams.Publisher
	log     *slog.Logger
	m       metrics
	mu      sync.Mutex
	running map[uint32]*running
}

type running struct {
	r      *runner
	cancel context.CancelFunc
	done   chan struct{}
	rev    uint64 // lease revision
}

type metrics struct {
	events, findings, states, deadLettered metric.Int64Counter
	checkpoint                             metric.Float64Histogram
	owned                                  metric.Int64UpDownCounter
	pipeline                               *telemetry.Pipeline
}

// New returns an Engine. The buckets are created if missing.
func New(ctx context.Context, cfg Config, js jetstream.JetStream, sc streams.Config, det *detectors.Detector, log *slog.Logger, meter metric.Meter) (*Engine, error) {
	if cfg.WorkerID == "" {
		host, _ := os.Hostname()
		b := make([]byte, 3)
		_, _ = rand.Read(b)
		cfg.WorkerID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
	}
	if cfg.LeaseTTL < time.Second || cfg.CheckpointInterval <= 0 || cfg.CheckpointMessages <= 0 || cfg.Fetch <= 0 || cfg.AckWait <= 0 {
		return nil, errors.New("engine: lease TTL (≥1s), checkpoint interval and messages, fetch and ack wait must be positive")
	}
	e := &Engine{cfg: cfg, js: js, streams: sc, det: det, pub: streams.NewPublisher(js), log: log.With("worker", cfg.WorkerID), running: map[uint32]*running{}}
	var err error
	if e.stateKV, err = streams.EnsureBucket(ctx, js, sc, events.BucketDetectState, "detector state per identity and partition checkpoints", 1); err != nil {
		return nil, err
	}
	if e.leaseKV, err = streams.EnsureBucket(ctx, js, sc, events.BucketLeases, "which detect worker owns which partition", 1); err != nil {
		return nil, err
	}
	for _, c := range []struct {
		dst  *metric.Int64Counter
		name string
		desc string
	}{
		{&e.m.events, "nhiwatch_detect_events", "events applied to detector state"},
		{&e.m.findings, "nhiwatch_detect_findings", "findings published, by detector and severity"},
		{&e.m.states, "nhiwatch_detect_state_writes", "identity states written to KV"},
		{&e.m.deadLettered, "nhiwatch_detect_dead_lettered", "NHI_EVENTS messages that could not be decoded"},
	} {
		if *c.dst, err = meter.Int64Counter(c.name, metric.WithDescription(c.desc)); err != nil {
			return nil, err
		}
	}
	if e.m.checkpoint, err = meter.Float64Histogram("nhiwatch_detect_checkpoint_seconds", metric.WithDescription("time to make a partition's work durable"), metric.WithUnit("s")); err != nil {
		return nil, err
	}
	if e.m.pipeline, err = telemetry.NewPipeline(meter); err != nil {
		return nil, err
	}
	if e.m.owned, err = meter.Int64UpDownCounter("nhiwatch_detect_partitions_owned", metric.WithDescription("partitions this worker holds")); err != nil {
		return nil, err
	}
	return e, nil
}

// WorkerID is this worker's id.
func (e *Engine) WorkerID() string { return e.cfg.WorkerID }

// Owned returns the partitions this worker runs.
func (e *Engine) Owned() []uint32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]uint32, 0, len(e.running))
	for p := range e.running {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Run claims and runs partitions until ctx ends, then stops every partition (each makes a
// final checkpoint) and releases the leases.
func (e *Engine) Run(ctx context.Context) error {
	e.log.Info("detect engine running", "partitions", e.streams.Partitions, "lease_ttl", e.cfg.LeaseTTL)
	tick := time.NewTicker(e.cfg.LeaseTTL / 4)
	defer tick.Stop()
	errs := make(chan error, e.streams.Partitions)
	for {
		if err := e.balance(ctx, errs); err != nil && ctx.Err() == nil {
			e.log.Warn("lease round failed", "error", err)
		}
		select {
		case <-ctx.Done():
			e.shutdown()
			return nil
		case err := <-errs:
			// A partition stopped on its own (lease lost, KV or publish failure): it is
			// released and claimed again on the next round, from its checkpoint.
			e.log.Warn("partition stopped", "error", err)
		case <-tick.C:
		}
	}
}

// balance renews this worker's heartbeat and leases, claims free partitions up to its fair
// share and gives back what exceeds it. Renewals come first and partitions start in the
// background, so a slow start never lets another lease lapse.
func (e *Engine) balance(ctx context.Context, errs chan<- error) error {
	now := time.Now()
	expiry := now.Add(e.cfg.LeaseTTL)
	if _, err := e.leaseKV.Put(ctx, workerKey(e.cfg.WorkerID), encodeLease(e.cfg.WorkerID, expiry)); err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	e.reap()
	for _, p := range e.Owned() {
		e.mu.Lock()
		run := e.running[p]
		e.mu.Unlock()
		if run == nil {
			continue
		}
		rev, err := e.leaseKV.Update(ctx, leaseKey(p), encodeLease(e.cfg.WorkerID, expiry), run.rev)
		if err != nil {
			e.log.Warn("lease renewal failed; stopping partition", "partition", p, "error", err)
			e.stop(p, false)
			continue
		}
		run.rev = rev
		run.r.validUntil.Store(expiry.Add(-e.cfg.LeaseTTL / 10).UnixNano())
	}
	alive, err := aliveWorkers(ctx, e.leaseKV, now)
	if err != nil {
		return err
	}
	alive = max(alive, 1)
	P := e.streams.Partitions
	share := int((P + uint32(alive) - 1) / uint32(alive))
	owned := len(e.Owned())
	for p := uint32(0); p < P && owned < share; p++ {
		e.mu.Lock()
		_, mine := e.running[p]
		e.mu.Unlock()
		if mine {
			continue
		}
		l, err := readLease(ctx, e.leaseKV, p)
		if err != nil {
			return err
		}
		if l.exists && l.owner != "" && l.owner != e.cfg.WorkerID && l.expiry.After(now) {
			continue // held by a live worker
		}
		rev, err := claim(ctx, e.leaseKV, p, l, e.cfg.WorkerID, expiry)
		if err != nil {
			continue // another worker was faster
		}
		e.startPartition(ctx, p, rev, expiry, errs)
		owned++
	}
	// Give back partitions above the fair share, highest first, so newcomers get work.
	if owned > share {
		mine := e.Owned()
		for i := len(mine) - 1; i >= 0 && owned > share; i-- {
			e.stop(mine[i], true)
			owned--
		}
	}
	return nil
}

// startPartition runs a partition in the background: it loads the partition's state,
// positions its consumer and processes until stopped.
func (e *Engine) startPartition(ctx context.Context, p uint32, rev uint64, expiry time.Time, errs chan<- error) {
	r := &runner{e: e, p: p, log: e.log.With("partition", p)}
	r.validUntil.Store(expiry.Add(-e.cfg.LeaseTTL / 10).UnixNano())
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	run := &running{r: r, cancel: cancel, done: make(chan struct{}), rev: rev}
	e.mu.Lock()
	e.running[p] = run
	e.mu.Unlock()
	e.m.owned.Add(ctx, 1)
	go func() {
		defer close(run.done)
		err := r.start(rctx)
		if err == nil {
			err = r.run(rctx)
		}
		if err != nil && rctx.Err() == nil {
			errs <- fmt.Errorf("partition %d: %w", p, err)
		}
	}()
}

// reap forgets partitions whose runner ended on its own, releasing their leases.
func (e *Engine) reap() {
	e.mu.Lock()
	var ended []uint32
	for p, run := range e.running {
		select {
		case <-run.done:
			ended = append(ended, p)
		default:
		}
	}
	e.mu.Unlock()
	for _, p := range ended {
		e.stop(p, true)
	}
}

// stop ends a partition's runner (which checkpoints unless its lease is lost) and, when
// release is set, deletes its lease so another worker can claim it at once.
func (e *Engine) stop(p uint32, release bool) {
	e.mu.Lock()
	run := e.running[p]
	delete(e.running, p)
	e.mu.Unlock()
	if run == nil {
		return
	}
	run.cancel()
	select {
	case <-run.done:
	case <-time.After(30 * time.Second):
		e.log.Error("partition did not stop in time", "partition", p)
	}
	e.m.owned.Add(context.Background(), -1)
	if release {
		e.release(p, run.rev)
	}
	e.log.Info("partition stopped", "partition", p, "released", release)
}

func (e *Engine) release(p uint32, rev uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.leaseKV.Delete(ctx, leaseKey(p), jetstream.LastRevision(rev)); err != nil {
		e.log.Debug("lease release failed; it expires instead", "partition", p, "error", err)
	}
}

// shutdown stops every partition and releases the leases and the heartbeat.
func (e *Engine) shutdown() {
	var wg sync.WaitGroup
	for _, p := range e.Owned() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.stop(p, true)
		}()
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = e.leaseKV.Delete(ctx, workerKey(e.cfg.WorkerID))
	e.log.Info("detect engine stopped")
}
