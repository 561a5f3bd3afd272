package telemetry

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Pipeline latency: how long after ingest received a record each later stage finished with
// it, measured from the Nhi-Received-At header that every message carries
// (tracing.ReceivedAt reads it), and how long a finding took from publication to delivery.
const (
	// MetricPipelineLatency is a histogram in seconds since ingest received the record, with
	// the attribute stage (one of the Stage* values) and, where it applies, detector or
	// destination.
	MetricPipelineLatency = "nhiwatch_pipeline_latency_seconds"
	// MetricFindingToAlert is a histogram in seconds from a finding's publication
	// (Finding.created_at_ms) to its delivery, with the attribute destination.
	MetricFindingToAlert = "nhiwatch_finding_to_alert_seconds"
)

// Values of the stage attribute of nhiwatch_pipeline_latency_seconds.
const (
	// StageNormalized: normalize published the record's event.
	StageNormalized = "normalized"
	// StageStored: detect inserted the event into ClickHouse.
	StageStored = "stored"
	// StageFindingPublished: detect published a finding the event caused.
	StageFindingPublished = "finding_published"
	// StageAlertDelivered: notify delivered that finding to a destination.
	StageAlertDelivered = "alert_delivered"
)

// Attribute keys of the pipeline metrics. Keep their values low-cardinality: a detector
// name, a destination name (the configured route name, never a URL), a provider label.
const (
	AttrStage       = attribute.Key("stage")
	AttrDetector    = attribute.Key("detector")
	AttrDestination = attribute.Key("destination")
	AttrProvider    = attribute.Key("provider")
)

// latencyBuckets span a healthy pipeline (milliseconds) to a backlog being drained (minutes).
var latencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900}

// Pipeline holds the stage latency histograms. Services build one from their meter and
// record where a stage completes; a nil *Pipeline records nothing.
type Pipeline struct {
	latency  metric.Float64Histogram
	toAlert  metric.Float64Histogram
	clockNow func() time.Time
}

// NewPipeline creates the histograms on meter.
func NewPipeline(meter metric.Meter) (*Pipeline, error) {
	p := &Pipeline{clockNow: time.Now}
	var err error
	if p.latency, err = meter.Float64Histogram(MetricPipelineLatency,
		metric.WithDescription("seconds from ingest receiving a record to a later stage finishing with it, by stage"),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(latencyBuckets...)); err != nil {
		return nil, fmt.Errorf("pipeline latency histogram: %w", err)
	}
	if p.toAlert, err = meter.Float64Histogram(MetricFindingToAlert,
		metric.WithDescription("seconds from a finding's publication to its delivery, by destination"),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(latencyBuckets...)); err != nil {
		return nil, fmt.Errorf("finding to alert histogram: %w", err)
	}
	return p, nil
}

// SinceReceived records that stage finished now with a record ingest received at
// receivedAt. attrs add detector, destination or provider. With a ctx that carries a sampled
// span the measurement keeps it as an exemplar.
func (p *Pipeline) SinceReceived(ctx context.Context, stage string, receivedAt time.Time, attrs ...attribute.KeyValue) {
	if p == nil || receivedAt.IsZero() {
		return
	}
	all := make([]attribute.KeyValue, 0, len(attrs)+1)
	all = append(all, AttrStage.String(stage))
	all = append(all, attrs...)
	p.latency.Record(ctx, seconds(p.clockNow().Sub(receivedAt)), metric.WithAttributes(all...))
}

// FindingDelivered records the delivery now, to destination, of a finding published at
// publishedAt (Finding.created_at_ms).
func (p *Pipeline) FindingDelivered(ctx context.Context, destination string, publishedAt time.Time) {
	if p == nil || publishedAt.IsZero() {
		return
	}
	p.toAlert.Record(ctx, seconds(p.clockNow().Sub(publishedAt)), metric.WithAttributes(AttrDestination.String(destination)))
}

// seconds clamps clock skew between hosts to zero rather than recording a negative latency.
func seconds(d time.Duration) float64 {
	if d < 0 {
		return 0
	}
	return d.Seconds()
}
