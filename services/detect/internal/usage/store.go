package usage

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/grants"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/store"
)

// InsertUsage is the INSERT of per-event usage rows; the materialized view
// permission_usage_mv folds them into permission_usage.
const InsertUsage = `INSERT INTO permission_usage_log (event_id, event_time, identity_id, provider, identity_kind,
 account, permission, outcome, sensitive, credential_id)`

// Outcome labels in permission_usage.
const (
	OutcomeUsed   = "used"
	OutcomeDenied = "denied"
)

// AppendUsage appends the usage row of one event to a batch prepared with InsertUsage.
func AppendUsage(b driver.Batch, ev *events.Event) error {
	outcome := OutcomeUsed
	if !IsUse(ev.GetOutcome().GetResult()) {
		outcome = OutcomeDenied
	}
	perm := ev.GetAction().GetPermission()
	return b.Append(ev.Id, time.Unix(0, ev.TimeUnixNano).UTC(), ev.GetIdentity().GetId(), ev.Provider.Label(),
		ev.GetIdentity().GetKind().Label(), ev.Account, perm, outcome, boolU8(grants.IsSensitive(ev.Provider, perm)),
		ev.GetCredential().GetId())
}

// UsageTable writes the usage of NHI_EVENTS batches: one row per event that names an
// identity and a permission, from its actor's partition only (copies on grantee partitions
// are skipped), so each event is one row; uniqExact over event ids makes redelivery harmless.
func UsageTable() store.Table {
	return store.Table{
		Name:   "permission_usage",
		Insert: InsertUsage,
		Decode: func(msg jetstream.Msg) (any, int, error) {
			b, err := events.UnmarshalEventBatch(msg.Data())
			if err != nil {
				return nil, 0, err
			}
			var own []*events.Event
			for _, ev := range b.Events {
				if ev.Partition == b.Partition && Counts(ev) {
					own = append(own, ev)
				}
			}
			return own, len(own), nil
		},
		Append: func(batch driver.Batch, decoded any, _ time.Time) error {
			for _, ev := range decoded.([]*events.Event) {
				if err := AppendUsage(batch, ev); err != nil {
					return fmt.Errorf("event %s: %w", ev.Id, err)
				}
			}
			return nil
		},
	}
}

// InsertGrants is the INSERT of grant rows.
const InsertGrants = `INSERT INTO grants (identity_id, provider, identity_kind, permission,
 grant_name, via, scope, effect, admin, conditional, unresolved, active, source, updated_at, version)`

// GrantRow is one row of the grants table.
type GrantRow struct {
	Entry   grants.Entry
	Kind    string
	Active  bool
	Source  string
	Version time.Time
}

// AppendGrant appends one grant row to a batch prepared with InsertGrants.
func AppendGrant(b driver.Batch, r GrantRow) error {
	e := r.Entry
	effect := "allow"
	if e.Deny {
		effect = "deny"
	}
	return b.Append(e.Identity, e.Provider, r.Kind, e.Permission, e.Grant, e.Via, e.Scope, effect,
		boolU8(e.Admin), boolU8(e.Conditional), boolU8(e.Unresolved), boolU8(r.Active), r.Source,
		r.Version.UTC(), uint64(r.Version.UnixNano()))
}

// WriteGrants inserts grant rows in one batch.
func WriteGrants(ctx context.Context, conn driver.Conn, rows []GrantRow) error {
	if len(rows) == 0 {
		return nil
	}
	b, err := conn.PrepareBatch(ctx, InsertGrants)
	if err != nil {
		return fmt.Errorf("grants: prepare: %w", err)
	}
	for _, r := range rows {
		if err := AppendGrant(b, r); err != nil {
			_ = b.Abort()
			return fmt.Errorf("grants: append: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("grants: send: %w", err)
	}
	return nil
}

// InsertGrantUsage is the INSERT of the grant entries an event's request fell under; the
// materialized view grant_usage_mv folds them into grant_usage.
const InsertGrantUsage = `INSERT INTO grant_usage_log (event_id, event_time, identity_id, grant_name, via, permission, scope, used_permission)`

// GrantUse is one grant entry that allowed one event's request.
type GrantUse struct {
	EventID    string
	At         time.Time
	Entry      grants.Entry
	Permission string
}

// WriteGrantUses inserts grant uses in one batch.
func WriteGrantUses(ctx context.Context, conn driver.Conn, uses []GrantUse) error {
	if len(uses) == 0 {
		return nil
	}
	b, err := conn.PrepareBatch(ctx, InsertGrantUsage)
	if err != nil {
		return fmt.Errorf("grant usage: prepare: %w", err)
	}
	for _, u := range uses {
		e := u.Entry
		if err := b.Append(u.EventID, u.At.UTC(), e.Identity, e.Grant, e.Via, e.Permission, e.Scope, u.Permission); err != nil {
			_ = b.Abort()
			return fmt.Errorf("grant usage: append: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("grant usage: send: %w", err)
	}
	return nil
}

// InsertCredentials is the INSERT of credential rows.
const InsertCredentials = `INSERT INTO grant_credentials (credential_id, identity_id, active, last_rotated, last_used, source, version)`

// WriteCredentials inserts the model's credentials, versioned by at.
func WriteCredentials(ctx context.Context, conn driver.Conn, creds []grants.Credential, at time.Time) error {
	if len(creds) == 0 {
		return nil
	}
	b, err := conn.PrepareBatch(ctx, InsertCredentials)
	if err != nil {
		return fmt.Errorf("grant credentials: prepare: %w", err)
	}
	for _, c := range creds {
		if err := b.Append(c.ID, c.Identity, boolU8(c.Active), clampTime(c.LastRotated), clampTime(c.LastUsed), c.Source, uint64(at.UnixNano())); err != nil {
			_ = b.Abort()
			return fmt.Errorf("grant credentials: append: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("grant credentials: send: %w", err)
	}
	return nil
}

// clampTime maps the zero time to the epoch (DateTime cannot hold year 1).
func clampTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Unix(0, 0).UTC()
	}
	return t.UTC()
}

// modelRows are the rows of every entry in force of every identity of the model.
func modelRows(model *grants.Model, at time.Time) map[string]GrantRow {
	want := map[string]GrantRow{}
	ids := map[string]bool{}
	for _, id := range model.Identities() {
		ids[id.ID] = true
	}
	for _, p := range model.Principals() {
		if isIdentity(p) {
			ids[p] = true
		}
	}
	for id := range ids {
		kind := ""
		if inv, ok := model.Identity(id); ok {
			kind = inv.Kind
		}
		for _, e := range model.Entries(id) {
			want[rowKey(e.Identity, e.Grant, e.Via, e.Permission, e.Scope, e.Deny)] = GrantRow{Entry: e, Kind: kind, Active: true, Source: "reconcile", Version: at}
		}
	}
	return want
}

// WriteModel writes a row for every entry in force of the model and its credentials,
// versioned at, and marks nothing inactive: for a model that does not hold every grant
// (one built from snapshots alone, without the event stream's changes). It returns the
// grant and credential rows written.
func WriteModel(ctx context.Context, conn driver.Conn, model *grants.Model, at time.Time) (rows, creds int, err error) {
	want := modelRows(model, at)
	out := make([]GrantRow, 0, len(want))
	for _, k := range sortedKeys(want) {
		out = append(out, want[k])
	}
	if err := WriteGrants(ctx, conn, out); err != nil {
		return 0, 0, err
	}
	cs := model.Credentials()
	if err := WriteCredentials(ctx, conn, cs, at); err != nil {
		return len(out), 0, err
	}
	return len(out), len(cs), nil
}

// Reconcile writes the model's complete state: a row for every entry of every identity in
// force (version at), and an inactive row for every row ClickHouse holds active that the
// model no longer has. It makes the table right whatever was lost before (a failed insert,
// a restart between a change and its row).
func Reconcile(ctx context.Context, conn driver.Conn, model *grants.Model, at time.Time) (written int, err error) {
	want := modelRows(model, at)
	rows, err := conn.Query(ctx, `SELECT identity_id, provider, identity_kind, permission, grant_name, via, scope, effect
 FROM grants FINAL WHERE active = 1`)
	if err != nil {
		return 0, fmt.Errorf("grants: read active rows: %w", err)
	}
	var out []GrantRow
	for rows.Next() {
		var id, prov, kind, perm, grant, via, scope, effect string
		if err := rows.Scan(&id, &prov, &kind, &perm, &grant, &via, &scope, &effect); err != nil {
			rows.Close()
			return 0, fmt.Errorf("grants: scan: %w", err)
		}
		k := rowKey(id, grant, via, perm, scope, effect == "deny")
		if _, ok := want[k]; ok {
			continue
		}
		out = append(out, GrantRow{
			Entry: grants.Entry{Identity: id, Provider: prov, Permission: perm, Grant: grant, Via: via, Scope: scope, Deny: effect == "deny"},
			Kind:  kind, Active: false, Source: "reconcile", Version: at,
		})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("grants: read active rows: %w", err)
	}
	for _, k := range sortedKeys(want) {
		out = append(out, want[k])
	}
	if err := WriteGrants(ctx, conn, out); err != nil {
		return 0, err
	}
	if err := WriteCredentials(ctx, conn, model.Credentials(), at); err != nil {
		return 0, err
	}
	return len(out), nil
}

func rowKey(id, grant, via, perm, scope string, deny bool) string {
	return id + "\x00" + grant + "\x00" + via + "\x00" + perm + "\x00" + scope + "\x00" + boolKey(deny)
}

func boolU8(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
