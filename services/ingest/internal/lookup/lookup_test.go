package lookup

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/awsconf"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/awstest"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/ingesttest"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/split"
)

func event(account, region, id string, at time.Time, readOnly bool) awstest.LookupEvent {
	return awstest.LookupEvent{ID: id, Time: at, JSON: fmt.Sprintf(
		`{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::%s:assumed-role/ci/job","accessKeyId":"ASIAEXAMPLEEXAMPLE01"},"eventTime":%q,"eventSource":"iam.amazonaws.com","eventName":"ListRoles","awsRegion":%q,"sourceIPAddress":"203.0.113.7","eventID":%q,"readOnly":%v,"recipientAccountId":%q,"responseElements":{"credentials":{"sessionToken":"IQoJb3JpZ2luX2VjEPlantedToken"}}}`,
		account, at.UTC().Format(time.RFC3339), region, id, readOnly, account)}
}

type target struct {
	account, region string
	api             *awstest.CloudTrail
	ids             []string
}

func newTarget(t *testing.T, account, region string) *target {
	api := awstest.NewCloudTrail(t, region)
	api.Rate = 25
	return &target{account: account, region: region, api: api}
}

// add makes n events visible, spread over the span before now.
func (tg *target) add(n int, span time.Duration, prefix string) {
	now := time.Now()
	for i := range n {
		id := fmt.Sprintf("%s-%s-%05d", prefix, tg.account, i)
		tg.api.Add(event(tg.account, tg.region, id, now.Add(-span+time.Duration(i)*span/time.Duration(n)), i%2 == 0))
		tg.ids = append(tg.ids, events.RecordID("history", "lookup:"+tg.account+"/"+tg.region+"/"+id))
	}
}

func (tg *target) config(t *testing.T) Target {
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("test-secret"), 0o600)
	return Target{Account: tg.account, Config: awsconf.Config{
		Region: tg.region, Endpoint: tg.api.Server.URL, AccessKeyID: "AKIDTEST" + tg.account[:4], SecretAccessKeyFile: secret,
	}}
}

func start(t *testing.T, h *ingesttest.Harness, cfg Config) (stop func()) {
	t.Helper()
	src, err := New(context.Background(), cfg, h.Sink("history", events.Provider_PROVIDER_AWS, "cloudtrail", ""), h.Cursors("history"), split.DefaultLimits(), h.Log)
	if err != nil {
		t.Fatal(err)
	}
	return ingesttest.Start(t, src.Run).Stop
}

func testConfig(targets ...Target) Config {
	return Config{
		Targets: targets, PollInterval: 100 * time.Millisecond, Overlap: 10 * time.Minute,
		Lookback: 4 * time.Hour, Slice: 30 * time.Minute, RequestsPerSecond: 20,
	}
}

func TestPollsAccountsAndRegionsWithPaginationThrottlingAndLateEvents(t *testing.T) {
	h := ingesttest.New(t)
	a := newTarget(t, "111111111111", "us-east-1")
	b := newTarget(t, "222222222222", "eu-west-1")
	a.add(180, 3*time.Hour, "evt")
	b.add(70, 90*time.Minute, "evt")
	a.api.ThrottleNext(3)
	start(t, h, testConfig(a.config(t), b.config(t)))

	h.WaitRecords(t, len(a.ids)+len(b.ids), 30*time.Second)
	// Events that CloudTrail shows late, inside the overlap window, are still picked up.
	late := time.Now().Add(-5 * time.Minute)
	a.api.Add(event(a.account, a.region, "late-1", late, false))
	a.ids = append(a.ids, events.RecordID("history", "lookup:111111111111/us-east-1/late-1"))
	h.WaitRecords(t, len(a.ids)+len(b.ids), 30*time.Second)
	time.Sleep(300 * time.Millisecond) // a few more polls over the same window

	got := h.Records(t)
	ingesttest.CheckOnce(t, got, append(append([]string{}, a.ids...), b.ids...))
	// The overlap re-reads events every poll; the seen ids keep them from being published again.
	if n := h.Sum(t, "nhiwatch_ingest_records", attribute.String("source", "history")); n != int64(len(got)) {
		t.Errorf("published %d records for %d events: repeats were not de-duplicated", n, len(got))
	}
	if _, throttled := a.api.Stats(); throttled != 3 {
		t.Errorf("target a was throttled %d times, want only the 3 injected (the rate limit was not kept)", throttled)
	}
	if _, throttled := b.api.Stats(); throttled != 0 {
		t.Errorf("target b was throttled %d times", throttled)
	}
	for _, r := range h.Raw(t) {
		for _, rec := range r.Batch.Records {
			if len(rec.Data) == 0 || bytes.Contains(rec.Data, []byte("PlantedToken")) {
				t.Fatalf("record %s was not redacted", rec.Id)
			}
		}
	}
}

func TestResumesFromCheckpoint(t *testing.T) {
	h := ingesttest.New(t)
	a := newTarget(t, "333333333333", "ap-south-1")
	a.add(600, 3*time.Hour+30*time.Minute, "evt")
	cfg := testConfig(a.config(t))
	cfg.RequestsPerSecond = 10

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := h.KV.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, h, cfg)
	for updates := 0; updates < 3; {
		if up := <-w.Updates(); up != nil {
			updates++
		}
	}
	stop()
	n := len(h.Records(t))
	if n == 0 || n >= len(a.ids) {
		t.Fatalf("after the stop NHI_RAW holds %d of %d records, want a stop part-way", n, len(a.ids))
	}
	var cp checkpoint
	if ok, err := h.Cursors("history").Load(context.Background(), "333333333333/ap-south-1", &cp); !ok || err != nil {
		t.Fatalf("no checkpoint saved: %v", err)
	}

	start(t, h, cfg)
	h.WaitRecords(t, len(a.ids), 60*time.Second)
	time.Sleep(300 * time.Millisecond)
	ingesttest.CheckOnce(t, h.Records(t), a.ids)
	// At most one page that was in flight at the stop is published twice (and dropped by
	// JetStream's duplicate window).
	if n := h.Sum(t, "nhiwatch_ingest_records", attribute.String("source", "history")); n > int64(len(a.ids))+50 {
		t.Errorf("published %d records for %d events after a restart", n, len(a.ids))
	}
}

func TestReadOnlyFilter(t *testing.T) {
	h := ingesttest.New(t)
	a := newTarget(t, "444444444444", "us-west-2")
	a.add(10, time.Hour, "evt")
	cfg := testConfig(a.config(t))
	cfg.ReadOnly = "false"
	start(t, h, cfg)
	var want []string
	for i, id := range a.ids {
		if i%2 == 1 {
			want = append(want, id)
		}
	}
	h.WaitRecords(t, len(want), 30*time.Second)
	time.Sleep(200 * time.Millisecond)
	ingesttest.CheckOnce(t, h.Records(t), want)
}

func TestConfigValidate(t *testing.T) {
	good := Target{Account: "111111111111", Config: awsconf.Config{Region: "us-east-1"}}
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"ok", Config{Targets: []Target{good}}, true},
		{"no targets", Config{}, false},
		{"bad account", Config{Targets: []Target{{Account: "123", Config: awsconf.Config{Region: "us-east-1"}}}}, false},
		{"no region", Config{Targets: []Target{{Account: "111111111111"}}}, false},
		{"twice", Config{Targets: []Target{good, good}}, false},
		{"lookback too long", Config{Targets: []Target{good}, Lookback: 91 * 24 * time.Hour}, false},
		{"bad read_only", Config{Targets: []Target{good}, ReadOnly: "yes"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.WithDefaults().Validate()
			if (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
