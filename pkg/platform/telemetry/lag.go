package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// DefaultLagInterval is how often ConsumerLag polls JetStream by default.
const DefaultLagInterval = 15 * time.Second

// ConsumerLag reports the backlog of the durable consumers and the size of the streams of a
// deployment as observable gauges, refreshed by polling JetStream (ConsumerInfo, StreamInfo)
// every interval rather than at each scrape, so a scrape never waits on JetStream.
//
// Every process watches every consumer of the streams it is given, not only its own: the
// backlog of a stage whose service is down stays visible. Dashboards aggregate the copies
// with max by (stream, consumer).
type ConsumerLag struct {
	js      jetstream.JetStream
	streams []string
	log     *slog.Logger

	mu        sync.Mutex
	consumers []consumerSample
	sizes     []streamSample
	polled    time.Time

	reg metric.Registration
}

type consumerSample struct {
	stream, consumer                          string
	pending, ackPending, redelivered, waiting int64
}

type streamSample struct {
	stream                       string
	msgs, bytes, replicasLagging int64
}

// Metric names of the consumer lag gauges (docs/telemetry.md).
const (
	MetricConsumerPending      = "nhiwatch_consumer_pending_messages"
	MetricConsumerAckPending   = "nhiwatch_consumer_ack_pending_messages"
	MetricConsumerRedelivered  = "nhiwatch_consumer_redelivered_messages"
	MetricConsumerWaiting      = "nhiwatch_consumer_waiting_pulls"
	MetricStreamMessages       = "nhiwatch_stream_messages"
	MetricStreamBytes          = "nhiwatch_stream_bytes"
	MetricStreamReplicasBehind = "nhiwatch_stream_replicas_behind"
	MetricLagPollAge           = "nhiwatch_consumer_lag_age_seconds"
)

// NewConsumerLag registers the gauges on meter for the named streams; Run refreshes them.
func NewConsumerLag(meter metric.Meter, js jetstream.JetStream, streams []string, log *slog.Logger) (*ConsumerLag, error) {
	if meter == nil || js == nil || log == nil {
		return nil, errors.New("telemetry.NewConsumerLag: meter, jetstream and logger are required")
	}
	l := &ConsumerLag{js: js, streams: streams, log: log}
	var errs []error
	gauge := func(name, desc string) metric.Int64ObservableGauge {
		g, err := meter.Int64ObservableGauge(name, metric.WithDescription(desc))
		if err != nil {
			errs = append(errs, fmt.Errorf("consumer lag gauge %s: %w", name, err))
		}
		return g
	}
	pending := gauge(MetricConsumerPending, "messages of the stream the durable consumer has not been delivered yet (its backlog)")
	ackPending := gauge(MetricConsumerAckPending, "messages delivered to the consumer and not acknowledged yet")
	redelivered := gauge(MetricConsumerRedelivered, "messages delivered more than once and not acknowledged yet")
	waiting := gauge(MetricConsumerWaiting, "pull requests waiting on the consumer (idle workers)")
	msgs := gauge(MetricStreamMessages, "messages stored in the stream")
	bytes := gauge(MetricStreamBytes, "bytes stored in the stream")
	behind := gauge(MetricStreamReplicasBehind, "replicas of the stream that are offline or not current")
	age, err := meter.Float64ObservableGauge(MetricLagPollAge,
		metric.WithDescription("seconds since the lag gauges were last refreshed from JetStream"), metric.WithUnit("s"))
	if err != nil {
		errs = append(errs, fmt.Errorf("consumer lag gauge: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	l.reg, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.polled.IsZero() {
			return nil
		}
		for _, c := range l.consumers {
			attrs := metric.WithAttributes(attribute.String("stream", c.stream), attribute.String("consumer", c.consumer))
			o.ObserveInt64(pending, c.pending, attrs)
			o.ObserveInt64(ackPending, c.ackPending, attrs)
			o.ObserveInt64(redelivered, c.redelivered, attrs)
			o.ObserveInt64(waiting, c.waiting, attrs)
		}
		for _, s := range l.sizes {
			attrs := metric.WithAttributes(attribute.String("stream", s.stream))
			o.ObserveInt64(msgs, s.msgs, attrs)
			o.ObserveInt64(bytes, s.bytes, attrs)
			o.ObserveInt64(behind, s.replicasLagging, attrs)
		}
		o.ObserveFloat64(age, time.Since(l.polled).Seconds())
		return nil
	}, pending, ackPending, redelivered, waiting, msgs, bytes, behind, age)
	if err != nil {
		return nil, fmt.Errorf("consumer lag callback: %w", err)
	}
	return l, nil
}

// Run polls every interval (DefaultLagInterval when not positive) until ctx ends.
func (l *ConsumerLag) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultLagInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := l.Poll(ctx); err != nil && ctx.Err() == nil {
			l.log.Debug("consumer lag poll failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Poll refreshes the gauges once. A stream that does not exist yet is skipped.
func (l *ConsumerLag) Poll(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var (
		consumers []consumerSample
		sizes     []streamSample
		errs      []error
	)
	for _, name := range l.streams {
		st, err := l.js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("stream %s: %w", name, err))
			continue
		}
		info := st.CachedInfo()
		s := streamSample{stream: name, msgs: int64(info.State.Msgs), bytes: int64(info.State.Bytes)}
		if info.Cluster != nil {
			for _, r := range info.Cluster.Replicas {
				if r.Offline || !r.Current {
					s.replicasLagging++
				}
			}
		}
		sizes = append(sizes, s)
		lister := st.ListConsumers(ctx)
		for ci := range lister.Info() {
			consumers = append(consumers, consumerSample{
				stream: name, consumer: ci.Name,
				pending: int64(ci.NumPending), ackPending: int64(ci.NumAckPending),
				redelivered: int64(ci.NumRedelivered), waiting: int64(ci.NumWaiting),
			})
		}
		if err := lister.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
			errs = append(errs, fmt.Errorf("consumers of %s: %w", name, err))
		}
	}
	if len(errs) > 0 && len(sizes) == 0 {
		return errors.Join(errs...)
	}
	l.mu.Lock()
	l.consumers, l.sizes, l.polled = consumers, sizes, time.Now()
	l.mu.Unlock()
	return errors.Join(errs...)
}

// Close unregisters the gauges.
func (l *ConsumerLag) Close() error { return l.reg.Unregister() }
