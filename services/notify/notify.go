// Package notify routes findings from NHI_FINDINGS to the people and systems that act on
// them — Slack, PagerDuty, Kafka toward a SIEM (OCSF), signed webhooks, the terminal — and
// keeps the alerts current as analysts triage the findings.
//
// Guarantees:
//   - A finding is acknowledged on JetStream only when every destination of every route it
//     matches has it, or it went to NHI_DLQ for that destination (id
//     "<finding id>:<destination>", stage notify, with the reason).
//   - The alert ledger (KV NHI_ALERTS) keeps one alert per finding and destination: a
//     redelivered finding is skipped, a repeat of the same finding within the fold window
//     becomes one update of the alert already raised.
//   - Deliveries are retried with back-off, honour the receivers' rate limits, and queue per
//     destination in a bounded queue.
//   - Secrets (webhook URLs, tokens, routing keys, HMAC keys) are never logged; outbound HTTP
//     is https only, follows no redirect and reaches public addresses only, unless configured.
//   - Triage changes (KV NHI_FINDING_STATUS) resolve or acknowledge the PagerDuty alert,
//     update the Slack message, reach the SIEM as OCSF updates and, with ClickHouse, are
//     stored in finding_status and finding_status_log. A suppression silences new alerts
//     for the same identity and cause until it expires.
package notify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/sync/errgroup"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/api"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/dest"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/kafkasink"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/ledger"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/ocsf"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/pagerduty"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/route"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/safehttp"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/slack"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/terminal"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/webhook"
	"github.com/nhiwatch/nhiwatch/services/notify/triage"
)

// Durable consumers.
const (
	// ConsumerName reads NHI_FINDINGS and delivers findings.
	ConsumerName = "notify"
	// StatusConsumerName reads triage changes and updates the alerts.
	StatusConsumerName = "notify-status"
	// StatusStoreConsumerName copies triage changes to ClickHouse.
	StatusStoreConsumerName = "notify-status-store"
	// EventsConsumerName forwards NHI_EVENTS as OCSF (opt-in).
	EventsConsumerName = "notify-events"
)

// Deps are the service's dependencies.
type Deps struct {
	Logger  *slog.Logger
	Meter   metric.Meter
	JS      jetstream.JetStream
	Streams streams.Config
	// Out receives terminal output; required when Config.Terminal is set.
	Out io.Writer
	// ClickHouse, optional, stores triage changes and lets the triage API list findings
	// from the findings table (without it, they are read from NHI_FINDINGS).
	ClickHouse driver.Conn
	// Version is reported as the product version in OCSF documents; optional.
	Version string
}

// Service consumes findings and delivers them.
type Service struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	pub     *streams.Publisher
	router  *route.Router
	dests   map[string]dest.Destination
	workers map[string]*worker
	product ocsf.Product
	now     func() time.Time

	ledger *ledger.Ledger
	triage *triage.Store
	api    *api.Server

	// ready is closed once Run has opened the buckets.
	ready chan struct{}

	pendingMu sync.Mutex
	pending   map[string]time.Time // ledger keys with folded repeats, due time

	m metrics
}

type metrics struct {
	delivered, failures, deadLettered, suppressed, folded, skipped, authFailures metric.Int64Counter
	latency                                                                      metric.Float64Histogram
}

// New checks the configuration, loads the destinations' secrets and returns a Service.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case deps.Logger == nil:
		return nil, errors.New("notify: logger is required")
	case deps.Meter == nil:
		return nil, errors.New("notify: meter is required")
	case deps.JS == nil:
		return nil, errors.New("notify: jetstream is required")
	case cfg.Terminal && deps.Out == nil:
		return nil, errors.New("notify: terminal output needs a writer")
	}
	version := deps.Version
	if version == "" {
		version = "dev"
	}
	s := &Service{
		cfg: cfg, deps: deps, log: deps.Logger, pub: streams.NewPublisher(deps.JS),
		dests: map[string]dest.Destination{}, workers: map[string]*worker{}, pending: map[string]time.Time{},
		product: ocsf.Product{Name: "nhiwatch", Vendor: "nhiwatch", Version: version}, now: time.Now,
		ready: make(chan struct{}),
	}
	if err := s.buildDestinations(); err != nil {
		s.closeDestinations()
		return nil, err
	}
	routes := cfg.Routes
	if cfg.Terminal {
		routes = append([]route.Route{{Name: "terminal", Destinations: []string{TerminalDestination}}}, routes...)
	}
	var err error
	if s.router, err = route.New(routes, func(n string) bool { return s.dests[n] != nil }); err != nil {
		s.closeDestinations()
		return nil, fmt.Errorf("notify.routes: %w", err)
	}
	if err := s.initMetrics(); err != nil {
		s.closeDestinations()
		return nil, err
	}
	return s, nil
}

func (s *Service) buildDestinations() error {
	client := safehttp.NewClient(s.cfg.HTTP)
	limiters := slack.NewLimiters(s.cfg.SlackPerSecond)
	var printer *terminal.Printer
	if s.deps.Out != nil {
		printer = terminal.New(s.deps.Out)
	}
	if s.cfg.Terminal {
		s.dests[TerminalDestination] = terminal.NewDestination(TerminalDestination, printer)
	}
	for _, dc := range s.cfg.Destinations {
		var d dest.Destination
		var err error
		switch dest.Kind(dc.Type) {
		case dest.Slack:
			d, err = slack.New(dc.Name, dc.Slack, client, s.cfg.HTTP, limiters)
		case dest.PagerDuty:
			d, err = pagerduty.New(dc.Name, dc.PagerDuty, client, s.cfg.HTTP)
		case dest.Kafka:
			d, err = kafkasink.New(dc.Name, dc.Kafka, s.product)
		case dest.Webhook:
			d, err = webhook.New(dc.Name, dc.Webhook, client, s.cfg.HTTP, s.product)
		case dest.Terminal:
			if printer == nil {
				return fmt.Errorf("notify: destination %s prints to the terminal but there is no writer", dc.Name)
			}
			d = terminal.NewDestination(dc.Name, printer)
		}
		if err != nil {
			return fmt.Errorf("notify: destination %s: %w", dc.Name, err)
		}
		s.dests[dc.Name] = d
	}
	for name, d := range s.dests {
		s.workers[name] = newWorker(d, s.cfg.QueueSize)
	}
	return nil
}

func (s *Service) closeDestinations() {
	for _, d := range s.dests {
		_ = d.Close()
	}
}

func (s *Service) initMetrics() error {
	m := s.deps.Meter
	var errs []error
	counter := func(name, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	s.m.delivered = counter("nhiwatch_notify_delivered", "notices delivered, by destination and kind (new, repeat, status)")
	s.m.failures = counter("nhiwatch_notify_failures", "failed delivery attempts, by destination and class (transient, rate_limited, permanent)")
	s.m.deadLettered = counter("nhiwatch_notify_dead_lettered", "deliveries sent to NHI_DLQ, by destination")
	s.m.suppressed = counter("nhiwatch_notify_suppressed", "alerts not raised because of a suppression, by destination")
	s.m.folded = counter("nhiwatch_notify_folded", "repeats folded into a later update, by destination")
	s.m.skipped = counter("nhiwatch_notify_skipped", "redelivered findings the ledger already covered, by destination")
	s.m.authFailures = counter("nhiwatch_notify_api_auth_failures", "triage API requests refused for authentication")
	var err error
	s.m.latency, err = m.Float64Histogram("nhiwatch_notify_alert_latency_seconds",
		metric.WithDescription("from ingest receiving the triggering event to the destination accepting the alert"),
		metric.WithExplicitBucketBoundaries(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60))
	errs = append(errs, err)
	_, err = m.Int64ObservableGauge("nhiwatch_notify_queue_depth", metric.WithDescription("deliveries waiting, by destination"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			for name, w := range s.workers {
				o.Observe(int64(len(w.jobs)), metric.WithAttributes(attribute.String("destination", name)))
			}
			return nil
		}))
	errs = append(errs, err)
	return errors.Join(errs...)
}

// Run consumes until ctx ends, then drains the destinations' queues and closes them.
func (s *Service) Run(ctx context.Context) error {
	if err := streams.Ensure(ctx, s.deps.JS, s.deps.Streams); err != nil {
		return err
	}
	ttl := 2 * s.deps.Streams.FindingsMaxAge
	var err error
	if s.ledger, err = ledger.Open(ctx, s.deps.JS, s.deps.Streams, ttl); err != nil {
		return err
	}
	if s.triage, err = triage.Open(ctx, s.deps.JS, s.deps.Streams, s.deps.ClickHouse); err != nil {
		return err
	}
	if s.cfg.API.Enabled() {
		if s.api, err = api.New(s.cfg.API, s.triage, s.log.With("component", "api")); err != nil {
			return err
		}
		s.api.OnAuthFailure = func(string) { s.m.authFailures.Add(context.Background(), 1) }
	}
	close(s.ready)
	var wg sync.WaitGroup
	for _, w := range s.workers {
		wg.Add(1)
		go func() { defer wg.Done(); w.run() }()
	}
	defer func() {
		for _, w := range s.workers {
			close(w.jobs)
		}
		wg.Wait()
		s.closeDestinations()
	}()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.consumeFindings(gctx) })
	g.Go(func() error { return s.consumeStatus(gctx) })
	g.Go(func() error { s.flushLoop(gctx); return nil })
	if s.deps.ClickHouse != nil {
		g.Go(func() error { return s.consumeStatusStore(gctx) })
	}
	if s.cfg.ForwardEvents.Destination != "" {
		g.Go(func() error { return s.consumeEvents(gctx) })
	}
	if s.api != nil {
		g.Go(func() error { return s.api.Serve(gctx) })
	}
	return g.Wait()
}

// Ready is closed once Run has set up its buckets and starts consuming.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Triage returns the status store once Run has opened it (nil before).
func (s *Service) Triage() *triage.Store {
	select {
	case <-s.ready:
		return s.triage
	default:
		return nil
	}
}

func (s *Service) consumeOptions(stage string, maxDeliver, workers int) streams.ConsumeOptions {
	return streams.ConsumeOptions{
		Workers: workers, Stage: stage, Publisher: s.pub, MaxDeliver: maxDeliver,
		RetryDelay: s.cfg.RetryDelay, Logger: s.log,
	}
}

func (s *Service) consumeFindings(ctx context.Context) error {
	cc := streams.ConsumerConfig(ConsumerName, "notify: findings to destinations", events.SubjectsFindings)
	cons, err := streams.EnsureConsumer(ctx, s.deps.JS, events.StreamFindings, cc)
	if err != nil {
		return err
	}
	opts := s.consumeOptions(events.StageNotify, cc.MaxDeliver, s.cfg.Workers)
	return streams.Consume(ctx, cons, opts, func(ctx context.Context, msg jetstream.Msg) error {
		return s.handleFinding(ctx, msg, streams.LastDelivery(msg, cc.MaxDeliver))
	})
}

// statusStream is the stream behind the status bucket.
func statusStream() string { return "KV_" + events.BucketFindingStatus }

func (s *Service) consumeStatus(ctx context.Context) error {
	cc := streams.ConsumerConfig(StatusConsumerName, "notify: triage changes to alerts", triage.StatusSubjects())
	cons, err := streams.EnsureConsumer(ctx, s.deps.JS, statusStream(), cc)
	if err != nil {
		return err
	}
	// One worker: changes of one finding are applied in order.
	opts := s.consumeOptions(events.StageNotify, cc.MaxDeliver, 1)
	return streams.Consume(ctx, cons, opts, func(ctx context.Context, msg jetstream.Msg) error {
		return s.handleStatus(ctx, msg, streams.LastDelivery(msg, cc.MaxDeliver))
	})
}

func (s *Service) consumeStatusStore(ctx context.Context) error {
	cc := streams.ConsumerConfig(StatusStoreConsumerName, "notify: triage changes to ClickHouse", triage.StatusSubjects())
	// Like the other ClickHouse writers: no delivery limit, an insert failure is transient.
	cc.MaxDeliver, cc.BackOff, cc.AckWait = -1, nil, 30*time.Second
	cons, err := streams.EnsureConsumer(ctx, s.deps.JS, statusStream(), cc)
	if err != nil {
		return err
	}
	opts := s.consumeOptions(events.StageStore, 0, 1)
	return streams.Consume(ctx, cons, opts, func(ctx context.Context, msg jetstream.Msg) error {
		st, ok, err := statusOf(msg)
		if err != nil || !ok {
			return err
		}
		return triage.InsertStatuses(ctx, s.deps.ClickHouse, []triage.Status{st})
	})
}

// statusOf decodes a status-bucket message; ok is false for deletes and purges.
func statusOf(msg jetstream.Msg) (triage.Status, bool, error) {
	switch msg.Headers().Get("KV-Operation") {
	case "DEL", "PURGE":
		return triage.Status{}, false, nil
	}
	st, err := triage.DecodeStatus(msg.Data())
	if err != nil {
		return st, false, streams.Permanent(err)
	}
	md, err := msg.Metadata()
	if err != nil {
		return st, false, err
	}
	st.Revision = md.Sequence.Stream
	return st, true, nil
}

func (s *Service) link(id string) string {
	if s.cfg.LinkBaseURL == "" {
		return ""
	}
	return s.cfg.LinkBaseURL + id
}

func attrs(name string, kv ...attribute.KeyValue) metric.MeasurementOption {
	return metric.WithAttributes(append([]attribute.KeyValue{attribute.String("destination", name)}, kv...)...)
}
