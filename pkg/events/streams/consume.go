package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// permanentError marks a failure that no retry can fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent wraps err so that Consume dead-letters the message at once instead of retrying.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was wrapped by Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// Handler processes one message. It must not ack the message: Consume acks it when the
// handler returns nil, dead-letters it when the error is Permanent or the delivery was the
// last one, and otherwise asks JetStream to redeliver it after a delay.
type Handler func(ctx context.Context, msg jetstream.Msg) error

// ConsumeOptions configure Consume.
type ConsumeOptions struct {
	// Workers fetch and handle messages concurrently; 1 keeps the stream's order.
	Workers int
	// Fetch is how many messages one worker pulls at a time.
	Fetch int
	// Stage names the service in dead-letter headers.
	Stage string
	// Publisher publishes dead letters.
	Publisher *Publisher
	// MaxDeliver must match the consumer's MaxDeliver.
	MaxDeliver int
	// RetryDelay is how long a failed message waits before redelivery.
	RetryDelay time.Duration
	Logger     *slog.Logger
	// OnDeadLetter is called after a message was dead-lettered (for metrics); may be nil.
	OnDeadLetter func(reason error)
}

// Consume pulls messages from cons with opts.Workers workers until ctx ends. On shutdown each
// worker finishes the messages it holds, so nothing it pulled waits for a redelivery.
func Consume(ctx context.Context, cons jetstream.Consumer, opts ConsumeOptions, h Handler) error {
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	if opts.Fetch <= 0 {
		opts.Fetch = 32
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = 2 * time.Second
	}
	if opts.Publisher == nil || opts.Logger == nil || opts.Stage == "" {
		return errors.New("streams.Consume: publisher, logger and stage are required")
	}
	var wg sync.WaitGroup
	errs := make(chan error, opts.Workers)
	for i := 0; i < opts.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := consumeLoop(ctx, cons, opts, h); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func consumeLoop(ctx context.Context, cons jetstream.Consumer, opts ConsumeOptions, h Handler) error {
	for ctx.Err() == nil {
		batch, err := cons.Fetch(opts.Fetch, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			opts.Logger.Warn("fetch failed", "stage", opts.Stage, "error", err)
			sleep(ctx, time.Second)
			continue
		}
		for msg := range batch.Messages() {
			// Messages already pulled are handled even when ctx has ended, with their own
			// deadline, so a shutdown does not leave them to a redelivery.
			hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 25*time.Second)
			settle(hctx, msg, opts, h(hctx, msg))
			cancel()
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			opts.Logger.Debug("fetch ended with error", "stage", opts.Stage, "error", err)
		}
	}
	return nil
}

// settle acks, retries or dead-letters msg after its handler returned err.
func settle(ctx context.Context, msg jetstream.Msg, opts ConsumeOptions, err error) {
	if err == nil {
		if aerr := msg.Ack(); aerr != nil {
			opts.Logger.Warn("ack failed; the message will be redelivered", "stage", opts.Stage, "error", aerr)
		}
		return
	}
	if !IsPermanent(err) && !LastDelivery(msg, opts.MaxDeliver) {
		opts.Logger.Warn("message failed; will retry", "stage", opts.Stage, "subject", msg.Subject(), "error", err)
		_ = msg.NakWithDelay(opts.RetryDelay)
		return
	}
	if derr := DeadLetterMsg(ctx, opts.Publisher, opts.Stage, msg, err); derr != nil {
		// Not acked: JetStream redelivers it (or, past MaxDeliver, keeps it for an operator).
		opts.Logger.Error("dead-letter failed", "stage", opts.Stage, "error", derr)
		_ = msg.NakWithDelay(opts.RetryDelay)
		return
	}
	opts.Logger.Warn("message dead-lettered", "stage", opts.Stage, "subject", msg.Subject(), "reason", Reason(err))
	if opts.OnDeadLetter != nil {
		opts.OnDeadLetter(err)
	}
	_ = msg.Term()
}

// DeadLetterMsg dead-letters a JetStream message with its headers and payload.
func DeadLetterMsg(ctx context.Context, p *Publisher, stage string, msg jetstream.Msg, reason error) error {
	id := msg.Headers().Get(nats.MsgIdHdr)
	if id == "" {
		md, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("dead-letter: message has neither id nor metadata: %w", err)
		}
		id = fmt.Sprintf("%s:%d", md.Stream, md.Sequence.Stream)
	}
	return DeadLetter(ctx, p, stage, id, msg.Subject(), msg.Headers(), msg.Data(), reason)
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
