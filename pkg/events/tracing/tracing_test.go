package tracing_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/tracing"
)

func TestInjectExtractRoundTrip(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, span := tp.Tracer("test").Start(context.Background(), "root")
	defer span.End()

	h := nats.Header{}
	tracing.Inject(ctx, h)
	tp0 := h.Get(events.HeaderTraceParent)
	if len(tp0) != 55 {
		t.Fatalf("traceparent = %q, want a 55-character W3C header", tp0)
	}
	got := trace.SpanContextFromContext(tracing.Extract(context.Background(), h))
	if !got.IsRemote() || got.TraceID() != span.SpanContext().TraceID() || got.SpanID() != span.SpanContext().SpanID() {
		t.Errorf("extracted %v, want the remote copy of %v", got, span.SpanContext())
	}
}

func TestInjectWithoutSpanKeepsHeader(t *testing.T) {
	h := nats.Header{}
	h.Set(events.HeaderTraceParent, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	tracing.Inject(context.Background(), h)
	if got := h.Get(events.HeaderTraceParent); got != "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" {
		t.Errorf("traceparent = %q, want the caller's", got)
	}
	tracing.Inject(context.Background(), nil) // must not panic
}

func TestExtractIgnoresMalformed(t *testing.T) {
	for _, v := range []string{"", "garbage", "00-00000000000000000000000000000000-b7ad6b7169203331-01", "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"} {
		h := nats.Header{}
		if v != "" {
			h.Set(events.HeaderTraceParent, v)
		}
		if sc := trace.SpanContextFromContext(tracing.Extract(context.Background(), h)); sc.IsValid() {
			t.Errorf("Extract(%q) gave valid span context %v", v, sc)
		}
	}
}

func TestStartProcessIsChildOfProducer(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tracer := tracing.Tracer(tp)
	pctx, send := tracing.StartSend(context.Background(), tracer, "nhi.raw.aws.cloudtrail", 2)
	h := nats.Header{}
	h.Set(events.HeaderMsgID, "trail:f#1..trail:f#9")
	h.Set(events.HeaderRecords, "9")
	tracing.Inject(pctx, h)
	send.End()

	_, proc := tracing.StartProcess(context.Background(), tracer, "nhi.raw.aws.cloudtrail", h, "normalize", events.StageNormalize)
	proc.End()
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	s, p := spans[0], spans[1]
	if p.Parent().SpanID() != s.SpanContext().SpanID() || p.SpanContext().TraceID() != s.SpanContext().TraceID() {
		t.Errorf("process span parent %v, want the send span %v", p.Parent(), s.SpanContext())
	}
	if p.SpanKind() != trace.SpanKindConsumer || s.SpanKind() != trace.SpanKindProducer {
		t.Errorf("kinds %v, %v; want producer, consumer", s.SpanKind(), p.SpanKind())
	}
	want := map[string]string{
		"messaging.system":              "nats",
		"messaging.destination.name":    "nhi.raw.aws.cloudtrail",
		"messaging.consumer.group.name": "normalize",
		"messaging.message.id":          "trail:f#1..trail:f#9",
		"nhiwatch.stage":                events.StageNormalize,
		"nhiwatch.records":              "9",
	}
	for _, kv := range p.Attributes() {
		if w, ok := want[string(kv.Key)]; ok {
			if kv.Value.Emit() != w {
				t.Errorf("%s = %q, want %q", kv.Key, kv.Value.Emit(), w)
			}
			delete(want, string(kv.Key))
		}
	}
	if len(want) > 0 {
		t.Errorf("process span lacks attributes %v", want)
	}
}

func TestReceivedAt(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 890123456, time.UTC)
	h := nats.Header{}
	if _, ok := tracing.ReceivedAt(h); ok {
		t.Error("ReceivedAt of an empty header is ok")
	}
	tracing.SetReceivedAt(h, at.In(time.FixedZone("x", 3600)))
	got, ok := tracing.ReceivedAt(h)
	if !ok || !got.Equal(at) {
		t.Errorf("ReceivedAt = %v, %v; want %v", got, ok, at)
	}
	h.Set(events.HeaderReceivedAt, "yesterday")
	if _, ok := tracing.ReceivedAt(h); ok {
		t.Error("ReceivedAt of a malformed header is ok")
	}
}
