package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/eventstest"
	"github.com/nhiwatch/nhiwatch/pkg/platform/chdbtest"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/kafkasink"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/ocsf/ocsftest"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/pagerduty"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/pagerduty/pdtest"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/route"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/safehttp"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/secret"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/slack"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/slack/slacktest"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/testfixture"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/webhook"
	"github.com/nhiwatch/nhiwatch/services/notify/triage"
)

// The secrets of the test destinations: none may appear in any log line.
const (
	slackToken = "xoxb-111111111111-222222222222-slacksecrettokenvalue"
	routingKey = "PDR0UT1NGKEYsecret0123456789abcd"
	hmacKey    = "hmac-secret-key-0123456789abcdef"
)

// syncBuffer collects log output from concurrent goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type harness struct {
	t       *testing.T
	srv     *eventstest.Server
	slack   *slacktest.Server
	pd      *pdtest.Server
	kafka   *kfake.Cluster
	hook    *hookReceiver
	logs    *syncBuffer
	out     *syncBuffer
	svc     *Service
	secrets []string
	stop    func()
}

// hookReceiver is a webhook receiver that verifies signatures.
type hookReceiver struct {
	mu     sync.Mutex
	bodies [][]byte
	bad    int
}

func writeSecret(t *testing.T, name, value string) secret.Ref {
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return secret.Ref{File: p}
}

// start runs notify with Slack (bot token), PagerDuty, Kafka and a webhook, all local, and
// a route sending every finding to all four. mutate adjusts the configuration.
func start(t *testing.T, mutate func(*Config), deps func(*Deps)) *harness {
	t.Helper()
	h := &harness{t: t, srv: eventstest.Start(t), logs: &syncBuffer{}, out: &syncBuffer{}}
	h.slack = slacktest.New(slackToken, "C0SOC")
	t.Cleanup(h.slack.Close)
	h.pd = pdtest.New(routingKey)
	t.Cleanup(h.pd.Close)
	var err error
	if h.kafka, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "findings", "events")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.kafka.Close)
	h.hook = &hookReceiver{}
	hookSrv := newHookServer(h.hook)
	t.Cleanup(hookSrv.Close)
	h.secrets = []string{slackToken, routingKey, hmacKey, hookSrv.URL + "/in/s3cr3t-path"}

	cfg := DefaultConfig()
	cfg.Terminal = true
	cfg.RetryDelay = 200 * time.Millisecond
	cfg.FoldWindow = time.Hour
	cfg.HTTP = safehttp.Config{Timeout: 2 * time.Second, AllowInsecureHTTP: true, AllowPrivateNetworks: true}
	cfg.SlackPerSecond = 20
	cfg.LinkBaseURL = "https://nhiwatch.example.com/findings/"
	cfg.Destinations = []DestinationConfig{
		{Name: "soc", Type: "slack", Slack: slack.Config{Token: writeSecret(t, "slack", slackToken), Channel: "C0SOC", APIURL: h.slack.APIURL()}},
		{Name: "oncall", Type: "pagerduty", PagerDuty: pagerduty.Config{RoutingKey: writeSecret(t, "pd", routingKey), URL: h.pd.EnqueueURL()}},
		{Name: "siem", Type: "kafka", Kafka: kafkasink.Config{Brokers: h.kafka.ListenAddrs(), Topic: "findings", EventsTopic: "events"}},
		{Name: "soar", Type: "webhook", Webhook: webhook.Config{URL: writeSecret(t, "hookurl", h.secrets[3]), Secret: writeSecret(t, "hmac", hmacKey)}},
	}
	cfg.Routes = []route.Route{{Name: "all", Destinations: []string{"soc", "oncall", "siem", "soar"}}}
	if mutate != nil {
		mutate(&cfg)
	}
	_, js := h.srv.Connect(t)
	d := Deps{
		Logger: slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Meter:  noop.NewMeterProvider().Meter("test"), JS: js, Streams: h.srv.Streams, Out: h.out, Version: "test",
	}
	if deps != nil {
		deps(&d)
	}
	h.svc, err = New(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.svc.Run(ctx) }()
	h.stop = func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return after cancel")
		}
	}
	t.Cleanup(func() {
		h.stop()
		for _, s := range h.secrets {
			if strings.Contains(h.logs.String(), s) || strings.Contains(h.out.String(), s) {
				t.Errorf("a secret (%.8s…) appears in the logs", s)
			}
		}
	})
	h.eventually("notify started", func() bool { return h.svc.Triage() != nil })
	return h
}

func (h *harness) publish(f *events.Finding, msgID string) {
	h.t.Helper()
	data, err := events.Marshal(f)
	if err != nil {
		h.t.Fatal(err)
	}
	m := nats.NewMsg(events.FindingSubject(f.Severity, f.Detector))
	m.Header.Set(events.HeaderMsgID, msgID)
	m.Data = data
	if _, err := h.srv.JS.PublishMsg(context.Background(), m); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s\nlogs:\n%s", what, h.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// idle reports whether a consumer has nothing pending or unacknowledged.
func (h *harness) idle(stream, consumer string) bool {
	c, err := h.srv.JS.Consumer(context.Background(), stream, consumer)
	if err != nil {
		return false
	}
	info, err := c.Info(context.Background())
	return err == nil && info.NumPending == 0 && info.NumAckPending == 0
}

func (h *harness) kafkaRecords(topic string) []*kgo.Record {
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.kafka.ListenAddrs()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		h.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var out []*kgo.Record
	for ctx.Err() == nil {
		out = append(out, cl.PollFetches(ctx).Records()...)
	}
	return out
}

func (h *harness) change(id, to, reason string, until time.Time) triage.Status {
	h.t.Helper()
	st, err := h.svc.Triage().Change(context.Background(), triage.Change{FindingID: id, To: to, Reason: reason, By: "alice", Via: "test", Until: until})
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

func TestExactlyOneAlertUnderRedeliveryAndRepeats(t *testing.T) {
	h := start(t, nil, nil)
	// PagerDuty rate-limits the first attempt for longer than a handler may wait: the
	// finding is redelivered, and only PagerDuty is tried again.
	h.pd.Fail(pdtest.Fault{Status: 429, RetryAfter: "60"})
	f := testfixture.Finding()
	h.publish(f, f.Id)
	h.eventually("the PagerDuty alert", func() bool { a, ok := h.pd.Alert(f.Id); return ok && a.State == "triggered" })
	h.eventually("the finding acked", func() bool { return h.idle(events.StreamFindings, ConsumerName) })
	// The same finding again (a detector re-emitting it): folded into the alert.
	h.publish(f, f.Id+"-again")
	h.publish(f, f.Id+"-third")
	h.eventually("the repeats acked", func() bool { return h.idle(events.StreamFindings, ConsumerName) })

	if msgs := h.slack.Messages(); len(msgs) != 1 || msgs[0].Edits != 0 {
		t.Errorf("Slack got %d messages (%+v), want 1 unedited", len(msgs), msgs)
	}
	a, _ := h.pd.Alert(f.Id)
	if alerts, requests := h.pd.Alerts(); alerts != 1 || a.Triggers != 1 || requests != 2 {
		t.Errorf("PagerDuty: %d alerts, %d triggers, %d requests; want 1, 1 and 2 (the 429 and the trigger)", alerts, a.Triggers, requests)
	}
	// Forwarders get every version: the finding and its two repeats.
	recs := h.kafkaRecords("findings")
	if len(recs) != 3 {
		t.Errorf("Kafka got %d records, want 3", len(recs))
	}
	v := ocsftest.New(t)
	for _, r := range recs {
		if string(r.Key) != f.Id {
			t.Errorf("Kafka key %q", r.Key)
		}
		if err := v.Validate(r.Value); err != nil {
			t.Errorf("Kafka record is not valid OCSF: %v", err)
		}
	}
	if n, bad := h.hook.count(); n != 3 || bad != 0 {
		t.Errorf("webhook got %d requests (%d with a bad signature), want 3 valid", n, bad)
	}
	if got := strings.Count(h.out.String(), f.Id); got != 1 {
		t.Errorf("the terminal printed the finding %d times, want 1:\n%s", got, h.out.String())
	}
	e, ok, _ := h.svc.ledger.Get(context.Background(), f.Id, "soc")
	if !ok || e.Seen != 3 || !e.Pending {
		t.Errorf("ledger entry = %+v, want seen 3 with a pending update", e)
	}
	if h.srv.StreamMsgs(t, events.StreamDLQ) != 0 {
		t.Error("something was dead-lettered")
	}
}

func TestFoldedRepeatsBecomeOneUpdate(t *testing.T) {
	h := start(t, func(c *Config) {
		c.FoldWindow = 2 * time.Second
		c.Routes = []route.Route{{Destinations: []string{"soc", "oncall"}}}
	}, nil)
	f := testfixture.Finding()
	h.publish(f, "1")
	h.eventually("the alert", func() bool { return len(h.slack.Messages()) == 1 })
	for i := 0; i < 4; i++ {
		h.publish(f, "repeat-"+string(rune('a'+i)))
	}
	h.eventually("the repeats acked", func() bool { return h.idle(events.StreamFindings, ConsumerName) })
	if m := h.slack.Messages(); len(m) != 1 || m[0].Edits != 0 {
		t.Fatalf("Slack = %d messages, %d edits within the fold window; want 1 and 0", len(m), m[0].Edits)
	}
	h.eventually("one folded update", func() bool { m := h.slack.Messages(); return len(m) == 1 && m[0].Edits == 1 })
	if m := h.slack.Messages(); !strings.Contains(blockText(m[0].Blocks), "seen 5 times") {
		t.Errorf("the update does not count the repeats: %s", blockText(m[0].Blocks))
	}
	if a, _ := h.pd.Alert(f.Id); a.Triggers != 2 {
		t.Errorf("PagerDuty triggers = %d, want 2 (the alert and one update on the same dedup_key)", a.Triggers)
	}
}

func blockText(blocks []map[string]any) string {
	b, _ := json.Marshal(blocks)
	return string(b)
}

func TestBadRequestIsDeadLetteredPerDestination(t *testing.T) {
	h := start(t, func(c *Config) {
		c.Destinations[1].PagerDuty.RoutingKey = writeSecret(t, "wrongpd", "WRONGKEYsecret0123456789abcdefgh")
	}, nil)
	h.secrets = append(h.secrets, "WRONGKEYsecret0123456789abcdefgh")
	f := testfixture.Finding()
	h.publish(f, f.Id)
	h.eventually("the dead letter", func() bool { return h.srv.StreamMsgs(t, events.StreamDLQ) == 1 })
	h.eventually("the finding acked", func() bool { return h.idle(events.StreamFindings, ConsumerName) })
	st, _ := h.srv.JS.Stream(context.Background(), events.StreamDLQ)
	dl, err := st.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := dl.Header.Get(events.HeaderMsgID), events.StageNotify+":"+f.Id+":oncall"; got != want {
		t.Errorf("dead letter id %q, want %q", got, want)
	}
	if reason := dl.Header.Get(events.HeaderError); !strings.Contains(reason, "HTTP 400") || strings.Contains(reason, "WRONGKEY") {
		t.Errorf("Nhi-Error = %q", reason)
	}
	if dl.Header.Get(events.HeaderStage) != events.StageNotify || dl.Subject != events.DLQSubject(events.StageNotify) {
		t.Errorf("dead letter stage/subject: %q %q", dl.Header.Get(events.HeaderStage), dl.Subject)
	}
	if len(h.slack.Messages()) != 1 {
		t.Error("Slack did not get the finding PagerDuty refused")
	}
	// A redelivery does not retry the dead-lettered destination.
	e, _, _ := h.svc.ledger.Get(context.Background(), f.Id, "oncall")
	if e.State != "dead_lettered" {
		t.Errorf("ledger state %q, want dead_lettered", e.State)
	}
}

func TestResolveAndAcknowledgeFlow(t *testing.T) {
	h := start(t, nil, nil)
	f := testfixture.Finding()
	h.publish(f, f.Id)
	h.eventually("the alerts", func() bool {
		a, ok := h.pd.Alert(f.Id)
		return ok && len(h.slack.Messages()) == 1 && a.State == "triggered"
	})
	h.eventually("the finding acked", func() bool { return h.idle(events.StreamFindings, ConsumerName) })

	h.change(f.Id, triage.StatusAcknowledged, "looking into it", time.Time{})
	h.eventually("the PagerDuty acknowledgement", func() bool { a, _ := h.pd.Alert(f.Id); return a.State == "acknowledged" })
	h.change(f.Id, triage.StatusResolved, "policy detached", time.Time{})
	h.eventually("the PagerDuty resolution", func() bool { a, _ := h.pd.Alert(f.Id); return a.State == "resolved" })
	h.eventually("the Slack update", func() bool {
		m := h.slack.Messages()
		return len(m) == 1 && m[0].Edits == 2 && strings.HasPrefix(m[0].Text, "[RESOLVED]")
	})
	if !strings.Contains(blockText(h.slack.Messages()[0].Blocks), "Resolved by alice: policy detached") {
		t.Error("the Slack message does not say who resolved it and why")
	}
	h.eventually("the status consumer idle", func() bool { return h.idle(statusStream(), StatusConsumerName) })
	var statuses []int
	for _, r := range h.kafkaRecords("findings") {
		var doc struct {
			ActivityID int `json:"activity_id"`
			StatusID   int `json:"status_id"`
		}
		json.Unmarshal(r.Value, &doc)
		statuses = append(statuses, doc.ActivityID*10+doc.StatusID)
	}
	if want := []int{11, 22, 34}; !equal(statuses, want) {
		t.Errorf("Kafka activity*10+status = %v, want %v (create/new, update/in progress, close/resolved)", statuses, want)
	}
	if !strings.Contains(h.out.String(), "[RESOLVED] finding "+f.Id) {
		t.Errorf("terminal did not print the resolution:\n%s", h.out.String())
	}
	hist, err := h.svc.Triage().History(context.Background(), f.Id)
	if err != nil || len(hist) != 2 || hist[1].Previous != triage.StatusAcknowledged || hist[1].By != "alice" {
		t.Errorf("history = %+v, %v", hist, err)
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSuppressionSilencesTheIdentityAndCause(t *testing.T) {
	h := start(t, nil, nil)
	first := testfixture.Finding()
	h.publish(first, first.Id)
	h.eventually("the first alert", func() bool { return len(h.slack.Messages()) == 1 })
	h.eventually("the finding acked", func() bool { return h.idle(events.StreamFindings, ConsumerName) })
	h.change(first.Id, triage.StatusSuppressed, "approved break-glass change CHG-4711", time.Now().Add(time.Hour))
	h.eventually("the PagerDuty resolution", func() bool { a, _ := h.pd.Alert(first.Id); return a.State == "resolved" })

	// The same cause the next day: a new finding id, same identity and cause.
	next := testfixture.Finding()
	next.Id = events.FindingID(next.Detector, next.Identity.Id, next.Cause, "2024-05-03")
	next.TimeUnixNano += int64(24 * time.Hour)
	other := testfixture.K8sFinding()
	h.publish(next, next.Id)
	h.publish(other, other.Id)
	h.eventually("the findings acked", func() bool { return h.idle(events.StreamFindings, ConsumerName) })
	if _, ok := h.pd.Alert(next.Id); ok {
		t.Error("PagerDuty was alerted for a suppressed identity and cause")
	}
	if _, ok := h.pd.Alert(other.Id); !ok {
		t.Error("another identity's finding was silenced")
	}
	if got := len(h.slack.Messages()); got != 2 {
		t.Errorf("Slack has %d messages, want 2 (the first finding and the other identity's)", got)
	}
	var suppressedDoc bool
	for _, r := range h.kafkaRecords("findings") {
		var doc struct {
			StatusID int `json:"status_id"`
		}
		json.Unmarshal(r.Value, &doc)
		suppressedDoc = suppressedDoc || string(r.Key) == next.Id && doc.StatusID == 3
	}
	if !suppressedDoc {
		t.Error("the SIEM did not get the suppressed finding with status Suppressed")
	}

	// Reopening lifts the suppression.
	h.change(first.Id, triage.StatusOpen, "change window over", time.Time{})
	third := testfixture.Finding()
	third.Id = events.FindingID(third.Detector, third.Identity.Id, third.Cause, "2024-05-04")
	h.publish(third, third.Id)
	h.eventually("an alert after the suppression was lifted", func() bool { _, ok := h.pd.Alert(third.Id); return ok })
}

func TestStaleSuppressionDoesNotSilence(t *testing.T) {
	h := start(t, nil, nil)
	first := testfixture.Finding()
	h.publish(first, first.Id)
	h.eventually("the finding acked", func() bool { return h.idle(events.StreamFindings, ConsumerName) })
	h.change(first.Id, triage.StatusSuppressed, "short window", time.Now().Add(1500*time.Millisecond))
	time.Sleep(1600 * time.Millisecond)
	next := testfixture.Finding()
	next.Id = events.FindingID(next.Detector, next.Identity.Id, next.Cause, "2024-05-03")
	h.publish(next, next.Id)
	h.eventually("an alert once the suppression expired", func() bool { _, ok := h.pd.Alert(next.Id); return ok })
}

func TestForwardEventsAsOCSF(t *testing.T) {
	h := start(t, func(c *Config) { c.ForwardEvents.Destination = "siem" }, nil)
	evs := testfixture.Events()
	for i, ev := range evs {
		ev.Partition = uint32(i % 4)
		b, _ := events.Marshal(&events.EventBatch{Partition: ev.Partition, Events: []*events.Event{ev}})
		m := nats.NewMsg(events.EventSubject(ev.Provider, ev.Partition))
		m.Header.Set(events.HeaderMsgID, ev.Id)
		m.Data = b
		if _, err := h.srv.JS.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	// The grant change's copy on the grantee's partition is not forwarded twice.
	cp := evs[0]
	b, _ := events.Marshal(&events.EventBatch{Partition: 3, Events: []*events.Event{cp}})
	m := nats.NewMsg(events.EventSubject(cp.Provider, 3))
	m.Header.Set(events.HeaderMsgID, "copy")
	m.Data = b
	h.srv.JS.PublishMsg(context.Background(), m)
	h.eventually("the events forwarded", func() bool { return h.idle(events.StreamEvents, EventsConsumerName) })
	recs := h.kafkaRecords("events")
	// 4 API Activity + 2 Account Change (one grant change has no grantee).
	if len(recs) != 6 {
		t.Fatalf("Kafka events topic has %d records, want 6", len(recs))
	}
	v := ocsftest.New(t)
	for _, r := range recs {
		if err := v.Validate(r.Value); err != nil {
			t.Errorf("invalid OCSF: %v", err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ref := secret.Ref{File: "/x"}
	tests := []struct {
		name   string
		mutate func(*Config)
	}{
		{"unknown type", func(c *Config) { c.Destinations = []DestinationConfig{{Name: "x", Type: "email"}} }},
		{"bad name", func(c *Config) { c.Destinations = []DestinationConfig{{Name: "Bad.Name", Type: "terminal"}} }},
		{"terminal twice", func(c *Config) { c.Destinations = []DestinationConfig{{Name: "terminal", Type: "terminal"}} }},
		{"slack without secret", func(c *Config) { c.Destinations = []DestinationConfig{{Name: "s", Type: "slack"}} }},
		{"slack token without channel", func(c *Config) {
			c.Destinations = []DestinationConfig{{Name: "s", Type: "slack", Slack: slack.Config{Token: ref}}}
		}},
		{"route to nowhere", func(c *Config) { c.Routes = []route.Route{{Destinations: []string{"nope"}}} }},
		{"forward to terminal", func(c *Config) { c.ForwardEvents.Destination = "terminal" }},
		{"api without auth", func(c *Config) { c.API.Listen = "127.0.0.1:0" }},
		{"api plain http off loopback", func(c *Config) { c.API.Listen = "0.0.0.0:8443"; c.API.TokensFile = "/t" }},
		{"bad link base", func(c *Config) { c.LinkBaseURL = "javascript:alert(1)" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mutate(&c)
			if err := c.Validate(); err == nil {
				t.Error("Validate accepted it")
			}
		})
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("default config: %v", err)
	}
}

func TestStatusChangesReachClickHouse(t *testing.T) {
	conn, _ := chdbtest.Open(t)
	h := start(t, func(c *Config) { c.Routes = nil }, func(d *Deps) { d.ClickHouse = conn })
	f := testfixture.Finding()
	h.publish(f, f.Id) // the store falls back to nothing: ClickHouse has no findings row yet
	ev, _ := json.Marshal(f.Evidence)
	b, err := conn.PrepareBatch(context.Background(), "INSERT INTO findings (finding_id, detector, severity, identity_id, cause, evidence, event_time, version)")
	if err != nil {
		t.Fatal(err)
	}
	b.Append(f.Id, f.Detector, "critical", f.Identity.Id, f.Cause, string(ev), time.Unix(0, f.TimeUnixNano), uint64(1))
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	h.change(f.Id, triage.StatusAcknowledged, "on it", time.Time{})
	h.change(f.Id, triage.StatusResolved, "fixed", time.Time{})
	h.eventually("the changes in ClickHouse", func() bool {
		var n uint64
		err := conn.QueryRow(context.Background(), "SELECT count() FROM finding_status_log WHERE finding_id = ?", f.Id).Scan(&n)
		return err == nil && n == 2
	})
	var status, prev string
	if err := conn.QueryRow(context.Background(), "SELECT status, previous_status FROM finding_status FINAL WHERE finding_id = ?", f.Id).Scan(&status, &prev); err != nil {
		t.Fatal(err)
	}
	if status != "resolved" || prev != "acknowledged" {
		t.Errorf("finding_status = %s (from %s), want resolved from acknowledged", status, prev)
	}
}
