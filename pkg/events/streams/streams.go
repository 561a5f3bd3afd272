// Package streams sets up the nhiwatch JetStream streams, consumers and KV buckets, publishes
// with bounded in-flight acks, and dead-letters messages that can never succeed.
//
// Setup is idempotent: every service calls Ensure at start, and the first one creates what is
// missing while the others find it in place.
package streams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

// Config sizes the streams of one deployment.
type Config struct {
	// Replicas of every stream and bucket: 1 on one server, 3 on a cluster.
	Replicas int `yaml:"replicas" env:"REPLICAS"`
	// DuplicateWindow is how long JetStream remembers a Nats-Msg-Id. A re-read within the
	// window is dropped by the server; later ones are absorbed by idempotent consumers.
	DuplicateWindow time.Duration `yaml:"duplicate_window" env:"DUPLICATE_WINDOW"`
	// How long each stream keeps messages. Raw records and events stay replayable that long.
	RawMaxAge      time.Duration `yaml:"raw_max_age" env:"RAW_MAX_AGE"`
	EventsMaxAge   time.Duration `yaml:"events_max_age" env:"EVENTS_MAX_AGE"`
	FindingsMaxAge time.Duration `yaml:"findings_max_age" env:"FINDINGS_MAX_AGE"`
	DLQMaxAge      time.Duration `yaml:"dlq_max_age" env:"DLQ_MAX_AGE"`
	// MaxBytes bounds each stream; 0 means unbounded. A full stream refuses new messages
	// (DiscardNew), which pushes back to the sources instead of dropping unconsumed data.
	MaxBytes int64 `yaml:"max_bytes" env:"MAX_BYTES"`
	// Partitions is P, the number of identity partitions of NHI_EVENTS. It is fixed for the
	// life of a deployment: changing it moves identities between partitions.
	Partitions uint32 `yaml:"partitions" env:"PARTITIONS"`
}

// DefaultConfig returns settings for a single server.
func DefaultConfig() Config {
	return Config{
		Replicas:        1,
		DuplicateWindow: 20 * time.Minute,
		RawMaxAge:       72 * time.Hour,
		EventsMaxAge:    72 * time.Hour,
		FindingsMaxAge:  30 * 24 * time.Hour,
		DLQMaxAge:       30 * 24 * time.Hour,
		Partitions:      16,
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("streams.replicas must be 1 to 5, got %d", c.Replicas)
	case c.DuplicateWindow < 10*time.Minute:
		return fmt.Errorf("streams.duplicate_window must be at least 10m, got %s", c.DuplicateWindow)
	case c.RawMaxAge < c.DuplicateWindow || c.EventsMaxAge < c.DuplicateWindow ||
		c.FindingsMaxAge < c.DuplicateWindow || c.DLQMaxAge < c.DuplicateWindow:
		return errors.New("streams: every max age must be at least the duplicate window")
	case c.Partitions < 1 || c.Partitions > 1024:
		return fmt.Errorf("streams.partitions must be 1 to 1024, got %d", c.Partitions)
	case c.MaxBytes < 0:
		return errors.New("streams.max_bytes must not be negative")
	}
	return nil
}

// StreamConfigs returns the configuration of the four nhiwatch streams.
func (c Config) StreamConfigs() []jetstream.StreamConfig {
	maxBytes := c.MaxBytes
	if maxBytes == 0 {
		maxBytes = -1
	}
	mk := func(name, subjects, desc string, maxAge time.Duration) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:        name,
			Description: desc,
			Subjects:    []string{subjects},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    c.Replicas,
			Duplicates:  c.DuplicateWindow,
			MaxAge:      maxAge,
			MaxBytes:    maxBytes,
			Discard:     jetstream.DiscardNew,
			MaxMsgSize:  4 << 20,
		}
	}
	return []jetstream.StreamConfig{
		mk(events.StreamRaw, events.SubjectsRaw, "raw audit records as sources delivered them", c.RawMaxAge),
		mk(events.StreamEvents, events.SubjectsEvents, "normalized events, partitioned by identity", c.EventsMaxAge),
		mk(events.StreamFindings, events.SubjectsFindings, "detector findings", c.FindingsMaxAge),
		mk(events.StreamDLQ, events.SubjectsDLQ, "messages that failed for good, with the reason", c.DLQMaxAge),
	}
}

// Ensure creates or updates the four streams. It is safe to call from every service at start.
func Ensure(ctx context.Context, js jetstream.JetStream, c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	for _, sc := range c.StreamConfigs() {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("ensure stream %s: %w", sc.Name, err)
		}
	}
	return nil
}

// EnsureBucket creates or updates a KV bucket on file storage with the deployment's replicas.
// history is how many values per key are kept (1 for state, more for audit trails).
func EnsureBucket(ctx context.Context, js jetstream.JetStream, c Config, bucket, desc string, history uint8) (jetstream.KeyValue, error) {
	if history == 0 {
		history = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: desc,
		History:     history,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure bucket %s: %w", bucket, err)
	}
	return kv, nil
}

// Consumer settings shared by every durable pull consumer.
const (
	// DefaultMaxDeliver is how often a message is delivered before it is dead-lettered.
	DefaultMaxDeliver = 6
	// DefaultMaxAckPending bounds the messages a consumer holds unacknowledged.
	DefaultMaxAckPending = 4096
)

// DefaultBackOff is the redelivery schedule of a message that was not acknowledged: its first
// element is also the ack wait of the first delivery (JetStream replaces AckWait by it).
var DefaultBackOff = []time.Duration{30 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute}

// ConsumerConfig returns a durable pull consumer with explicit acks, the default redelivery
// back-off and MaxDeliver. filters are the subjects it reads (all of the stream when none).
func ConsumerConfig(durable, desc string, filters ...string) jetstream.ConsumerConfig {
	cc := jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   desc,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       DefaultBackOff[0],
		BackOff:       DefaultBackOff,
		MaxDeliver:    DefaultMaxDeliver,
		MaxAckPending: DefaultMaxAckPending,
	}
	switch len(filters) {
	case 0:
	case 1:
		cc.FilterSubject = filters[0]
	default:
		cc.FilterSubjects = filters
	}
	return cc
}

// EnsureConsumer creates or updates a durable consumer on a stream.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, stream string, cc jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	c, err := js.CreateOrUpdateConsumer(ctx, stream, cc)
	if err != nil {
		return nil, fmt.Errorf("ensure consumer %s on %s: %w", cc.Durable, stream, err)
	}
	return c, nil
}

// LastDelivery reports whether a message is on its last delivery attempt: a failure now must
// dead-letter it, because JetStream will not deliver it again.
func LastDelivery(msg jetstream.Msg, maxDeliver int) bool {
	md, err := msg.Metadata()
	if err != nil {
		return false
	}
	return maxDeliver > 0 && md.NumDelivered >= uint64(maxDeliver)
}
