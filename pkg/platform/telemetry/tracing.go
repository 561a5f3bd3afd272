package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// OTLP protocols of the trace exporter.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// Standard OpenTelemetry environment variables that configure the exporter when
// telemetry.otlp_endpoint is empty.
const (
	envOTLPEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envOTLPTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envOTLPProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envOTLPTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
)

func validateOTLP(c Config) error {
	if c.OTLPEndpoint != "" {
		u, err := url.Parse(c.OTLPEndpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("otlp_endpoint %q: want a URL such as http://otel-collector:4317", c.OTLPEndpoint)
		}
	}
	switch c.OTLPProtocol {
	case "", ProtocolGRPC, ProtocolHTTP:
	default:
		return fmt.Errorf("otlp_protocol %q: want %s or %s", c.OTLPProtocol, ProtocolGRPC, ProtocolHTTP)
	}
	if c.TraceSampleRatio < 0 || c.TraceSampleRatio > 1 {
		return fmt.Errorf("trace_sample_ratio %v: want 0 (the SDK default) to 1", c.TraceSampleRatio)
	}
	return nil
}

// Tracing is a process's tracer provider: an OTLP-exporting SDK provider when an endpoint is
// configured, else a no-op provider that still forwards the trace context it receives.
type Tracing struct {
	Provider trace.TracerProvider
	sdk      *sdktrace.TracerProvider
}

// NewTracing builds the tracer provider of the named service. The endpoint is
// telemetry.otlp_endpoint, else the standard OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT; with
// neither, tracing is off and costs nothing. The exporter connects lazily, so a collector
// that is down delays no start; spans are batched and dropped, never blocking the pipeline,
// when it stays down.
func NewTracing(ctx context.Context, c Config, service string) (*Tracing, error) {
	if err := validateOTLP(c); err != nil {
		return nil, err
	}
	endpoint := c.OTLPEndpoint
	fromEnv := os.Getenv(envOTLPTracesEndpoint) != "" || os.Getenv(envOTLPEndpoint) != ""
	if endpoint == "" && !fromEnv {
		return &Tracing{Provider: noop.NewTracerProvider()}, nil
	}
	exp, err := newExporter(ctx, c, endpoint)
	if err != nil {
		return nil, err
	}
	res, err := newResource(ctx, service)
	if err != nil {
		return nil, err
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithBatcher(exp), sdktrace.WithResource(res)}
	if c.TraceSampleRatio > 0 {
		// Parent-based: the stage where a trace begins (ingest) decides, and every later
		// stage follows it, so a sampled event is traced to its alert.
		opts = append(opts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(c.TraceSampleRatio))))
	}
	sdk := sdktrace.NewTracerProvider(opts...)
	return &Tracing{Provider: sdk, sdk: sdk}, nil
}

// protocol picks the OTLP protocol: the configured one, else the standard environment
// variables, else gRPC.
func protocol(c Config) string {
	for _, p := range []string{c.OTLPProtocol, os.Getenv(envOTLPTracesProtocol), os.Getenv(envOTLPProtocol)} {
		if p != "" {
			return p
		}
	}
	return ProtocolGRPC
}

func newExporter(ctx context.Context, c Config, endpoint string) (*otlptrace.Exporter, error) {
	switch p := protocol(c); p {
	case ProtocolGRPC:
		var opts []otlptracegrpc.Option
		if endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(endpoint))
		}
		exp, err := otlptracegrpc.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("otlp trace exporter: %w", err)
		}
		return exp, nil
	case ProtocolHTTP:
		var opts []otlptracehttp.Option
		if endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(tracesURL(endpoint)))
		}
		exp, err := otlptracehttp.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("otlp trace exporter: %w", err)
		}
		return exp, nil
	default:
		return nil, fmt.Errorf("otlp protocol %q: want %s or %s", p, ProtocolGRPC, ProtocolHTTP)
	}
}

// tracesURL treats the configured endpoint like OTEL_EXPORTER_OTLP_ENDPOINT: a base URL to
// which OTLP/HTTP appends /v1/traces, unless it names a path of its own.
func tracesURL(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return endpoint
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return u.String()
}

// newResource names the process: service.name nhiwatch-<service>, service.namespace
// nhiwatch, the host, and whatever OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME add (they win).
func newResource(ctx context.Context, service string) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{
		attribute.String("service.name", "nhiwatch-"+service),
		attribute.String("service.namespace", "nhiwatch"),
	}
	if host, err := os.Hostname(); err == nil {
		attrs = append(attrs, attribute.String("service.instance.id", host))
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attrs...),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithFromEnv(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	return res, nil
}

// Enabled reports whether spans are recorded and exported.
func (t *Tracing) Enabled() bool { return t.sdk != nil }

// Shutdown exports the spans still buffered and stops the provider.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t.sdk == nil {
		return nil
	}
	if err := t.sdk.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracer provider shutdown: %w", err)
	}
	return nil
}

// InstallGlobals makes tp and mp the OpenTelemetry globals, with W3C trace context and
// baggage propagation. The JetStream helpers of pkg/events (streams.Consume, Publisher)
// trace and count through the globals unless given explicit providers, so a process calls
// this once at start; nil leaves a global as it is.
func InstallGlobals(tp trace.TracerProvider, mp metric.MeterProvider) {
	if tp != nil {
		otel.SetTracerProvider(tp)
	}
	if mp != nil {
		otel.SetMeterProvider(mp)
	}
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
}
