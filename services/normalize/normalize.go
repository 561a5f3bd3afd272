// Package normalize turns the raw records on NHI_RAW into events.Event on NHI_EVENTS: one
// common shape for AWS CloudTrail, GCP Cloud Audit Logs and Kubernetes audit events, with
// secrets stripped. A record it cannot read goes to NHI_DLQ with the reason; nothing is
// dropped silently.
//
// Events are grouped by identity partition into EventBatch messages whose Nats-Msg-Id is
// derived from their content, so a redelivered raw batch republishes identical messages and
// JetStream drops the copies.
package normalize

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/protobuf/proto"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/redact"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
)

// ConsumerName is the durable consumer normalize reads NHI_RAW with.
const ConsumerName = "normalize"

// Config configures the normalize service.
type Config struct {
	// Workers handle raw batches concurrently.
	Workers int `yaml:"workers" env:"WORKERS"`
	// MaxBatchEvents bounds the events of one NHI_EVENTS message.
	MaxBatchEvents int `yaml:"max_batch_events" env:"MAX_BATCH_EVENTS"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config { return Config{Workers: 4, MaxBatchEvents: 256} }

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if c.Workers < 1 || c.Workers > 256 {
		return fmt.Errorf("normalize.workers must be 1 to 256, got %d", c.Workers)
	}
	if c.MaxBatchEvents < 1 {
		return errors.New("normalize.max_batch_events must be positive")
	}
	return nil
}

// Deps are the service's dependencies.
type Deps struct {
	Logger  *slog.Logger
	Meter   metric.Meter
	JS      jetstream.JetStream
	Streams streams.Config
}

// Service consumes NHI_RAW and publishes NHI_EVENTS.
type Service struct {
	cfg  Config
	deps Deps
	pub  *streams.Publisher
	m    metrics
}

type metrics struct {
	records  metric.Int64Counter
	events   metric.Int64Counter
	rejected metric.Int64Counter
	skipped  metric.Int64Counter
	batches  metric.Int64Histogram
}

// New checks the configuration and dependencies and returns a Service.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case deps.Logger == nil:
		return nil, errors.New("normalize: logger is required")
	case deps.Meter == nil:
		return nil, errors.New("normalize: meter is required")
	case deps.JS == nil:
		return nil, errors.New("normalize: jetstream is required")
	}
	if err := deps.Streams.Validate(); err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, deps: deps, pub: streams.NewPublisher(deps.JS)}
	var err error
	mt := deps.Meter
	if s.m.records, err = mt.Int64Counter("nhiwatch_normalize_records", metric.WithDescription("raw records read")); err != nil {
		return nil, err
	}
	if s.m.events, err = mt.Int64Counter("nhiwatch_normalize_events", metric.WithDescription("events published to NHI_EVENTS")); err != nil {
		return nil, err
	}
	if s.m.rejected, err = mt.Int64Counter("nhiwatch_normalize_rejected", metric.WithDescription("records dead-lettered, by reason")); err != nil {
		return nil, err
	}
	if s.m.skipped, err = mt.Int64Counter("nhiwatch_normalize_skipped", metric.WithDescription("valid records that yield no event (e.g. non-final Kubernetes stages)")); err != nil {
		return nil, err
	}
	if s.m.batches, err = mt.Int64Histogram("nhiwatch_normalize_batch_events", metric.WithDescription("events per NHI_EVENTS message")); err != nil {
		return nil, err
	}
	return s, nil
}

// Run consumes NHI_RAW until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	if err := streams.Ensure(ctx, s.deps.JS, s.deps.Streams); err != nil {
		return err
	}
	cc := streams.ConsumerConfig(ConsumerName, "normalize: raw records to events", events.SubjectsRaw)
	cons, err := streams.EnsureConsumer(ctx, s.deps.JS, events.StreamRaw, cc)
	if err != nil {
		return err
	}
	s.deps.Logger.Info("normalize running", "workers", s.cfg.Workers, "partitions", s.deps.Streams.Partitions)
	return streams.Consume(ctx, cons, streams.ConsumeOptions{
		Workers:    s.cfg.Workers,
		Fetch:      8,
		Stage:      events.StageNormalize,
		Publisher:  s.pub,
		MaxDeliver: cc.MaxDeliver,
		Logger:     s.deps.Logger,
	}, s.newHandler())
}

// newHandler returns a message handler; each worker goroutine calls it one message at a
// time, and the Normalizer pool keeps one parser per concurrent call.
func (s *Service) newHandler() streams.Handler {
	pool := make(chan *Normalizer, s.cfg.Workers)
	for i := 0; i < s.cfg.Workers; i++ {
		pool <- NewNormalizer()
	}
	return func(ctx context.Context, msg jetstream.Msg) error {
		n := <-pool
		defer func() { pool <- n }()
		return s.handle(ctx, n, msg)
	}
}

// handle normalizes one raw batch, publishes its events and dead-letters its bad records.
// It returns nil only when all of that is stored.
func (s *Service) handle(ctx context.Context, n *Normalizer, msg jetstream.Msg) error {
	raw, err := events.UnmarshalRawBatch(msg.Data())
	if err != nil {
		return streams.Permanent(err)
	}
	var rawSeq uint64
	if md, err := msg.Metadata(); err == nil {
		rawSeq = md.Sequence.Stream
	}
	received := time.Unix(0, raw.ReceivedUnixNano)
	srcAttr := metric.WithAttributes(attribute.String("source", raw.Source))
	s.m.records.Add(ctx, int64(len(raw.Records)), srcAttr)

	groups := map[uint32][]*events.Event{}
	var order []uint32
	add := func(p uint32, ev *events.Event) {
		if _, ok := groups[p]; !ok {
			order = append(order, p)
		}
		groups[p] = append(groups[p], ev)
	}
	for _, rec := range raw.Records {
		ev, err := n.Normalize(Input{
			Data: rec.Data, Format: raw.Format, Cluster: raw.Cluster, Source: raw.Source,
			RecordID: rec.Id, Position: raw.Position, ReceivedAt: received,
		})
		if errors.Is(err, ErrSkipped) {
			s.m.skipped.Add(ctx, 1, srcAttr)
			continue
		}
		if err != nil {
			if derr := s.reject(ctx, msg, raw, rec, err); derr != nil {
				return derr
			}
			continue
		}
		ev.Raw.StreamSeq = rawSeq
		ev.Partition = events.Partition(ev.Identity.GetId(), s.deps.Streams.Partitions)
		add(ev.Partition, ev)
		// An event that changes another identity's grants also goes to the grantee's
		// partition, so the detect worker owning the grantee sees it.
		for _, p := range granteePartitions(ev, s.deps.Streams.Partitions) {
			add(p, ev)
		}
	}
	var out []*nats.Msg
	total := 0
	for _, p := range order {
		msgs, err := s.batchMsgs(p, groups[p], msg.Headers())
		if err != nil {
			return streams.Permanent(err)
		}
		out = append(out, msgs...)
		total += len(groups[p])
	}
	if err := s.pub.PublishAll(ctx, out); err != nil {
		return err
	}
	s.m.events.Add(ctx, int64(total), srcAttr)
	return nil
}

// granteePartitions lists the partitions, other than the actor's, of the identities whose
// grants ev changes.
func granteePartitions(ev *events.Event, partitions uint32) []uint32 {
	var out []uint32
	for _, g := range ev.GrantChanges {
		if !isIdentityID(g.Grantee) {
			continue
		}
		p := events.Partition(g.Grantee, partitions)
		if p == ev.Partition || contains(out, p) {
			continue
		}
		out = append(out, p)
	}
	return out
}

func isIdentityID(s string) bool {
	return strings.HasPrefix(s, "aws:") || strings.HasPrefix(s, "gcp:") || strings.HasPrefix(s, "k8s:")
}

func contains(ps []uint32, p uint32) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}

// batchMsgs cuts one partition's events into NHI_EVENTS messages.
func (s *Service) batchMsgs(p uint32, evs []*events.Event, in nats.Header) ([]*nats.Msg, error) {
	var out []*nats.Msg
	for start := 0; start < len(evs); {
		end := min(start+s.cfg.MaxBatchEvents, len(evs))
		batch := &events.EventBatch{Partition: p, Events: evs[start:end]}
		// Shrink the batch until it fits one message.
		for proto.Size(batch) > events.MaxMessageBytes && end-start > 1 {
			end = start + (end-start)/2
			batch.Events = evs[start:end]
		}
		data, err := events.Marshal(batch)
		if err != nil {
			return nil, err
		}
		m := nats.NewMsg(events.EventSubject(evs[start].Provider, p))
		m.Header.Set(events.HeaderMsgID, events.EventBatchMsgID(p, evs[start].Id, evs[end-1].Id))
		m.Header.Set(events.HeaderRecords, strconv.Itoa(end-start))
		for _, h := range []string{events.HeaderSource, events.HeaderReceivedAt, events.HeaderTraceParent} {
			if v := in.Get(h); v != "" {
				m.Header.Set(h, v)
			}
		}
		m.Data = data
		out = append(out, m)
		start = end
	}
	return out, nil
}

// reject dead-letters one record with the reason and counts it.
func (s *Service) reject(ctx context.Context, msg jetstream.Msg, raw *events.RawBatch, rec *events.RawRecord, reason error) error {
	h := nats.Header{}
	h.Set(events.HeaderSource, raw.Source)
	if v := msg.Headers().Get(events.HeaderReceivedAt); v != "" {
		h.Set(events.HeaderReceivedAt, v)
	}
	data := rec.Data
	if len(data) > 64<<10 {
		data = data[:64<<10]
	}
	if err := streams.DeadLetter(ctx, s.pub, events.StageNormalize, rec.Id, msg.Subject(), h, redact.Text(data), reason); err != nil {
		return err
	}
	s.m.rejected.Add(ctx, 1, metric.WithAttributes(attribute.String("source", raw.Source), attribute.String("reason", reasonClass(reason))))
	s.deps.Logger.Debug("record rejected", "source", raw.Source, "record", rec.Id, "reason", streams.Reason(reason))
	return nil
}

// reasonClass is a low-cardinality metric label for a rejection.
func reasonClass(err error) string {
	switch {
	case errors.Is(err, ErrTooLarge):
		return "too_large"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, ErrMissingField):
		return "missing_field"
	case errors.Is(err, ErrUnsupported):
		return "unsupported"
	}
	return "other"
}
