// Package ingesttest wires a source to a real in-process JetStream server for tests and reads
// back what reached NHI_RAW and NHI_DLQ, so every source is checked the same way: each
// record id exactly once, nothing dropped, broken containers dead-lettered with a reason.
package ingesttest

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/eventstest"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/cursor"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/sink"
)

// Harness is a JetStream server with the ingest streams, the cursor bucket and metrics.
type Harness struct {
	Server   *eventstest.Server
	KV       jetstream.KeyValue
	Provider *sdkmetric.MeterProvider
	Reader   *sdkmetric.ManualReader
	Metrics  *sink.Metrics
	Pub      *streams.Publisher
	Log      *slog.Logger
}

// New starts a harness that is shut down when the test ends.
func New(t testing.TB) *Harness {
	t.Helper()
	srv := eventstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := streams.EnsureBucket(ctx, srv.JS, srv.Streams, events.BucketCursors, "test cursors", 1)
	if err != nil {
		t.Fatal(err)
	}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	m, err := sink.NewMetrics(mp.Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	level := slog.LevelWarn
	if os.Getenv("INGEST_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	return &Harness{Server: srv, KV: kv, Provider: mp, Reader: reader, Metrics: m, Pub: streams.NewPublisher(srv.JS), Log: log}
}

// Sink returns a sink for a source with small retry back-offs.
func (h *Harness) Sink(source string, p events.Provider, format, cluster string) *sink.Sink {
	return sink.New(sink.Options{
		Source: source, Provider: p, Format: format, Cluster: cluster, MaxBatchRecords: 50,
		Logger: h.Log, RetryBackoff: 20 * time.Millisecond, MaxRetryBackoff: 200 * time.Millisecond,
	}, h.Pub, h.Metrics)
}

// Cursors returns the cursor store of a source.
func (h *Harness) Cursors(source string) *cursor.Store { return cursor.New(h.KV, source) }

// Batch is one NHI_RAW message as stored.
type Batch struct {
	MsgID string
	Batch *events.RawBatch
}

// Raw returns every message in NHI_RAW, in stream order.
func (h *Harness) Raw(t testing.TB) []Batch {
	t.Helper()
	var out []Batch
	for _, m := range h.messages(t, events.StreamRaw) {
		b, err := events.UnmarshalRawBatch(m.Data)
		if err != nil {
			t.Fatalf("NHI_RAW message %d: %v", m.Sequence, err)
		}
		out = append(out, Batch{MsgID: m.Header.Get(events.HeaderMsgID), Batch: b})
	}
	return out
}

// Records counts the records in NHI_RAW by record id.
func (h *Harness) Records(t testing.TB) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, b := range h.Raw(t) {
		for _, r := range b.Batch.Records {
			n[r.Id]++
		}
	}
	return n
}

// DeadLetter is one NHI_DLQ message.
type DeadLetter struct {
	ID, Error, Stage string
	Data             []byte
}

// DLQ returns every dead-lettered message.
func (h *Harness) DLQ(t testing.TB) []DeadLetter {
	t.Helper()
	var out []DeadLetter
	for _, m := range h.messages(t, events.StreamDLQ) {
		out = append(out, DeadLetter{
			ID: m.Header.Get(events.HeaderMsgID), Error: m.Header.Get(events.HeaderError),
			Stage: m.Header.Get(events.HeaderStage), Data: m.Data,
		})
	}
	return out
}

func (h *Harness) messages(t testing.TB, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	st, err := h.Server.JS.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// WaitRecords polls NHI_RAW until it holds at least n distinct record ids or the timeout
// passes, and returns the counts.
func (h *Harness) WaitRecords(t testing.TB, n int, timeout time.Duration) map[string]int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := h.Records(t)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("NHI_RAW holds %d distinct records after %s, want %d", len(got), timeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Eventually polls cond until it holds or the timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// CheckOnce fails the test unless every id in want appears exactly once in got and got
// holds nothing else.
func CheckOnce(t testing.TB, got map[string]int, want []string) {
	t.Helper()
	wantSet := map[string]bool{}
	for _, id := range want {
		wantSet[id] = true
		switch got[id] {
		case 1:
		case 0:
			t.Errorf("record %s is missing", id)
		default:
			t.Errorf("record %s is stored %d times", id, got[id])
		}
	}
	for id := range got {
		if !wantSet[id] {
			t.Errorf("unexpected record %s", id)
		}
	}
}

// Sum returns the value of an Int64 counter or gauge summed over data points whose
// attributes include every given key=value pair.
func (h *Harness) Sum(t testing.TB, name string, attrs ...attribute.KeyValue) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.Reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					if hasAll(p.Attributes, attrs) {
						total += p.Value
					}
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					if hasAll(p.Attributes, attrs) {
						total += p.Value
					}
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					if hasAll(p.Attributes, attrs) {
						total += int64(p.Value)
					}
				}
			}
		}
	}
	return total
}

// Has reports whether a metric with that name has been recorded.
func (h *Harness) Has(t testing.TB, name string) bool {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.Reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return true
			}
		}
	}
	return false
}

func hasAll(set attribute.Set, want []attribute.KeyValue) bool {
	for _, kv := range want {
		v, ok := set.Value(kv.Key)
		if !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// Running is a source started by Start.
type Running struct {
	t      testing.TB
	cancel context.CancelFunc
	done   chan struct{}
	err    error
	once   sync.Once
}

// Start runs run (a source's Run) until Stop is called or the test ends.
func Start(t testing.TB, run func(context.Context) error) *Running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{t: t, cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = run(ctx)
		close(r.done)
	}()
	t.Cleanup(r.Stop)
	return r
}

// Stop cancels the source and waits for it to return; an error or a source that does not
// stop fails the test.
func (r *Running) Stop() {
	r.once.Do(func() {
		r.cancel()
		if err := r.Wait(); err != nil {
			r.t.Errorf("Run: %v", err)
		}
	})
}

// Wait waits (at most 30s) for the source to return by itself and returns its error.
func (r *Running) Wait() error {
	select {
	case <-r.done:
		return r.err
	case <-time.After(30 * time.Second):
		r.t.Fatal("source did not stop")
		return nil
	}
}

// Done is closed when the source returned.
func (r *Running) Done() <-chan struct{} { return r.done }

// LimitRaw makes NHI_RAW refuse new messages past n (as a full stream with DiscardNew does);
// the returned function lifts the limit.
func (h *Harness) LimitRaw(t testing.TB, n int64) (lift func()) {
	t.Helper()
	ctx := context.Background()
	st, err := h.Server.JS.Stream(ctx, events.StreamRaw)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.Config
	cfg.MaxMsgs = n
	cfg.Discard = jetstream.DiscardNew
	if _, err := h.Server.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	return func() {
		cfg.MaxMsgs = -1
		if _, err := h.Server.JS.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
}

// Lines returns the non-empty lines of a file.
func Lines(t testing.TB, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for l := range strings.Lines(string(data)) {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}
