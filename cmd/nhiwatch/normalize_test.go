package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNormalizeCommand(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.json")
	if err := os.WriteFile(broken, []byte("this is not a log file\x00\x01\x02"), 0o644); err != nil {
		t.Fatal(err)
	}
	mixed := filepath.Join(dir, "mixed.jsonl")
	lines := []string{
		`{"eventVersion":"1.08","eventID":"e1","eventTime":"2024-01-01T00:00:00Z","eventSource":"sts.amazonaws.com","eventName":"GetCallerIdentity","recipientAccountId":"123456789012","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::123456789012:user/ci","accessKeyId":"AKIAEXAMPLEEXAMPLE01"}}`,
		`{"eventVersion":"7.0","eventID":"e2","eventTime":"2024-01-01T00:00:00Z","eventSource":"sts.amazonaws.com","eventName":"GetCallerIdentity"}`,
		`{"eventVersion":"1.08",`,
	}
	if err := os.WriteFile(mixed, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		wantStatus int
		// wantEvents is the number of JSON lines on stdout; wantErr lines stderr must contain.
		wantEvents int
		wantErr    []string
	}{
		{
			name: "stratus file", args: []string{"normalize", "../../testdata/cloudtrail/stratus-red-team/aws.persistence.iam-create-admin-user.json"},
			wantEvents: 3, wantErr: []string{"iam-create-admin-user.json: 3 events, 0 rejected, 0 skipped"},
		},
		{
			name: "k8s with cluster", args: []string{"normalize", "-format", "k8s", "-cluster", "prod", "../../testdata/k8s/audit-log/audit2rbac-demo.log"},
			wantEvents: 37, wantErr: []string{"37 events, 0 rejected"},
		},
		{
			name: "formats detected per file", args: []string{"normalize", "../../testdata/gcp/logentry/LogEntryData-pubsubCreateTopic.json", "../../testdata/cloudtrail/s3-delivery/111111111111_CloudTrail_eu-central-1_20171211T1505Z_A6kvhMoVeCsc7v8U.json.gz"},
			wantEvents: 3,
		},
		{
			name: "rejected records and broken files", args: []string{"normalize", mixed, broken, filepath.Join(dir, "missing.json")},
			wantEvents: 1,
			wantErr: []string{
				"mixed.jsonl#1: rejected: unsupported record: cloudtrail eventVersion \"7.0\"",
				"mixed.jsonl#2: rejected: malformed",
				"mixed.jsonl: 1 events, 2 rejected, 0 skipped",
				"broken.json: skipped:",
				"missing.json: skipped:",
			},
		},
		{name: "no paths", args: []string{"normalize"}, wantStatus: 2, wantErr: []string{"needs at least one PATH"}},
		{name: "bad format", args: []string{"normalize", "-format", "splunk", mixed}, wantStatus: 2, wantErr: []string{`-format "splunk"`}},
		{name: "bad flag", args: []string{"normalize", "-nope", mixed}, wantStatus: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			status := realMain(context.Background(), tt.args, &stdout, &stderr)
			if status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; stderr:\n%s", status, tt.wantStatus, stderr.String())
			}
			var got int
			for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
				if line == "" {
					continue
				}
				var ev struct {
					ID       string `json:"id"`
					Identity struct {
						ID string `json:"id"`
					} `json:"identity"`
					Extras json.RawMessage `json:"extras"`
				}
				if err := json.Unmarshal([]byte(line), &ev); err != nil {
					t.Fatalf("stdout line is not JSON: %v: %s", err, line)
				}
				if ev.ID == "" || ev.Identity.ID == "" {
					t.Errorf("event without id or identity: %s", line)
				}
				got++
			}
			if got != tt.wantEvents {
				t.Errorf("%d events on stdout, want %d", got, tt.wantEvents)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
		})
	}
}

// The cluster name given on the command line names the Kubernetes identities.
func TestNormalizeCommandCluster(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if status := realMain(context.Background(), []string{"normalize", "-cluster", "prod-eu", "../../testdata/k8s/audit-log/audit2rbac-demo.log"}, &stdout, &stderr); status != 0 {
		t.Fatalf("status %d: %s", status, stderr.String())
	}
	if !strings.Contains(stdout.String(), `"id":"k8s:prod-eu:user:bob"`) {
		t.Errorf("no identity of cluster prod-eu in:\n%.500s", stdout.String())
	}
}
