package s3sqs

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseNotification(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []object
		err  bool
	}{
		{"s3 event", s3Event("b", "AWSLogs/1/CloudTrail/r/x y.json.gz", "ObjectCreated:Put"), []object{{"b", "AWSLogs/1/CloudTrail/r/x y.json.gz"}}, false},
		{"removed", s3Event("b", "k", "ObjectRemoved:Delete"), []object{}, false},
		{"sns", snsWrap(s3Event("b", "k", "ObjectCreated:Copy")), []object{{"b", "k"}}, false},
		{"cloudtrail sns", snsWrap(`{"s3Bucket":"b","s3ObjectKey":["k1","k2"]}`), []object{{"b", "k1"}, {"b", "k2"}}, false},
		{"cloudtrail raw delivery", `{"s3Bucket":"b","s3ObjectKey":["k1"]}`, []object{{"b", "k1"}}, false},
		{"eventbridge", `{"detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"b"},"object":{"key":"k"}}}`, []object{{"b", "k"}}, false},
		{"eventbridge deleted", `{"detail-type":"Object Deleted","source":"aws.s3","detail":{"bucket":{"name":"b"},"object":{"key":"k"}}}`, []object{}, false},
		{"test event", `{"Service":"Amazon S3","Event":"s3:TestEvent"}`, []object{}, false},
		{"garbage", `hello`, nil, true},
		{"other json", `{"hello":"world"}`, nil, true},
		{"sns with garbage", snsWrap("not json"), nil, true},
		{"not s3 records", `{"Records":[{"eventSource":"aws:sqs"}]}`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseNotification([]byte(tt.body))
			if tt.err {
				if !errors.Is(err, ErrUnknownNotification) {
					t.Errorf("err = %v, want ErrUnknownNotification", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(object{})); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestParseKey(t *testing.T) {
	tests := []struct {
		key  string
		want trailKey
		ok   bool
	}{
		{"AWSLogs/111111111111/CloudTrail/eu-west-1/2024/01/01/f.json.gz", trailKey{Account: "111111111111", Kind: "CloudTrail", Region: "eu-west-1"}, true},
		{"prefix/AWSLogs/o-abc/111111111111/CloudTrail/us-east-1/2024/01/01/f.json.gz", trailKey{Org: "o-abc", Account: "111111111111", Kind: "CloudTrail", Region: "us-east-1"}, true},
		{"AWSLogs/o-abc/111111111111/CloudTrail-Digest/us-east-1/2024/01/01/f.json.gz", trailKey{Org: "o-abc", Account: "111111111111", Kind: "CloudTrail-Digest", Region: "us-east-1"}, true},
		{"logs/f.json.gz", trailKey{}, false},
		{"NotAWSLogs/1/CloudTrail/r/f", trailKey{}, false},
	}
	for _, tt := range tests {
		got, ok := parseKey(tt.key)
		if ok != tt.ok || got != tt.want {
			t.Errorf("parseKey(%q) = %+v, %v; want %+v, %v", tt.key, got, ok, tt.want, tt.ok)
		}
	}
	if !isDigest("AWSLogs/1/CloudTrail-Digest/r/2024/01/01/1_CloudTrail-Digest_r_t_r_20240101T0000Z.json.gz") || isDigest("AWSLogs/1/CloudTrail/r/2024/01/01/f.json.gz") {
		t.Error("isDigest misclassifies")
	}
}

func FuzzParseNotification(f *testing.F) {
	f.Add([]byte(s3Event("b", "k", "ObjectCreated:Put")))
	f.Add([]byte(snsWrap(`{"s3Bucket":"b","s3ObjectKey":["k1","k2"]}`)))
	f.Add([]byte(`{"detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"b"},"object":{"key":"k"}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		objs, err := parseNotification(body)
		if err == nil {
			for _, o := range objs {
				if o.Bucket == "" || o.Key == "" {
					t.Fatalf("object without bucket or key: %+v", o)
				}
			}
		}
	})
}
