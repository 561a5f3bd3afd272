package deploy_test

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/go-cmp/cmp"

	"github.com/nhiwatch/nhiwatch/pkg/platform/chdb"
	"github.com/nhiwatch/nhiwatch/pkg/platform/chdbtest"
)

var (
	onCluster   = regexp.MustCompile(` ON CLUSTER nhiwatch\b`)
	replicated  = regexp.MustCompile(`Replicated(\w*MergeTree)\('/clickhouse/tables/\{shard\}/nhiwatch/(\w+)', '\{replica\}'(?:, )?`)
	distributed = regexp.MustCompile(`(?s)^CREATE TABLE IF NOT EXISTS (\w+) ON CLUSTER nhiwatch AS (\w+)\s+ENGINE = Distributed\(nhiwatch, nhiwatch, (\w+), (.+)\)$`)
	createLocal = regexp.MustCompile(`^CREATE TABLE IF NOT EXISTS (\w+)_local ON CLUSTER`)
	createView  = regexp.MustCompile(`CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+)`)
)

// TestReplicatedSchemaMatchesMigrations runs the replicated DDL of
// schemas/clickhouse/replicated on the single test server — Replicated engines as their
// plain counterparts (no ZooKeeper here), ON CLUSTER dropped, Distributed tables checked
// rather than created (no cluster here) — and requires every X_local table to have exactly
// the columns of the migrated table X, one replicated file per migration, and the
// materialized views to fold the local log tables into the local aggregates.
func TestReplicatedSchemaMatchesMigrations(t *testing.T) {
	conn, _ := chdbtest.Open(t)
	ctx := context.Background()
	migrations, err := chdb.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("../schemas/clickhouse/replicated/*.sql")
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	var want []string
	for _, m := range migrations {
		want = append(want, m.Name)
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("replicated DDL files (-migrations +replicated):\n%s", diff)
	}
	locals := map[string]bool{}
	distributedOf := map[string]bool{}
	for _, f := range files {
		for _, stmt := range chdb.SplitStatements(readFile(t, f)) {
			if m := distributed.FindStringSubmatch(stmt); m != nil {
				name, as, local, key := m[1], m[2], m[3], m[4]
				if as != local || local != name+"_local" {
					t.Errorf("%s: Distributed %s over %s AS %s, want %s_local", filepath.Base(f), name, local, as, name)
				}
				if !locals[local] {
					t.Errorf("%s: Distributed %s before its local table", filepath.Base(f), name)
					continue
				}
				if err := conn.Exec(ctx, fmt.Sprintf("SELECT %s FROM %s LIMIT 0", key, local)); err != nil {
					t.Errorf("%s: sharding key of %s: %v", filepath.Base(f), name, err)
				}
				distributedOf[name] = true
				continue
			}
			if m := createLocal.FindStringSubmatch(stmt); m != nil {
				locals[m[1]+"_local"] = true
			}
			if strings.Contains(stmt, "ENGINE = Replicated") && !replicated.MatchString(stmt) {
				t.Errorf("%s: replicated engine without the path /clickhouse/tables/{shard}/nhiwatch/<table> and {replica}:\n%s", filepath.Base(f), stmt)
			}
			single := onCluster.ReplaceAllString(stmt, "")
			single = replicated.ReplaceAllString(single, "$1(")
			single = createView.ReplaceAllString(single, "CREATE MATERIALIZED VIEW IF NOT EXISTS ${1}_replicated")
			if err := conn.Exec(ctx, single); err != nil {
				t.Errorf("%s: %v\n%s", filepath.Base(f), err, single)
			}
		}
	}
	for local := range locals {
		name := strings.TrimSuffix(local, "_local")
		if diff := cmp.Diff(columns(t, conn, name), columns(t, conn, local)); diff != "" {
			t.Errorf("%s differs from the migrated %s (-migrated +replicated):\n%s", local, name, diff)
		}
		if !distributedOf[name] {
			t.Errorf("%s has no Distributed table %s", local, name)
		}
	}
	if len(locals) < 10 {
		t.Errorf("only %d replicated tables", len(locals))
	}

	// The views read the local logs: a use inserted into permission_usage_log_local lands in
	// permission_usage_local.
	insert(t, conn, "INSERT INTO permission_usage_log_local (event_id, event_time, identity_id, provider, identity_kind, permission, outcome, sensitive, credential_id)",
		[]any{"e1", time.Now().UTC().Truncate(time.Second), "aws:role/x", "aws", "workload_role", "s3:GetObject", "used", uint8(0), ""})
	var uses uint64
	if err := conn.QueryRow(ctx, "SELECT uniqExactMerge(events) FROM permission_usage_local WHERE identity_id = 'aws:role/x'").Scan(&uses); err != nil {
		t.Fatal(err)
	}
	if uses != 1 {
		t.Errorf("permission_usage_local counts %d uses, want 1", uses)
	}
}

// columns lists a table's columns as "name type" in order.
func columns(t *testing.T, conn driver.Conn, table string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = ?", table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n, ty string
		if err := rows.Scan(&n, &ty); err != nil {
			t.Fatal(err)
		}
		out = append(out, n+" "+ty)
	}
	if len(out) == 0 {
		t.Fatalf("table %s has no columns", table)
	}
	return out
}
