// Package pubsub reads GCP Cloud Audit Logs from a Pub/Sub subscription fed by a Cloud
// Logging sink: one LogEntry per message. A message is acknowledged only after JetStream
// acknowledged its record, and nacked (so Pub/Sub redelivers it soon) when publishing
// fails; flow control bounds the messages and bytes held at once. The subscription's acks
// are the source's cursor. Each Pub/Sub message becomes one NHI_RAW message whose id comes
// from the Pub/Sub message id, so a redelivery publishes the same id and JetStream drops it.
package pubsub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/nhiwatch/nhiwatch/services/ingest/internal/sink"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/split"
)

// Config configures a pubsub source.
type Config struct {
	// Project is the GCP project of the subscription (and of the client's quota).
	Project string `yaml:"project"`
	// Subscription is the subscription id, or its full name projects/<p>/subscriptions/<s>.
	Subscription string `yaml:"subscription"`
	// CredentialsFile is a service-account key file; empty uses Application Default
	// Credentials (workload identity, GOOGLE_APPLICATION_CREDENTIALS, metadata server).
	CredentialsFile string `yaml:"credentials_file"`
	// Endpoint overrides the Pub/Sub endpoint (host:port); Insecure connects to it without
	// TLS or credentials (the emulator). PUBSUB_EMULATOR_HOST is honoured as well.
	Endpoint string `yaml:"endpoint"`
	Insecure bool   `yaml:"insecure"`
	// MaxOutstandingMessages and MaxOutstandingBytes are the flow control: how much is held
	// (received, not yet acknowledged) at once.
	MaxOutstandingMessages int `yaml:"max_outstanding_messages"`
	MaxOutstandingBytes    int `yaml:"max_outstanding_bytes"`
	// PublishTimeout bounds the wait for JetStream; past it the message is nacked.
	PublishTimeout time.Duration `yaml:"publish_timeout"`
	// AckExtension is the longest ack-deadline extension per lease renewal (0: the client
	// library's default). Shorter brings messages held by a crashed reader back sooner.
	AckExtension time.Duration `yaml:"ack_extension"`
}

// DefaultConfig returns the defaults of a pubsub source.
func DefaultConfig() Config {
	return Config{MaxOutstandingMessages: 1000, MaxOutstandingBytes: 64 << 20, PublishTimeout: 30 * time.Second}
}

// WithDefaults fills the settings a configuration file left out.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	if c.MaxOutstandingMessages == 0 {
		c.MaxOutstandingMessages = d.MaxOutstandingMessages
	}
	if c.MaxOutstandingBytes == 0 {
		c.MaxOutstandingBytes = d.MaxOutstandingBytes
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = d.PublishTimeout
	}
	return c
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Project == "":
		return errors.New("pubsub: project is required")
	case c.Subscription == "":
		return errors.New("pubsub: subscription is required")
	case strings.Contains(c.Subscription, "/") && !strings.HasPrefix(c.Subscription, "projects/"+c.Project+"/subscriptions/"):
		return errors.New("pubsub: subscription must be an id or projects/<project>/subscriptions/<id>")
	case c.Insecure && c.Endpoint == "":
		return errors.New("pubsub: insecure needs endpoint")
	case c.Insecure && c.CredentialsFile != "":
		return errors.New("pubsub: insecure excludes credentials_file")
	case c.MaxOutstandingMessages < 1 || c.MaxOutstandingBytes < 1<<20:
		return errors.New("pubsub: max_outstanding_messages must be positive and max_outstanding_bytes at least 1 MiB")
	case c.PublishTimeout <= 0:
		return errors.New("pubsub: publish_timeout must be positive")
	case c.AckExtension != 0 && (c.AckExtension < 10*time.Second || c.AckExtension > 10*time.Minute):
		return errors.New("pubsub: ack_extension must be 10s to 10m")
	}
	return nil
}

// Source receives from the subscription.
type Source struct {
	cfg    Config
	sink   *sink.Sink
	limits split.Limits
	log    *slog.Logger
	opts   []option.ClientOption
}

// New returns a pubsub source (no connection is made yet).
func New(cfg Config, s *sink.Sink, limits split.Limits, log *slog.Logger) (*Source, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var opts []option.ClientOption
	if cfg.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(cfg.Endpoint))
	}
	if cfg.Insecure {
		opts = append(opts, option.WithoutAuthentication(), option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	}
	if cfg.CredentialsFile != "" {
		opts = append(opts, option.WithAuthCredentialsFile(option.ServiceAccount, cfg.CredentialsFile))
	}
	return &Source{cfg: cfg, sink: s, limits: limits, log: log, opts: opts}, nil
}

// Run receives until ctx ends. Messages in flight at the end are nacked or left to expire,
// and come back.
func (s *Source) Run(ctx context.Context) error {
	client, err := pubsub.NewClient(ctx, s.cfg.Project, s.opts...)
	if err != nil {
		return fmt.Errorf("pubsub client: %w", err)
	}
	defer client.Close()
	sub := client.Subscriber(s.cfg.Subscription)
	sub.ReceiveSettings.MaxOutstandingMessages = s.cfg.MaxOutstandingMessages
	sub.ReceiveSettings.MaxOutstandingBytes = s.cfg.MaxOutstandingBytes
	sub.ReceiveSettings.MaxDurationPerAckExtension = s.cfg.AckExtension
	// On shutdown, messages still held are nacked so they come back at once; a record
	// already stored comes back with the same id and JetStream drops it.
	sub.ReceiveSettings.ShutdownOptions = &pubsub.ShutdownOptions{Behavior: pubsub.ShutdownBehaviorNackImmediately, Timeout: 10 * time.Second}
	err = sub.Receive(ctx, s.handle)
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pubsub receive %s: %w", s.cfg.Subscription, err)
	}
	return errors.New("pubsub receive ended")
}

// handle publishes one message's records, then acks; on failure it nacks.
func (s *Source) handle(ctx context.Context, m *pubsub.Message) {
	// The subscription id (not the full name) keeps record ids stable however it is written.
	subID := s.cfg.Subscription[strings.LastIndex(s.cfg.Subscription, "/")+1:]
	pos := "pubsub:" + subID + "/" + m.ID
	batch := s.sink.NewBatch(pos)
	data, err := split.ReadAll(bytes.NewReader(m.Data), s.limits)
	if err == nil {
		err = split.New(s.limits).Split(data, func(r split.Record) error {
			return batch.Add(sink.Record{Position: pos + "#" + strconv.Itoa(r.Index), Data: r.Data, Time: r.Time})
		}, func(r split.Rejected) error {
			return s.sink.Reject(ctx, pos+"#"+strconv.Itoa(r.Index), r.Data, r.Reason)
		})
	}
	if err != nil {
		if split.Unreadable(err) {
			// A message that is not a log entry will never be: dead-letter it and ack.
			s.log.Warn("skipping unreadable pubsub message", "position", pos, "error", err)
			if err := s.sink.Reject(ctx, pos, nil, err); err != nil {
				m.Nack()
				return
			}
			m.Ack()
			return
		}
		s.sink.CountError(ctx)
		m.Nack()
		return
	}
	pctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	if err := s.sink.PublishAll(pctx, batch); err != nil {
		if ctx.Err() == nil {
			s.log.Warn("publish failed, message nacked for redelivery", "position", pos, "error", err)
		}
		m.Nack()
		return
	}
	m.Ack()
}
