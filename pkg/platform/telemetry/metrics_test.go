package telemetry_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/eventstest"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
	"github.com/nhiwatch/nhiwatch/pkg/platform/telemetry"
)

// gather returns the Prometheus families of m by name.
func gather(t *testing.T, m *telemetry.Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// gauge returns the value of the series of family name whose labels include want.
func gauge(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	t.Helper()
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		return m.GetGauge().GetValue(), true
	}
	return 0, false
}

func TestConsumerLagReportsBacklog(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	m, err := telemetry.NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	lag, err := telemetry.NewConsumerLag(m.Meter("test"), srv.JS, []string{events.StreamRaw, events.StreamEvents, "NOT_THERE"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer lag.Close()
	if _, ok := gauge(t, gather(t, m), telemetry.MetricConsumerPending, nil); ok {
		t.Error("gauges reported before the first poll")
	}
	cons, err := streams.EnsureConsumer(ctx, srv.JS, events.StreamRaw, streams.ConsumerConfig("normalize", "test"))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*nats.Msg
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		msg := nats.NewMsg(events.RawSubject(events.Provider_PROVIDER_AWS))
		msg.Header.Set(events.HeaderMsgID, id)
		msg.Data = []byte(id)
		msgs = append(msgs, msg)
	}
	if err := streams.NewPublisher(srv.JS).PublishAll(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	if err := lag.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	normalize := map[string]string{"stream": events.StreamRaw, "consumer": "normalize"}
	fams := gather(t, m)
	if v, _ := gauge(t, fams, telemetry.MetricConsumerPending, normalize); v != 5 {
		t.Errorf("pending = %v, want 5", v)
	}
	if v, _ := gauge(t, fams, telemetry.MetricStreamMessages, map[string]string{"stream": events.StreamRaw}); v != 5 {
		t.Errorf("stream messages = %v, want 5", v)
	}
	if _, ok := gauge(t, fams, telemetry.MetricStreamMessages, map[string]string{"stream": events.StreamEvents}); !ok {
		t.Error("no gauge for the empty NHI_EVENTS stream")
	}

	// Two fetched and acknowledged, one fetched and held: 2 left pending, 1 awaiting its ack.
	batch, err := cons.Fetch(3, jetstreamMaxWait())
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	for msg := range batch.Messages() {
		if i < 2 {
			if err := msg.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		}
		i++
	}
	if err := lag.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	fams = gather(t, m)
	got := map[string]float64{}
	for _, name := range []string{telemetry.MetricConsumerPending, telemetry.MetricConsumerAckPending} {
		got[name], _ = gauge(t, fams, name, normalize)
	}
	want := map[string]float64{telemetry.MetricConsumerPending: 2, telemetry.MetricConsumerAckPending: 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("consumer gauges (-want +got):\n%s", diff)
	}
	if age, ok := gauge(t, fams, telemetry.MetricLagPollAge, nil); !ok || age < 0 || age > 60 {
		t.Errorf("lag age = %v (%v)", age, ok)
	}
}

// TestPrometheusNames pins the names the dashboards and docs/telemetry.md use.
func TestPrometheusNames(t *testing.T) {
	m, err := telemetry.NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	p, err := telemetry.NewPipeline(m.Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p.SinceReceived(ctx, telemetry.StageFindingPublished, time.Now().Add(-1500*time.Millisecond), telemetry.AttrDetector.String("privilege_expansion"))
	p.SinceReceived(ctx, telemetry.StageAlertDelivered, time.Now().Add(time.Hour)) // clock skew: clamped to 0
	p.FindingDelivered(ctx, "slack-soc", time.Now().Add(-200*time.Millisecond))
	p.SinceReceived(ctx, telemetry.StageStored, time.Time{}) // unknown receipt: not recorded
	var nilPipeline *telemetry.Pipeline
	nilPipeline.SinceReceived(ctx, telemetry.StageStored, time.Now())

	fams := gather(t, m)
	lat := fams[telemetry.MetricPipelineLatency]
	if lat == nil {
		t.Fatalf("no %s among %v", telemetry.MetricPipelineLatency, keys(fams))
	}
	byStage := map[string]*dto.Histogram{}
	for _, s := range lat.GetMetric() {
		for _, l := range s.GetLabel() {
			if l.GetName() == "stage" {
				byStage[l.GetValue()] = s.GetHistogram()
			}
		}
	}
	if h := byStage[telemetry.StageFindingPublished]; h == nil || h.GetSampleCount() != 1 || h.GetSampleSum() < 1.5 || h.GetSampleSum() > 10 {
		t.Errorf("finding_published histogram = %v, want one sample of about 1.5s", h)
	}
	if h := byStage[telemetry.StageAlertDelivered]; h == nil || h.GetSampleSum() != 0 {
		t.Errorf("alert_delivered histogram = %v, want one sample clamped to 0", h)
	}
	if _, ok := byStage[telemetry.StageStored]; ok {
		t.Error("a zero receipt time was recorded")
	}
	if fams[telemetry.MetricFindingToAlert] == nil {
		t.Errorf("no %s", telemetry.MetricFindingToAlert)
	}

	// The admin handler serves them in the text format Prometheus scrapes.
	rec := httptest.NewRecorder()
	telemetry.AdminHandler(m, telemetry.NewHealth()).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`nhiwatch_pipeline_latency_seconds_bucket{detector="privilege_expansion",stage="finding_published",le="2.5"} 1`,
		`nhiwatch_finding_to_alert_seconds_count{destination="slack-soc"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func keys(m map[string]*dto.MetricFamily) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestReadyzReportsFailedChecks(t *testing.T) {
	h := telemetry.NewHealth()
	h.AddCheck("nats", func(context.Context) error { return nil })
	h.AddCheck("clickhouse", func(context.Context) error { return io.ErrUnexpectedEOF })
	rec := httptest.NewRecorder()
	telemetry.AdminHandler(nil, h).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "clickhouse: unexpected EOF") || strings.Contains(rec.Body.String(), "nats") {
		t.Errorf("readyz = %d %q, want 503 naming only clickhouse", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	telemetry.AdminHandler(nil, h).ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 200 {
		t.Errorf("healthz = %d, want 200 while the process runs", rec.Code)
	}
}

func jetstreamMaxWait() jetstream.FetchOpt { return jetstream.FetchMaxWait(2 * time.Second) }
