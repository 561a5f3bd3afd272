package streams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publisher publishes groups of messages asynchronously and waits until JetStream has
// acknowledged every one. The number of unacknowledged publishes in flight is bounded by the
// JetStream context (jetstream.WithPublishAsyncMaxPending), so a slow server slows the
// caller down instead of growing memory.
//
// Every message must carry a Nats-Msg-Id: a publish that failed is retried with the same id,
// and JetStream drops the copy if the first attempt had in fact been stored.
//
// A Publisher is safe for concurrent use.
type Publisher struct {
	js      jetstream.JetStream
	retries int
	backoff time.Duration
}

// NewPublisher returns a Publisher on js. js should be created with
// jetstream.WithPublishAsyncMaxPending to bound memory.
func NewPublisher(js jetstream.JetStream) *Publisher {
	return &Publisher{js: js, retries: 8, backoff: 100 * time.Millisecond}
}

// ErrNoMsgID is returned for a message without a Nats-Msg-Id.
var ErrNoMsgID = errors.New("message has no Nats-Msg-Id")

// PublishAll publishes msgs and returns once every one is stored, or the first error that
// survived the retries, or ctx's error. On error some messages may be stored; publishing
// the same messages again is harmless.
func (p *Publisher) PublishAll(ctx context.Context, msgs []*nats.Msg) error {
	for _, m := range msgs {
		if m.Header.Get(nats.MsgIdHdr) == "" {
			return fmt.Errorf("publish to %s: %w", m.Subject, ErrNoMsgID)
		}
	}
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
	for _, f := range futures {
		select {
		case <-f.fut.Ok():
		case err := <-f.fut.Err():
			failed = append(failed, f.msg)
			lastErr = err
		case <-ctx.Done():
			return append(failed, f.msg), ctx.Err()
		}
	}
	return failed, lastErr
}

// Publish publishes one message and waits for its ack, retrying like PublishAll.
func (p *Publisher) Publish(ctx context.Context, msg *nats.Msg) error {
	return p.PublishAll(ctx, []*nats.Msg{msg})
}
