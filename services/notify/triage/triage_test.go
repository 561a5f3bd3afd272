package triage_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/go-cmp/cmp"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/eventstest"
	"github.com/nhiwatch/nhiwatch/pkg/platform/chdbtest"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/testfixture"
	"github.com/nhiwatch/nhiwatch/services/notify/triage"
)

// insertFinding writes a finding row the way detect's store does (the columns triage reads).
func insertFinding(t *testing.T, conn driver.Conn, f *events.Finding) {
	t.Helper()
	ctx := context.Background()
	ev, _ := json.Marshal(f.Evidence)
	b, err := conn.PrepareBatch(ctx, `INSERT INTO findings (finding_id, detector, severity, severity_rank, title, summary, provider, account, region,
 identity_id, identity_kind, identity_name, credential_id, owner, team, cause, grantee, permissions_added, sensitive_permissions_added,
 event_time, event_time_ms, created_at_ms, evidence_event_ids, evidence, owasp_nhi, mitre_attack, recommendation, status, version)`)
	if err != nil {
		t.Fatal(err)
	}
	tm := time.Unix(0, f.TimeUnixNano).UTC()
	nz := func(xs []string) []string {
		if xs == nil {
			return []string{}
		}
		return xs
	}
	if err := b.Append(f.Id, f.Detector, f.Severity.Label(), uint8(f.Severity), f.Title, f.Summary, f.Provider.Label(), f.Account, f.Region,
		f.Identity.Id, f.Identity.Kind.Label(), f.Identity.Name, f.GetCredential().GetId(), f.Owner, f.Team, f.Cause, f.Grantee,
		nz(f.PermissionsAdded), nz(f.SensitivePermissionsAdded), tm, uint64(tm.UnixMilli()), uint64(tm.UnixMilli()), []string{},
		string(ev), nz(f.OwaspNhi), nz(f.MitreAttack), f.Recommendation, "open", uint64(1)); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
}

func TestClickHouseListAndStatusTables(t *testing.T) {
	conn, _ := chdbtest.Open(t)
	srv := eventstest.Start(t)
	ctx := context.Background()
	store, err := triage.Open(ctx, srv.JS, srv.Streams, conn)
	if err != nil {
		t.Fatal(err)
	}
	f, k := testfixture.Finding(), testfixture.K8sFinding()
	insertFinding(t, conn, f)
	insertFinding(t, conn, k)

	got, err := store.Finding(ctx, f.Id)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(triage.View(f), triage.View(got)); diff != "" {
		t.Errorf("finding read back from ClickHouse (-want +got):\n%s", diff)
	}
	if _, err := store.Finding(ctx, "0123"); !errors.Is(err, triage.ErrNotFound) {
		t.Errorf("unknown finding: %v", err)
	}
	st1, err := store.Change(ctx, triage.Change{FindingID: f.Id, To: triage.StatusAcknowledged, Reason: "looking", By: "alice", Via: "cli"})
	if err != nil {
		t.Fatal(err)
	}
	st2, err := store.Change(ctx, triage.Change{FindingID: f.Id, To: triage.StatusSuppressed, Reason: "known CI job", By: "bob", Via: "api-token", For: "7d"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		flt  triage.Filter
		want []string
	}{
		{triage.Filter{}, []string{k.Id, f.Id}}, // same time: by id
		{triage.Filter{Status: "open"}, []string{k.Id}},
		{triage.Filter{Status: "suppressed"}, []string{f.Id}},
		{triage.Filter{Status: "resolved"}, nil},
		{triage.Filter{MinSeverity: "high"}, []string{f.Id}},
		{triage.Filter{Identity: "payments"}, []string{k.Id}},
		{triage.Filter{Detector: "out_of_boundary"}, []string{k.Id}},
	} {
		items, err := store.List(ctx, tt.flt)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, it := range items {
			ids = append(ids, it.Finding.ID)
		}
		if diff := cmp.Diff(tt.want, ids); diff != "" {
			t.Errorf("List(%+v) (-want +got):\n%s", tt.flt, diff)
		}
	}

	// Replaying the changes stores each once.
	for i := 0; i < 2; i++ {
		if err := triage.InsertStatuses(ctx, conn, []triage.Status{st1, st2}); err != nil {
			t.Fatal(err)
		}
	}
	var status, by string
	var until time.Time
	if err := conn.QueryRow(ctx, "SELECT status, changed_by, expires_at FROM finding_status FINAL WHERE finding_id = ?", f.Id).Scan(&status, &by, &until); err != nil {
		t.Fatal(err)
	}
	if status != "suppressed" || by != "bob" || !until.Equal(st2.Until) {
		t.Errorf("finding_status = %s by %s until %s, want suppressed by bob until %s", status, by, until, st2.Until)
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM finding_status_log FINAL WHERE finding_id = ?", f.Id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("finding_status_log has %d rows, want 2", n)
	}
}

func TestStreamFallbackAndChanges(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	store, err := triage.Open(ctx, srv.JS, srv.Streams, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Change(ctx, triage.Change{FindingID: "abc", To: triage.StatusResolved, Reason: "x", By: "a"}); !errors.Is(err, triage.ErrNotFound) {
		t.Errorf("change of an unknown finding: %v", err)
	}
	tests := []struct {
		name string
		c    triage.Change
	}{
		{"no reason", triage.Change{FindingID: "abc", To: triage.StatusResolved, By: "a"}},
		{"no author", triage.Change{FindingID: "abc", To: triage.StatusResolved, Reason: "x"}},
		{"bad status", triage.Change{FindingID: "abc", To: "closed", Reason: "x", By: "a"}},
		{"bad id", triage.Change{FindingID: "a.b", To: triage.StatusResolved, Reason: "x", By: "a"}},
		{"suppress forever", triage.Change{FindingID: "abc", To: triage.StatusSuppressed, Reason: "x", By: "a"}},
		{"suppress too long", triage.Change{FindingID: "abc", To: triage.StatusSuppressed, Reason: "x", By: "a", For: "400d"}},
		{"suppress in the past", triage.Change{FindingID: "abc", To: triage.StatusSuppressed, Reason: "x", By: "a", Until: time.Now().Add(-time.Hour)}},
		{"expiry on resolve", triage.Change{FindingID: "abc", To: triage.StatusResolved, Reason: "x", By: "a", For: "1d"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := store.Change(ctx, tt.c); !errors.Is(err, triage.ErrInvalid) {
				t.Errorf("Change = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"7d": 7 * 24 * time.Hour, "12h": 12 * time.Hour, "90m": 90 * time.Minute} {
		if got, err := triage.ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %s, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "0d", "-1h", "7days", "d"} {
		if _, err := triage.ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
}
