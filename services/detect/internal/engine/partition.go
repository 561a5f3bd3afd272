package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
	"github.com/nhiwatch/nhiwatch/pkg/platform/telemetry"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/state"
)

// errLeaseLost stops a partition whose lease another worker took: it must not write state.
var errLeaseLost = errors.New("partition lease lost")

// ConsumerName is the durable consumer of partition p.
func ConsumerName(p uint32) string { return fmt.Sprintf("detect-p%03d", p) }

// runner processes one partition: it fetches the partition's NHI_EVENTS messages in order,
// applies their events to the partition's state, publishes findings at once, and every
// checkpoint interval writes the changed states and the last applied stream sequence to
// KV before it acknowledges the messages.
type runner struct {
	e    *Engine
	p    uint32
	log  *slog.Logger
	part *state.Partition
	// validUntil is when this worker's lease ends unless renewed (Unix nanoseconds).
	validUntil atomic.Int64

	cons    jetstream.Consumer
	ckptRev uint64
	applied uint64
	pending []jetstream.Msg
	futures []pubFuture
	last    time.Time
	attr    metric.MeasurementOption
}

type pubFuture struct {
	msg *nats.Msg
	fut jetstream.PubAckFuture
}

// checkpoint is what a partition's checkpoint key holds.
func encodeCheckpoint(seq uint64, owner string) []byte {
	return append(binary.AppendUvarint(nil, seq), owner...)
}

func decodeCheckpoint(b []byte) (uint64, bool) {
	seq, n := binary.Uvarint(b)
	return seq, n > 0
}

// start loads the partition's checkpoint and state and positions its consumer right after
// the checkpoint. The consumer is recreated so that delivery resumes in stream order even
// when a previous owner died holding unacknowledged messages.
func (r *runner) start(ctx context.Context) error {
	kv := r.e.stateKV
	r.part = state.NewPartition(r.p)
	r.attr = metric.WithAttributes(attribute.Int("partition", int(r.p)))
	e, err := kv.Get(ctx, state.CheckpointKey(r.p))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return fmt.Errorf("partition %d: read checkpoint: %w", r.p, err)
	default:
		r.ckptRev = e.Revision()
		if seq, ok := decodeCheckpoint(e.Value()); ok {
			r.applied = seq
		}
	}
	loaded, err := r.load(ctx)
	if err != nil {
		return err
	}
	cc := streams.ConsumerConfig(ConsumerName(r.p), fmt.Sprintf("detect: detectors on partition %d", r.p), events.EventPartitionFilter(r.p))
	cc.MaxDeliver = -1
	cc.BackOff = nil
	cc.AckWait = r.e.cfg.AckWait
	cc.MaxAckPending = max(streams.DefaultMaxAckPending, 4*r.e.cfg.CheckpointMessages)
	if r.applied > 0 {
		cc.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cc.OptStartSeq = r.applied + 1
	}
	if err := r.e.js.DeleteConsumer(ctx, events.StreamEvents, cc.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("partition %d: reset consumer: %w", r.p, err)
	}
	if r.cons, err = streams.EnsureConsumer(ctx, r.e.js, events.StreamEvents, cc); err != nil {
		return err
	}
	r.log.Info("partition started", "checkpoint_seq", r.applied, "identities", loaded)
	return nil
}

// load reads every identity state of the partition from KV (a watch on the key prefix
// streams them without a round trip per key).
func (r *runner) load(ctx context.Context) (int, error) {
	w, err := r.e.stateKV.Watch(ctx, state.KeyPrefix(r.p), jetstream.IgnoreDeletes())
	if err != nil {
		return 0, fmt.Errorf("partition %d: load state: %w", r.p, err)
	}
	defer w.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok || e == nil {
				return n, nil
			}
			key, ok := state.ParseKey(e.Key())
			if !ok {
				continue
			}
			s, err := state.Decode(e.Value())
			if err != nil {
				// A corrupt state is dropped: the identity learns again rather than
				// stopping its partition.
				r.log.Error("corrupt identity state dropped", "key", e.Key(), "error", err)
				continue
			}
			r.part.Put(key, s)
			n++
		}
	}
}

// run processes the partition until ctx ends or its lease is lost, then checkpoints what it
// applied (unless the lease is lost).
func (r *runner) run(ctx context.Context) error {
	r.last = time.Now()
	cfg := r.e.cfg
	for {
		if ctx.Err() != nil {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
			defer cancel()
			return r.checkpoint(fctx)
		}
		if !r.leaseValid() {
			return errLeaseLost
		}
		wait := cfg.CheckpointInterval
		if len(r.pending) > 0 {
			wait = max(5*time.Millisecond, cfg.CheckpointInterval-time.Since(r.last))
		}
		batch, err := r.cons.Fetch(cfg.Fetch, jetstream.FetchMaxWait(wait))
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("fetch failed", "error", err)
				sleep(ctx, 200*time.Millisecond)
			}
			continue
		}
		for msg := range batch.Messages() {
			if err := r.handle(ctx, msg); err != nil {
				return err
			}
		}
		if len(r.pending) > 0 && (len(r.pending) >= cfg.CheckpointMessages || time.Since(r.last) >= cfg.CheckpointInterval) {
			if err := r.checkpoint(ctx); err != nil {
				return err
			}
		}
	}
}

// handle applies one message. Findings are published at once (asynchronously); the message
// is acknowledged at the next checkpoint.
func (r *runner) handle(ctx context.Context, msg jetstream.Msg) error {
	md, err := msg.Metadata()
	if err != nil {
		return fmt.Errorf("partition %d: message metadata: %w", r.p, err)
	}
	seq := md.Sequence.Stream
	r.pending = append(r.pending, msg)
	if seq <= r.applied {
		return nil // applied before the checkpoint this runner resumed from
	}
	batch, err := events.UnmarshalEventBatch(msg.Data())
	if err != nil {
		if derr := streams.DeadLetterMsg(ctx, r.e.pub, events.StageDetect, msg, err); derr != nil {
			return derr
		}
		r.e.m.deadLettered.Add(ctx, 1, r.attr)
		r.log.Warn("message dead-lettered", "seq", seq, "reason", streams.Reason(err))
		r.applied = seq
		return nil
	}
	for _, ev := range batch.Events {
		for _, f := range r.e.det.Process(r.part, ev, seq) {
			if err := r.publish(ctx, f, msg.Headers()); err != nil {
				return err
			}
		}
	}
	r.e.m.events.Add(ctx, int64(len(batch.Events)), r.attr)
	r.applied = seq
	return nil
}

func (r *runner) publish(ctx context.Context, f *events.Finding, in nats.Header) error {
	data, err := events.Marshal(f)
	if err != nil {
		return err
	}
	m := nats.NewMsg(events.FindingSubject(f.Severity, f.Detector))
	m.Header.Set(events.HeaderMsgID, f.Id)
	for _, h := range []string{events.HeaderSource, events.HeaderReceivedAt, events.HeaderTraceParent} {
		if v := in.Get(h); v != "" {
			m.Header.Set(h, v)
		}
	}
	m.Data = data
	fut, err := r.e.js.PublishMsgAsync(m)
	if err != nil {
		// Retried synchronously at the checkpoint.
		r.futures = append(r.futures, pubFuture{msg: m})
		return nil
	}
	r.futures = append(r.futures, pubFuture{m, fut})
	r.e.m.findings.Add(ctx, 1, metric.WithAttributes(attribute.String("detector", f.Detector), attribute.String("severity", f.Severity.Label())))
	if f.ReceivedUnixNano > 0 {
		r.e.m.pipeline.SinceReceived(ctx, telemetry.StageFindingPublished, time.Unix(0, f.ReceivedUnixNano), telemetry.AttrDetector.String(f.Detector))
	}
	return nil
}

// checkpoint makes everything applied so far durable, in this order: findings stored in
// NHI_FINDINGS, changed states stored in KV, the partition's checkpoint (compare-and-set,
// which also fences a worker whose lease was taken), then the messages acknowledged. A
// crash between steps repeats work but loses nothing: states carry the sequence they
// applied, and findings their stable ids.
func (r *runner) checkpoint(ctx context.Context) error {
	if len(r.pending) == 0 && r.part.DirtyCount() == 0 {
		r.last = time.Now()
		return nil
	}
	start := time.Now()
	if err := r.flushFindings(ctx); err != nil {
		return err
	}
	if err := r.flushStates(ctx); err != nil {
		return err
	}
	if !r.leaseValid() {
		return errLeaseLost
	}
	v := encodeCheckpoint(r.applied, r.e.cfg.WorkerID)
	var rev uint64
	var err error
	if r.ckptRev == 0 {
		rev, err = r.e.stateKV.Create(ctx, state.CheckpointKey(r.p), v)
	} else {
		rev, err = r.e.stateKV.Update(ctx, state.CheckpointKey(r.p), v, r.ckptRev)
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("%w: partition %d checkpoint was written by another worker", errLeaseLost, r.p)
		}
		return fmt.Errorf("partition %d: write checkpoint: %w", r.p, err)
	}
	r.ckptRev = rev
	for _, m := range r.pending {
		if err := m.Ack(); err != nil {
			r.log.Debug("ack failed; the checkpoint skips the redelivery", "error", err)
		}
	}
	r.pending = r.pending[:0]
	r.last = time.Now()
	r.e.m.checkpoint.Record(ctx, time.Since(start).Seconds(), r.attr)
	return nil
}

func (r *runner) flushFindings(ctx context.Context) error {
	var retry []*nats.Msg
	for _, f := range r.futures {
		if f.fut == nil {
			retry = append(retry, f.msg)
			continue
		}
		select {
		case <-f.fut.Ok():
		case <-f.fut.Err():
			retry = append(retry, f.msg)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.futures = r.futures[:0]
	if len(retry) > 0 {
		if err := r.e.pub.PublishAll(ctx, retry); err != nil {
			return fmt.Errorf("partition %d: publish findings: %w", r.p, err)
		}
	}
	return nil
}

// flushStates writes the changed identity states, published straight to the bucket's
// subjects so they go out together instead of one round trip each.
func (r *runner) flushStates(ctx context.Context) error {
	keys := r.part.Dirty()
	if len(keys) == 0 {
		return nil
	}
	msgs := make([]*nats.Msg, 0, len(keys))
	buf := make([]byte, 0, 256*len(keys))
	for _, k := range keys {
		s := r.part.Identities[k]
		if s == nil {
			continue
		}
		start := len(buf)
		buf = s.Encode(buf)
		m := nats.NewMsg("$KV." + r.e.stateKV.Bucket() + "." + state.Key(r.p, k))
		m.Data = buf[start:len(buf):len(buf)]
		// The id makes a retried write harmless within the duplicate window.
		m.Header.Set(events.HeaderMsgID, fmt.Sprintf("%s@%d", state.Key(r.p, k), s.Seq))
		msgs = append(msgs, m)
	}
	if err := r.e.pub.PublishAll(ctx, msgs); err != nil {
		return fmt.Errorf("partition %d: write %d states: %w", r.p, len(msgs), err)
	}
	r.e.m.states.Add(ctx, int64(len(msgs)), r.attr)
	return nil
}

func (r *runner) leaseValid() bool {
	return time.Now().UnixNano() < r.validUntil.Load()
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
