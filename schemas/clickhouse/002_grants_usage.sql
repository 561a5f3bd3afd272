-- Grants and usage-vs-granted statistics. Valid on ClickHouse 18.16 and current releases.
--
-- grants: one row per identity and granted permission pattern (an AWS statement's action
-- pattern, a GCP role's permission, a Kubernetes rule's verb and resource), with the grant
-- it comes from and how the identity holds it. A grant that goes away is written again with
-- active = 0 and a higher version; queries read `FINAL` and keep active = 1. The version is
-- the event time of the change or the time the snapshot was taken, so a replay writes the
-- same rows and an older change never overrides a newer snapshot.
CREATE TABLE IF NOT EXISTS grants (
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
) ENGINE = ReplacingMergeTree(version)
ORDER BY (identity_id, grant_name, via, permission, scope, effect);

-- permission_usage_log receives one row per event that used (or tried) a permission. It
-- stores nothing (Null engine): the materialized view below folds each insert into
-- permission_usage.
CREATE TABLE IF NOT EXISTS permission_usage_log (
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

-- permission_usage: per identity, permission, outcome (used | denied) and day, the distinct
-- events (uniqExact over event ids, so a redelivered or replayed event counts once), the
-- first and last use. Read it with uniqExactMerge / minMerge / maxMerge, grouped as needed.
CREATE TABLE IF NOT EXISTS permission_usage (
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
) ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (identity_id, permission, outcome, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS permission_usage_mv TO permission_usage AS
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
FROM permission_usage_log
GROUP BY day, identity_id, permission, outcome;

-- grant_usage: per grant entry (identity, grant, via, permission pattern, scope) and day,
-- the distinct events the grant allowed, evaluated by the grant model when the event
-- arrived. Fed through grant_usage_log (Null) and its materialized view, like
-- permission_usage.
CREATE TABLE IF NOT EXISTS grant_usage_log (
    event_id            String,
    event_time          DateTime,
    identity_id         String,
    grant_name          String,
    via                 String,
    permission          String,
    scope               String,
    used_permission     String
) ENGINE = Null;

CREATE TABLE IF NOT EXISTS grant_usage (
    day                 Date,
    identity_id         String,
    grant_name          String,
    via                 String,
    permission          String,
    scope               String,
    events              AggregateFunction(uniqExact, String),
    first_seen          AggregateFunction(min, DateTime),
    last_seen           AggregateFunction(max, DateTime)
) ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (identity_id, grant_name, via, permission, scope, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS grant_usage_mv TO grant_usage AS
SELECT
    toDate(event_time) AS day,
    identity_id, grant_name, via, permission, scope,
    uniqExactState(event_id) AS events,
    minState(event_time) AS first_seen,
    maxState(event_time) AS last_seen
FROM grant_usage_log
GROUP BY day, identity_id, grant_name, via, permission, scope;

-- credentials: long-term keys with their last rotation, from credential reports and key
-- creation and deletion events; the newest version wins.
CREATE TABLE IF NOT EXISTS grant_credentials (
    credential_id       String,
    identity_id         String,
    active              UInt8,
    last_rotated        DateTime,
    last_used           DateTime,
    source              String,
    version             UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (credential_id);
