package chdb_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nhiwatch/nhiwatch/pkg/platform/chdb"
	"github.com/nhiwatch/nhiwatch/pkg/platform/chdbtest"
)

func TestSplitStatements(t *testing.T) {
	got := chdb.SplitStatements("-- comment;\nCREATE TABLE a (x UInt8) ENGINE = Memory;\n\nCREATE TABLE b (\n  y String\n) ENGINE = Memory;\n")
	want := []string{"CREATE TABLE a (x UInt8) ENGINE = Memory", "CREATE TABLE b (\n  y String\n) ENGINE = Memory"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SplitStatements (-want +got):\n%s", diff)
	}
}

func TestMigrationsAreOrderedAndNonEmpty(t *testing.T) {
	ms, err := chdb.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no migrations embedded")
	}
	for i, m := range ms {
		if len(m.Statements) == 0 {
			t.Errorf("%s has no statements", m.Name)
		}
		if i > 0 && ms[i-1].Version >= m.Version {
			t.Errorf("%s out of order", m.Name)
		}
	}
}

func TestOpenMigratesIdempotently(t *testing.T) {
	cfg := chdbtest.Config(t)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		conn, err := chdb.Open(ctx, cfg)
		if err != nil {
			t.Fatalf("Open #%d: %v", i+1, err)
		}
		if err := chdb.Migrate(ctx, conn); err != nil {
			t.Fatalf("Migrate again: %v", err)
		}
		conn.Close()
	}
	conn, err := chdb.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ms, _ := chdb.Migrations()
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM nhiwatch_migrations").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != uint64(len(ms)) {
		t.Errorf("nhiwatch_migrations has %d rows, want %d", n, len(ms))
	}
	for _, table := range []string{"events", "findings"} {
		var exists uint8
		if err := conn.QueryRow(ctx, "EXISTS TABLE "+table).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if exists != 1 {
			t.Errorf("table %s missing", table)
		}
	}
}

func TestValidate(t *testing.T) {
	c := chdb.DefaultConfig()
	c.Addr = "x:1"
	c.Database = "bad-name; DROP"
	if err := c.Validate(); err == nil {
		t.Error("unsafe database name accepted")
	}
}

func TestMigrateToleratesConcurrentAlter(t *testing.T) {
	conn, _ := chdbtest.Open(t)
	ctx := context.Background()
	// What a second process sees when the first already added the column: ClickHouse 18.16
	// has no ADD COLUMN IF NOT EXISTS.
	if err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS alter_probe (a UInt8) ENGINE = MergeTree ORDER BY a"); err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, "ALTER TABLE alter_probe ADD COLUMN b UInt64"); err != nil {
		t.Fatal(err)
	}
	err := conn.Exec(ctx, "ALTER TABLE alter_probe ADD COLUMN b UInt64")
	if err == nil {
		t.Fatal("adding the column twice succeeded; the probe is wrong")
	}
	if !chdb.AlreadyApplied(err) {
		t.Errorf("duplicate column error not recognised: %v", err)
	}
}
