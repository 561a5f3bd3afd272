-- Replicated, sharded form of schemas/clickhouse/003_finding_status.sql for a ClickHouse cluster named
-- `nhiwatch` (remote_servers) with the macros {shard} and {replica} set on every node and
-- ZooKeeper or ClickHouse Keeper configured. Documentation, not a migration: an operator runs
-- it once per cluster (docs/operations.md), before pointing nhiwatch at it with migrations
-- already recorded. Valid on ClickHouse 18.16 and current releases. The Distributed tables
-- name the database nhiwatch (clickhouse.database); change it with the setting.
--
-- Each table X becomes X_local, a Replicated* engine on every node, and X, a Distributed
-- table over the X_local of every shard. nhiwatch reads and writes X as on one server.
-- The sharding key keeps all rows of one identity on one shard, so the rows a
-- ReplacingMergeTree collapses (same sorting key) always meet on the same shard and
-- `SELECT … FINAL` through the Distributed table stays exact.

CREATE TABLE IF NOT EXISTS finding_status_local ON CLUSTER nhiwatch (
    finding_id      String,
    status          String,
    previous_status String,
    reason          String,
    changed_by      String,
    changed_via     String,
    changed_at      DateTime,
    changed_at_ms   UInt64,
    expires_at      DateTime,
    identity_id     String,
    cause           String,
    version         UInt64
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/nhiwatch/finding_status', '{replica}', version)
ORDER BY (finding_id);

CREATE TABLE IF NOT EXISTS finding_status ON CLUSTER nhiwatch AS finding_status_local
ENGINE = Distributed(nhiwatch, nhiwatch, finding_status_local, cityHash64(identity_id));

CREATE TABLE IF NOT EXISTS finding_status_log_local ON CLUSTER nhiwatch (
    finding_id      String,
    version         UInt64,
    status          String,
    previous_status String,
    reason          String,
    changed_by      String,
    changed_via     String,
    changed_at      DateTime,
    changed_at_ms   UInt64,
    expires_at      DateTime,
    identity_id     String,
    cause           String
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/nhiwatch/finding_status_log', '{replica}')
PARTITION BY toYYYYMM(changed_at)
ORDER BY (finding_id, version);

CREATE TABLE IF NOT EXISTS finding_status_log ON CLUSTER nhiwatch AS finding_status_log_local
ENGINE = Distributed(nhiwatch, nhiwatch, finding_status_log_local, cityHash64(identity_id));
