package normalize_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nhiwatch/nhiwatch/services/normalize"
)

// leak is planted in bad records: no error message may quote it.
const leak = "LEAKMARKER"

func TestBadInput(t *testing.T) {
	ctOK := `"eventVersion":"1.08","eventID":"e1","eventTime":"2024-01-01T00:00:00Z","eventSource":"iam.amazonaws.com","recipientAccountId":"123456789012"`
	k8sOK := `"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","stage":"ResponseComplete","stageTimestamp":"2024-01-01T00:00:00Z"`
	gcpOK := `"insertId":"i","logName":"projects/p/logs/cloudaudit.googleapis.com%2Factivity","timestamp":"2024-01-01T00:00:00Z"`
	deep := strings.Repeat(`{"a":`, 100) + `"` + leak + `"` + strings.Repeat(`}`, 100)
	tests := []struct {
		name, format, data string
		want               error
		msg                string
	}{
		{"not json", "auto", `{"eventVersion":"` + leak, normalize.ErrMalformed, "not valid JSON"},
		{"invalid utf-8", "auto", "{\"eventName\":\"" + leak + "\xff\xfe\"}", normalize.ErrMalformed, "UTF-8"},
		{"array", "auto", `["` + leak + `"]`, normalize.ErrMalformed, "array, not an object"},
		{"too large", "auto", `{"x":"` + strings.Repeat("a", normalize.MaxRecordBytes) + `"}`, normalize.ErrTooLarge, "exceeds"},
		{"too deep", "auto", deep, normalize.ErrMalformed, "nested 100 levels"},
		{"unknown provider", "auto", `{"hello":"` + leak + `"}`, normalize.ErrUnsupported, "cannot tell"},
		{"unknown format", "splunk", `{"a":1}`, normalize.ErrUnsupported, "unknown format"},
		{"cloudtrail number for string", "auto", `{` + ctOK + `,"eventName":42,"userIdentity":{"type":"IAMUser"}}`, normalize.ErrMalformed, "eventName is a JSON number"},
		{"cloudtrail array for object", "auto", `{` + ctOK + `,"eventName":"GetUser","userIdentity":["` + leak + `"]}`, normalize.ErrMalformed, "userIdentity is a JSON array"},
		{"cloudtrail unknown version", "auto", `{` + strings.Replace(ctOK, "1.08", "2.0", 1) + `,"eventName":"GetUser"}`, normalize.ErrUnsupported, "eventVersion"},
		{"cloudtrail missing time", "cloudtrail", `{"eventVersion":"1.08","eventSource":"s3.amazonaws.com","eventName":"` + leak + `"}`, normalize.ErrMissingField, "eventTime"},
		{"cloudtrail bad time", "cloudtrail", `{"eventVersion":"1.08","eventTime":"` + leak + `","eventSource":"s3.amazonaws.com","eventName":"x"}`, normalize.ErrMalformed, "eventTime is not a timestamp"},
		{"cloudtrail missing name", "cloudtrail", `{"eventVersion":"1.08","eventTime":"2024-01-01T00:00:00Z","eventSource":"s3.amazonaws.com"}`, normalize.ErrMissingField, "eventName"},
		{"lookup-events not a string", "auto", `{"CloudTrailEvent":{"x":"` + leak + `"}}`, normalize.ErrMalformed, "CloudTrailEvent is a JSON object"},
		{"lookup-events not json", "auto", `{"CloudTrailEvent":"{` + leak + `"}`, normalize.ErrMalformed, "does not hold a JSON object"},
		{"eventbridge detail not object", "cloudtrail", `{"detail-type":"x","detail":"` + leak + `"}`, normalize.ErrMalformed, "detail is a JSON string"},
		{"gcp payload not object", "gcp", `{` + gcpOK + `,"protoPayload":"` + leak + `"}`, normalize.ErrMalformed, "protoPayload is a JSON string"},
		{"gcp authorizationInfo object", "gcp", `{` + gcpOK + `,"protoPayload":{"methodName":"m","authorizationInfo":{"a":"` + leak + `"}}}`, normalize.ErrMalformed, "authorizationInfo is a JSON object"},
		{"gcp missing method", "gcp", `{` + gcpOK + `,"protoPayload":{"serviceName":"` + leak + `"}}`, normalize.ErrMissingField, "methodName"},
		{"gcp not an audit log", "gcp", `{` + gcpOK + `,"protoPayload":{"@type":"type.googleapis.com/google.appengine.logging.v1.RequestLog","methodName":"m"}}`, normalize.ErrUnsupported, "not an audit log"},
		{"gcp text payload", "auto", `{` + gcpOK + `,"textPayload":"` + leak + `"}`, normalize.ErrUnsupported, "text or JSON payload"},
		{"k8s user not object", "k8s", `{` + k8sOK + `,"verb":"get","user":"` + leak + `"}`, normalize.ErrMalformed, "user is a JSON string"},
		{"k8s verb number", "k8s", `{` + k8sOK + `,"verb":7,"user":{"username":"u"}}`, normalize.ErrMalformed, "verb is a JSON number"},
		{"k8s unknown version", "auto", `{` + strings.Replace(k8sOK, "audit.k8s.io/v1", "audit.k8s.io/v2", 1) + `,"verb":"get","user":{"username":"u"}}`, normalize.ErrUnsupported, "apiVersion"},
		{"k8s missing user", "k8s", `{` + k8sOK + `,"verb":"get"}`, normalize.ErrMissingField, "user.username"},
		{"k8s missing time", "k8s", `{"kind":"Event","verb":"get","user":{"username":"` + leak + `"}}`, normalize.ErrMissingField, "stageTimestamp"},
		{"k8s request received", "auto", `{` + strings.Replace(k8sOK, "ResponseComplete", "RequestReceived", 1) + `,"verb":"get","user":{"username":"u"}}`, normalize.ErrSkipped, "RequestReceived"},
		{"k8s response started", "auto", `{` + strings.Replace(k8sOK, "ResponseComplete", "ResponseStarted", 1) + `,"verb":"watch","user":{"username":"u"}}`, normalize.ErrSkipped, "ResponseStarted"},
		{"k8s unknown stage", "k8s", `{` + strings.Replace(k8sOK, "ResponseComplete", leak, 1) + `,"verb":"get","user":{"username":"u"}}`, normalize.ErrUnsupported, "stage"},
		{"azure log not json", "auto", `{"category":"kube-audit","properties":{"log":"{` + leak + `"}}`, normalize.ErrMalformed, "properties.log"},
		{"azure log number", "k8s", `{"category":"kube-audit","properties":{"log":5}}`, normalize.ErrMalformed, "properties.log is a JSON number"},
		{"k8s event list", "auto", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"verb":"` + leak + `"}]}`, normalize.ErrUnsupported, "EventList"},
		{"cloudtrail record read as k8s", "k8s", `{` + ctOK + `,"eventName":"` + leak + `"}`, normalize.ErrMissingField, "k8s"},
	}
	n := normalize.NewNormalizer()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := n.Normalize(normalize.Input{Data: []byte(tt.data), Format: tt.format, Cluster: "c"})
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, event %v; want %v", err, ev != nil, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %q, want it to mention %q", err, tt.msg)
			}
			if strings.Contains(err.Error(), leak) {
				t.Errorf("err quotes record content: %q", err)
			}
		})
	}
}

// Panther rewrites some records with lower-case keys; they are read as the provider wrote them.
func TestLowerCaseKeys(t *testing.T) {
	n := normalize.NewNormalizer()
	ev, err := n.Normalize(normalize.Input{Format: "auto", Data: []byte(`{"eventversion":"1.08","eventid":"e1","eventtime":"2024-01-01T00:00:00Z",
		"eventsource":"iam.amazonaws.com","eventname":"CreateUser","awsregion":"us-east-1","recipientaccountid":"123456789012",
		"useridentity":{"type":"IAMUser","arn":"arn:aws:iam::123456789012:user/u","accesskeyid":"AKIAEXAMPLEEXAMPLE01"}}`)})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Identity.Id != "aws:arn:aws:iam::123456789012:user/u" || ev.Action.Permission != "iam:CreateUser" || ev.Credential.GetId() != "aws:key:AKIAEXAMPLEEXAMPLE01" || ev.Network.Region != "us-east-1" {
		t.Errorf("lower-case CloudTrail record read as %v", ev)
	}
	ev, err = n.Normalize(normalize.Input{Format: "auto", Data: []byte(`{"insertid":"i","logname":"projects/p/logs/cloudaudit.googleapis.com%2Factivity",
		"timestamp":"2024-01-01T00:00:00Z","protopayload":{"methodname":"SetIamPolicy","servicename":"cloudresourcemanager.googleapis.com",
		"authenticationinfo":{"principalemail":"a@example.com"}}}`)})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Identity.Id != "gcp:user:a@example.com" || ev.Action.Name != "SetIamPolicy" || ev.ProviderEventId != "i" {
		t.Errorf("lower-case GCP entry read as %v", ev)
	}
}
