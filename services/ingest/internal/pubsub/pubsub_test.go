package pubsub

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/ingesttest"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/split"
)

const testdata = "../../../../testdata"

type env struct {
	h    *ingesttest.Harness
	srv  *pstest.Server
	want []string
}

const project = "audit-project"

func newEnv(t *testing.T) *env {
	srv := pstest.NewServer()
	t.Cleanup(func() { srv.Close() })
	conn, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx := context.Background()
	client, err := pubsub.NewClient(ctx, project, option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	topic := "projects/" + project + "/topics/audit-logs"
	if _, err := client.TopicAdminClient.CreateTopic(ctx, &pb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.SubscriptionAdminClient.CreateSubscription(ctx, &pb.Subscription{
		Name: "projects/" + project + "/subscriptions/nhiwatch", Topic: topic, AckDeadlineSeconds: 10,
	}); err != nil {
		t.Fatal(err)
	}
	return &env{h: ingesttest.New(t), srv: srv}
}

// publish sends each entry as one message, as a Logging sink does.
func (e *env) publish(entries ...string) {
	for _, en := range entries {
		id := e.srv.Publish("projects/"+project+"/topics/audit-logs", []byte(en), map[string]string{"logging.googleapis.com/timestamp": "2024-01-01T00:00:00Z"})
		e.want = append(e.want, events.RecordID("gcp-audit", "pubsub:nhiwatch/"+id+"#0"))
	}
}

func (e *env) start(t *testing.T, cfg Config) (stop func()) {
	t.Helper()
	cfg.Project, cfg.Subscription, cfg.Endpoint, cfg.Insecure = project, "nhiwatch", e.srv.Addr, true
	src, err := New(cfg, e.h.Sink("gcp-audit", events.Provider_PROVIDER_GCP, "gcp", ""), split.DefaultLimits(), e.h.Log)
	if err != nil {
		t.Fatal(err)
	}
	return ingesttest.Start(t, src.Run).Stop
}

func logEntries(t *testing.T) []string {
	out := ingesttest.Lines(t, filepath.Join(testdata, "gcp/jsonl/gcp_logging.jsonl"))
	for _, name := range []string{"LogEntryData-pubsubCreateTopic.json", "LogEntryData-bigqueryjobcompleted.json"} {
		data, err := os.ReadFile(filepath.Join(testdata, "gcp/logentry", name))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(data))
	}
	return out
}

// synthetic is a Cloud Audit Log entry of a service account's call.
func synthetic(i int) string {
	return fmt.Sprintf(`{"insertId":"id-%05d","logName":"projects/audit-project/logs/cloudaudit.googleapis.com%%2Factivity","protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","authenticationInfo":{"principalEmail":"deployer@audit-project.iam.gserviceaccount.com"},"methodName":"google.iam.admin.v1.CreateServiceAccountKey","serviceName":"iam.googleapis.com"},"resource":{"type":"service_account"},"timestamp":"2024-01-01T00:%02d:%02dZ","severity":"NOTICE"}`, i, (i/60)%60, i%60)
}

func TestReceivesAcrossARestart(t *testing.T) {
	e := newEnv(t)
	e.publish(logEntries(t)...)
	for i := range 200 {
		e.publish(synthetic(i))
	}
	e.srv.Publish("projects/"+project+"/topics/audit-logs", []byte("not a log entry"), nil)
	// Messages held by the stopped reader come back when their (short) deadline passes.
	cfg := Config{MaxOutstandingMessages: 20, AckExtension: 10 * time.Second}
	// JetStream takes 50 messages and then refuses more: the source is stopped while it
	// waits, part-way through the subscription.
	lift := e.h.LimitRaw(t, 50)
	stop := e.start(t, cfg)
	ingesttest.Eventually(t, 30*time.Second, "a full stream", func() bool { return e.h.Server.StreamMsgs(t, events.StreamRaw) == 50 })
	stop()
	lift()
	n := len(e.h.Records(t))
	if n >= len(e.want) {
		t.Fatalf("after the stop NHI_RAW holds %d of %d records, want a stop part-way", n, len(e.want))
	}
	e.start(t, cfg)
	e.h.WaitRecords(t, len(e.want), 60*time.Second)
	time.Sleep(200 * time.Millisecond)
	ingesttest.CheckOnce(t, e.h.Records(t), e.want)
	ingesttest.Eventually(t, 30*time.Second, "every message acknowledged", func() bool {
		for _, m := range e.srv.Messages() {
			if m.Acks == 0 {
				return false
			}
		}
		return true
	})
	if dlq := e.h.DLQ(t); len(dlq) != 1 || !strings.Contains(dlq[0].Error, "not JSON") {
		t.Errorf("dead letters %+v, want the message that is not a log entry", dlq)
	}
}

// TestNacksWhileJetStreamIsFull: publish failures nack the message, which Pub/Sub
// redelivers; nothing is acknowledged before it is stored, and nothing is lost.
func TestNacksWhileJetStreamIsFull(t *testing.T) {
	e := newEnv(t)
	lift := e.h.LimitRaw(t, 5)
	for i := range 30 {
		e.publish(synthetic(i))
	}
	e.start(t, Config{MaxOutstandingMessages: 4, PublishTimeout: 300 * time.Millisecond})
	ingesttest.Eventually(t, 30*time.Second, "a full stream and redeliveries", func() bool {
		redelivered := 0
		for _, m := range e.srv.Messages() {
			if m.Deliveries > 1 {
				redelivered++
			}
		}
		return e.h.Server.StreamMsgs(t, events.StreamRaw) == 5 && redelivered > 0
	})
	acked := 0
	for _, m := range e.srv.Messages() {
		if m.Acks > 0 {
			acked++
		}
	}
	if acked > 5 {
		t.Fatalf("%d messages acknowledged while only 5 were stored", acked)
	}
	lift()
	e.h.WaitRecords(t, len(e.want), 60*time.Second)
	ingesttest.CheckOnce(t, e.h.Records(t), e.want)
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"ok", Config{Project: "p", Subscription: "s"}, true},
		{"full name", Config{Project: "p", Subscription: "projects/p/subscriptions/s"}, true},
		{"other project", Config{Project: "p", Subscription: "projects/q/subscriptions/s"}, false},
		{"no project", Config{Subscription: "s"}, false},
		{"insecure without endpoint", Config{Project: "p", Subscription: "s", Insecure: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.WithDefaults().Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
