package kafka

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"go.opentelemetry.io/otel/attribute"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/ingesttest"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/sink"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/split"
)

const testdata = "../../../../testdata"

func lines(t testing.TB, path string) []string {
	return ingesttest.Lines(t, filepath.Join(testdata, path))
}

type env struct {
	h       *ingesttest.Harness
	cluster *kfake.Cluster
	client  *kgo.Client
	want    []string
}

func newEnv(t *testing.T, topics ...string) *env {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &env{h: ingesttest.New(t), cluster: c, client: cl}
}

// produce writes values to a topic and records the record ids the source must publish for
// them (one per record inside each value).
func (e *env) produce(t *testing.T, source, topic string, values ...string) {
	t.Helper()
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		recs[i] = &kgo.Record{Topic: topic, Value: []byte(v)}
	}
	if err := e.client.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		n := 0
		split.New(split.DefaultLimits()).Split(r.Value, func(split.Record) error { n++; return nil }, func(split.Rejected) error { return nil })
		for i := range n {
			e.want = append(e.want, events.RecordID(source, fmt.Sprintf("kafka:%s/%d@%d#%d", topic, r.Partition, r.Offset, i)))
		}
	}
}

func (e *env) start(t *testing.T, source string, cfg Config) (stop func()) {
	t.Helper()
	cfg.Brokers = e.cluster.ListenAddrs()
	src, err := New(cfg, e.h.Sink(source, events.Provider_PROVIDER_K8S, "auto", "prod"), split.DefaultLimits(), e.h.Log)
	if err != nil {
		t.Fatal(err)
	}
	return ingesttest.Start(t, src.Run).Stop
}

// committed returns the group's committed offsets summed over partitions.
func (e *env) committed(t *testing.T, group string) int64 {
	adm := kadm.NewClient(e.client)
	offs, err := adm.FetchOffsets(context.Background(), group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	offs.Each(func(o kadm.OffsetResponse) { n += o.At })
	return n
}

func TestConsumesEveryFormatAcrossARestart(t *testing.T) {
	e := newEnv(t, "audit")
	k8s := lines(t, "k8s/audit-log/audit2rbac-demo.log")
	gcp := lines(t, "gcp/jsonl/gcp_logging.jsonl")
	trail, err := os.ReadFile(filepath.Join(testdata, "cloudtrail/stratus-red-team/aws.persistence.iam-backdoor-role.json"))
	if err != nil {
		t.Fatal(err)
	}
	var values []string
	for i := 0; i < 40; i++ {
		values = append(values, k8s...) // single events
	}
	values = append(values, gcp...)                                                                                         // LogEntries
	values = append(values, `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[`+strings.Join(k8s[:5], ",")+`]}`) // an EventList
	values = append(values, string(trail))                                                                                  // a CloudTrail array
	e.produce(t, "bus", "audit", values...)
	e.produce(t, "bus", "audit", "this is not json\nat all\nreally")

	cfg := Config{Topics: []string{"audit"}, GroupID: "nhiwatch", MaxBatchMessages: 50}
	// JetStream takes 60 messages and then refuses more: the source is stopped while it
	// waits, part-way through the topic, with some offsets committed and some not.
	lift := e.h.LimitRaw(t, 60)
	stop := e.start(t, "bus", cfg)
	ingesttest.Eventually(t, 30*time.Second, "a full stream", func() bool { return e.h.Server.StreamMsgs(t, events.StreamRaw) == 60 })
	stop()
	lift()
	if e.committed(t, "nhiwatch") == 0 {
		t.Fatal("nothing committed before the stop")
	}
	n := len(e.h.Records(t))
	if n == 0 || n >= len(e.want) {
		t.Fatalf("after the stop NHI_RAW holds %d of %d records, want a stop part-way", n, len(e.want))
	}

	e.start(t, "bus", cfg)
	e.h.WaitRecords(t, len(e.want), 60*time.Second)
	ingesttest.Eventually(t, 30*time.Second, "every offset committed", func() bool { return e.committed(t, "nhiwatch") == int64(len(values)+1) })
	ingesttest.CheckOnce(t, e.h.Records(t), e.want)

	dlq := e.h.DLQ(t)
	if len(dlq) != 1 || !strings.Contains(dlq[0].Error, "not JSON") {
		t.Errorf("dead letters %+v, want the non-JSON message", dlq)
	}
	if !e.h.Has(t, "nhiwatch_ingest_backlog") {
		t.Error("no backlog (consumer lag) recorded")
	}
}

// TestStopsWhileJetStreamIsFull: with NHI_RAW refusing messages, the source neither commits
// nor drops; once there is room it goes on and stores everything once.
func TestStopsWhileJetStreamIsFull(t *testing.T) {
	e := newEnv(t, "audit")
	k8s := lines(t, "k8s/audit-log/audit2rbac-demo.log")
	lift := e.h.LimitRaw(t, 10)
	e.produce(t, "bus", "audit", k8s...)
	e.start(t, "bus", Config{Topics: []string{"audit"}, GroupID: "g", MaxBatchMessages: 5})
	ingesttest.Eventually(t, 30*time.Second, "a full stream", func() bool {
		return e.h.Server.StreamMsgs(t, events.StreamRaw) == 10
	})
	time.Sleep(time.Second) // the source keeps trying meanwhile
	if got := e.h.Server.StreamMsgs(t, events.StreamRaw); got > 10 {
		t.Fatalf("NHI_RAW holds %d messages past its limit", got)
	}
	committed := e.committed(t, "g")
	if committed > 10 {
		t.Fatalf("committed %d offsets while only 10 messages fit", committed)
	}
	lift()
	e.h.WaitRecords(t, len(e.want), 60*time.Second)
	ingesttest.CheckOnce(t, e.h.Records(t), e.want)
}

func TestConfigValidate(t *testing.T) {
	base := Config{Brokers: []string{"b:9092"}, Topics: []string{"t"}, GroupID: "g"}
	tests := []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"ok", func(*Config) {}, true},
		{"no brokers", func(c *Config) { c.Brokers = nil }, false},
		{"no topics", func(c *Config) { c.Topics = nil }, false},
		{"no group", func(c *Config) { c.GroupID = "" }, false},
		{"bad start", func(c *Config) { c.StartOffset = "middle" }, false},
		{"bad sasl", func(c *Config) { c.SASL = &SASLConfig{Mechanism: "GSSAPI", Username: "u", PasswordFile: "p"} }, false},
		{"sasl ok", func(c *Config) { c.SASL = &SASLConfig{Mechanism: "scram-sha-512", Username: "u", PasswordFile: "p"} }, true},
		{"tls half", func(c *Config) { c.TLS = &TLSConfig{CertFile: "c"} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			tt.mod(&c)
			if err := c.WithDefaults().Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// TestSASL consumes from a cluster that requires SASL authentication, with the password
// read from a file.
func TestSASL(t *testing.T) {
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "audit"), kfake.EnableSASL(), kfake.Superuser(mech, "nhiwatch", "correct horse"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			var m sasl.Mechanism
			switch mech {
			case "PLAIN":
				m = plain.Auth{User: "nhiwatch", Pass: "correct horse"}.AsMechanism()
			case "SCRAM-SHA-256":
				m = scram.Auth{User: "nhiwatch", Pass: "correct horse"}.AsSha256Mechanism()
			default:
				m = scram.Auth{User: "nhiwatch", Pass: "correct horse"}.AsSha512Mechanism()
			}
			cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.SASL(m))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cl.Close)
			e := &env{h: ingesttest.New(t), cluster: c, client: cl}
			e.produce(t, "bus", "audit", lines(t, "k8s/audit-log/audit2rbac-demo.log")[:10]...)
			pw := filepath.Join(t.TempDir(), "password")
			os.WriteFile(pw, []byte("correct horse\n"), 0o600)
			e.start(t, "bus", Config{Topics: []string{"audit"}, GroupID: "g", SASL: &SASLConfig{Mechanism: mech, Username: "nhiwatch", PasswordFile: pw}})
			e.h.WaitRecords(t, len(e.want), 30*time.Second)
			ingesttest.CheckOnce(t, e.h.Records(t), e.want)
		})
	}
}

// BenchmarkConsume measures a kafka source reading 60,000 single-event messages (Kubernetes
// audit events, about 1 KiB each) from an in-process kfake broker into NHI_RAW.
func BenchmarkConsume(b *testing.B) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "audit"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.ProducerLinger(0))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	events1 := lines(b, "k8s/audit-log/audit2rbac-demo.log")
	const n = 60000
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: "audit", Value: []byte(events1[i%len(events1)])}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		b.Fatal(err)
	}
	h := ingesttest.New(b)
	b.ResetTimer()
	for i := range b.N {
		name := fmt.Sprintf("bench-%d", i)
		sk := sink.New(sink.Options{Source: name, Provider: events.Provider_PROVIDER_K8S, Format: "k8s", Cluster: "prod", MaxBatchRecords: 500}, h.Pub, h.Metrics)
		src, err := New(Config{Brokers: c.ListenAddrs(), Topics: []string{"audit"}, GroupID: name}, sk, split.DefaultLimits(), h.Log)
		if err != nil {
			b.Fatal(err)
		}
		r := ingesttest.Start(b, src.Run)
		ingesttest.Eventually(b, 5*time.Minute, "every message", func() bool {
			return h.Sum(b, "nhiwatch_ingest_records", attribute.String("source", name)) >= n
		})
		r.Stop()
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
}
