package telemetry

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// Log keys of the trace context added to every record logged with a context that carries a
// span (slog's *Context methods, e.g. log.WarnContext(ctx, …)).
const (
	LogKeyTraceID = "trace_id"
	LogKeySpanID  = "span_id"
)

// TraceHandler wraps a slog.Handler and adds trace_id and span_id to each record whose
// context carries a valid span context, so a log line leads to its trace and back.
type TraceHandler struct {
	inner slog.Handler
}

var _ slog.Handler = TraceHandler{}

// NewTraceHandler wraps h.
func NewTraceHandler(h slog.Handler) TraceHandler { return TraceHandler{inner: h} }

// Enabled reports whether the wrapped handler handles level.
func (h TraceHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

// Handle adds the trace context of ctx and passes the record on.
func (h TraceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r = r.Clone()
		r.AddAttrs(slog.String(LogKeyTraceID, sc.TraceID().String()), slog.String(LogKeySpanID, sc.SpanID().String()))
	}
	return h.inner.Handle(ctx, r)
}

// WithAttrs returns a TraceHandler over the wrapped handler with attrs.
func (h TraceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return TraceHandler{inner: h.inner.WithAttrs(attrs)}
}

// WithGroup returns a TraceHandler over the wrapped handler with the group. Trace ids
// logged inside a group land in that group.
func (h TraceHandler) WithGroup(name string) slog.Handler {
	return TraceHandler{inner: h.inner.WithGroup(name)}
}
