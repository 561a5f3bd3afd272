package streams_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/eventstest"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
)

// TestTraceFollowsMessageAcrossTwoHops publishes a raw message from a root span (as ingest
// does), consumes it into an events message (as normalize does) and consumes that (as detect
// does), and checks that every span of both hops belongs to one trace with the right parents.
func TestTraceFollowsMessageAcrossTwoHops(t *testing.T) {
	srv := eventstest.Start(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	pub := streams.NewTracedPublisher(srv.JS, tp)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	raw := nats.NewMsg(events.RawSubject(events.Provider_PROVIDER_AWS))
	raw.Header.Set(events.HeaderMsgID, "trail:f#1")
	raw.Data = []byte("raw")
	if err := pub.PublishAll(ctx, []*nats.Msg{raw}); err != nil {
		t.Fatal(err)
	}

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := func(stage string) streams.ConsumeOptions {
		return streams.ConsumeOptions{Stage: stage, Publisher: pub, Logger: log, MaxDeliver: 3, TracerProvider: tp}
	}
	normalize, err := streams.EnsureConsumer(ctx, srv.JS, events.StreamRaw, streams.ConsumerConfig("normalize", "test"))
	if err != nil {
		t.Fatal(err)
	}
	detect, err := streams.EnsureConsumer(ctx, srv.JS, events.StreamEvents, streams.ConsumerConfig("detect", "test"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = streams.Consume(ctx, normalize, opts(events.StageNormalize), func(ctx context.Context, msg jetstream.Msg) error {
			out := nats.NewMsg(events.EventSubject(events.Provider_PROVIDER_AWS, 1))
			out.Header.Set(events.HeaderMsgID, "p1:x")
			out.Data = msg.Data()
			return pub.PublishAll(ctx, []*nats.Msg{out})
		})
	}()
	got := make(chan trace.SpanContext, 1)
	go func() {
		defer wg.Done()
		_ = streams.Consume(ctx, detect, opts(events.StageDetect), func(ctx context.Context, msg jetstream.Msg) error {
			got <- trace.SpanContextFromContext(ctx)
			return nil
		})
	}()
	var detectSC trace.SpanContext
	select {
	case detectSC = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the events message did not reach detect")
	}
	cancel()
	wg.Wait()

	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		byName[s.Name()] = s
	}
	send1 := byName["send nhi.raw.aws.cloudtrail"]
	proc1 := byName["process nhi.raw.aws.cloudtrail"]
	send2 := byName["send nhi.events.aws.1"]
	proc2 := byName["process nhi.events.aws.1"]
	for name, s := range map[string]sdktrace.ReadOnlySpan{"send raw": send1, "process raw": proc1, "send events": send2, "process events": proc2} {
		if s == nil {
			t.Fatalf("no %s span among %v", name, names(rec.Ended()))
		}
	}
	traceID := send1.SpanContext().TraceID()
	if send1.Parent().IsValid() {
		t.Errorf("ingest's send span has parent %v, want a root", send1.Parent())
	}
	chain := []struct {
		child, parent sdktrace.ReadOnlySpan
	}{{proc1, send1}, {send2, proc1}, {proc2, send2}}
	for _, c := range chain {
		if c.child.SpanContext().TraceID() != traceID {
			t.Errorf("%s is in trace %s, want %s", c.child.Name(), c.child.SpanContext().TraceID(), traceID)
		}
		if c.child.Parent().SpanID() != c.parent.SpanContext().SpanID() {
			t.Errorf("%s has parent %s, want %s", c.child.Name(), c.child.Parent().SpanID(), c.parent.Name())
		}
	}
	if detectSC.SpanID() != proc2.SpanContext().SpanID() {
		t.Errorf("detect's handler ctx holds span %s, want its process span %s", detectSC.SpanID(), proc2.SpanContext().SpanID())
	}
	if st := srv.StreamMsgs(t, events.StreamEvents); st != 1 {
		t.Errorf("NHI_EVENTS holds %d messages, want 1", st)
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

// TestPublishWithoutTracingKeepsCallerTraceparent checks that a process without a tracer
// provider still forwards the trace context it received.
func TestPublishWithoutTracingKeepsCallerTraceparent(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	m := nats.NewMsg(events.RawSubject(events.Provider_PROVIDER_AWS))
	m.Header.Set(events.HeaderMsgID, "x")
	m.Header.Set(events.HeaderTraceParent, tp)
	if err := streams.NewPublisher(srv.JS).PublishAll(ctx, []*nats.Msg{m}); err != nil {
		t.Fatal(err)
	}
	st, _ := srv.JS.Stream(ctx, events.StreamRaw)
	stored, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := stored.Header.Get(events.HeaderTraceParent); got != tp {
		t.Errorf("stored traceparent %q, want %q", got, tp)
	}
}

// TestConsumeCountsOutcomes checks nhiwatch_consume_messages and the handler histogram.
func TestConsumeCountsOutcomes(t *testing.T) {
	srv := eventstest.Start(t)
	reader := sdkmetric.NewManualReader()
	meter := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub := streams.NewPublisher(srv.JS)
	var msgs []*nats.Msg
	for _, id := range []string{"good-1", "good-2", "bad-1"} {
		m := nats.NewMsg(events.RawSubject(events.Provider_PROVIDER_AWS))
		m.Header.Set(events.HeaderMsgID, id)
		m.Data = []byte(id)
		msgs = append(msgs, m)
	}
	if err := pub.PublishAll(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	cons, err := streams.EnsureConsumer(ctx, srv.JS, events.StreamRaw, streams.ConsumerConfig("normalize", "test"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 3)
	go func() {
		_ = streams.Consume(ctx, cons, streams.ConsumeOptions{
			Stage: events.StageNormalize, Publisher: pub, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			MaxDeliver: 3, Meter: meter,
		}, func(ctx context.Context, msg jetstream.Msg) error {
			defer func() { done <- struct{}{} }()
			if string(msg.Data()) == "bad-1" {
				return streams.Permanent(errors.New("cannot parse"))
			}
			return nil
		})
	}()
	for i := 0; i < 3; i++ {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("messages not handled")
		}
	}
	// The counter is added after the message is settled: poll until all three are counted.
	var got map[string]int64
	var handled uint64
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		got, handled = collect(t, reader)
		if got[streams.OutcomeAck]+got[streams.OutcomeDeadLetter] == 3 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	want := map[string]int64{streams.OutcomeAck: 2, streams.OutcomeDeadLetter: 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("nhiwatch_consume_messages by outcome (-want +got):\n%s", diff)
	}
	if handled != 3 {
		t.Errorf("nhiwatch_consume_handle_seconds count = %d, want 3", handled)
	}
	if n := srv.StreamMsgs(t, events.StreamDLQ); n != 1 {
		t.Errorf("NHI_DLQ holds %d messages, want 1", n)
	}
}

func collect(t *testing.T, reader *sdkmetric.ManualReader) (map[string]int64, uint64) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	var handled uint64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch data := m.Data.(type) {
			case metricdata.Sum[int64]:
				if m.Name != "nhiwatch_consume_messages" {
					continue
				}
				for _, dp := range data.DataPoints {
					if st, _ := dp.Attributes.Value(attribute.Key("stage")); st.AsString() != events.StageNormalize {
						t.Errorf("stage attribute %q", st.AsString())
					}
					o, _ := dp.Attributes.Value(attribute.Key("outcome"))
					out[o.AsString()] += dp.Value
				}
			case metricdata.Histogram[float64]:
				if m.Name == "nhiwatch_consume_handle_seconds" {
					for _, dp := range data.DataPoints {
						handled += dp.Count
					}
				}
			}
		}
	}
	return out, handled
}
