-- Replicated, sharded form of schemas/clickhouse/002_grants_usage.sql for a ClickHouse cluster named
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

CREATE TABLE IF NOT EXISTS grants_local ON CLUSTER nhiwatch (
    identity_id         String,
    provider            String,
    identity_kind       String,
    permission          String,
    grant_name          String,
    via                 String,
    scope               String,
    effect              String,
    admin               UInt8,
    conditional         UInt8,
    unresolved          UInt8,
    active              UInt8,
    source              String,
    updated_at          DateTime,
    version             UInt64
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/nhiwatch/grants', '{replica}', version)
ORDER BY (identity_id, grant_name, via, permission, scope, effect);

CREATE TABLE IF NOT EXISTS grants ON CLUSTER nhiwatch AS grants_local
ENGINE = Distributed(nhiwatch, nhiwatch, grants_local, cityHash64(identity_id));

-- permission_usage_log receives one row per event that used (or tried) a permission. It
-- stores nothing (Null engine): the materialized view below folds each insert into
-- permission_usage.
CREATE TABLE IF NOT EXISTS permission_usage_log_local ON CLUSTER nhiwatch (
    event_id            String,
    event_time          DateTime,
    identity_id         String,
    provider            String,
    identity_kind       String,
    account             String,
    permission          String,
    outcome             String,
    sensitive           UInt8,
    credential_id       String
) ENGINE = Null;

CREATE TABLE IF NOT EXISTS permission_usage_log ON CLUSTER nhiwatch AS permission_usage_log_local
ENGINE = Distributed(nhiwatch, nhiwatch, permission_usage_log_local, cityHash64(identity_id));

-- permission_usage: per identity, permission, outcome (used | denied) and day, the distinct
-- events (uniqExact over event ids, so a redelivered or replayed event counts once), the
-- first and last use. Read it with uniqExactMerge / minMerge / maxMerge, grouped as needed.
CREATE TABLE IF NOT EXISTS permission_usage_local ON CLUSTER nhiwatch (
    day                 Date,
    identity_id         String,
    provider            String,
    identity_kind       String,
    permission          String,
    outcome             String,
    sensitive           UInt8,
    events              AggregateFunction(uniqExact, String),
    first_seen          AggregateFunction(min, DateTime),
    last_seen           AggregateFunction(max, DateTime)
) ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/nhiwatch/permission_usage', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (identity_id, permission, outcome, day);

CREATE TABLE IF NOT EXISTS permission_usage ON CLUSTER nhiwatch AS permission_usage_local
ENGINE = Distributed(nhiwatch, nhiwatch, permission_usage_local, cityHash64(identity_id));

-- The view reads the local log table: an insert through the Distributed log reaches
-- one replica of the identity's shard, whose view folds it into that shard's table.
CREATE MATERIALIZED VIEW IF NOT EXISTS permission_usage_mv ON CLUSTER nhiwatch TO permission_usage_local AS
SELECT
    toDate(event_time) AS day,
    identity_id,
    any(provider) AS provider,
    any(identity_kind) AS identity_kind,
    permission,
    outcome,
    max(sensitive) AS sensitive,
    uniqExactState(event_id) AS events,
    minState(event_time) AS first_seen,
    maxState(event_time) AS last_seen
FROM permission_usage_log_local
GROUP BY day, identity_id, permission, outcome;

-- grant_usage: per grant entry (identity, grant, via, permission pattern, scope) and day,
-- the distinct events the grant allowed, evaluated by the grant model when the event
-- arrived. Fed through grant_usage_log (Null) and its materialized view, like
-- permission_usage.
CREATE TABLE IF NOT EXISTS grant_usage_log_local ON CLUSTER nhiwatch (
    event_id            String,
    event_time          DateTime,
    identity_id         String,
    grant_name          String,
    via                 String,
    permission          String,
    scope               String,
    used_permission     String
) ENGINE = Null;

CREATE TABLE IF NOT EXISTS grant_usage_log ON CLUSTER nhiwatch AS grant_usage_log_local
ENGINE = Distributed(nhiwatch, nhiwatch, grant_usage_log_local, cityHash64(identity_id));

CREATE TABLE IF NOT EXISTS grant_usage_local ON CLUSTER nhiwatch (
    day                 Date,
    identity_id         String,
    grant_name          String,
    via                 String,
    permission          String,
    scope               String,
    events              AggregateFunction(uniqExact, String),
    first_seen          AggregateFunction(min, DateTime),
    last_seen           AggregateFunction(max, DateTime)
) ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/nhiwatch/grant_usage', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (identity_id, grant_name, via, permission, scope, day);

CREATE TABLE IF NOT EXISTS grant_usage ON CLUSTER nhiwatch AS grant_usage_local
ENGINE = Distributed(nhiwatch, nhiwatch, grant_usage_local, cityHash64(identity_id));

-- The view reads the local log table: an insert through the Distributed log reaches
-- one replica of the identity's shard, whose view folds it into that shard's table.
CREATE MATERIALIZED VIEW IF NOT EXISTS grant_usage_mv ON CLUSTER nhiwatch TO grant_usage_local AS
SELECT
    toDate(event_time) AS day,
    identity_id, grant_name, via, permission, scope,
    uniqExactState(event_id) AS events,
    minState(event_time) AS first_seen,
    maxState(event_time) AS last_seen
FROM grant_usage_log_local
GROUP BY day, identity_id, grant_name, via, permission, scope;

-- credentials: long-term keys with their last rotation, from credential reports and key
-- creation and deletion events; the newest version wins.
CREATE TABLE IF NOT EXISTS grant_credentials_local ON CLUSTER nhiwatch (
    credential_id       String,
    identity_id         String,
    active              UInt8,
    last_rotated        DateTime,
    last_used           DateTime,
    source              String,
    version             UInt64
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/nhiwatch/grant_credentials', '{replica}', version)
ORDER BY (credential_id);

CREATE TABLE IF NOT EXISTS grant_credentials ON CLUSTER nhiwatch AS grant_credentials_local
ENGINE = Distributed(nhiwatch, nhiwatch, grant_credentials_local, cityHash64(identity_id));
