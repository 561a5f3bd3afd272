// Package tracing carries the W3C trace context of an event across NATS JetStream, so one
// trace follows it from ingest to the alert: a publisher injects the context of its ctx into
// the message headers (traceparent, tracestate), and a consumer extracts it to start its own
// span as a child of the producer's.
//
// The propagation format is fixed to W3C Trace Context by the contract (the traceparent
// header on every message), whatever global propagator a process installs. The tracer
// provider is the caller's choice: nil means the OpenTelemetry global, which is a no-op until
// a process installs one (pkg/platform/telemetry does when an OTLP endpoint is configured),
// so tracing costs nothing when it is not configured.
package tracing

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

// InstrumentationName names the tracer and meter of the JetStream helpers.
const InstrumentationName = "github.com/nhiwatch/nhiwatch/pkg/events"

// Attribute keys of the spans the JetStream helpers start, after the OpenTelemetry messaging
// semantic conventions where one exists.
const (
	AttrMessagingSystem    = attribute.Key("messaging.system")
	AttrOperationType      = attribute.Key("messaging.operation.type")
	AttrDestination        = attribute.Key("messaging.destination.name")
	AttrConsumerGroup      = attribute.Key("messaging.consumer.group.name")
	AttrMessageID          = attribute.Key("messaging.message.id")
	AttrBatchMessageCount  = attribute.Key("messaging.batch.message_count")
	AttrStage              = attribute.Key("nhiwatch.stage")
	AttrDelivery           = attribute.Key("nhiwatch.delivery")
	AttrOutcome            = attribute.Key("nhiwatch.outcome")
	AttrRecords            = attribute.Key("nhiwatch.records")
	AttrStreamSequence     = attribute.Key("nhiwatch.stream_sequence")
	messagingSystemNATS    = "nats"
	operationTypeSend      = "send"
	operationTypeProcess   = "process"
	propagationTraceParent = events.HeaderTraceParent
)

// HeaderCarrier adapts nats.Header to propagation.TextMapCarrier. NATS headers are case
// sensitive; the W3C propagator uses the lower-case names traceparent and tracestate.
type HeaderCarrier nats.Header

var _ propagation.TextMapCarrier = HeaderCarrier(nil)

// Get returns the first value of key.
func (c HeaderCarrier) Get(key string) string { return nats.Header(c).Get(key) }

// Set replaces the values of key.
func (c HeaderCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }

// Keys lists the header names.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// propagator is W3C Trace Context: traceparent and tracestate.
var propagator = propagation.TraceContext{}

// Inject writes the span context of ctx into h (traceparent, tracestate). It writes nothing
// when ctx carries no valid span context, so a header set earlier is kept.
func Inject(ctx context.Context, h nats.Header) {
	if h == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	propagator.Inject(ctx, HeaderCarrier(h))
}

// Extract returns ctx with the remote span context found in h, if any.
func Extract(ctx context.Context, h nats.Header) context.Context {
	if h == nil || h.Get(propagationTraceParent) == "" {
		return ctx
	}
	return propagator.Extract(ctx, HeaderCarrier(h))
}

// Tracer returns the helpers' tracer from tp, or from the global provider when tp is nil.
func Tracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return tp.Tracer(InstrumentationName)
}

// StartProcess starts the consumer span of one message: a child of the context its producer
// injected (or a new trace when the message carries none), named "process <subject>".
// durable is the consumer's name and stage the nhiwatch stage handling it.
func StartProcess(ctx context.Context, tracer trace.Tracer, subject string, h nats.Header, durable, stage string) (context.Context, trace.Span) {
	ctx = Extract(ctx, h)
	attrs := []attribute.KeyValue{
		AttrMessagingSystem.String(messagingSystemNATS),
		AttrOperationType.String(operationTypeProcess),
		AttrDestination.String(subject),
		AttrStage.String(stage),
	}
	if durable != "" {
		attrs = append(attrs, AttrConsumerGroup.String(durable))
	}
	if id := h.Get(events.HeaderMsgID); id != "" {
		attrs = append(attrs, AttrMessageID.String(id))
	}
	if n := h.Get(events.HeaderRecords); n != "" {
		attrs = append(attrs, AttrRecords.String(n))
	}
	return tracer.Start(ctx, operationTypeProcess+" "+subject,
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
}

// StartSend starts the producer span of a publish of n messages to subject (or the common
// prefix of the subjects of a batch). It is a child of the span in ctx, or the root of a new
// trace when ctx has none — the case of ingest, where an event's trace begins.
func StartSend(ctx context.Context, tracer trace.Tracer, subject string, n int) (context.Context, trace.Span) {
	return tracer.Start(ctx, operationTypeSend+" "+subject,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			AttrMessagingSystem.String(messagingSystemNATS),
			AttrOperationType.String(operationTypeSend),
			AttrDestination.String(subject),
			AttrBatchMessageCount.Int(n),
		))
}

// ReceivedAt returns when ingest received the records of a message (the Nhi-Received-At
// header), for the pipeline latency histograms. ok is false when the header is missing or
// malformed.
func ReceivedAt(h nats.Header) (t time.Time, ok bool) {
	v := h.Get(events.HeaderReceivedAt)
	if v == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	return t, err == nil
}

// SetReceivedAt sets the Nhi-Received-At header to t; services downstream of ingest copy the
// earliest receipt time of what they publish, so the last stage can measure the whole path.
func SetReceivedAt(h nats.Header, t time.Time) {
	h.Set(events.HeaderReceivedAt, t.UTC().Format(time.RFC3339Nano))
}
