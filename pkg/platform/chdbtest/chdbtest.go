// Package chdbtest gives each test a fresh database on the test ClickHouse server that
// `make test` starts (scripts/clickhouse.sh), with the nhiwatch migrations applied.
//
// The server's address comes from NHIWATCH_CLICKHOUSE_ADDR (default 127.0.0.1:19000).
// When no server answers, the test fails if CI=true and is skipped otherwise.
package chdbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/nhiwatch/nhiwatch/pkg/platform/chdb"
)

// DefaultAddr is where scripts/clickhouse.sh starts the test server.
const DefaultAddr = "127.0.0.1:19000"

// Addr returns the test server's address.
func Addr() string {
	if a := os.Getenv("NHIWATCH_CLICKHOUSE_ADDR"); a != "" {
		return a
	}
	return DefaultAddr
}

// Config returns a chdb.Config for a new, uniquely named database. The database is dropped
// when the test ends. It fails or skips the test (see the package comment) when no server
// answers.
func Config(t testing.TB) chdb.Config {
	t.Helper()
	addr := Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, DialTimeout: 3 * time.Second})
	if err == nil {
		err = conn.Ping(ctx)
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("ClickHouse at %s is required in CI (run `make test`, which starts it): %v", addr, err)
		}
		t.Skipf("no ClickHouse at %s (start one with scripts/clickhouse.sh start): %v", addr, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	cfg := chdb.DefaultConfig()
	cfg.Addr = addr
	cfg.Database = "test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+cfg.Database)
		conn.Close()
	})
	return cfg
}

// Open returns a connection to a fresh, migrated database dropped when the test ends.
func Open(t testing.TB) (driver.Conn, chdb.Config) {
	t.Helper()
	cfg := Config(t)
	conn, err := chdb.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, cfg
}
