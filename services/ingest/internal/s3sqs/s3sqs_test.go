package s3sqs

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/awsconf"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/awstest"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/ingesttest"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/split"
)

const testdata = "../../../../testdata"

// fakeS3 is gofakes3 behind a handler that can fail or slow down requests for chosen keys.
type fakeS3 struct {
	srv     *httptest.Server
	backend *s3mem.Backend
	mu      sync.Mutex
	fail    map[string]int           // key → GETs left to fail with 500
	delay   map[string]time.Duration // key → delay before answering
}

func newFakeS3(t *testing.T, bucket string) *fakeS3 {
	f := &fakeS3{backend: s3mem.New(), fail: map[string]int{}, delay: map[string]time.Duration{}}
	h := gofakes3.New(f.backend).Server()
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.URL.Path, "/"+bucket+"/")
		f.mu.Lock()
		n, d := f.fail[key], f.delay[key]
		if n > 0 {
			f.fail[key] = n - 1
		}
		f.mu.Unlock()
		time.Sleep(d)
		if n > 0 && r.Method == http.MethodGet {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>`)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	if err := f.backend.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fakeS3) put(t *testing.T, bucket, key string, data []byte) {
	t.Helper()
	if _, err := f.backend.PutObject(bucket, key, map[string]string{}, bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
}

func gz(t *testing.T, data []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	zw.Close()
	return buf.Bytes()
}

func readTestdata(t *testing.T, path string) []byte {
	data, err := os.ReadFile(filepath.Join(testdata, path))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// recordIDs splits an object the way the source does and returns the ids it must publish.
func recordIDs(t *testing.T, source, bucket, key string, object []byte) []string {
	t.Helper()
	data, err := split.ReadAll(bytes.NewReader(object), split.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	err = split.New(split.DefaultLimits()).Split(data, func(r split.Record) error {
		ids = append(ids, events.RecordID(source, "s3://"+bucket+"/"+key+"#"+strconv.Itoa(r.Index)))
		return nil
	}, func(split.Rejected) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// syntheticTrail is a CloudTrail delivery file of n records.
func syntheticTrail(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"Records":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"eventVersion":"1.08","eventTime":"2024-07-31T13:%02d:%02dZ","eventSource":"sts.amazonaws.com","eventName":"GetCallerIdentity","eventID":"evt-%06d","recipientAccountId":"222222222222","userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::222222222222:assumed-role/ci/deploy"}}`, (i/60)%60, i%60, i)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

func s3Event(bucket, key, name string) string {
	return fmt.Sprintf(`{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2024-07-31T13:06:24.000Z","eventName":%q,"s3":{"s3SchemaVersion":"1.0","bucket":{"name":%q,"arn":"arn:aws:s3:::%s"},"object":{"key":%q,"size":1}}}]}`,
		name, bucket, bucket, strings.ReplaceAll(key, " ", "+"))
}

func snsWrap(msg string) string {
	return fmt.Sprintf(`{"Type":"Notification","MessageId":"d6b7c7c5","TopicArn":"arn:aws:sns:us-east-1:123456789012:trail","Subject":"Amazon S3 Notification","Message":%q,"Timestamp":"2024-07-31T13:06:25.000Z","SignatureVersion":"1"}`, msg)
}

type env struct {
	h   *ingesttest.Harness
	s3  *fakeS3
	sqs *awstest.SQS
	cfg Config
}

const bucket = "org-trail-logs"

func newEnv(t *testing.T) *env {
	h := ingesttest.New(t)
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("test-secret\n"), 0o600)
	e := &env{h: h, s3: newFakeS3(t, bucket), sqs: awstest.NewSQS(t)}
	e.cfg = Config{
		Config:            awsconf.Config{Region: "us-east-1", AccessKeyID: "AKIDTEST", SecretAccessKeyFile: secret},
		QueueURL:          e.sqs.QueueURL,
		S3Endpoint:        e.s3.srv.URL,
		SQSEndpoint:       e.sqs.Server.URL,
		S3PathStyle:       true,
		WaitTime:          time.Second,
		VisibilityTimeout: 2 * time.Second,
		RetryDelay:        time.Second,
		BacklogInterval:   time.Second,
	}
	return e
}

// run starts a source and returns a function that stops it and waits for Run to return.
func (e *env) run(t *testing.T, cfg Config) (stop func()) {
	t.Helper()
	src, err := New(context.Background(), cfg, e.h.Sink("trail", events.Provider_PROVIDER_AWS, "cloudtrail", ""), e.h.Cursors("trail"), split.DefaultLimits(), e.h.Log)
	if err != nil {
		t.Fatal(err)
	}
	return ingesttest.Start(t, src.Run).Stop
}

func TestNotificationsOfEveryKind(t *testing.T) {
	e := newEnv(t)
	var want []string
	put := func(key string, data []byte) {
		e.s3.put(t, bucket, key, data)
	}
	putTrail := func(key string, data []byte) {
		put(key, data)
		want = append(want, recordIDs(t, "trail", bucket, key, data)...)
	}
	delivery := readTestdata(t, "cloudtrail/s3-delivery/111111111111_CloudTrail_eu-central-1_20171211T1505Z_A6kvhMoVeCsc7v8U.json.gz")
	stratus := gz(t, readTestdata(t, "cloudtrail/stratus-red-team/aws.defense-evasion.cloudtrail-stop.json"))
	backdoor := gz(t, readTestdata(t, "cloudtrail/stratus-red-team/aws.persistence.iam-backdoor-role.json"))

	// An organization trail: several accounts and regions under one bucket.
	k1 := "AWSLogs/o-abc123/111111111111/CloudTrail/eu-central-1/2017/12/11/111111111111_CloudTrail_eu-central-1_20171211T1505Z_A6kvhMoVeCsc7v8U.json.gz"
	k2 := "AWSLogs/o-abc123/222222222222/CloudTrail/us-east-1/2024/07/31/222222222222_CloudTrail_us-east-1_20240731T1305Z_stop.json.gz"
	k3 := "AWSLogs/o-abc123/333333333333/CloudTrail/us-west-2/2024/07/31/333333333333_CloudTrail_us-west-2_20240731T1310Z_a b.json.gz"
	k4 := "AWSLogs/444444444444/CloudTrail/ap-south-1/2024/07/31/444444444444_CloudTrail_ap-south-1_20240731T1315Z_flaky.json.gz"
	putTrail(k1, delivery)
	putTrail(k2, stratus)
	putTrail(k3, backdoor)
	putTrail(k4, stratus)
	e.s3.fail[k4] = 2 // two transient failures: the message is retried, not lost or dropped

	digest := "AWSLogs/o-abc123/111111111111/CloudTrail-Digest/eu-central-1/2017/12/11/111111111111_CloudTrail-Digest_eu-central-1_trail_eu-central-1_20171211T1505Z.json.gz"
	put(digest, gz(t, []byte(`{"awsAccountId":"111111111111","digestStartTime":"2017-12-11T14:05:00Z"}`)))
	truncated := "AWSLogs/o-abc123/111111111111/CloudTrail/eu-central-1/2017/12/11/truncated.json.gz"
	put(truncated, delivery[:len(delivery)/2])
	notJSON := "AWSLogs/o-abc123/111111111111/CloudTrail/eu-central-1/2017/12/11/notjson.json.gz"
	put(notJSON, gz(t, []byte("<html>this is not a log file</html>\nnor\nthis\n")))

	e.sqs.Send(s3Event(bucket, k1, "ObjectCreated:Put"))
	e.sqs.Send(snsWrap(s3Event(bucket, k2, "ObjectCreated:CompleteMultipartUpload")))
	e.sqs.Send(snsWrap(fmt.Sprintf(`{"s3Bucket":%q,"s3ObjectKey":[%q,%q]}`, bucket, k3, digest)))
	e.sqs.Send(fmt.Sprintf(`{"version":"0","detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":%q},"object":{"key":%q}}}`, bucket, k4))
	e.sqs.Send(s3Event(bucket, digest, "ObjectCreated:Put"))
	e.sqs.Send(s3Event(bucket, k1, "ObjectRemoved:Delete"))
	e.sqs.Send(`{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2024-07-31T13:00:00.000Z","Bucket":"org-trail-logs"}`)
	e.sqs.Send(s3Event(bucket, truncated, "ObjectCreated:Put"))
	e.sqs.Send(snsWrap(s3Event(bucket, notJSON, "ObjectCreated:Put")))
	e.sqs.Send(`this is not a notification, and its password=hunter2 must not reach the DLQ`)
	e.sqs.Send(s3Event(bucket, "AWSLogs/o-abc123/111111111111/CloudTrail/eu-central-1/2017/12/11/gone.json.gz", "ObjectCreated:Put"))

	cfg := e.cfg
	cfg.Workers = 3
	e.run(t, cfg)
	ingesttest.Eventually(t, 30*time.Second, "the queue to drain", func() bool { return e.sqs.Len() == 0 })
	ingesttest.CheckOnce(t, e.h.Records(t), want)

	dlq := map[string]string{}
	for _, d := range e.h.DLQ(t) {
		dlq[d.ID] = d.Error
		if bytes.Contains(d.Data, []byte("hunter2")) {
			t.Errorf("dead letter %s keeps a secret", d.ID)
		}
	}
	wantDLQ := map[string]string{
		"ingest:trail:s3://" + bucket + "/" + truncated:                                                                  "truncated gzip",
		"ingest:trail:s3://" + bucket + "/" + notJSON:                                                                    "not JSON",
		"ingest:trail:s3://" + bucket + "/AWSLogs/o-abc123/111111111111/CloudTrail/eu-central-1/2017/12/11/gone.json.gz": "object not found",
	}
	for id, reason := range wantDLQ {
		if !strings.Contains(dlq[id], reason) {
			t.Errorf("dead letter %s: reason %q, want it to mention %q", id, dlq[id], reason)
		}
	}
	if len(dlq) != len(wantDLQ)+1 {
		t.Errorf("got %d dead letters, want %d: %v", len(dlq), len(wantDLQ)+1, dlq)
	}
	for _, m := range []string{"nhiwatch_ingest_lag_seconds", "nhiwatch_ingest_backlog"} {
		if !e.h.Has(t, m) {
			t.Errorf("metric %s was not recorded", m)
		}
	}
	if e.sqs.Receives("msg-0004") < 3 {
		t.Errorf("flaky object's message received %d times, want a retry per transient failure", e.sqs.Receives("msg-0004"))
	}
}

func TestDeletesOnlyAfterEveryRecordIsStored(t *testing.T) {
	e := newEnv(t)
	key := "AWSLogs/555555555555/CloudTrail/us-east-1/2024/07/31/big.json.gz"
	obj := gz(t, syntheticTrail(10000))
	e.s3.put(t, bucket, key, obj)
	want := recordIDs(t, "trail", bucket, key, obj)
	e.sqs.Send(s3Event(bucket, key, "ObjectCreated:Put"))

	// Stop the source as soon as it saved a cursor inside the object.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := e.h.KV.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.cfg
	cfg.Workers = 1
	cfg.ChunkRecords = 500
	stop := e.run(t, cfg)
	for up := range w.Updates() {
		if up != nil {
			break
		}
	}
	stop()
	n := len(e.h.Records(t))
	if n == 0 || n >= len(want) {
		t.Fatalf("after the stop NHI_RAW holds %d of %d records, want a stop inside the object", n, len(want))
	}
	if e.sqs.Len() != 1 {
		t.Fatal("the message was deleted before its object was read")
	}

	// A new source picks the message up after its visibility times out, and resumes.
	e.run(t, cfg)
	ingesttest.Eventually(t, 30*time.Second, "the queue to drain", func() bool { return e.sqs.Len() == 0 })
	ingesttest.CheckOnce(t, e.h.Records(t), want)
	var cur objectCursor
	if ok, _ := e.h.Cursors("trail").Load(context.Background(), "s3://"+bucket+"/"+key, &cur); ok {
		t.Error("the object's cursor was kept after its message was deleted")
	}
}

func TestExtendsVisibilityOfSlowObjects(t *testing.T) {
	e := newEnv(t)
	key := "AWSLogs/666666666666/CloudTrail/us-east-1/2024/07/31/slow.json.gz"
	obj := gz(t, syntheticTrail(10))
	e.s3.put(t, bucket, key, obj)
	e.s3.delay[key] = 2500 * time.Millisecond
	id := e.sqs.Send(s3Event(bucket, key, "ObjectCreated:Put"))
	cfg := e.cfg
	cfg.VisibilityTimeout = time.Second
	cfg.Workers = 2
	e.run(t, cfg)
	ingesttest.Eventually(t, 30*time.Second, "the queue to drain", func() bool { return e.sqs.Len() == 0 })
	if got := e.sqs.Receives(id); got != 1 {
		t.Errorf("message received %d times, want once: its visibility was not extended", got)
	}
	if e.sqs.Calls("ChangeMessageVisibility") < 2 {
		t.Errorf("ChangeMessageVisibility called %d times, want at least 2", e.sqs.Calls("ChangeMessageVisibility"))
	}
	ingesttest.CheckOnce(t, e.h.Records(t), recordIDs(t, "trail", bucket, key, obj))
}

func TestAccountAndRegionFilter(t *testing.T) {
	e := newEnv(t)
	keep := "AWSLogs/o-1/111111111111/CloudTrail/eu-west-1/2024/07/31/keep.json.gz"
	skip := "AWSLogs/o-1/999999999999/CloudTrail/eu-west-1/2024/07/31/skip.json.gz"
	obj := gz(t, syntheticTrail(3))
	e.s3.put(t, bucket, keep, obj)
	e.s3.put(t, bucket, skip, obj)
	e.sqs.Send(fmt.Sprintf(`{"s3Bucket":%q,"s3ObjectKey":[%q,%q]}`, bucket, keep, skip))
	cfg := e.cfg
	cfg.Accounts = []string{"111111111111"}
	cfg.Regions = []string{"eu-west-1"}
	e.run(t, cfg)
	ingesttest.Eventually(t, 30*time.Second, "the queue to drain", func() bool { return e.sqs.Len() == 0 })
	ingesttest.CheckOnce(t, e.h.Records(t), recordIDs(t, "trail", bucket, keep, obj))
}
