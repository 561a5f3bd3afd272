-- Triage status of findings (notify). Valid on ClickHouse 18.16 and current releases.
--
-- finding_status holds the current status per finding: ReplacingMergeTree keyed by
-- finding_id with the status revision (the NATS KV revision of the change, increasing) as
-- version, so `SELECT … FINAL` keeps the latest change and a replay adds nothing.
-- finding_status_log keeps every change (who, when, why) and is never updated; it is keyed
-- by (finding_id, version) so replaying a change stores it once.

CREATE TABLE IF NOT EXISTS finding_status (
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
) ENGINE = ReplacingMergeTree(version)
ORDER BY (finding_id);

CREATE TABLE IF NOT EXISTS finding_status_log (
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
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(changed_at)
ORDER BY (finding_id, version);
