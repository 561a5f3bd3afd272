package sink_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/ingesttest"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/sink"
)

func TestBatchCutsMessagesWithStableIDs(t *testing.T) {
	h := ingesttest.New(t)
	sk := h.Sink("src", events.Provider_PROVIDER_AWS, "cloudtrail", "") // 50 records a message
	publish := func() {
		b := sk.NewBatch("file:/x")
		for i := range 120 {
			if err := b.Add(sink.Record{Position: "file:/x#" + strconv.Itoa(i), Data: []byte(`{"i":1}`), Time: time.Unix(1700000000, 0)}); err != nil {
				t.Fatal(err)
			}
		}
		if b.Len() != 120 {
			t.Fatalf("Len = %d", b.Len())
		}
		if err := b.Publish(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	publish()
	publish() // the same position again: JetStream drops every copy
	var ids []string
	for _, m := range h.Raw(t) {
		ids = append(ids, m.MsgID)
		if m.Batch.Source != "src" || m.Batch.Position != "file:/x" || m.Batch.Format != "cloudtrail" {
			t.Errorf("batch header %+v", m.Batch)
		}
	}
	want := []string{"src:file:/x#0..src:file:/x#49", "src:file:/x#50..src:file:/x#99", "src:file:/x#100..src:file:/x#119"}
	if diff := cmp.Diff(want, ids); diff != "" {
		t.Errorf("message ids (-want +got)\n%s", diff)
	}
	if n := h.Sum(t, "nhiwatch_ingest_records", attribute.String("source", "src")); n != 240 {
		t.Errorf("records counted %d, want 240 (two publishes)", n)
	}
	if !h.Has(t, "nhiwatch_ingest_lag_seconds") {
		t.Error("no lag recorded")
	}
}

func TestRejectDeadLettersWithReason(t *testing.T) {
	h := ingesttest.New(t)
	sk := h.Sink("src", events.Provider_PROVIDER_GCP, "gcp", "")
	if err := sk.Reject(context.Background(), "pubsub:s/1", []byte("kept"), errors.New("not JSON")); err != nil {
		t.Fatal(err)
	}
	dlq := h.DLQ(t)
	if len(dlq) != 1 || dlq[0].ID != "ingest:src:pubsub:s/1" || !strings.Contains(dlq[0].Error, "pubsub:s/1: not JSON") || dlq[0].Stage != "ingest" {
		t.Errorf("dead letters %+v", dlq)
	}
}

func TestPublishWaitWaitsForRoom(t *testing.T) {
	h := ingesttest.New(t)
	sk := h.Sink("src", events.Provider_PROVIDER_K8S, "k8s", "c")
	first := sk.NewBatch("p")
	first.Add(sink.Record{Position: "p#0", Data: []byte(`{}`)})
	if err := first.Publish(context.Background()); err != nil {
		t.Fatal(err)
	}
	lift := h.LimitRaw(t, 1)
	b := sk.NewBatch("p")
	b.Add(sink.Record{Position: "p#1", Data: []byte(`{}`)})
	done := make(chan error, 1)
	go func() { done <- sk.PublishWait(context.Background(), b) }()
	select {
	case err := <-done:
		t.Fatalf("PublishWait returned %v into a full stream", err)
	case <-time.After(300 * time.Millisecond):
	}
	lift()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := len(h.Records(t)); n != 2 {
		t.Errorf("%d records stored", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := sk.Retry(ctx, "x", func() error { return errors.New("down") }); !errors.Is(err, context.Canceled) {
		t.Errorf("Retry on a cancelled context: %v", err)
	}
}
