package normalize

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/eventstest"
)

// TestServiceDeadLettersBadRecords runs the service over a real JetStream server: good records
// become events on NHI_EVENTS (grant changes also on the grantee's partition), bad ones land in
// NHI_DLQ with their reason in Nhi-Error, redacted, and are counted by reason; non-final
// Kubernetes stages are counted as skipped.
func TestServiceDeadLettersBadRecords(t *testing.T) {
	srv := eventstest.Start(t)
	reader := sdkmetric.NewManualReader()
	svc, err := New(DefaultConfig(), Deps{
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Meter:   sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test"),
		JS:      srv.JS,
		Streams: srv.Streams,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})

	admin, err := os.ReadFile("../../testdata/cloudtrail/stratus-red-team/aws.persistence.iam-create-admin-user.json")
	if err != nil {
		t.Fatal(err)
	}
	good := readRecords(t, admin) // AttachUserPolicy, CreateAccessKey, CreateUser
	const secret = "Planted-Password-Value-42"
	bad := [][]byte{
		[]byte(`{"eventVersion":"1.08","password":"` + secret + `",`),                                                                              // not JSON
		[]byte(`{"eventVersion":"9.0","eventID":"x","eventTime":"2024-01-01T00:00:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject"}`), // unknown version
		[]byte(`{"eventVersion":"1.08","eventSource":"s3.amazonaws.com","eventName":"GetObject"}`),                                                 // no time
		[]byte("{\"eventName\":\"\xff\"}"), // not UTF-8
	}
	skipped := []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","stage":"RequestReceived","verb":"get","user":{"username":"u"},"requestReceivedTimestamp":"2024-01-01T00:00:00Z"}`)
	var recs []*events.RawRecord
	for i, r := range append(append(append([][]byte{}, good...), bad...), skipped) {
		recs = append(recs, &events.RawRecord{Id: "trail:file:x#" + string(rune('a'+i)), Data: r})
	}
	batch := &events.RawBatch{Source: "trail", Provider: events.Provider_PROVIDER_AWS, Format: "auto", Position: "file:x", Records: recs, ReceivedUnixNano: time.Now().UnixNano()}
	data, err := events.Marshal(batch)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(events.RawSubject(events.Provider_PROVIDER_AWS))
	msg.Header.Set(events.HeaderMsgID, "trail:file:x#a..h")
	msg.Header.Set(events.HeaderSource, "trail")
	msg.Data = data
	if _, err := srv.JS.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}

	// Good records flow: 3 events, plus copies of the two grant changes to the grantee's
	// partition when it differs from the actor's.
	evs := map[string]*events.Event{}
	dlq := map[string]jetstream.Msg{}
	deadline := time.Now().Add(20 * time.Second)
	for (len(evs) < len(good) || len(dlq) < len(bad)) && time.Now().Before(deadline) {
		for _, m := range fetchAll(t, srv.JS, events.StreamEvents) {
			b, err := events.UnmarshalEventBatch(m.Data())
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range b.Events {
				evs[ev.Action.Name] = ev
			}
		}
		for _, m := range fetchAll(t, srv.JS, events.StreamDLQ) {
			dlq[m.Headers().Get(events.HeaderError)] = m
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, name := range []string{"AttachUserPolicy", "CreateAccessKey", "CreateUser"} {
		if evs[name] == nil {
			t.Errorf("no %s event on NHI_EVENTS (got %d events)", name, len(evs))
		}
	}
	if ev := evs["AttachUserPolicy"]; ev != nil && (len(ev.GrantChanges) != 1 || ev.GrantChanges[0].Grantee != "aws:arn:aws:iam::229654561268:user/malicious-iam-user") {
		t.Errorf("AttachUserPolicy grant changes = %v", ev.GrantChanges)
	}
	wantReasons := []string{
		"malformed record: not valid JSON",
		"unsupported record: cloudtrail eventVersion \"9.0\" (nhiwatch reads 1.x)",
		"missing field: cloudtrail eventTime",
		"malformed record: not valid UTF-8",
	}
	for _, reason := range wantReasons {
		m, ok := dlq[reason]
		if !ok {
			t.Errorf("NHI_DLQ has no record with Nhi-Error %q; has %v", reason, keys(dlq))
			continue
		}
		if got := m.Headers().Get(events.HeaderStage); got != events.StageNormalize {
			t.Errorf("Nhi-Stage = %q", got)
		}
		if got := m.Headers().Get(events.HeaderSource); got != "trail" {
			t.Errorf("Nhi-Source = %q", got)
		}
		if strings.Contains(string(m.Data()), secret) {
			t.Errorf("dead-lettered record keeps a secret: %s", m.Data())
		}
	}
	if len(dlq) != len(bad) {
		t.Errorf("NHI_DLQ holds %d records, want %d", len(dlq), len(bad))
	}

	counts := counters(t, reader)
	for key, want := range map[string]int64{
		"nhiwatch_normalize_records":                       int64(len(recs)),
		"nhiwatch_normalize_rejected/reason=malformed":     2,
		"nhiwatch_normalize_rejected/reason=unsupported":   1,
		"nhiwatch_normalize_rejected/reason=missing_field": 1,
		"nhiwatch_normalize_skipped":                       1,
	} {
		if got := counts[key]; got != want {
			t.Errorf("%s = %d, want %d (all: %v)", key, got, want, counts)
		}
	}
}

// readRecords returns the records of a JSON array.
func readRecords(t *testing.T, data []byte) [][]byte {
	t.Helper()
	var p fastjsonArray
	return p.split(t, data)
}

// fetchAll reads every message of a stream with an ordered consumer.
func fetchAll(t *testing.T, js jetstream.JetStream, stream string) []jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := int(info.NumPending)
	var out []jetstream.Msg
	for len(out) < n {
		batch, err := c.FetchNoWait(n - len(out))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			out = append(out, m)
			got++
		}
		if got == 0 {
			break
		}
	}
	return out
}

// counters sums the service's counters by name and reason.
func counters(t *testing.T, reader *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				continue
			}
			for _, dp := range sum.DataPoints {
				key := m.Name
				if r, ok := dp.Attributes.Value(attribute.Key("reason")); ok {
					key += "/reason=" + r.AsString()
				}
				out[key] += dp.Value
			}
		}
	}
	return out
}

func keys(m map[string]jetstream.Msg) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
