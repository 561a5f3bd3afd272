package files

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/ingesttest"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/sink"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/split"
)

const testdata = "../../../../testdata"

type env struct {
	h   *ingesttest.Harness
	dir string
}

func newEnv(t *testing.T) *env { return &env{h: ingesttest.New(t), dir: t.TempDir()} }

// put writes a file under the env's directory and returns its path.
func (e *env) put(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(e.dir, name)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (e *env) copy(t *testing.T, src, name string) string {
	data, err := os.ReadFile(filepath.Join(testdata, src))
	if err != nil {
		t.Fatal(err)
	}
	return e.put(t, name, data)
}

// ids returns the record ids a file must produce.
func ids(t *testing.T, path string) []string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data, err := split.ReadAll(f, split.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	split.New(split.DefaultLimits()).Split(data, func(r split.Record) error {
		out = append(out, events.RecordID("logs", "file:"+path+"#"+strconv.Itoa(r.Index)))
		return nil
	}, func(split.Rejected) error { return nil })
	return out
}

func (e *env) start(t *testing.T, cfg Config) *ingesttest.Running {
	t.Helper()
	cfg.Paths = []string{e.dir}
	src, err := New(cfg, e.h.Sink("logs", events.Provider_PROVIDER_AWS, "auto", ""), e.h.Cursors("logs"), split.DefaultLimits(), e.h.Log)
	if err != nil {
		t.Fatal(err)
	}
	return ingesttest.Start(t, src.Run)
}

func TestOnePassOverEveryForm(t *testing.T) {
	e := newEnv(t)
	var want []string
	for _, f := range []struct{ src, name string }{
		{"cloudtrail/s3-delivery/111111111111_CloudTrail_eu-central-1_20171211T1505Z_A6kvhMoVeCsc7v8U.json.gz", "aws/delivery.json.gz"},
		{"cloudtrail/stratus-red-team/aws.persistence.iam-backdoor-role.json", "aws/stratus.json"},
		{"gcp/jsonl/gcp_logging.jsonl", "gcp/entries.jsonl"},
		{"k8s/audit-log/audit2rbac-demo.log", "k8s/audit.log"},
	} {
		want = append(want, ids(t, e.copy(t, f.src, f.name))...)
	}
	delivery, _ := os.ReadFile(filepath.Join(testdata, "cloudtrail/s3-delivery/111111111111_CloudTrail_eu-central-1_20171211T1505Z_A6kvhMoVeCsc7v8U.json.gz"))
	e.put(t, "aws/truncated.json.gz", delivery[:len(delivery)/2])
	e.put(t, "notes.json", []byte("not json\nat all\nreally\n"))
	e.put(t, "ignored.txt", []byte("{}"))

	if err := e.start(t, Config{ChunkRecords: 7}).Wait(); err != nil {
		t.Fatal(err)
	}
	ingesttest.CheckOnce(t, e.h.Records(t), want)
	dlq := e.h.DLQ(t)
	if len(dlq) != 2 {
		t.Fatalf("got %d dead letters, want the truncated gzip and the non-JSON file: %+v", len(dlq), dlq)
	}
	// A second pass reads nothing again.
	before := e.h.Sum(t, "nhiwatch_ingest_records", attribute.String("source", "logs"))
	e.start(t, Config{}).Wait()
	if after := e.h.Sum(t, "nhiwatch_ingest_records", attribute.String("source", "logs")); after != before {
		t.Errorf("a second pass published %d more records", after-before)
	}
}

func TestStopInsideAFileResumes(t *testing.T) {
	e := newEnv(t)
	var b strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&b, `{"eventTime":"2024-07-31T13:00:00Z","eventID":"e-%05d","eventName":"GetCallerIdentity","recipientAccountId":"111111111111"}`+"\n", i)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(b.String()))
	zw.Close()
	path := e.put(t, "big.jsonl.gz", gz.Bytes())
	want := ids(t, path)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := e.h.KV.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stop := e.start(t, Config{ChunkRecords: 200}).Stop
	for up := range w.Updates() {
		if up != nil {
			break
		}
	}
	stop()
	if n := len(e.h.Records(t)); n == 0 || n >= len(want) {
		t.Fatalf("after the stop NHI_RAW holds %d of %d records, want a stop inside the file", n, len(want))
	}
	e.start(t, Config{ChunkRecords: 200}).Wait()
	ingesttest.CheckOnce(t, e.h.Records(t), want)
	if n := e.h.Sum(t, "nhiwatch_ingest_records", attribute.String("source", "logs")); n > int64(len(want)+200) {
		t.Errorf("published %d records for %d: the restart re-read more than one chunk", n, len(want))
	}
}

func TestWatchPicksUpNewAndGrownFiles(t *testing.T) {
	e := newEnv(t)
	first := e.copy(t, "gcp/jsonl/gcp_logging.jsonl", "a/entries.jsonl")
	want := ids(t, first)
	// A long poll interval: only file-system notifications can make this test pass in time.
	e.start(t, Config{Watch: true, PollInterval: time.Hour, SettleTime: 300 * time.Millisecond})
	e.h.WaitRecords(t, len(want), 10*time.Second)

	second := e.copy(t, "cloudtrail/stratus-red-team/aws.defense-evasion.cloudtrail-stop.json", "a/trail.json")
	want = append(want, ids(t, second)...)
	e.h.WaitRecords(t, len(want), 10*time.Second)

	// JSON Lines appended to: only the new records are read.
	f, _ := os.OpenFile(first, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"insertId":"appended-1","logName":"projects/p/logs/cloudaudit.googleapis.com%2Factivity","timestamp":"2024-01-01T00:00:00Z"}` + "\n")
	f.Close()
	want = ids(t, first)
	want = append(want, ids(t, second)...)
	e.h.WaitRecords(t, len(want), 10*time.Second)
	time.Sleep(100 * time.Millisecond)
	ingesttest.CheckOnce(t, e.h.Records(t), want)
	if n := e.h.Sum(t, "nhiwatch_ingest_records", attribute.String("source", "logs")); n != int64(len(want)) {
		t.Errorf("published %d records for %d: a grown file was read again from its start", n, len(want))
	}
}

// BenchmarkOnePass measures a files source reading 20,000 CloudTrail-sized records (about
// 1 KiB each) from a JSON Lines file into NHI_RAW on an in-process JetStream server.
func BenchmarkOnePass(b *testing.B) {
	h := ingesttest.New(b)
	dir := b.TempDir()
	var sb strings.Builder
	pad := strings.Repeat("x", 700)
	for i := range 20000 {
		fmt.Fprintf(&sb, `{"eventTime":"2024-07-31T13:00:00Z","eventID":"e-%06d","eventName":"GetCallerIdentity","eventSource":"sts.amazonaws.com","recipientAccountId":"111111111111","userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::111111111111:assumed-role/ci/job"},"userAgent":"%s"}`+"\n", i, pad)
	}
	os.WriteFile(filepath.Join(dir, "bench.jsonl"), []byte(sb.String()), 0o644)
	b.ResetTimer()
	for i := range b.N {
		name := "bench-" + strconv.Itoa(i)
		sk := sink.New(sink.Options{Source: name, Provider: events.Provider_PROVIDER_AWS, Format: "cloudtrail", MaxBatchRecords: 500}, h.Pub, h.Metrics)
		src, err := New(Config{Paths: []string{dir}}, sk, h.Cursors(name), split.DefaultLimits(), h.Log)
		if err != nil {
			b.Fatal(err)
		}
		if err := src.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(20000*b.N)/b.Elapsed().Seconds(), "records/s")
}
