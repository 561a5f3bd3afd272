package usage

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/eventstest"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
	"github.com/nhiwatch/nhiwatch/pkg/platform/chdbtest"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/grants"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/store"
)

const acct = "229654561268"

func awsID(rest string) string { return events.AWSIdentityID("arn:aws:iam::" + acct + ":" + rest) }

func awsEvent(id, identity, perm string, result events.Result, at time.Time, res ...string) *events.Event {
	ev := &events.Event{
		Id: "aws:" + acct + ":" + id, Provider: events.Provider_PROVIDER_AWS, Account: acct, TimeUnixNano: at.UnixNano(),
		Identity: &events.Identity{Id: identity, Kind: events.IdentityKind_IDENTITY_KIND_ACCESS_KEY_USER},
		Action:   &events.Action{Permission: perm},
		Outcome:  &events.Outcome{Result: result},
	}
	for _, r := range res {
		ev.Resources = append(ev.Resources, &events.Resource{Id: r})
	}
	return ev
}

// publish sends the events as NHI_EVENTS batches the way normalize does: one batch per
// partition, copies of grant changes on the grantee's partition.
func publish(t *testing.T, js jetstream.JetStream, parts uint32, msgSuffix string, evs ...*events.Event) {
	t.Helper()
	by := map[uint32]*events.EventBatch{}
	add := func(p uint32, ev *events.Event) {
		if by[p] == nil {
			by[p] = &events.EventBatch{Partition: p}
		}
		by[p].Events = append(by[p].Events, ev)
	}
	for _, ev := range evs {
		ev.Partition = events.Partition(ev.Identity.Id, parts)
		add(ev.Partition, ev)
		for _, gc := range ev.GrantChanges {
			if p := events.Partition(gc.Grantee, parts); p != ev.Partition {
				add(p, ev)
			}
		}
	}
	for p, b := range by {
		data, err := events.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(context.Background(), events.EventSubject(events.Provider_PROVIDER_AWS, p), data,
			jetstream.WithMsgID(fmt.Sprintf("p%d-%s", p, msgSuffix))); err != nil {
			t.Fatal(err)
		}
	}
}

func queryRows(t *testing.T, conn driver.Conn, sql string) [][]string {
	t.Helper()
	r, err := conn.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%v\n%s", err, sql)
	}
	defer r.Close()
	cols := r.Columns()
	var out [][]string
	for r.Next() {
		vals := make([]any, len(cols))
		for i, ct := range r.ColumnTypes() {
			vals[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := r.Scan(vals...); err != nil {
			t.Fatal(err)
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			row[i] = fmt.Sprint(reflect.ValueOf(v).Elem().Interface())
		}
		out = append(out, row)
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestStatisticsInClickHouse streams events over JetStream through the usage writer and the
// grants sync into ClickHouse, then runs every dashboard query.
func TestStatisticsInClickHouse(t *testing.T) {
	conn, _ := chdbtest.Open(t)
	srv := eventstest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	now := time.Now().UTC().Truncate(time.Second)

	snapStore, err := OpenSnapshotStore(ctx, srv.JS, srv.Streams)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"aws-authorization-details.json", "aws-credential-report.csv"} {
		snaps, err := grants.ReadFile("../grants/testdata/"+f, grants.ImportOptions{Taken: now.Add(-48 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range snaps {
			if err := snapStore.Put(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
	}

	christophe, deployer, malicious := awsID("user/christophe"), awsID("user/ci/ci-deployer"), awsID("user/malicious-iam-user")
	allowed, denied := events.Result_RESULT_ALLOWED, events.Result_RESULT_DENIED
	attach := awsEvent("attach", christophe, "iam:AttachUserPolicy", allowed, now.Add(-3*time.Hour), "arn:aws:iam::"+acct+":user/malicious-iam-user")
	attach.GrantChanges = []*events.GrantChange{{Op: events.GrantOp_GRANT_OP_ADD, Grantee: malicious,
		Grant: grants.AWSManagedPolicyARN("AdministratorAccess"), Mechanism: "attach_user_policy"}}
	evs := []*events.Event{
		awsEvent("create", christophe, "iam:CreateUser", allowed, now.Add(-4*time.Hour)),
		awsEvent("key", christophe, "iam:CreateAccessKey", allowed, now.Add(-3*time.Hour-time.Minute)),
		attach,
		awsEvent("get1", deployer, "s3:GetObject", allowed, now.Add(-2*time.Hour), "arn:aws:s3:::deploy-artifacts/a.zip"),
		awsEvent("get2", deployer, "s3:GetObject", allowed, now.Add(-time.Hour), "arn:aws:s3:::deploy-artifacts/b.zip"),
		awsEvent("del", deployer, "s3:DeleteObject", denied, now.Add(-time.Hour), "arn:aws:s3:::deploy-artifacts/a.zip"),
	}
	publish(t, srv.JS, srv.Streams.Partitions, "first", evs...)
	publish(t, srv.JS, srv.Streams.Partitions, "redelivered", evs...) // the same events again

	cc := store.ConsumerConfig("detect-usage", "usage", events.SubjectsEvents, 100)
	cons, err := streams.EnsureConsumer(ctx, srv.JS, events.StreamEvents, cc)
	if err != nil {
		t.Fatal(err)
	}
	w, err := store.NewWriter(store.WriterConfig{BatchRows: 100, FlushInterval: 50 * time.Millisecond, RetryBackoff: 50 * time.Millisecond},
		UsageTable(), conn, streams.NewPublisher(srv.JS), log, noop.NewMeterProvider().Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	// Findings (the posture's) to ClickHouse too, as the detect service writes them.
	fcons, err := streams.EnsureConsumer(ctx, srv.JS, events.StreamFindings, store.ConsumerConfig("detect-store-findings", "findings", events.SubjectsFindings, 100))
	if err != nil {
		t.Fatal(err)
	}
	fw, err := store.NewWriter(store.WriterConfig{BatchRows: 100, FlushInterval: 50 * time.Millisecond, RetryBackoff: 50 * time.Millisecond},
		store.FindingsTable(), conn, streams.NewPublisher(srv.JS), log, noop.NewMeterProvider().Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 3)
	go func() { done <- w.Run(ctx, cons) }()
	go func() { done <- fw.Run(ctx, fcons) }()
	cfg := DefaultSyncConfig()
	cfg.ReconcileInterval, cfg.ScanInterval, cfg.Posture = 200*time.Millisecond, time.Hour, true
	sync, err := NewSync(cfg, SyncDeps{Model: grants.NewModel(), ClickHouse: conn, JS: srv.JS, Streams: srv.Streams, Log: log,
		Meter: noop.NewMeterProvider().Meter("test"), Publisher: streams.NewPublisher(srv.JS)})
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- sync.Run(ctx) }()

	waitFor(t, func() bool {
		rows := queryRows(t, conn, `SELECT uniqExactMerge(events) FROM permission_usage`)
		grantsRows := queryRows(t, conn, `SELECT count() FROM grants FINAL WHERE active = 1 AND identity_id = '`+malicious+`'`)
		// A row from the snapshots: the reconcile that follows the event rows has run too.
		snapRows := queryRows(t, conn, `SELECT count() FROM grants FINAL WHERE active = 1 AND identity_id = '`+deployer+`'`)
		creds := queryRows(t, conn, `SELECT count() FROM grant_credentials FINAL`)
		posture := queryRows(t, conn, `SELECT count() FROM findings FINAL WHERE detector = 'posture_key_rotation'`)
		return len(rows) == 1 && rows[0][0] == "6" && len(grantsRows) == 1 && grantsRows[0][0] == "1" &&
			len(snapRows) == 1 && snapRows[0][0] != "0" && len(creds) == 1 && creds[0][0] != "0" &&
			len(posture) == 1 && posture[0][0] == "3"
	})

	got := map[string][][]string{}
	for _, q := range Queries {
		got[q.Name] = queryRows(t, conn, q.SQL)
	}
	find := func(name string, match ...string) []string {
		for _, row := range got[name] {
			ok := true
			for i, m := range match {
				if m != "" && row[i] != m {
					ok = false
				}
			}
			if ok {
				return row
			}
		}
		t.Errorf("%s: no row %v in %v", name, match, got[name])
		return nil
	}
	if row := find("permission usage", deployer, "s3:GetObject", "used"); row != nil && row[3] != "2" {
		t.Errorf("s3:GetObject uses = %s, want 2 (each event once)", row[3])
	}
	find("permission usage", christophe, "iam:CreateUser", "used", "1")
	find("beyond grant", deployer, "s3:DeleteObject", "1")
	if row := find("utilization", deployer); row != nil && (row[2] != "5" || row[3] != "1") {
		t.Errorf("ci-deployer utilization row %v: want 5 granted patterns, 1 used", row)
	}
	find("unused grants", deployer, "artifacts", "direct", "s3:PutObject")
	find("standing admin", awsID("role/app-backend"))
	find("standing admin", malicious)
	for _, row := range got["standing admin"] {
		if row[0] == christophe {
			t.Errorf("christophe used admin permissions but is listed as standing admin")
		}
	}
	find("never used", awsID("role/data-pipeline"))
	find("keys past rotation", deployer+"#access_key_1")
	for _, row := range got["keys past rotation"] {
		if strings.HasPrefix(row[0], christophe) && now.Sub(time.Date(2024, 6, 10, 8, 0, 0, 0, time.UTC)) < 90*24*time.Hour {
			t.Errorf("christophe's key is not past rotation: %v", row)
		}
	}
	// christophe's key (rotated 2024-06-10) and ci-deployer's two; app-backend and
	// ci-deployer have no owner.
	if row := find("posture", DetectorKeyRotation, deployer); row != nil && !strings.Contains(row[4], "#access_key_1") {
		t.Errorf("posture row %v: want both keys of ci-deployer", row)
	}
	find("posture", DetectorNoOwner, awsID("role/app-backend"))
	find("posture", DetectorKeyRotation, christophe)
	cancel()
	for i := 0; i < 3; i++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDocumentedQueries checks that docs/usage-vs-granted.md quotes every dashboard query
// as the code runs it (TestStatisticsInClickHouse runs each on the test server).
func TestDocumentedQueries(t *testing.T) {
	doc, err := os.ReadFile("../../../../docs/usage-vs-granted.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range Queries {
		if !strings.Contains(string(doc), "```sql\n"+q.SQL+"\n```") {
			t.Errorf("docs/usage-vs-granted.md does not quote the %q query verbatim", q.Name)
		}
	}
}
