// Package sink turns the records a source reads into NHI_RAW messages, publishes them and
// returns only once JetStream has acknowledged every one, so a source moves its cursor past
// records that are stored and never past records that are not.
package sink

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
)

// Sink publishes the records of one configured source. It is safe for concurrent use.
type Sink struct {
	source   string
	provider events.Provider
	format   string
	cluster  string
	pub      *streams.Publisher
	maxRecs  int
	maxBytes int
	now      func() time.Time
	m        *Metrics
	log      *slog.Logger
	backoff  time.Duration
	maxWait  time.Duration
	attrs    metric.MeasurementOption
}

// Options describe the source a Sink publishes for.
type Options struct {
	Source   string
	Provider events.Provider
	// Format is "cloudtrail", "gcp", "k8s" or "auto".
	Format  string
	Cluster string
	// MaxBatchRecords and MaxBatchBytes bound one NHI_RAW message.
	MaxBatchRecords int
	MaxBatchBytes   int
	Now             func() time.Time
	// Logger receives retry warnings (default: discard).
	Logger *slog.Logger
	// RetryBackoff is the first wait of Retry; it doubles up to MaxRetryBackoff.
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
}

// Metrics counts what every source does.
type Metrics struct {
	Records  metric.Int64Counter
	Bytes    metric.Int64Counter
	Rejected metric.Int64Counter
	Errors   metric.Int64Counter
	Messages metric.Int64Counter
	// Lag is how far behind real time the source is: now minus the time of the newest
	// record it published (event time), or of the newest delivery it acknowledged.
	Lag metric.Float64Gauge
	// Backlog is what waits at the source, in the unit of its "unit" attribute: Kafka
	// consumer lag and approximate SQS messages (messages), unread bytes of a tailed file.
	Backlog metric.Int64Gauge
}

// NewMetrics creates the per-source instruments on meter.
func NewMetrics(meter metric.Meter) (*Metrics, error) {
	var m Metrics
	var err error
	if m.Records, err = meter.Int64Counter("nhiwatch_ingest_records", metric.WithDescription("records published to NHI_RAW")); err != nil {
		return nil, err
	}
	if m.Bytes, err = meter.Int64Counter("nhiwatch_ingest_bytes", metric.WithDescription("record bytes published to NHI_RAW"), metric.WithUnit("By")); err != nil {
		return nil, err
	}
	if m.Rejected, err = meter.Int64Counter("nhiwatch_ingest_rejected", metric.WithDescription("records or containers dead-lettered by ingest")); err != nil {
		return nil, err
	}
	if m.Errors, err = meter.Int64Counter("nhiwatch_ingest_errors", metric.WithDescription("source errors (read, publish), retried")); err != nil {
		return nil, err
	}
	if m.Messages, err = meter.Int64Counter("nhiwatch_ingest_messages", metric.WithDescription("NHI_RAW messages published")); err != nil {
		return nil, err
	}
	if m.Lag, err = meter.Float64Gauge("nhiwatch_ingest_lag_seconds", metric.WithDescription("now minus the time of the newest record a source published"), metric.WithUnit("s")); err != nil {
		return nil, err
	}
	if m.Backlog, err = meter.Int64Gauge("nhiwatch_ingest_backlog", metric.WithDescription("what waits at the source (unit attribute: messages or bytes)")); err != nil {
		return nil, err
	}
	return &m, nil
}

// New returns a Sink publishing through pub.
func New(o Options, pub *streams.Publisher, m *Metrics) *Sink {
	if o.MaxBatchRecords <= 0 {
		o.MaxBatchRecords = 500
	}
	if o.MaxBatchBytes <= 0 || o.MaxBatchBytes > events.MaxMessageBytes {
		o.MaxBatchBytes = events.MaxMessageBytes
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = time.Second
	}
	if o.MaxRetryBackoff < o.RetryBackoff {
		o.MaxRetryBackoff = max(time.Minute, o.RetryBackoff)
	}
	return &Sink{
		source: o.Source, provider: o.Provider, format: o.Format, cluster: o.Cluster,
		pub: pub, maxRecs: o.MaxBatchRecords, maxBytes: o.MaxBatchBytes, now: o.Now, m: m,
		log: o.Logger, backoff: o.RetryBackoff, maxWait: o.MaxRetryBackoff,
		attrs: metric.WithAttributes(attribute.String("source", o.Source)),
	}
}

// Record is one record at a source position.
type Record struct {
	// Position identifies the record within its source (object key and index, file and
	// offset, partition and offset). Together with the source name it is the record id.
	Position string
	Data     []byte
	// Time is the record's event time when known; it feeds the lag metric.
	Time time.Time
}

// Batch collects records of one source position and publishes them as NHI_RAW messages.
type Batch struct {
	sink     *Sink
	position string
	recs     []*events.RawRecord
	size     int
	msgs     []*nats.Msg
	received int64
	bytes    int64
	newest   time.Time
}

// NewBatch starts a batch for a source position (e.g. "s3://bucket/key", "file:/var/log/x").
func (s *Sink) NewBatch(position string) *Batch {
	return &Batch{sink: s, position: position, received: s.now().UnixNano()}
}

// Add appends a record, cutting a message when the current one is full. data is copied.
func (b *Batch) Add(r Record) error {
	n := len(r.Data) + len(r.Position) + 16
	if len(b.recs) > 0 && (len(b.recs) >= b.sink.maxRecs || b.size+n > b.sink.maxBytes) {
		if err := b.cut(); err != nil {
			return err
		}
	}
	b.recs = append(b.recs, &events.RawRecord{
		Id:   events.RecordID(b.sink.source, r.Position),
		Data: append([]byte(nil), r.Data...),
	})
	b.size += n
	b.bytes += int64(len(r.Data))
	if r.Time.After(b.newest) {
		b.newest = r.Time
	}
	return nil
}

// Len is the number of records added.
func (b *Batch) Len() int {
	n := len(b.recs)
	for _, m := range b.msgs {
		c, _ := strconv.Atoi(m.Header.Get(events.HeaderRecords))
		n += c
	}
	return n
}

func (b *Batch) cut() error {
	if len(b.recs) == 0 {
		return nil
	}
	rb := &events.RawBatch{
		Source:           b.sink.source,
		Provider:         b.sink.provider,
		Format:           b.sink.format,
		Cluster:          b.sink.cluster,
		Position:         b.position,
		Records:          b.recs,
		ReceivedUnixNano: b.received,
	}
	data, err := events.Marshal(rb)
	if err != nil {
		return err
	}
	msg := nats.NewMsg(events.RawSubject(b.sink.provider))
	// The message id is the source and the id range of its records: stable across re-reads
	// of the same position, so JetStream drops a re-published copy.
	msg.Header.Set(events.HeaderMsgID, b.recs[0].Id+".."+b.recs[len(b.recs)-1].Id)
	msg.Header.Set(events.HeaderSource, b.sink.source)
	msg.Header.Set(events.HeaderReceivedAt, time.Unix(0, b.received).UTC().Format(time.RFC3339Nano))
	msg.Header.Set(events.HeaderRecords, strconv.Itoa(len(b.recs)))
	msg.Data = data
	b.msgs = append(b.msgs, msg)
	b.recs = nil
	b.size = 0
	return nil
}

// Publish publishes every message of the batch and returns once all are acknowledged.
func (b *Batch) Publish(ctx context.Context) error {
	return b.sink.PublishAll(ctx, b)
}

// PublishAll publishes the messages of several batches in one round of asynchronous
// publishes and returns once JetStream acknowledged every one. On error nothing is counted
// and the batches can be published again (JetStream drops what it already stored).
func (s *Sink) PublishAll(ctx context.Context, batches ...*Batch) error {
	var msgs []*nats.Msg
	for _, b := range batches {
		if err := b.cut(); err != nil {
			return err
		}
		msgs = append(msgs, b.msgs...)
	}
	if len(msgs) == 0 {
		return nil
	}
	if err := s.pub.PublishAll(ctx, msgs); err != nil {
		s.m.Errors.Add(ctx, 1, s.attrs)
		return fmt.Errorf("publish %s: %w", batches[0].position, err)
	}
	var newest time.Time
	for _, b := range batches {
		s.m.Records.Add(ctx, int64(b.Len()), s.attrs)
		s.m.Bytes.Add(ctx, b.bytes, s.attrs)
		s.m.Messages.Add(ctx, int64(len(b.msgs)), s.attrs)
		if b.newest.After(newest) {
			newest = b.newest
		}
		b.msgs = nil
		b.bytes = 0
	}
	if !newest.IsZero() {
		s.ObserveLag(ctx, newest)
	}
	return nil
}

// PublishWait is PublishAll retried with back-off until it succeeds or ctx ends: a slow,
// full or unreachable stream stops the source; it never makes it skip records.
func (s *Sink) PublishWait(ctx context.Context, batches ...*Batch) error {
	return s.Retry(ctx, "publish", func() error { return s.PublishAll(ctx, batches...) })
}

// Retry calls f until it returns nil or ctx ends, waiting with exponential back-off between
// attempts. Each failure is logged and counted as a source error.
func (s *Sink) Retry(ctx context.Context, op string, f func() error) error {
	wait := s.backoff
	for {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.m.Errors.Add(ctx, 1, s.attrs)
		s.log.Warn("retrying", "source", s.source, "op", op, "error", err, "retry_in", wait.String())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, s.maxWait)
	}
}

// CountError counts a source error (a failed read or call that will be retried).
func (s *Sink) CountError(ctx context.Context) { s.m.Errors.Add(ctx, 1, s.attrs) }

// ObserveLag records now minus t, the time of the newest record or delivery handled.
func (s *Sink) ObserveLag(ctx context.Context, t time.Time) {
	s.m.Lag.Record(ctx, max(0, s.now().Sub(t).Seconds()), s.attrs)
}

// ObserveBacklog records what waits at the source; unit is "messages" or "bytes".
func (s *Sink) ObserveBacklog(ctx context.Context, n int64, unit string) {
	s.m.Backlog.Record(ctx, n, metric.WithAttributes(attribute.String("source", s.source), attribute.String("unit", unit)))
}

// Now is the sink's clock.
func (s *Sink) Now() time.Time { return s.now() }

// Reject dead-letters a record or a whole container that can never be read. position names
// it; data is what may be kept of it (already redacted, possibly empty).
func (s *Sink) Reject(ctx context.Context, position string, data []byte, reason error) error {
	h := nats.Header{}
	h.Set(events.HeaderSource, s.source)
	h.Set(events.HeaderReceivedAt, s.now().UTC().Format(time.RFC3339Nano))
	err := streams.DeadLetter(ctx, s.pub, events.StageIngest, events.RecordID(s.source, position), events.RawSubject(s.provider), h, data, fmt.Errorf("%s: %w", position, reason))
	if err != nil {
		return fmt.Errorf("dead-letter %s: %w", position, err)
	}
	s.m.Rejected.Add(ctx, 1, s.attrs)
	return nil
}

// Source is the configured source name.
func (s *Sink) Source() string { return s.source }
