// Package telemetry gives every nhiwatch process its logger (JSON, with the trace id of the
// context), its OpenTelemetry meter (exported for Prometheus on /metrics), its tracer provider
// (OTLP export when configured), the pipeline's shared instruments (consumer lag, stage
// latencies), and an admin HTTP server with /metrics, /healthz and /readyz.
//
// docs/telemetry.md lists every span, metric and log key.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// Config configures logs and the admin endpoint.
type Config struct {
	// LogFormat is "json" (production) or "text" (a terminal); "auto" picks text on a TTY.
	LogFormat string `yaml:"log_format" env:"LOG_FORMAT"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level" env:"LOG_LEVEL"`
	// AdminAddr is where /metrics, /healthz and /readyz are served; empty disables them.
	AdminAddr string `yaml:"admin_addr" env:"ADMIN_ADDR"`
	// OTLPEndpoint is the collector that receives traces, e.g. http://otel-collector:4317,
	// a base URL like OTEL_EXPORTER_OTLP_ENDPOINT (OTLP/HTTP appends /v1/traces). Empty: the
	// standard OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, and without it no tracing.
	OTLPEndpoint string `yaml:"otlp_endpoint" env:"OTLP_ENDPOINT"`
	// OTLPProtocol is grpc (port 4317) or http/protobuf (port 4318); empty: the standard
	// OTEL_EXPORTER_OTLP_PROTOCOL, else grpc.
	OTLPProtocol string `yaml:"otlp_protocol" env:"OTLP_PROTOCOL"`
	// TraceSampleRatio is the share of new traces kept (parent-based: later stages follow the
	// decision of the first). 0 leaves it to OTEL_TRACES_SAMPLER, by default every trace.
	TraceSampleRatio float64 `yaml:"trace_sample_ratio" env:"TRACE_SAMPLE_RATIO"`
	// LagInterval is how often the consumer lag gauges are refreshed from JetStream.
	LagInterval time.Duration `yaml:"lag_interval" env:"LAG_INTERVAL"`
}

// DefaultConfig logs JSON (text on a terminal) at info, serves no admin endpoint, traces
// only when an OTLP endpoint is set, and refreshes consumer lag every 15 seconds.
func DefaultConfig() Config {
	return Config{LogFormat: "auto", LogLevel: "info", LagInterval: DefaultLagInterval}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch c.LogFormat {
	case "json", "text", "auto":
	default:
		return fmt.Errorf("log_format %q: want json, text or auto", c.LogFormat)
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("log_level %q: %w", c.LogLevel, err)
	}
	if c.LagInterval < 0 {
		return fmt.Errorf("lag_interval %s must not be negative", c.LagInterval)
	}
	return validateOTLP(c)
}

// NewLogger returns a logger writing to w in the configured format. Records logged with a
// context that carries a span get its trace_id and span_id.
func NewLogger(c Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	format := c.LogFormat
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && isTerminal(f) {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(NewTraceHandler(slog.NewTextHandler(w, opts)))
	}
	return slog.New(NewTraceHandler(slog.NewJSONHandler(w, opts)))
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Metrics is a process's meter provider and the Prometheus registry it exports to.
type Metrics struct {
	Provider *sdkmetric.MeterProvider
	Registry *prometheus.Registry
}

// NewMetrics creates a meter provider whose instruments are served in Prometheus format.
func NewMetrics() (*Metrics, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	return &Metrics{Provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp)), Registry: reg}, nil
}

// Meter returns the named meter.
func (m *Metrics) Meter(name string) metric.Meter { return m.Provider.Meter(name) }

// Handler serves the registry in Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// Shutdown flushes and stops the meter provider.
func (m *Metrics) Shutdown(ctx context.Context) error { return m.Provider.Shutdown(ctx) }

// Health tracks readiness checks. A process is healthy while it runs; it is ready when every
// registered check passes (its JetStream connection is up, its consumers exist, …).
type Health struct {
	mu     sync.Mutex
	checks map[string]func(context.Context) error
}

// NewHealth returns a Health with no checks.
func NewHealth() *Health { return &Health{checks: map[string]func(context.Context) error{}} }

// AddCheck registers a readiness check under name.
func (h *Health) AddCheck(name string, check func(context.Context) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks[name] = check
}

// Ready runs every check and returns the failures by name.
func (h *Health) Ready(ctx context.Context) map[string]error {
	h.mu.Lock()
	checks := make(map[string]func(context.Context) error, len(h.checks))
	for k, v := range h.checks {
		checks[k] = v
	}
	h.mu.Unlock()
	failed := map[string]error{}
	for name, check := range checks {
		if err := check(ctx); err != nil {
			failed[name] = err
		}
	}
	return failed
}

// AdminHandler serves /metrics, /healthz and /readyz.
func AdminHandler(m *Metrics, h *Health) http.Handler {
	mux := http.NewServeMux()
	if m != nil {
		mux.Handle("GET /metrics", m.Handler())
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		failed := h.Ready(ctx)
		if len(failed) == 0 {
			_, _ = io.WriteString(w, "ready\n")
			return
		}
		var b strings.Builder
		for name, err := range failed {
			fmt.Fprintf(&b, "%s: %v\n", name, err)
		}
		http.Error(w, b.String(), http.StatusServiceUnavailable)
	})
	return mux
}

// ServeAdmin serves the admin handler on addr until ctx ends.
func ServeAdmin(ctx context.Context, addr string, handler http.Handler, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	log.Info("admin endpoint listening", "addr", ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin server: %w", err)
	}
	return nil
}
