// Package ingest reads audit logs from the sources an operator configures and publishes their
// records, secrets removed, to NHI_RAW. Source types: files (files and directories, once or
// watching), tail (growing log files across rotations), s3sqs (CloudTrail files in S3
// announced through SQS), lookup (the CloudTrail LookupEvents API), pubsub (GCP audit logs
// from a Logging sink), webhook (Kubernetes API servers' audit webhook) and kafka (topics
// carrying any of the formats); docs/sources.md tells how to connect each.
//
// Each source keeps a durable cursor — in the NHI_CURSORS KV bucket, or the broker's own
// (SQS message, Pub/Sub ack, Kafka offset) — and moves it only after JetStream acknowledged
// the records before it; a re-read publishes the same Nats-Msg-Id, so nothing is duplicated.
// When JetStream is slow or full, a source waits: it never drops.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/awsconf"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/cursor"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/files"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/kafka"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/lookup"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/pubsub"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/s3sqs"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/sink"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/split"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/tail"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/webhook"
)

// FilesConfig configures a "files" source.
type FilesConfig = files.Config

// DefaultFilesConfig returns the defaults of a files source.
func DefaultFilesConfig() FilesConfig { return files.DefaultConfig() }

// S3SQSConfig configures an "s3sqs" source: CloudTrail files in S3 announced through SQS.
type S3SQSConfig = s3sqs.Config

// LookupConfig configures a "lookup" source: the CloudTrail LookupEvents API of accounts and
// regions.
type LookupConfig = lookup.Config

// LookupTarget is one account and region a lookup source polls.
type LookupTarget = lookup.Target

// WebhookConfig configures a "webhook" source: Kubernetes audit events from API servers.
type WebhookConfig = webhook.Config

// WebhookCluster is one cluster allowed to send to a webhook source.
type WebhookCluster = webhook.Cluster

// KafkaConfig configures a "kafka" source: topics carrying any supported format.
type KafkaConfig = kafka.Config

// PubSubConfig configures a "pubsub" source: GCP audit logs from a Logging sink's
// subscription.
type PubSubConfig = pubsub.Config

// TailConfig configures a "tail" source: growing log files followed line by line across
// rotations (a Kubernetes API server's audit log).
type TailConfig = tail.Config

// AWSConfig selects the region, credentials and endpoint of AWS clients.
type AWSConfig = awsconf.Config

// SourceConfig is one named source.
type SourceConfig struct {
	// Name identifies the source in record ids, cursors, metrics and the Nhi-Source header.
	// Renaming a source makes it start over.
	Name string `yaml:"name"`
	// Type is the kind of source: files, tail, s3sqs, lookup, pubsub, webhook or kafka.
	// The section of the same name configures it.
	Type string `yaml:"type"`
	// Provider is aws, gcp or k8s.
	Provider string `yaml:"provider"`
	// Format is how normalize reads the records: cloudtrail, gcp, k8s or auto (default: the
	// provider's format).
	Format string `yaml:"format"`
	// Cluster names the Kubernetes cluster of a k8s source.
	Cluster string `yaml:"cluster"`

	Files   *FilesConfig   `yaml:"files"`
	S3SQS   *S3SQSConfig   `yaml:"s3sqs"`
	Lookup  *LookupConfig  `yaml:"lookup"`
	Webhook *WebhookConfig `yaml:"webhook"`
	Kafka   *KafkaConfig   `yaml:"kafka"`
	PubSub  *PubSubConfig  `yaml:"pubsub"`
	Tail    *TailConfig    `yaml:"tail"`
}

// Config configures the ingest service.
type Config struct {
	Sources []SourceConfig `yaml:"sources"`
	// MaxContainerBytes bounds a file or object after decompression.
	MaxContainerBytes int64 `yaml:"max_container_bytes" env:"MAX_CONTAINER_BYTES"`
	// MaxRecordBytes bounds one record; larger ones are dead-lettered.
	MaxRecordBytes int `yaml:"max_record_bytes" env:"MAX_RECORD_BYTES"`
	// MaxBatchRecords bounds the records of one NHI_RAW message.
	MaxBatchRecords int `yaml:"max_batch_records" env:"MAX_BATCH_RECORDS"`
	// RetryBackoff is the first wait before a failed source is restarted; it doubles up
	// to MaxRetryBackoff.
	RetryBackoff    time.Duration `yaml:"retry_backoff" env:"RETRY_BACKOFF"`
	MaxRetryBackoff time.Duration `yaml:"max_retry_backoff" env:"MAX_RETRY_BACKOFF"`
}

// DefaultConfig returns a configuration with no sources.
func DefaultConfig() Config {
	lim := split.DefaultLimits()
	return Config{
		MaxContainerBytes: lim.MaxContainerBytes,
		MaxRecordBytes:    lim.MaxRecordBytes,
		MaxBatchRecords:   500,
		RetryBackoff:      time.Second,
		MaxRetryBackoff:   time.Minute,
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if c.MaxContainerBytes <= 0 || c.MaxRecordBytes <= 0 || c.MaxBatchRecords <= 0 {
		return errors.New("ingest: size limits must be positive")
	}
	if c.MaxRecordBytes > events.MaxMessageBytes {
		return fmt.Errorf("ingest: max_record_bytes must be at most %d", events.MaxMessageBytes)
	}
	if c.RetryBackoff <= 0 || c.MaxRetryBackoff < c.RetryBackoff {
		return errors.New("ingest: retry_backoff must be positive and at most max_retry_backoff")
	}
	names := map[string]bool{}
	for i, s := range c.Sources {
		if s.Name == "" {
			return fmt.Errorf("ingest: source %d has no name", i)
		}
		if names[s.Name] {
			return fmt.Errorf("ingest: two sources are named %q", s.Name)
		}
		names[s.Name] = true
		if err := s.validate(); err != nil {
			return fmt.Errorf("ingest: source %q: %w", s.Name, err)
		}
	}
	return nil
}

func (s SourceConfig) validate() error {
	p, err := events.ParseProvider(s.Provider)
	if err != nil {
		return err
	}
	switch s.format(p) {
	case "cloudtrail", "gcp", "k8s", "auto":
	default:
		return fmt.Errorf("format %q: want cloudtrail, gcp, k8s or auto", s.Format)
	}
	switch {
	case s.Type == "webhook" && s.Cluster != "":
		return errors.New("a webhook source names its clusters in webhook.clusters, not in cluster")
	case s.Type != "webhook" && p == events.Provider_PROVIDER_K8S && s.Cluster == "":
		return errors.New("a k8s source needs a cluster name")
	}
	sections := map[string]bool{
		"files":   s.Files != nil,
		"s3sqs":   s.S3SQS != nil,
		"lookup":  s.Lookup != nil,
		"webhook": s.Webhook != nil,
		"kafka":   s.Kafka != nil,
		"pubsub":  s.PubSub != nil,
		"tail":    s.Tail != nil,
	}
	if s.Type == "" {
		return errors.New("type is required")
	}
	if _, ok := sections[s.Type]; !ok {
		return fmt.Errorf("unknown type %q (want %s)", s.Type, strings.Join(slices.Sorted(maps.Keys(sections)), ", "))
	}
	for name, set := range sections {
		if name == s.Type && !set {
			return fmt.Errorf("type %s needs a %s section", s.Type, s.Type)
		}
		if name != s.Type && set {
			return fmt.Errorf("a %s section does not belong to a source of type %s", name, s.Type)
		}
	}
	switch s.Type {
	case "files":
		return s.Files.WithDefaults().Validate()
	case "s3sqs":
		if p != events.Provider_PROVIDER_AWS {
			return errors.New("an s3sqs source reads CloudTrail: provider must be aws")
		}
		return s.S3SQS.WithDefaults().Validate()
	case "lookup":
		if p != events.Provider_PROVIDER_AWS {
			return errors.New("a lookup source reads CloudTrail: provider must be aws")
		}
		return s.Lookup.WithDefaults().Validate()
	case "webhook":
		if p != events.Provider_PROVIDER_K8S {
			return errors.New("a webhook source receives Kubernetes audit events: provider must be k8s")
		}
		return s.Webhook.WithDefaults().Validate()
	case "kafka":
		return s.Kafka.WithDefaults().Validate()
	case "pubsub":
		return s.PubSub.WithDefaults().Validate()
	case "tail":
		return s.Tail.WithDefaults().Validate()
	}
	return nil
}

func (s SourceConfig) format(p events.Provider) string {
	if s.Format != "" {
		return s.Format
	}
	switch p {
	case events.Provider_PROVIDER_AWS:
		return "cloudtrail"
	case events.Provider_PROVIDER_GCP:
		return "gcp"
	case events.Provider_PROVIDER_K8S:
		return "k8s"
	}
	return "auto"
}

// Deps are the service's dependencies.
type Deps struct {
	Logger *slog.Logger
	Meter  metric.Meter
	// JS is a JetStream context created with a bounded PublishAsyncMaxPending.
	JS      jetstream.JetStream
	Streams streams.Config
}

// Service runs the configured sources.
type Service struct {
	cfg     Config
	deps    Deps
	pub     *streams.Publisher
	metrics *sink.Metrics
	done    chan struct{}
}

// New checks the configuration and dependencies and returns a Service.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case deps.Logger == nil:
		return nil, errors.New("ingest: logger is required")
	case deps.Meter == nil:
		return nil, errors.New("ingest: meter is required")
	case deps.JS == nil:
		return nil, errors.New("ingest: jetstream is required")
	}
	m, err := sink.NewMetrics(deps.Meter)
	if err != nil {
		return nil, fmt.Errorf("ingest metrics: %w", err)
	}
	return &Service{cfg: cfg, deps: deps, pub: streams.NewPublisher(deps.JS), metrics: m, done: make(chan struct{})}, nil
}

// runner is a started source.
type runner interface {
	Run(ctx context.Context) error
}

// Run runs every source until ctx ends. A source that fails is restarted with back-off; one
// that finishes (a files source without watch) stays finished. When every source has
// finished, Done is closed and Run keeps waiting for ctx.
func (s *Service) Run(ctx context.Context) error {
	if err := streams.Ensure(ctx, s.deps.JS, s.deps.Streams); err != nil {
		return err
	}
	kv, err := streams.EnsureBucket(ctx, s.deps.JS, s.deps.Streams, events.BucketCursors, "ingest source cursors", 1)
	if err != nil {
		return err
	}
	runners := make([]runner, 0, len(s.cfg.Sources))
	names := make([]string, 0, len(s.cfg.Sources))
	for _, sc := range s.cfg.Sources {
		r, err := s.build(ctx, sc, kv)
		if err != nil {
			return fmt.Errorf("ingest: source %q: %w", sc.Name, err)
		}
		runners = append(runners, r)
		names = append(names, sc.Name)
	}
	var wg sync.WaitGroup
	for i, r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.supervise(ctx, names[i], r)
		}()
	}
	go func() {
		wg.Wait()
		close(s.done)
	}()
	<-ctx.Done()
	wg.Wait()
	return nil
}

// Done is closed once every source has finished (only finite sources ever do).
func (s *Service) Done() <-chan struct{} { return s.done }

// supervise runs a source, restarting it with back-off after an error.
func (s *Service) supervise(ctx context.Context, name string, r runner) {
	wait := s.cfg.RetryBackoff
	for {
		err := r.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			s.deps.Logger.Info("source finished", "source", name)
			return
		}
		s.deps.Logger.Error("source failed, restarting", "source", name, "error", err, "retry_in", wait.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, s.cfg.MaxRetryBackoff)
	}
}

func (s *Service) build(ctx context.Context, sc SourceConfig, kv jetstream.KeyValue) (runner, error) {
	p, _ := events.ParseProvider(sc.Provider)
	log := s.deps.Logger.With("source", sc.Name)
	newSink := func(cluster string) *sink.Sink {
		return sink.New(sink.Options{
			Source:          sc.Name,
			Provider:        p,
			Format:          sc.format(p),
			Cluster:         cluster,
			MaxBatchRecords: s.cfg.MaxBatchRecords,
			Logger:          log,
			RetryBackoff:    s.cfg.RetryBackoff,
			MaxRetryBackoff: s.cfg.MaxRetryBackoff,
		}, s.pub, s.metrics)
	}
	sk := newSink(sc.Cluster)
	lim := split.Limits{MaxContainerBytes: s.cfg.MaxContainerBytes, MaxRecordBytes: s.cfg.MaxRecordBytes}
	cursors := cursor.New(kv, sc.Name)
	switch sc.Type {
	case "files":
		return files.New(*sc.Files, sk, cursors, lim, log)
	case "s3sqs":
		return s3sqs.New(ctx, *sc.S3SQS, sk, cursors, lim, log)
	case "lookup":
		return lookup.New(ctx, *sc.Lookup, sk, cursors, lim, log)
	case "webhook":
		return webhook.New(*sc.Webhook, sc.Name, newSink, lim, s.deps.Meter, log)
	case "kafka":
		return kafka.New(*sc.Kafka, sk, lim, log)
	case "pubsub":
		return pubsub.New(*sc.PubSub, sk, lim, log)
	case "tail":
		return tail.New(*sc.Tail, sk, cursors, lim, log)
	}
	return nil, fmt.Errorf("unknown type %q", sc.Type)
}
