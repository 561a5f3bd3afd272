// Package base is what every nhiwatch process shares: the common sections of the
// configuration file (NATS, streams, ClickHouse, telemetry) and connecting to NATS.
package base

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
	"github.com/nhiwatch/nhiwatch/pkg/platform/chdb"
	"github.com/nhiwatch/nhiwatch/pkg/platform/telemetry"
)

// NATS says how to reach the NATS server.
type NATS struct {
	// URL of the server(s), comma-separated. `nhiwatch run` starts an embedded server when
	// it is empty; the separate service binaries require it.
	URL string `yaml:"url" env:"URL"`
	// CredsFile is a NATS credentials file (JWT and NKey seed).
	CredsFile string `yaml:"creds_file" env:"CREDS_FILE"`
	// MaxPendingAcks bounds asynchronous publishes awaiting their ack, per connection.
	MaxPendingAcks int `yaml:"max_pending_acks" env:"MAX_PENDING_ACKS"`
	// PublishAckTimeout is how long an asynchronous publish waits for its ack before it
	// fails and is retried with its id (a stream leader lost with the publish in flight never
	// answers). 0 means DefaultPublishAckTimeout.
	PublishAckTimeout time.Duration `yaml:"publish_ack_timeout" env:"PUBLISH_ACK_TIMEOUT"`
}

// DefaultPublishAckTimeout bounds the wait for one publish ack; a leader election after a
// node loss takes a few seconds.
const DefaultPublishAckTimeout = 10 * time.Second

// Common holds the sections every process reads from the configuration file.
type Common struct {
	NATS       NATS             `yaml:"nats" envPrefix:"NATS_"`
	Streams    streams.Config   `yaml:"streams" envPrefix:"STREAMS_"`
	ClickHouse chdb.Config      `yaml:"clickhouse" envPrefix:"CLICKHOUSE_"`
	Telemetry  telemetry.Config `yaml:"telemetry" envPrefix:"TELEMETRY_"`
}

// DefaultCommon returns the defaults of the common sections.
func DefaultCommon() Common {
	return Common{
		NATS:       NATS{MaxPendingAcks: 4096, PublishAckTimeout: DefaultPublishAckTimeout},
		Streams:    streams.DefaultConfig(),
		ClickHouse: chdb.DefaultConfig(),
		Telemetry:  telemetry.DefaultConfig(),
	}
}

// Validate reports the first setting that cannot work.
func (c Common) Validate() error {
	if c.NATS.MaxPendingAcks <= 0 {
		return errors.New("nats.max_pending_acks must be positive")
	}
	if c.NATS.PublishAckTimeout < 0 {
		return errors.New("nats.publish_ack_timeout must not be negative")
	}
	if err := c.Streams.Validate(); err != nil {
		return err
	}
	if err := c.ClickHouse.Validate(); err != nil {
		return err
	}
	return c.Telemetry.Validate()
}

// ConnectNATS connects to the configured server and returns the connection and a JetStream
// context with bounded in-flight publishes, each failing after PublishAckTimeout without an
// ack (so a lost stream leader frees its slots and the publisher retries). The connection reconnects forever; every
// disconnect and reconnect is logged.
func ConnectNATS(ctx context.Context, n NATS, name string, log *slog.Logger, extra ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	if n.URL == "" && len(extra) == 0 {
		return nil, nil, errors.New("nats.url is required")
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "server", c.ConnectedUrlRedacted()) }),
	}
	if n.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(n.CredsFile))
	}
	opts = append(opts, extra...)
	nc, err := nats.Connect(n.URL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to nats: %w", err)
	}
	ackTimeout := n.PublishAckTimeout
	if ackTimeout <= 0 {
		ackTimeout = DefaultPublishAckTimeout
	}
	maxPending := n.MaxPendingAcks
	if maxPending <= 0 {
		maxPending = DefaultCommon().NATS.MaxPendingAcks
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(maxPending), jetstream.WithPublishAsyncTimeout(ackTimeout))
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream not available: %w", err)
	}
	return nc, js, nil
}
