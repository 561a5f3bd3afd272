// Package store writes events and findings to ClickHouse in size- and time-bounded batches
// from durable JetStream consumers, acknowledging messages only after their rows are
// inserted. Writes are idempotent: tables are ReplacingMergeTree keyed by ids derived from
// the records, so a redelivery or a replay adds no row that FINAL (or a merge) keeps.
package store

import (
	"encoding/json"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

// InsertEvents is the INSERT for events; its columns match appendEvent.
const InsertEvents = `INSERT INTO events (event_id, provider, source, event_time, event_time_ms, received_at_ms,
 provider_event_id, account, region, identity_id, identity_kind, identity_type, identity_name, session_name,
 credential_id, credential_type, delegation, service, action, permission, read_only, action_type,
 action_category, resources, resource_types, namespace, source_ip, source_host, user_agent, vpc_endpoint,
 cluster, cloud_internal, outcome, error_code, grant_changes, grantees, extras, raw_record_id, partition_id,
 inserted_at)`

// AppendEvent appends one event to a batch prepared with InsertEvents.
func AppendEvent(b driver.Batch, ev *events.Event, now time.Time) error {
	id := ev.GetIdentity()
	cred := ev.GetCredential()
	act := ev.GetAction()
	net := ev.GetNetwork()
	out := ev.GetOutcome()
	delegation := make([]string, 0, len(ev.Delegation))
	for _, d := range ev.Delegation {
		delegation = append(delegation, d.Kind.Label()+":"+d.From+">"+d.To)
	}
	resources := make([]string, 0, len(ev.Resources))
	types := make([]string, 0, len(ev.Resources))
	namespace := ""
	for _, r := range ev.Resources {
		resources = append(resources, r.Id)
		types = append(types, r.Type)
		if namespace == "" {
			namespace = r.Namespace
		}
	}
	grantees := make([]string, 0, len(ev.GrantChanges))
	for _, g := range ev.GrantChanges {
		grantees = append(grantees, g.Grantee)
	}
	t := time.Unix(0, ev.TimeUnixNano).UTC()
	return b.Append(
		ev.Id, ev.Provider.Label(), ev.Source, t, uint64(ev.TimeUnixNano/1e6), uint64(ev.ReceivedUnixNano/1e6),
		ev.ProviderEventId, ev.Account, net.GetRegion(), id.GetId(), id.GetKind().Label(), id.GetType(), id.GetName(), id.GetSessionName(),
		cred.GetId(), cred.GetType().Label(), delegation, act.GetService(), act.GetName(), act.GetPermission(), boolU8(act.GetReadOnly()), act.GetType(),
		act.GetCategory(), resources, types, namespace, net.GetIp(), net.GetHost(), net.GetUserAgent(), net.GetVpcEndpoint(),
		net.GetCluster(), boolU8(net.GetCloudInternal()), out.GetResult().Label(), out.GetErrorCode(), uint16(min(len(ev.GrantChanges), 65535)), grantees, string(ev.Extras), ev.GetRaw().GetRecordId(), uint16(ev.Partition),
		now.UTC(),
	)
}

// InsertFindings is the INSERT for findings; its columns match AppendFinding.
const InsertFindings = `INSERT INTO findings (finding_id, detector, severity, severity_rank, title, summary, provider,
 account, region, identity_id, identity_kind, identity_name, credential_id, owner, team, cause, grantee,
 permissions_added, sensitive_permissions_added, event_time, event_time_ms, created_at_ms, evidence_event_ids,
 evidence, owasp_nhi, mitre_attack, recommendation, status, version)`

// AppendFinding appends one finding to a batch prepared with InsertFindings. version orders
// rows of the same finding: the latest wins.
func AppendFinding(b driver.Batch, f *events.Finding, version uint64) error {
	ids := make([]string, 0, len(f.Evidence))
	for _, e := range f.Evidence {
		ids = append(ids, e.EventId)
	}
	evidence, err := json.Marshal(f.Evidence)
	if err != nil {
		return err
	}
	status := f.Status.Label()
	if status == "" {
		status = "open"
	}
	return b.Append(
		f.Id, f.Detector, f.Severity.Label(), uint8(f.Severity), f.Title, f.Summary, f.Provider.Label(),
		f.Account, f.Region, f.GetIdentity().GetId(), f.GetIdentity().GetKind().Label(), f.GetIdentity().GetName(), f.GetCredential().GetId(), f.Owner, f.Team, f.Cause, f.Grantee,
		nonNil(f.PermissionsAdded), nonNil(f.SensitivePermissionsAdded), time.Unix(0, f.TimeUnixNano).UTC(), uint64(f.TimeUnixNano/1e6), uint64(f.CreatedUnixNano/1e6), ids,
		string(evidence), nonNil(f.OwaspNhi), nonNil(f.MitreAttack), f.Recommendation, status, version,
	)
}

func boolU8(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
