package streams

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/nhiwatch/nhiwatch/pkg/events/tracing"
)

// Publisher publishes groups of messages asynchronously and waits until JetStream has
// acknowledged every one. The number of unacknowledged publishes in flight is bounded by the
// JetStream context (jetstream.WithPublishAsyncMaxPending), so a slow server slows the
// caller down instead of growing memory.
//
// Every message must carry a Nats-Msg-Id: a publish that failed is retried with the same id,
// and JetStream drops the copy if the first attempt had in fact been stored.
//
// Every publish continues the trace of its ctx: PublishAll starts a producer span ("send
// <subject>") as a child of the span in ctx, or as the root of a new trace when ctx has none
// (ingest), and writes its context into each message's traceparent header.
//
// A Publisher is safe for concurrent use.
type Publisher struct {
	js         jetstream.JetStream
	tracer     trace.Tracer
	retries    int
	backoff    time.Duration
	ackTimeout time.Duration
}

// NewPublisher returns a Publisher on js that traces with the global tracer provider (a no-op
// unless the process installed one). js should be created with
// jetstream.WithPublishAsyncMaxPending to bound memory.
func NewPublisher(js jetstream.JetStream) *Publisher {
	return NewTracedPublisher(js, nil)
}

// NewTracedPublisher is NewPublisher with an explicit tracer provider; nil means the global.
func NewTracedPublisher(js jetstream.JetStream, tp trace.TracerProvider) *Publisher {
	return &Publisher{js: js, tracer: tracing.Tracer(tp), retries: 8, backoff: 100 * time.Millisecond, ackTimeout: DefaultAckTimeout}
}

// DefaultAckTimeout is how long PublishAll waits for the next acknowledgement before it
// counts the rest of an attempt as failed and retries them. A JetStream ack takes
// milliseconds; a stream leader election after a node loss takes seconds.
const DefaultAckTimeout = 10 * time.Second

// ErrNoMsgID is returned for a message without a Nats-Msg-Id.
var ErrNoMsgID = errors.New("message has no Nats-Msg-Id")

// PublishAll publishes msgs and returns once every one is stored, or the first error that
// survived the retries, or ctx's error. On error some messages may be stored; publishing
// the same messages again is harmless.
//
// When ctx carries a span context (or the process traces), every message's traceparent is
// set to the publish span; otherwise a traceparent the caller set is left as it is.
func (p *Publisher) PublishAll(ctx context.Context, msgs []*nats.Msg) error {
	for _, m := range msgs {
		if m.Header.Get(nats.MsgIdHdr) == "" {
			return fmt.Errorf("publish to %s: %w", m.Subject, ErrNoMsgID)
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	ctx, span := tracing.StartSend(ctx, p.tracer, commonSubject(msgs), len(msgs))
	defer span.End()
	for _, m := range msgs {
		tracing.Inject(ctx, m.Header)
	}
	err := p.publishAll(ctx, msgs)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "publish failed")
	}
	return err
}

// publishAll publishes with retries.
func (p *Publisher) publishAll(ctx context.Context, msgs []*nats.Msg) error {
	pending := msgs
	delay := p.backoff
	for attempt := 0; ; attempt++ {
		failed, err := p.publishOnce(ctx, pending)
		if len(failed) == 0 {
			return nil
		}
		if attempt >= p.retries || ctx.Err() != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("publish %d messages to %s: %w", len(failed), failed[0].Subject, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		if delay < 5*time.Second {
			delay *= 2
		}
		pending = failed
	}
}

// publishOnce publishes msgs asynchronously and returns those that failed, with the last error.
func (p *Publisher) publishOnce(ctx context.Context, msgs []*nats.Msg) ([]*nats.Msg, error) {
	type inflight struct {
		msg *nats.Msg
		fut jetstream.PubAckFuture
	}
	futures := make([]inflight, 0, len(msgs))
	var failed []*nats.Msg
	var lastErr error
	for _, m := range msgs {
		fut, err := p.js.PublishMsgAsync(m)
		if err != nil {
			failed = append(failed, m)
			lastErr = err
			continue
		}
		futures = append(futures, inflight{m, fut})
	}
	// An ack that never comes (the stream leader died with the publish in flight, and js has
	// no async publish timeout) must not stall the caller: after ackTimeout without progress
	// the rest count as failed and are retried with their ids.
	timer := time.NewTimer(p.ackTimeout)
	defer timer.Stop()
	for i, f := range futures {
		select {
		case <-f.fut.Ok():
		case err := <-f.fut.Err():
			failed = append(failed, f.msg)
			lastErr = err
		case <-timer.C:
			for _, rest := range futures[i:] {
				failed = append(failed, rest.msg)
			}
			return failed, fmt.Errorf("no ack within %s: %w", p.ackTimeout, jetstream.ErrAsyncPublishTimeout)
		case <-ctx.Done():
			for _, rest := range futures[i:] {
				failed = append(failed, rest.msg)
			}
			return failed, ctx.Err()
		}
		if !timer.Stop() {
			<-timer.C
		}
		timer.Reset(p.ackTimeout)
	}
	return failed, lastErr
}

// Publish publishes one message and waits for its ack, retrying like PublishAll.
func (p *Publisher) Publish(ctx context.Context, msg *nats.Msg) error {
	return p.PublishAll(ctx, []*nats.Msg{msg})
}

// commonSubject names a batch by the subject its messages share, or by their common leading
// tokens ("nhi.events.aws.*") when they differ.
func commonSubject(msgs []*nats.Msg) string {
	first := msgs[0].Subject
	prefix := first
	for _, m := range msgs[1:] {
		if m.Subject == prefix {
			continue
		}
		for !strings.HasPrefix(m.Subject, prefix+".") && prefix != "" {
			i := strings.LastIndexByte(prefix, '.')
			if i < 0 {
				prefix = ""
				break
			}
			prefix = prefix[:i]
		}
	}
	switch {
	case prefix == first:
		return first
	case prefix == "":
		return "*"
	default:
		return prefix + ".*"
	}
}
