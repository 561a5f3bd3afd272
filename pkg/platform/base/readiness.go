package base

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/platform/chdb"
	"github.com/nhiwatch/nhiwatch/pkg/platform/telemetry"
)

// PipelineStreams names the four nhiwatch streams.
func PipelineStreams() []string {
	return []string{events.StreamRaw, events.StreamEvents, events.StreamFindings, events.StreamDLQ}
}

// AddReadiness registers the readiness checks every process shares: "nats" (the connection
// is up) and "streams" (the four nhiwatch streams exist and have a leader, which a JetStream
// cluster that lost its quorum does not).
func AddReadiness(h *telemetry.Health, nc *nats.Conn, js jetstream.JetStream) {
	h.AddCheck("nats", func(context.Context) error {
		if !nc.IsConnected() {
			return fmt.Errorf("not connected (%s)", nc.Status())
		}
		return nil
	})
	h.AddCheck("streams", func(ctx context.Context) error {
		var missing []string
		for _, name := range PipelineStreams() {
			if _, err := js.Stream(ctx, name); err != nil {
				missing = append(missing, fmt.Sprintf("%s (%v)", name, err))
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("unavailable: %s", strings.Join(missing, ", "))
		}
		return nil
	})
}

// ClickHouseCheck returns a readiness check that pings the configured database over its own
// connection (opened on first use, so a ClickHouse that is down delays no start), and the
// function that closes that connection.
func ClickHouseCheck(c chdb.Config) (check func(context.Context) error, closeFn func() error, err error) {
	if !c.Enabled() {
		return nil, nil, errors.New("clickhouse check: no address configured")
	}
	password := c.Password
	if c.PasswordFile != "" {
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return nil, nil, fmt.Errorf("clickhouse password file: %w", err)
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	dial := c.DialTimeout
	if dial <= 0 || dial > 5*time.Second {
		dial = 5 * time.Second
	}
	opts := &clickhouse.Options{
		Addr:         strings.Split(c.Addr, ","),
		Auth:         clickhouse.Auth{Database: c.Database, Username: c.Username, Password: password},
		DialTimeout:  dial,
		ReadTimeout:  5 * time.Second,
		MaxOpenConns: 1,
		MaxIdleConns: 1,
	}
	if c.TLS {
		opts.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("clickhouse check: %w", err)
	}
	check = func(ctx context.Context) error {
		if err := conn.Ping(ctx); err != nil {
			return fmt.Errorf("ping %s: %w", c.Database, err)
		}
		return nil
	}
	return check, conn.Close, nil
}
