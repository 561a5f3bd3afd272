// Package schemas holds the data contracts that are not Go: the ClickHouse migrations and the
// JSON Schemas of the OCSF documents nhiwatch exports. The protobuf contract (events.proto)
// lives beside this file and is compiled into pkg/events.
package schemas

import "embed"

// ClickHouse holds the migrations as clickhouse/NNN_name.sql, applied in name order.
//
//go:embed clickhouse/*.sql
var ClickHouse embed.FS
