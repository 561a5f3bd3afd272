// Package kafka reads audit logs from Kafka topics as a consumer group: CloudTrail records
// or delivery files, GCP LogEntries, Kubernetes events or EventLists, one container per
// Kafka message, gzipped or not. Messages are fetched, their records published to NHI_RAW,
// and their offsets committed only after JetStream acknowledged every record, so the group's
// committed offsets are the source's cursor. Each Kafka message becomes its own NHI_RAW
// message with an id from its topic, partition and offset: a re-fetch after a restart or a
// rebalance publishes the same ids, which JetStream drops.
package kafka

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/nhiwatch/nhiwatch/services/ingest/internal/sink"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/split"
)

// TLSConfig secures the broker connections.
type TLSConfig struct {
	// CAFile verifies the brokers (default: the system roots).
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile authenticate this client (mutual TLS).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the brokers' certificates.
	ServerName string `yaml:"server_name"`
}

// SASLConfig authenticates with SASL.
type SASLConfig struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	// PasswordFile holds the password, so it never sits in the configuration.
	PasswordFile string `yaml:"password_file"`
}

// Config configures a kafka source.
type Config struct {
	Brokers []string `yaml:"brokers"`
	Topics  []string `yaml:"topics"`
	// GroupID is the consumer group; its committed offsets are the source's cursor.
	GroupID string `yaml:"group_id"`
	// StartOffset is where a new group starts: "first" (default) or "last".
	StartOffset string      `yaml:"start_offset"`
	TLS         *TLSConfig  `yaml:"tls"`
	SASL        *SASLConfig `yaml:"sasl"`
	// MaxBatchMessages, MaxBatchBytes and FlushInterval bound how many fetched messages are
	// published and committed together.
	MaxBatchMessages int           `yaml:"max_batch_messages"`
	MaxBatchBytes    int           `yaml:"max_batch_bytes"`
	FlushInterval    time.Duration `yaml:"flush_interval"`
	// MaxFetchBytes bounds one fetch response per partition.
	MaxFetchBytes int `yaml:"max_fetch_bytes"`
}

// DefaultConfig returns the defaults of a kafka source.
func DefaultConfig() Config {
	return Config{StartOffset: "first", MaxBatchMessages: 500, MaxBatchBytes: 32 << 20, FlushInterval: 200 * time.Millisecond, MaxFetchBytes: 16 << 20}
}

// WithDefaults fills the settings a configuration file left out.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	if c.StartOffset == "" {
		c.StartOffset = d.StartOffset
	}
	if c.MaxBatchMessages == 0 {
		c.MaxBatchMessages = d.MaxBatchMessages
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = d.MaxBatchBytes
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = d.FlushInterval
	}
	if c.MaxFetchBytes == 0 {
		c.MaxFetchBytes = d.MaxFetchBytes
	}
	return c
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("kafka: at least one broker is required")
	case len(c.Topics) == 0:
		return errors.New("kafka: at least one topic is required")
	case c.GroupID == "":
		return errors.New("kafka: group_id is required")
	case c.StartOffset != "first" && c.StartOffset != "last":
		return errors.New(`kafka: start_offset must be "first" or "last"`)
	case c.MaxBatchMessages < 1 || c.MaxBatchBytes < 1:
		return errors.New("kafka: max_batch_messages and max_batch_bytes must be positive")
	case c.FlushInterval <= 0:
		return errors.New("kafka: flush_interval must be positive")
	case c.MaxFetchBytes < 1<<10:
		return errors.New("kafka: max_fetch_bytes must be at least 1 KiB")
	}
	if c.TLS != nil && (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("kafka: tls cert_file and key_file go together")
	}
	if c.SASL != nil {
		switch strings.ToUpper(c.SASL.Mechanism) {
		case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		default:
			return fmt.Errorf("kafka: sasl mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.SASL.Mechanism)
		}
		if c.SASL.Username == "" || c.SASL.PasswordFile == "" {
			return errors.New("kafka: sasl needs username and password_file")
		}
	}
	return nil
}

// Source consumes the topics.
type Source struct {
	cfg    Config
	sink   *sink.Sink
	limits split.Limits
	log    *slog.Logger
	dialer *kafkago.Dialer
}

// New returns a kafka source; it reads the TLS and SASL files now.
func New(cfg Config, s *sink.Sink, limits split.Limits, log *slog.Logger) (*Source, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dialer := &kafkago.Dialer{Timeout: 10 * time.Second, DualStack: true, ClientID: "nhiwatch-ingest"}
	if cfg.TLS != nil {
		tc, err := tlsConfig(*cfg.TLS)
		if err != nil {
			return nil, err
		}
		dialer.TLS = tc
	}
	if cfg.SASL != nil {
		m, err := mechanism(*cfg.SASL)
		if err != nil {
			return nil, err
		}
		dialer.SASLMechanism = m
	}
	return &Source{cfg: cfg, sink: s, limits: limits, log: log, dialer: dialer}, nil
}

func tlsConfig(c TLSConfig) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka: tls ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, errors.New("kafka: tls ca_file holds no PEM certificate")
		}
	}
	if c.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka: tls client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

func mechanism(c SASLConfig) (sasl.Mechanism, error) {
	pw, err := os.ReadFile(c.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("kafka: sasl password_file: %w", err)
	}
	password := strings.TrimSpace(string(pw))
	switch strings.ToUpper(c.Mechanism) {
	case "PLAIN":
		return plain.Mechanism{Username: c.Username, Password: password}, nil
	case "SCRAM-SHA-256":
		return scram.Mechanism(scram.SHA256, c.Username, password)
	default:
		return scram.Mechanism(scram.SHA512, c.Username, password)
	}
}

// Run consumes until ctx ends.
func (s *Source) Run(ctx context.Context) error {
	start := kafkago.FirstOffset
	if s.cfg.StartOffset == "last" {
		start = kafkago.LastOffset
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:        s.cfg.Brokers,
		GroupID:        s.cfg.GroupID,
		GroupTopics:    s.cfg.Topics,
		Dialer:         s.dialer,
		MinBytes:       1,
		MaxBytes:       s.cfg.MaxFetchBytes,
		MaxWait:        500 * time.Millisecond,
		StartOffset:    start,
		CommitInterval: 0, // commit synchronously, after JetStream acknowledged
		ErrorLogger:    kafkago.LoggerFunc(func(msg string, args ...any) { s.log.Warn("kafka: " + fmt.Sprintf(msg, args...)) }),
	})
	defer r.Close()
	lag := map[string]int64{}
	for {
		msgs, err := s.fetch(ctx, r)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("kafka fetch: %w", err)
		}
		if err := s.process(ctx, msgs); err != nil {
			return nil // ctx ended while JetStream refused: nothing was committed
		}
		if err := s.sink.Retry(ctx, "kafka commit", func() error { return r.CommitMessages(ctx, msgs...) }); err != nil {
			return nil
		}
		for _, m := range msgs {
			lag[m.Topic+"/"+strconv.Itoa(m.Partition)] = max(0, m.HighWaterMark-m.Offset-1)
		}
		var total int64
		for _, n := range lag {
			total += n
		}
		s.sink.ObserveBacklog(ctx, total, "messages")
	}
}

// fetch waits for one message, then takes what else arrives within the flush interval, up
// to the batch's message count and bytes.
func (s *Source) fetch(ctx context.Context, r *kafkago.Reader) ([]kafkago.Message, error) {
	m, err := r.FetchMessage(ctx)
	if err != nil {
		return nil, err
	}
	msgs := []kafkago.Message{m}
	size := len(m.Value)
	fctx, cancel := context.WithTimeout(ctx, s.cfg.FlushInterval)
	defer cancel()
	for len(msgs) < s.cfg.MaxBatchMessages && size < s.cfg.MaxBatchBytes {
		m, err := r.FetchMessage(fctx)
		if err != nil {
			if fctx.Err() != nil {
				return msgs, nil
			}
			return nil, err
		}
		msgs = append(msgs, m)
		size += len(m.Value)
	}
	return msgs, nil
}

// process publishes every record of msgs and returns once all are acknowledged; a message
// that is not a container at all is dead-lettered with its reason and skipped.
func (s *Source) process(ctx context.Context, msgs []kafkago.Message) error {
	splitter := split.New(s.limits)
	batches := make([]*sink.Batch, 0, len(msgs))
	for _, m := range msgs {
		pos := "kafka:" + m.Topic + "/" + strconv.Itoa(m.Partition) + "@" + strconv.FormatInt(m.Offset, 10)
		b := s.sink.NewBatch(pos)
		err := s.message(ctx, splitter, b, pos, m.Value)
		if err != nil {
			if !split.Unreadable(err) {
				return err
			}
			s.log.Warn("skipping unreadable kafka message", "position", pos, "error", err)
			if err := s.sink.Retry(ctx, "dead-letter", func() error { return s.sink.Reject(ctx, pos, nil, err) }); err != nil {
				return err
			}
			continue
		}
		batches = append(batches, b)
	}
	return s.sink.PublishWait(ctx, batches...)
}

func (s *Source) message(ctx context.Context, splitter *split.Splitter, b *sink.Batch, pos string, value []byte) error {
	data, err := split.ReadAll(bytes.NewReader(value), s.limits)
	if err != nil {
		return err
	}
	return splitter.Split(data, func(r split.Record) error {
		return b.Add(sink.Record{Position: pos + "#" + strconv.Itoa(r.Index), Data: r.Data, Time: r.Time})
	}, func(r split.Rejected) error {
		return s.sink.Retry(ctx, "dead-letter", func() error {
			return s.sink.Reject(ctx, pos+"#"+strconv.Itoa(r.Index), r.Data, r.Reason)
		})
	})
}
