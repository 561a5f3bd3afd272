package usage

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/eventstest"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/grants"
)

func testLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// clock is a settable clock safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.set(t); return c }
func (c *clock) set(t time.Time)  { c.ns.Store(t.UnixNano()) }
func (c *clock) add(d time.Duration) {
	c.ns.Add(int64(d))
}
func (c *clock) now() time.Time { return time.Unix(0, c.ns.Load()).UTC() }

// findingsIn reads every message of NHI_FINDINGS.
func findingsIn(t *testing.T, js jetstream.JetStream) []*events.Finding {
	t.Helper()
	ctx := context.Background()
	cons, err := js.OrderedConsumer(ctx, events.StreamFindings, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*events.Finding
	for {
		batch, err := cons.Fetch(100, jetstream.FetchMaxWait(300*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			f, err := events.UnmarshalFinding(msg.Data())
			if err != nil {
				t.Fatal(err)
			}
			if msg.Headers().Get(events.HeaderMsgID) != f.Id || msg.Headers().Get(events.HeaderSource) != PostureSource ||
				msg.Subject() != events.FindingSubject(f.Severity, f.Detector) {
				t.Errorf("message %s %v does not carry finding %s", msg.Subject(), msg.Headers(), f.Id)
			}
			out = append(out, f)
		}
		if n == 0 {
			return out
		}
	}
}

func newRunner(t *testing.T, srv *eventstest.Server, clk *clock) *PostureRunner {
	t.Helper()
	r, err := NewPostureRunner(context.Background(), DefaultPostureConfig(), srv.JS, srv.Streams, streams.NewPublisher(srv.JS),
		nil, testLog(), noop.NewMeterProvider().Meter("test"), clk.now)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestPostureRunnerPublishesOnce(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	clk := newClock(evalTime)
	w := newPostureWorld(t)
	r := newRunner(t, srv, clk)
	if err := r.LoadActivity(ctx, w.act); err != nil {
		t.Fatal(err)
	}
	n, err := r.Evaluate(ctx, w.model, w.act)
	if err != nil || n != 6 {
		t.Fatalf("first evaluation published %d, %v; want 6", n, err)
	}
	first := findingsIn(t, srv.JS)
	if len(first) != 6 {
		t.Fatalf("NHI_FINDINGS holds %d findings, want 6", len(first))
	}
	// The same state an hour later: nothing new, whoever evaluates.
	clk.add(time.Hour)
	other := newRunner(t, srv, clk)
	if err := other.LoadActivity(ctx, NewActivities()); err != nil {
		t.Fatal(err)
	}
	if n, err := other.Evaluate(ctx, w.model, w.act); err != nil || n != 0 {
		t.Errorf("re-evaluation published %d, %v; want 0", n, err)
	}
	// A new credential report shows ci-deployer's first key deactivated: its condition ends.
	report := strings.Join([]string{
		"user,arn,user_creation_time,password_enabled,access_key_1_active,access_key_1_last_rotated,access_key_2_active,access_key_2_last_rotated",
		"christophe,arn:aws:iam::229654561268:user/christophe,2023-05-02T09:14:21+00:00,true,true,2024-06-10T08:00:00+00:00,false,N/A",
		"ci-deployer,arn:aws:iam::229654561268:user/ci/ci-deployer,2022-11-20T16:40:02+00:00,false,false,2022-11-20T16:41:00+00:00,true,2023-01-05T09:00:00+00:00",
	}, "\n")
	snap, err := grants.ImportAWSCredentialReport([]byte(report), evalTime.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.model.Import(snap); err != nil {
		t.Fatal(err)
	}
	if n, err := other.Evaluate(ctx, w.model, w.act); err != nil || n != 0 {
		t.Errorf("evaluation after the key deactivation published %d, %v; want 0", n, err)
	}
	open, err := other.openConditions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 5 {
		t.Errorf("%d conditions open after the key deactivation, want 5", len(open))
	}
	// ci-deployer gets a new key; 100 days later it is past its age, and christophe has
	// made no admin action for 103 days: two new findings.
	w.model.Apply(&events.Event{Id: "new", Provider: events.Provider_PROVIDER_AWS, Account: acct, TimeUnixNano: evalTime.Add(2 * time.Hour).UnixNano(),
		Identity: &events.Identity{Id: awsID("user/christophe")}, Outcome: &events.Outcome{Result: events.Result_RESULT_ALLOWED},
		GrantChanges: []*events.GrantChange{{Op: events.GrantOp_GRANT_OP_ADD, Grantee: awsID("user/ci/ci-deployer"),
			Grant: "aws:key:AKIAIOSFODNN7EXAMPLE", Mechanism: "create_access_key"}}})
	clk.set(evalTime.Add(100 * 24 * time.Hour))
	var detectors []string
	if n, err := other.Evaluate(ctx, w.model, w.act); err != nil || n != 2 {
		t.Errorf("evaluation 100 days later published %d, %v; want 2", n, err)
	}
	for _, f := range findingsIn(t, srv.JS)[6:] {
		detectors = append(detectors, f.Detector+" "+f.Identity.GetId())
	}
	slices.Sort(detectors)
	if want := []string{DetectorKeyRotation + " " + awsID("user/ci/ci-deployer"), DetectorStandingAdmin + " " + awsID("user/christophe")}; !slices.Equal(want, detectors) {
		t.Errorf("new findings %v, want %v", detectors, want)
	}
	all := findingsIn(t, srv.JS)
	ids := map[string]bool{}
	for _, f := range all {
		if ids[f.Id] {
			t.Errorf("finding %s published twice", f.Id)
		}
		ids[f.Id] = true
	}
	if len(all) != 8 {
		t.Errorf("NHI_FINDINGS holds %d findings, want 8", len(all))
	}
}

func TestPostureActivityPersists(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	clk := newClock(evalTime)
	w := newPostureWorld(t)
	r := newRunner(t, srv, clk)
	if err := r.LoadActivity(ctx, NewActivities()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Evaluate(ctx, w.model, w.act); err != nil {
		t.Fatal(err)
	}
	// A restarted worker whose stream no longer holds those events still knows them.
	clk.add(24 * time.Hour)
	restarted := NewActivities()
	r2 := newRunner(t, srv, clk)
	if err := r2.LoadActivity(ctx, restarted); err != nil {
		t.Fatal(err)
	}
	got, ok := restarted.Get(awsID("user/christophe"))
	if !ok || !got.LastAdmin.Equal(time.Date(2024, 11, 12, 9, 0, 0, 0, time.UTC)) || got.LastAdminPermission != "iam:AttachUserPolicy" {
		t.Errorf("restored activity of christophe = %+v", got)
	}
	if last := restarted.CredentialLastUse(awsID("user/ci/ci-deployer") + "#access_key_2"); !last.Equal(time.Date(2024, 11, 10, 9, 0, 0, 0, time.UTC)) {
		t.Errorf("restored last use of ci-deployer's key = %v", last)
	}
	if !r2.observed.Equal(evalTime) {
		t.Errorf("observation start = %v, want the first start %v", r2.observed, evalTime)
	}
	if s := r2.observedSince(restarted); !s.Equal(t0) {
		t.Errorf("observed since = %v, want the earliest event %v", s, t0)
	}
}

func TestLease(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	kv, err := streams.EnsureBucket(ctx, srv.JS, srv.Streams, events.BucketLeases, "leases", 1)
	if err != nil {
		t.Fatal(err)
	}
	clk := newClock(time.Now())
	a, _ := NewLease(kv, LeaseKey, "a", 3*time.Second, clk.now)
	b, _ := NewLease(kv, LeaseKey, "b", 3*time.Second, clk.now)
	hold := func(l *Lease) bool {
		t.Helper()
		ok, err := l.Hold(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !hold(a) || hold(b) {
		t.Fatal("a must hold the lease and b not")
	}
	clk.add(2 * time.Second) // a renews (past a third of the TTL)
	if !hold(a) || hold(b) {
		t.Fatal("a renewed; b must not take it")
	}
	clk.add(4 * time.Second) // a stopped renewing: expired
	if !hold(b) {
		t.Fatal("b must take the expired lease")
	}
	if hold(a) {
		t.Fatal("a must see that it lost the lease")
	}
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if !hold(a) {
		t.Fatal("a released lease must be free at once")
	}
}

// TestSyncPosture runs the grants sync of two workers over real JetStream: the stored
// snapshots and the events on NHI_EVENTS, posture evaluated by the lease holder only, once,
// and again after a snapshot import.
func TestSyncPosture(t *testing.T) {
	srv := eventstest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := newClock(evalTime)
	store, err := OpenSnapshotStore(ctx, srv.JS, srv.Streams)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"aws-authorization-details.json", "aws-credential-report.csv"} {
		snaps, err := grants.ReadFile("../grants/testdata/"+f, grants.ImportOptions{Taken: t0.Add(-24 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range snaps {
			if err := store.Put(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
	}
	christophe, deployer := awsID("user/christophe"), awsID("user/ci/ci-deployer")
	used := awsEvent("c1", christophe, "iam:CreateUser", events.Result_RESULT_ALLOWED, time.Date(2024, 10, 20, 9, 0, 0, 0, time.UTC))
	publish(t, srv.JS, srv.Streams.Partitions, "1",
		awsEvent("d1", deployer, "lambda:UpdateFunctionCode", events.Result_RESULT_ALLOWED, t0), used)

	done := make(chan error, 2)
	for _, worker := range []string{"w1", "w2"} {
		cfg := DefaultSyncConfig()
		cfg.Posture, cfg.PostureInterval, cfg.LeaseTTL = true, time.Hour, 2*time.Second
		s, err := NewSync(cfg, SyncDeps{Model: grants.NewModel(), JS: srv.JS, Streams: srv.Streams, Log: testLog(),
			Meter: noop.NewMeterProvider().Meter("test"), Publisher: streams.NewPublisher(srv.JS), WorkerID: worker, Now: clk.now})
		if err != nil {
			t.Fatal(err)
		}
		go func() { done <- s.Run(ctx) }()
	}
	want := []string{DetectorKeyRotation, DetectorKeyRotation, DetectorKeyRotation, DetectorNoOwner, DetectorNoOwner, DetectorStandingAdmin}
	var got []string
	waitFor(t, func() bool {
		got = got[:0]
		for _, f := range findingsIn(t, srv.JS) {
			got = append(got, f.Detector)
		}
		slices.Sort(got)
		return slices.Equal(got, want)
	})
	// A new credential report with the keys rotated: the import triggers an evaluation,
	// which publishes nothing new (and the key conditions end).
	report := "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active," +
		"access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service," +
		"access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service," +
		"cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated\n" +
		"ci-deployer,arn:aws:iam::229654561268:user/ci/ci-deployer,2022-11-20T16:40:02+00:00,false,N/A,N/A,N/A,false," +
		"true,2024-11-01T10:00:00+00:00,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n"
	snap, err := grants.ImportAWSCredentialReport([]byte(report), evalTime)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Put(ctx, snap); err != nil {
		t.Fatal(err)
	}
	kv, err := srv.JS.KeyValue(ctx, events.BucketPosture)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		keys, _ := kv.ListKeysFiltered(ctx, postureOpenPrefix+">")
		n := 0
		for range keys.Keys() {
			n++
		}
		return n == 3 // no owner ×2, standing admin
	})
	if n := len(findingsIn(t, srv.JS)); n != 6 {
		t.Errorf("NHI_FINDINGS holds %d findings after the import, want the 6 of before", n)
	}
	cancel()
	for range 2 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
