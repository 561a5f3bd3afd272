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
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/nhiwatch/nhiwatch/pkg/events/tracing"
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
//
// ctx carries the message's consumer span (a child of the trace context its producer put in
// the traceparent header): publishing with ctx continues the trace, and logging with
// slog's *Context methods stamps the trace id on the line.
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
	// TracerProvider starts a consumer span per message; nil uses the OpenTelemetry global
	// (a no-op unless the process installed one).
	TracerProvider trace.TracerProvider
	// Meter records nhiwatch_consume_messages and nhiwatch_consume_handle_seconds; nil uses
	// the OpenTelemetry global meter provider.
	Meter metric.Meter
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
	inst, err := newInstruments(cons, opts)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, opts.Workers)
	for i := 0; i < opts.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := consumeLoop(ctx, cons, opts, inst, h); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// Outcomes of a consumed message, the outcome attribute of nhiwatch_consume_messages.
const (
	OutcomeAck        = "ack"
	OutcomeRetry      = "retry"
	OutcomeDeadLetter = "dead_letter"
)

// instruments are the tracer and metrics of one Consume call.
type instruments struct {
	tracer   trace.Tracer
	durable  string
	messages metric.Int64Counter
	handle   metric.Float64Histogram
	stage    attribute.KeyValue
}

func newInstruments(cons jetstream.Consumer, opts ConsumeOptions) (*instruments, error) {
	meter := opts.Meter
	if meter == nil {
		meter = otel.GetMeterProvider().Meter(tracing.InstrumentationName)
	}
	in := &instruments{tracer: tracing.Tracer(opts.TracerProvider), stage: attribute.String("stage", opts.Stage)}
	if info := cons.CachedInfo(); info != nil {
		in.durable = info.Name
	}
	var err error
	if in.messages, err = meter.Int64Counter("nhiwatch_consume_messages",
		metric.WithDescription("JetStream messages handled, by stage and outcome (ack, retry, dead_letter)")); err != nil {
		return nil, fmt.Errorf("streams.Consume metrics: %w", err)
	}
	if in.handle, err = meter.Float64Histogram("nhiwatch_consume_handle_seconds",
		metric.WithDescription("time a handler spent on one JetStream message, by stage"), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25)); err != nil {
		return nil, fmt.Errorf("streams.Consume metrics: %w", err)
	}
	return in, nil
}

// handleMsg runs the handler on one message inside its consumer span and settles it.
func (in *instruments) handleMsg(ctx context.Context, msg jetstream.Msg, opts ConsumeOptions, h Handler) {
	ctx, span := tracing.StartProcess(ctx, in.tracer, msg.Subject(), msg.Headers(), in.durable, opts.Stage)
	defer span.End()
	if span.IsRecording() {
		if md, err := msg.Metadata(); err == nil {
			span.SetAttributes(tracing.AttrDelivery.Int64(int64(md.NumDelivered)), tracing.AttrStreamSequence.Int64(int64(md.Sequence.Stream)))
		}
	}
	start := time.Now()
	err := h(ctx, msg)
	in.handle.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(in.stage))
	outcome := settle(ctx, msg, opts, err)
	in.messages.Add(ctx, 1, metric.WithAttributes(in.stage, attribute.String("outcome", outcome)))
	span.SetAttributes(tracing.AttrOutcome.String(outcome))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, Reason(err))
	}
}

func consumeLoop(ctx context.Context, cons jetstream.Consumer, opts ConsumeOptions, in *instruments, h Handler) error {
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
			in.handleMsg(hctx, msg, opts, h)
			cancel()
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			opts.Logger.Debug("fetch ended with error", "stage", opts.Stage, "error", err)
		}
	}
	return nil
}

// settle acks, retries or dead-letters msg after its handler returned err, and returns which.
func settle(ctx context.Context, msg jetstream.Msg, opts ConsumeOptions, err error) string {
	if err == nil {
		if aerr := msg.Ack(); aerr != nil {
			opts.Logger.WarnContext(ctx, "ack failed; the message will be redelivered", "stage", opts.Stage, "error", aerr)
		}
		return OutcomeAck
	}
	if !IsPermanent(err) && !LastDelivery(msg, opts.MaxDeliver) {
		opts.Logger.WarnContext(ctx, "message failed; will retry", "stage", opts.Stage, "subject", msg.Subject(), "error", err)
		_ = msg.NakWithDelay(opts.RetryDelay)
		return OutcomeRetry
	}
	if derr := DeadLetterMsg(ctx, opts.Publisher, opts.Stage, msg, err); derr != nil {
		// Not acked: JetStream redelivers it (or, past MaxDeliver, keeps it for an operator).
		opts.Logger.ErrorContext(ctx, "dead-letter failed", "stage", opts.Stage, "error", derr)
		_ = msg.NakWithDelay(opts.RetryDelay)
		return OutcomeRetry
	}
	opts.Logger.WarnContext(ctx, "message dead-lettered", "stage", opts.Stage, "subject", msg.Subject(), "reason", Reason(err))
	if opts.OnDeadLetter != nil {
		opts.OnDeadLetter(err)
	}
	_ = msg.Term()
	return OutcomeDeadLetter
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
