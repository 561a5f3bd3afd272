package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/nhiwatch/nhiwatch/pkg/platform/telemetry"
)

// otlpReceiver collects the spans OTLP exporters send it, over gRPC or HTTP, decoding the
// protocol's own protobuf messages (opentelemetry-proto collector/trace/v1).
type otlpReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans map[string]string // span name → service.name
}

func (r *otlpReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.record(req)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) record(req *collectortrace.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans[s.GetName()] = service
			}
		}
	}
}

func (r *otlpReceiver) got(name string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.spans[name]
	return s, ok
}

// ServeHTTP is the OTLP/HTTP binary protobuf endpoint /v1/traces.
func (r *otlpReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "unsupported", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var er collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &er); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.record(&er)
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func TestTracingExportsOverOTLP(t *testing.T) {
	tests := []struct {
		name     string
		protocol string
		serve    func(t *testing.T, r *otlpReceiver) string
	}{
		{"grpc", telemetry.ProtocolGRPC, func(t *testing.T, r *otlpReceiver) string {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := grpc.NewServer()
			collectortrace.RegisterTraceServiceServer(srv, r)
			go func() { _ = srv.Serve(ln) }()
			t.Cleanup(srv.Stop)
			return "http://" + ln.Addr().String()
		}},
		{"http", telemetry.ProtocolHTTP, func(t *testing.T, r *otlpReceiver) string {
			srv := httptest.NewServer(r)
			t.Cleanup(srv.Close)
			return srv.URL
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := &otlpReceiver{spans: map[string]string{}}
			cfg := telemetry.DefaultConfig()
			cfg.OTLPEndpoint = tt.serve(t, rcv)
			cfg.OTLPProtocol = tt.protocol
			ctx := context.Background()
			tr, err := telemetry.NewTracing(ctx, cfg, "normalize")
			if err != nil {
				t.Fatal(err)
			}
			if !tr.Enabled() {
				t.Fatal("tracing is off with an endpoint configured")
			}
			_, span := tr.Provider.Tracer("test").Start(ctx, "process nhi.raw.aws.cloudtrail")
			span.End()
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := tr.Shutdown(sctx); err != nil {
				t.Fatal(err)
			}
			service, ok := rcv.got("process nhi.raw.aws.cloudtrail")
			if !ok {
				t.Fatal("the collector received no span")
			}
			if service != "nhiwatch-normalize" {
				t.Errorf("service.name = %q, want nhiwatch-normalize", service)
			}
		})
	}
}

func TestTracingOffWithoutEndpoint(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	tr, err := telemetry.NewTracing(context.Background(), telemetry.DefaultConfig(), "ingest")
	if err != nil {
		t.Fatal(err)
	}
	if tr.Enabled() {
		t.Error("tracing is on without an endpoint")
	}
	_, span := tr.Provider.Tracer("x").Start(context.Background(), "x")
	if span.IsRecording() || span.SpanContext().IsValid() {
		t.Error("the no-op provider records spans")
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestTracingFromStandardEnv(t *testing.T) {
	rcv := &otlpReceiver{spans: map[string]string{}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_SERVICE_NAME", "custom-name")
	tr, err := telemetry.NewTracing(context.Background(), telemetry.DefaultConfig(), "detect")
	if err != nil {
		t.Fatal(err)
	}
	_, span := tr.Provider.Tracer("test").Start(context.Background(), "from-env")
	span.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if service, ok := rcv.got("from-env"); !ok || service != "custom-name" {
		t.Errorf("span from-env: service %q, received %v; want custom-name (OTEL_SERVICE_NAME wins)", service, ok)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*telemetry.Config)
		ok     bool
	}{
		{"default", func(*telemetry.Config) {}, true},
		{"grpc endpoint", func(c *telemetry.Config) { c.OTLPEndpoint = "http://otel-collector:4317" }, true},
		{"https endpoint", func(c *telemetry.Config) {
			c.OTLPEndpoint = "https://collector.example:4318"
			c.OTLPProtocol = "http/protobuf"
		}, true},
		{"endpoint without scheme", func(c *telemetry.Config) { c.OTLPEndpoint = "otel-collector:4317" }, false},
		{"unknown protocol", func(c *telemetry.Config) { c.OTLPProtocol = "thrift" }, false},
		{"ratio above one", func(c *telemetry.Config) { c.TraceSampleRatio = 1.5 }, false},
		{"ratio", func(c *telemetry.Config) { c.TraceSampleRatio = 0.01 }, true},
		{"negative lag interval", func(c *telemetry.Config) { c.LagInterval = -time.Second }, false},
		{"bad level", func(c *telemetry.Config) { c.LogLevel = "loud" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := telemetry.DefaultConfig()
			tt.mutate(&c)
			if err := c.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestLoggerCarriesTraceIDs(t *testing.T) {
	rcv := &otlpReceiver{spans: map[string]string{}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	cfg := telemetry.DefaultConfig()
	cfg.LogFormat = "json"
	cfg.OTLPEndpoint = srv.URL
	cfg.OTLPProtocol = telemetry.ProtocolHTTP
	tr, err := telemetry.NewTracing(context.Background(), cfg, "detect")
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	var buf bytes.Buffer
	log := telemetry.NewLogger(cfg, &buf).With("service", "detect")
	ctx, span := tr.Provider.Tracer("test").Start(context.Background(), "op")
	log.InfoContext(ctx, "with span", "n", 1)
	span.End()
	log.Info("without span")

	dec := json.NewDecoder(&buf)
	var with, without map[string]any
	if err := dec.Decode(&with); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(&without); err != nil {
		t.Fatal(err)
	}
	if with[telemetry.LogKeyTraceID] != span.SpanContext().TraceID().String() || with[telemetry.LogKeySpanID] != span.SpanContext().SpanID().String() {
		t.Errorf("log line %v lacks the span's trace_id/span_id", with)
	}
	if with["service"] != "detect" {
		t.Errorf("log line %v lost the logger's attributes", with)
	}
	if _, ok := without[telemetry.LogKeyTraceID]; ok {
		t.Errorf("log line without a span has a trace id: %v", without)
	}
}
