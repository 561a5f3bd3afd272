package inspect

import (
	"context"
	"fmt"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Stored are the event ids in the events table.
type Stored struct {
	// Final is count() with FINAL: rows after collapsing replays.
	Final uint64
	// Rows is count() without FINAL: what was inserted and not yet merged away.
	Rows uint64
	// Distinct is uniqExact(event_id).
	Distinct uint64
	// IDs are the distinct event ids.
	IDs map[string]bool
}

// Events reads the events table.
func Events(ctx context.Context, conn driver.Conn) (Stored, error) {
	var s Stored
	if err := conn.QueryRow(ctx, "SELECT count() FROM events FINAL").Scan(&s.Final); err != nil {
		return s, fmt.Errorf("count events FINAL: %w", err)
	}
	if err := conn.QueryRow(ctx, "SELECT count(), uniqExact(event_id) FROM events").Scan(&s.Rows, &s.Distinct); err != nil {
		return s, fmt.Errorf("count events: %w", err)
	}
	ids, err := strings1(ctx, conn, "SELECT DISTINCT event_id FROM events")
	if err != nil {
		return s, err
	}
	s.IDs = ids
	return s, nil
}

// CountEvents is count() FROM events FINAL, for polling.
func CountEvents(ctx context.Context, conn driver.Conn) (uint64, error) {
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM events FINAL").Scan(&n); err != nil {
		return 0, fmt.Errorf("count events: %w", err)
	}
	return n, nil
}

// Findings reads the distinct finding ids of the findings table and its count with FINAL.
func Findings(ctx context.Context, conn driver.Conn) (map[string]bool, uint64, error) {
	var final uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM findings FINAL").Scan(&final); err != nil {
		return nil, 0, fmt.Errorf("count findings FINAL: %w", err)
	}
	ids, err := strings1(ctx, conn, "SELECT DISTINCT finding_id FROM findings")
	return ids, final, err
}

func strings1(ctx context.Context, conn driver.Conn, query string) (map[string]bool, error) {
	rows, err := conn.Query(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", query, err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out[s] = true
	}
	return out, rows.Err()
}

// TextColumn is a String or Array(String) column of a table.
type TextColumn struct {
	Table, Name, Type string
}

// TextColumns lists every String, Nullable(String), FixedString and Array(String) column of
// every table in database.
func TextColumns(ctx context.Context, conn driver.Conn, database string) ([]TextColumn, error) {
	rows, err := conn.Query(ctx, "SELECT table, name, type FROM system.columns WHERE database = ? ORDER BY table, name", database)
	if err != nil {
		return nil, fmt.Errorf("list columns: %w", err)
	}
	defer rows.Close()
	var out []TextColumn
	for rows.Next() {
		var c TextColumn
		if err := rows.Scan(&c.Table, &c.Name, &c.Type); err != nil {
			return nil, err
		}
		if textType(c.Type) {
			out = append(out, c)
		}
	}
	return out, rows.Err()
}

func textType(t string) bool {
	switch {
	case t == "String", t == "Nullable(String)", strings.HasPrefix(t, "FixedString("):
		return true
	case strings.HasPrefix(t, "Array(") && strings.Contains(t, "String"):
		return true
	}
	return false
}

// EachText calls fn with the text of every value of column c: array elements joined by a
// newline.
func EachText(ctx context.Context, conn driver.Conn, c TextColumn, fn func(string)) error {
	expr := "ifNull(toString(`" + c.Name + "`), '')"
	if strings.HasPrefix(c.Type, "Array(") {
		expr = "arrayStringConcat(arrayMap(x -> ifNull(toString(x), ''), `" + c.Name + "`), '\\n')"
	}
	query := "SELECT " + expr + " FROM `" + c.Table + "`"
	rows, err := conn.Query(ctx, query)
	if err != nil {
		return fmt.Errorf("%s: %w", query, err)
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return err
		}
		fn(s)
	}
	return rows.Err()
}
