-- Replicated, sharded form of schemas/clickhouse/001_events_findings.sql for a ClickHouse cluster named
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

CREATE TABLE IF NOT EXISTS events_local ON CLUSTER nhiwatch (
    event_id            String,
    provider            String,
    source              String,
    event_time          DateTime,
    event_time_ms       UInt64,
    received_at_ms      UInt64,
    provider_event_id   String,
    account             String,
    region              String,
    identity_id         String,
    identity_kind       String,
    identity_type       String,
    identity_name       String,
    session_name        String,
    credential_id       String,
    credential_type     String,
    delegation          Array(String),
    service             String,
    action              String,
    permission          String,
    read_only           UInt8,
    action_type         String,
    action_category     String,
    resources           Array(String),
    resource_types      Array(String),
    namespace           String,
    source_ip           String,
    source_host         String,
    user_agent          String,
    vpc_endpoint        String,
    cluster             String,
    cloud_internal      UInt8,
    outcome             String,
    error_code          String,
    grant_changes       UInt16,
    grantees            Array(String),
    extras              String,
    raw_record_id       String,
    partition_id        UInt16,
    inserted_at         DateTime
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/nhiwatch/events', '{replica}', inserted_at)
PARTITION BY toYYYYMM(event_time)
ORDER BY (provider, identity_id, event_time, event_id);

CREATE TABLE IF NOT EXISTS events ON CLUSTER nhiwatch AS events_local
ENGINE = Distributed(nhiwatch, nhiwatch, events_local, cityHash64(identity_id));

CREATE TABLE IF NOT EXISTS findings_local ON CLUSTER nhiwatch (
    finding_id          String,
    detector            String,
    severity            String,
    severity_rank       UInt8,
    title               String,
    summary             String,
    provider            String,
    account             String,
    region              String,
    identity_id         String,
    identity_kind       String,
    identity_name       String,
    credential_id       String,
    owner               String,
    team                String,
    cause               String,
    grantee             String,
    permissions_added   Array(String),
    sensitive_permissions_added Array(String),
    event_time          DateTime,
    event_time_ms       UInt64,
    created_at_ms       UInt64,
    evidence_event_ids  Array(String),
    evidence            String,
    owasp_nhi           Array(String),
    mitre_attack        Array(String),
    recommendation      String,
    status              String,
    version             UInt64
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/nhiwatch/findings', '{replica}', version)
PARTITION BY toYYYYMM(event_time)
ORDER BY (finding_id);

CREATE TABLE IF NOT EXISTS findings ON CLUSTER nhiwatch AS findings_local
ENGINE = Distributed(nhiwatch, nhiwatch, findings_local, cityHash64(identity_id));
