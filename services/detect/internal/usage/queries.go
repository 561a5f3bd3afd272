package usage

// The dashboard queries of docs/usage-vs-granted.md. Each runs on ClickHouse 18.16 and
// current releases; tests run every one against the test server and check that the
// document quotes them verbatim. A "use" is an allowed (or authorised and failed) request;
// "denied" requests are counted apart.

// QueryPermissionUsage is per identity and permission: uses, first and last use, for used
// and for denied requests.
const QueryPermissionUsage = `SELECT identity_id, permission, outcome,
       uniqExactMerge(events) AS uses,
       minMerge(first_seen) AS first_use,
       maxMerge(last_seen) AS last_use
FROM permission_usage
GROUP BY identity_id, permission, outcome
ORDER BY identity_id, permission, outcome`

// grantUse is every allowed grant pattern in force with whether it allowed a request in
// the last 90 days.
const grantUse = `SELECT identity_id, identity_kind, grant_name, via, permission, scope, admin,
           uses > 0 AS is_used
    FROM (SELECT identity_id, identity_kind, grant_name, via, permission, scope, admin
          FROM grants FINAL WHERE active = 1 AND effect = 'allow')
    ANY LEFT JOIN
         (SELECT identity_id, grant_name, via, permission, scope, uniqExactMerge(events) AS uses
          FROM grant_usage
          WHERE day >= today() - 90
          GROUP BY identity_id, grant_name, via, permission, scope)
    USING identity_id, grant_name, via, permission, scope`

// QueryUtilization is per identity: granted patterns, used, unused and utilization over
// the last 90 days.
const QueryUtilization = `SELECT identity_id, any(identity_kind) AS kind,
       count() AS granted, sum(is_used) AS used, count() - sum(is_used) AS unused,
       round(sum(is_used) / count(), 3) AS utilization, max(admin) AS admin
FROM (
    ` + grantUse + `
)
GROUP BY identity_id
ORDER BY utilization, identity_id`

// QueryUnusedGrants lists the grant patterns no use matched in the last 90 days.
const QueryUnusedGrants = `SELECT identity_id, grant_name, via, permission, scope
FROM (
    ` + grantUse + `
)
WHERE is_used = 0
ORDER BY identity_id, grant_name, permission`

// QueryStandingAdmin lists identities holding an admin-equivalent grant that made no
// sensitive (admin) request in the last 90 days.
const QueryStandingAdmin = `SELECT identity_id, any(identity_kind) AS kind, groupUniqArray(grant_name) AS admin_grants
FROM grants FINAL
WHERE active = 1 AND admin = 1 AND effect = 'allow'
  AND identity_id NOT IN (
      SELECT identity_id FROM permission_usage
      WHERE outcome = 'used' AND sensitive = 1 AND day >= today() - 90)
GROUP BY identity_id
ORDER BY identity_id`

// QueryNeverUsed lists identities with grants that never made a request.
const QueryNeverUsed = `SELECT identity_id, any(identity_kind) AS kind, uniqExact(grant_name) AS grants
FROM grants FINAL
WHERE active = 1
  AND identity_id NOT IN (SELECT identity_id FROM permission_usage)
GROUP BY identity_id
ORDER BY identity_id`

// QueryBeyondGrant lists what identities tried and were refused.
const QueryBeyondGrant = `SELECT identity_id, permission,
       uniqExactMerge(events) AS attempts, maxMerge(last_seen) AS last_attempt
FROM permission_usage
WHERE outcome = 'denied'
GROUP BY identity_id, permission
ORDER BY attempts DESC, identity_id, permission`

// QueryKeysPastRotation lists active long-term keys not rotated for 90 days.
const QueryKeysPastRotation = `SELECT credential_id, identity_id, last_rotated, last_used,
       intDiv(toUInt32(now()) - toUInt32(last_rotated), 86400) AS age_days
FROM grant_credentials FINAL
WHERE active = 1 AND last_rotated < now() - 90 * 86400
ORDER BY age_days DESC, credential_id`

// QueryPosture lists the posture findings per identity: NHIs without an owner, keys past
// their rotation age, standing admin never exercised.
const QueryPosture = `SELECT detector, identity_id, any(identity_kind) AS kind, max(severity_rank) AS severity_rank,
       groupUniqArray(cause) AS causes, max(event_time) AS last_evaluated
FROM findings FINAL
WHERE detector IN ('posture_no_owner', 'posture_key_rotation', 'posture_standing_admin')
GROUP BY detector, identity_id
ORDER BY severity_rank DESC, detector, identity_id`

// Queries are the dashboard queries by name, in the document's order.
var Queries = []struct{ Name, SQL string }{
	{"permission usage", QueryPermissionUsage},
	{"utilization", QueryUtilization},
	{"unused grants", QueryUnusedGrants},
	{"standing admin", QueryStandingAdmin},
	{"never used", QueryNeverUsed},
	{"beyond grant", QueryBeyondGrant},
	{"keys past rotation", QueryKeysPastRotation},
	{"posture", QueryPosture},
}
