package split_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fastjson"

	"github.com/nhiwatch/nhiwatch/services/ingest/internal/split"
)

const testdata = "../../../../testdata"

type result struct {
	records  []string
	rejected []split.Rejected
}

func run(t *testing.T, data []byte) (result, error) {
	t.Helper()
	var r result
	var indexes []int
	err := split.New(split.DefaultLimits()).Split(data,
		func(rec split.Record) error {
			indexes = append(indexes, rec.Index)
			r.records = append(r.records, string(rec.Data))
			return nil
		},
		func(rej split.Rejected) error {
			indexes = append(indexes, rej.Index)
			r.rejected = append(r.rejected, rej)
			return nil
		})
	sort.Ints(indexes)
	for i, idx := range indexes {
		if idx != i {
			t.Fatalf("record indexes %v are not 0..n-1", indexes)
		}
	}
	return r, err
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(filepath.Join(testdata, path))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data, err := split.ReadAll(f, split.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestSplitSharedSamples(t *testing.T) {
	tests := []struct {
		path string
		want int
	}{
		{"cloudtrail/s3-delivery/111111111111_CloudTrail_eu-central-1_20171211T1505Z_A6kvhMoVeCsc7v8U.json.gz", -1},
		{"cloudtrail/stratus-red-team/aws.persistence.iam-backdoor-role.json", -1},
		{"cloudtrail/lookup-events/aws_cloudtrail.jsonl", -1},
		{"cloudtrail/eventbridge/event-cloud-trail-create-bucket.json", 1},
		{"gcp/jsonl/gcp_logging.jsonl", -1},
		{"gcp/logentry/LogEntryData-pubsubCreateTopic.json", 1},
		{"k8s/audit-log/audit2rbac-demo.log", -1},
		{"panther/panther_tests.jsonl", 842},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.path), func(t *testing.T) {
			data := readFile(t, tt.path)
			got, err := run(t, data)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.rejected) != 0 {
				t.Errorf("%d records rejected: %v", len(got.rejected), got.rejected[0].Reason)
			}
			want := tt.want
			if want < 0 {
				want = countRecords(t, data)
			}
			if len(got.records) != want {
				t.Errorf("got %d records, want %d", len(got.records), want)
			}
			for _, r := range got.records {
				if err := fastjson.Validate(r); err != nil {
					t.Fatalf("record is not JSON: %v", err)
				}
			}
		})
	}
}

// countRecords counts records independently of the splitter: the Records array of a
// delivery file, the elements of an array, or the non-empty lines.
func countRecords(t *testing.T, data []byte) int {
	v, err := fastjson.ParseBytes(bytes.TrimSpace(data))
	if err == nil {
		if r := v.GetArray("Records"); r != nil {
			return len(r)
		}
		if a, err := v.Array(); err == nil {
			return len(a)
		}
		return 1
	}
	n := 0
	for _, l := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(l)) > 0 {
			n++
		}
	}
	return n
}

func TestSplitContainers(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		records  int
		rejected int
	}{
		{"records", `{"Records":[{"a":1},{"a":2}]}`, 2, 0},
		{"array", `[{"a":1},{"a":2},{"a":3}]`, 3, 0},
		{"eventlist", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"auditID":"1"},{"auditID":"2"}]}`, 2, 0},
		{"lookup page", `{"Events":[{"EventId":"1","CloudTrailEvent":"{}"}],"NextToken":"x"}`, 1, 0},
		{"single object", `{"eventID":"1"}`, 1, 0},
		{"json lines", "{\"a\":1}\n\n{\"a\":2}\r\n{\"a\":3}", 3, 0},
		{"json lines with a bad line", "{\"a\":1}\n{\"a\":\n{\"a\":3}\n", 2, 1},
		{"json lines with invalid utf-8", "{\"a\":1}\n{\"a\":\"\xff\xfe\"}\n", 1, 1},
		{"array with a scalar", `[{"a":1}, 7]`, 1, 1},
		{"json lines with a bare value", "{\"a\":1}\n42\n{\"a\":3}\n", 2, 1},
		{"json lines starting with bad lines", "x\ny\nz\nw\n{\"a\":1}\n{\"a\":2}\n", 2, 4},
		{"empty", "  \n", 0, 0},
		{"empty records", `{"Records":[]}`, 0, 0},
		{"byte order mark", "\xef\xbb\xbf{\"a\":1}", 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := run(t, []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if len(got.records) != tt.records || len(got.rejected) != tt.rejected {
				t.Errorf("got %d records and %d rejected, want %d and %d", len(got.records), len(got.rejected), tt.records, tt.rejected)
			}
			for _, r := range got.rejected {
				if r.Reason == nil || r.Reason.Error() == "" {
					t.Error("rejected without a reason")
				}
			}
		})
	}
}

func TestSplitBrokenContainers(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"not json", "this is not json\nat all\nreally\nnope", split.ErrNotJSON},
		{"scalar", `42`, split.ErrNotJSON},
		{"truncated document", "{\n  \"Records\": [\n    {\"a\": 1},\n    {\"a\": 2", split.ErrNotJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := run(t, []byte(tt.in))
			if !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSplitLimits(t *testing.T) {
	lim := split.Limits{MaxContainerBytes: 1 << 20, MaxRecordBytes: 100}
	var rejected []split.Rejected
	in := `[{"a":"` + strings.Repeat("x", 200) + `"},{"a":1}]`
	var n int
	err := split.New(lim).Split([]byte(in), func(split.Record) error { n++; return nil }, func(r split.Rejected) error {
		rejected = append(rejected, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || len(rejected) != 1 || !errors.Is(rejected[0].Reason, split.ErrTooLarge) {
		t.Errorf("got %d records, rejected %v", n, rejected)
	}
}

func TestReadAllGzip(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte(`{"Records":[{"a":1}]}`))
	zw.Close()
	full := buf.Bytes()

	data, err := split.ReadAll(bytes.NewReader(full), split.DefaultLimits())
	if err != nil || string(data) != `{"Records":[{"a":1}]}` {
		t.Fatalf("ReadAll = %q, %v", data, err)
	}
	if _, err := split.ReadAll(bytes.NewReader(full[:len(full)-6]), split.DefaultLimits()); !errors.Is(err, split.ErrMalformed) {
		t.Errorf("truncated gzip: %v, want ErrMalformed", err)
	}

	// A gzip bomb: 64 MiB of zeros compress to ~64 KiB.
	buf.Reset()
	zw = gzip.NewWriter(&buf)
	zero := make([]byte, 1<<20)
	for i := 0; i < 64; i++ {
		zw.Write(zero)
	}
	zw.Close()
	if _, err := split.ReadAll(bytes.NewReader(buf.Bytes()), split.Limits{MaxContainerBytes: 8 << 20, MaxRecordBytes: 1 << 20}); !errors.Is(err, split.ErrTooLarge) {
		t.Errorf("gzip bomb: %v, want ErrTooLarge", err)
	}
}

func TestSplitRedacts(t *testing.T) {
	in := `{"Records":[{"eventName":"GetSessionToken","responseElements":{"credentials":{"accessKeyId":"ASIAXXXXXXXXXXXXXXXX","sessionToken":"FwoGZXIvYXdzEPlantedSessionToken"}}}]}`
	got, err := run(t, []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.records) != 1 || strings.Contains(got.records[0], "PlantedSessionToken") || !strings.Contains(got.records[0], "ASIAXXXXXXXXXXXXXXXX") {
		t.Errorf("record not redacted as expected: %v", got.records)
	}
	got, err = run(t, []byte("{\"ok\":1}\n{\"sessionToken\": \"FwoGZXIvYXdzEPlantedSessionToken\", broken\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.rejected) != 1 || bytes.Contains(got.rejected[0].Data, []byte("PlantedSessionToken")) {
		t.Errorf("rejected record not redacted: %+v", got.rejected)
	}
}

// FuzzSplit checks that no container makes the splitter panic, that every record it emits
// is valid JSON within the limit, and that secrets planted where secrets live (credential
// fields, passwords, Kubernetes Secret bodies) never survive, whatever surrounds them.
func FuzzSplit(f *testing.F) {
	for _, p := range []string{
		"cloudtrail/stratus-red-team/aws.credential-access.ec2-get-password-data.json",
		"cloudtrail/stratus-red-team/aws.persistence.iam-backdoor-role.json",
		"cloudtrail/eventbridge/event-cloud-trail-create-bucket.json",
		"gcp/logentry/LogEntryData-pubsubCreateTopic.json",
	} {
		data, err := os.ReadFile(filepath.Join(testdata, p))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, "AbCdEfGh1234567890secret", "note")
	}
	for _, p := range []string{"k8s/audit-log/audit2rbac-demo.log", "gcp/jsonl/gcp_logging.jsonl", "cloudtrail/lookup-events/aws_cloudtrail.jsonl"} {
		data, err := os.ReadFile(filepath.Join(testdata, p))
		if err != nil {
			f.Fatal(err)
		}
		if len(data) > 8<<10 {
			data = data[:bytes.LastIndexByte(data[:8<<10], '\n')+1]
		}
		f.Add(data, "ZZtopSecretValue0987654321", "x\ny")
	}
	f.Add([]byte(`{"kind":"EventList","items":[{"auditID":"1"},7,"s",{"a":[1,{"b":null}]}]}`), "q1w2e3r4t5y6u7i8o9p0", "")
	f.Add([]byte("\x1f\x8b\x08\x00garbage"), "SecretSecretSecret12", "\x00")
	lim := split.Limits{MaxContainerBytes: 1 << 20, MaxRecordBytes: 64 << 10}
	f.Fuzz(func(t *testing.T, data []byte, secret, other string) {
		check := func(data []byte) (records, rejected [][]byte) {
			last := -1
			_ = split.New(lim).Split(data, func(r split.Record) error {
				if err := fastjson.ValidateBytes(r.Data); err != nil {
					t.Fatalf("record %d is not valid JSON: %v", r.Index, err)
				}
				if len(r.Data) > lim.MaxRecordBytes {
					t.Fatalf("record %d has %d bytes, over the limit", r.Index, len(r.Data))
				}
				if r.Index <= last {
					t.Fatalf("record index %d after %d", r.Index, last)
				}
				last = r.Index
				records = append(records, append([]byte(nil), r.Data...))
				return nil
			}, func(r split.Rejected) error {
				if r.Reason == nil {
					t.Fatal("rejected without a reason")
				}
				rejected = append(rejected, r.Data)
				return nil
			})
			return records, rejected
		}
		check(data)

		// Plant the secret where secrets live, next to fuzzed content.
		if len(secret) < 16 || strings.Trim(secret, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") != "" || strings.Contains(other, secret) {
			return
		}
		q := strconv.Quote(secret)
		o, _ := json.Marshal(other)
		planted := `{"Records":[` +
			`{"eventName":"GetSessionToken","note":` + string(o) + `,"responseElements":{"credentials":{"accessKeyId":"ASIAEXAMPLE","sessionToken":` + q + `,"secretAccessKey":` + q + `}}},` +
			`{"eventName":"CreateUser","requestParameters":{"userName":"u","password":` + q + `},"note":` + string(o) + `},` +
			`{"kind":"Event","objectRef":{"resource":"secrets","name":"db"},"requestObject":{"kind":"Secret","data":{"k":` + q + `},"stringData":{"p":` + q + `}},"note":` + string(o) + `}]}`
		for _, in := range [][]byte{[]byte(planted), bytes.ReplaceAll([]byte(planted[len(`{"Records":[`):len(planted)-2]), []byte("},{"), []byte("}\n{"))} {
			records, rejected := check(in)
			for _, r := range append(records, rejected...) {
				if bytes.Contains(r, []byte(secret)) {
					t.Fatalf("a planted secret survived: %s", r)
				}
			}
		}
	})
}

func TestSplitRedactsLookupEventsRecords(t *testing.T) {
	inner := `{"eventName":"GetSessionToken","responseElements":{"credentials":{"accessKeyId":"ASIAXXXXXXXXXXXXXXXX","sessionToken":"FwoGZXIvYXdzEPlantedSessionToken"}}}`
	quoted, _ := json.Marshal(inner)
	in := `{"EventId":"1","CloudTrailEvent":` + string(quoted) + `}` + "\n" + `{"EventId":"2","CloudTrailEvent":"not json FwoGZXIvYXdzEPlanted sessionToken=FwoGZXIvYXdzEPlantedSessionToken"}`
	got, err := run(t, []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.records) != 2 {
		t.Fatalf("got %d records", len(got.records))
	}
	for _, r := range got.records {
		if strings.Contains(r, "PlantedSessionToken") {
			t.Errorf("secret inside CloudTrailEvent survived: %s", r)
		}
	}
	if !strings.Contains(got.records[0], "ASIAXXXXXXXXXXXXXXXX") {
		t.Errorf("metadata inside CloudTrailEvent lost: %s", got.records[0])
	}
}
