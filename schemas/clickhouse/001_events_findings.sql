-- Events and findings. Valid on ClickHouse 18.16 (Debian) and current releases: no
-- LowCardinality, DateTime64, Map, JSON types, TTL or codecs.
--
-- Idempotent storage: ReplacingMergeTree collapses rows with the same sorting key, and every
-- sorting-key column is derived from the record itself, so a replay writes the same key and
-- `SELECT … FINAL` (or a later merge) keeps one row.

CREATE TABLE IF NOT EXISTS events (
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
) ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(event_time)
ORDER BY (provider, identity_id, event_time, event_id);

CREATE TABLE IF NOT EXISTS findings (
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
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(event_time)
ORDER BY (finding_id);
