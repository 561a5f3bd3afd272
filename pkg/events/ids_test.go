package events

import (
	"fmt"
	"testing"
)

func TestEventIDsAreDeterministic(t *testing.T) {
	tests := []struct {
		name string
		a, b string
	}{
		{"cloudtrail", CloudTrailEventID("111111111111", "e1"), CloudTrailEventID("111111111111", "e1")},
		{"gcp", GCPEventID("projects/p/logs/cloudaudit.googleapis.com%2Factivity", "x1"), GCPEventID("projects/p/logs/cloudaudit.googleapis.com%2Factivity", "x1")},
		{"k8s", K8sEventID("prod", "uid", "ResponseComplete"), K8sEventID("prod", "uid", "ResponseComplete")},
		{"content", ContentEventID(Provider_PROVIDER_K8S, []byte(`{}`)), ContentEventID(Provider_PROVIDER_K8S, []byte(`{}`))},
		{"finding", FindingID("d", "i", "c", "b"), FindingID("d", "i", "c", "b")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.a != tt.b || tt.a == "" {
				t.Errorf("ids differ or empty: %q %q", tt.a, tt.b)
			}
		})
	}
}

func TestEventIDsSeparateTheirInputs(t *testing.T) {
	if CloudTrailEventID("1", "e") == CloudTrailEventID("2", "e") {
		t.Error("same CloudTrail eventID in two accounts must give two ids")
	}
	if GCPEventID("a", "bc") == GCPEventID("ab", "c") {
		t.Error("GCP id must not depend on where the log name ends")
	}
	if K8sEventID("c", "u", "ResponseStarted") == K8sEventID("c", "u", "ResponseComplete") {
		t.Error("K8s stages must give distinct ids")
	}
	if FindingID("d", "i", "c", "1") == FindingID("d", "i", "c", "2") {
		t.Error("time buckets must give distinct finding ids")
	}
}

func TestPartitionSpreads(t *testing.T) {
	if got := Partition("x", 1); got != 0 {
		t.Errorf("one partition: got %d", got)
	}
	counts := make([]int, 16)
	for i := 0; i < 16000; i++ {
		counts[Partition(fmt.Sprintf("aws:arn:aws:iam::1:role/r%d", i), 16)]++
	}
	for p, n := range counts {
		if n < 800 || n > 1200 {
			t.Errorf("partition %d holds %d of 16000 identities, want about 1000", p, n)
		}
	}
}

func TestPartitionFNV1a(t *testing.T) {
	// The hash is part of the on-disk contract and must never change.
	// FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c; mod 16 = 12.
	if got := Partition("a", 16); got != 12 {
		t.Errorf("Partition(a, 16) = %d, want 12", got)
	}
}

func TestSubjects(t *testing.T) {
	tests := []struct{ got, want string }{
		{RawSubject(Provider_PROVIDER_AWS), "nhi.raw.aws.cloudtrail"},
		{RawSubject(Provider_PROVIDER_GCP), "nhi.raw.gcp.audit"},
		{RawSubject(Provider_PROVIDER_K8S), "nhi.raw.k8s.audit"},
		{EventSubject(Provider_PROVIDER_K8S, 7), "nhi.events.k8s.7"},
		{EventPartitionFilter(3), "nhi.events.*.3"},
		{FindingSubject(Severity_SEVERITY_HIGH, "privilege_expansion"), "nhi.findings.high.privilege_expansion"},
		{FindingSubject(Severity_SEVERITY_LOW, "bad.name >"), "nhi.findings.low.bad_name__"},
		{DLQSubject(StageNormalize), "nhi.dlq.normalize"},
		{EventBatchMsgID(12, "a", "b")[:4], "p12:"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestLabelsRoundTrip(t *testing.T) {
	for v := range Severity_name {
		s := Severity(v)
		if s == 0 {
			continue
		}
		got, err := ParseSeverity(s.Label())
		if err != nil || got != s {
			t.Errorf("ParseSeverity(%q) = %v, %v", s.Label(), got, err)
		}
	}
	if _, err := ParseProvider("azure"); err == nil {
		t.Error("ParseProvider(azure) succeeded")
	}
	if IdentityKind_IDENTITY_KIND_HUMAN.IsNHI() || !IdentityKind_IDENTITY_KIND_AI_AGENT.IsNHI() {
		t.Error("IsNHI wrong")
	}
}
