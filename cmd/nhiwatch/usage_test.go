package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const grantsTestdata = "../../services/detect/internal/grants/testdata/"

type usageLine struct {
	Identity       string          `json:"identity"`
	Kind           string          `json:"kind"`
	Owner          string          `json:"owner"`
	Granted        []string        `json:"granted"`
	Used           []string        `json:"used"`
	Unused         []string        `json:"unused"`
	Denied         []string        `json:"denied"`
	Ungranted      []string        `json:"ungranted"`
	Utilization    float64         `json:"utilization"`
	Admin          bool            `json:"admin"`
	SensitiveUsed  []string        `json:"sensitive_used"`
	LeastPrivilege json.RawMessage `json:"least_privilege"`
}

func runUsage(t *testing.T, args ...string) map[string]usageLine {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := realMain(context.Background(), append([]string{"usage"}, args...), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := map[string]usageLine{}
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var u usageLine
		if err := json.Unmarshal([]byte(line), &u); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		out[u.Identity] = u
	}
	return out
}

// TestUsageStratusAdminUser replays the Stratus Red Team iam-create-admin-user detonation
// (christophe creates a user, gives it a key and AdministratorAccess) against an inventory
// snapshot of the same account.
func TestUsageStratusAdminUser(t *testing.T) {
	got := runUsage(t,
		"-snapshot", grantsTestdata+"aws-authorization-details.json",
		"-snapshot", grantsTestdata+"aws-credential-report.csv",
		"../../testdata/cloudtrail/stratus-red-team/aws.persistence.iam-create-admin-user.json")

	christophe, ok := got["aws:arn:aws:iam::229654561268:user/christophe"]
	if !ok {
		t.Fatalf("no report for christophe; got %v", keys(got))
	}
	if diff := cmp.Diff([]string{"iam:AttachUserPolicy", "iam:CreateAccessKey", "iam:CreateUser"}, christophe.Used); diff != "" {
		t.Errorf("used (-want +got)\n%s", diff)
	}
	if diff := cmp.Diff(christophe.Used, christophe.SensitiveUsed); diff != "" {
		t.Errorf("sensitive used (-want +got)\n%s", diff)
	}
	if !contains(christophe.Granted, "iam:*") || contains(christophe.Unused, "iam:*") {
		t.Errorf("iam:* must be granted (IAMFullAccess through platform-admins) and used: granted=%v unused=%v", christophe.Granted, christophe.Unused)
	}
	if !contains(christophe.Unused, "organizations:ListRoots") || len(christophe.Denied) != 0 || len(christophe.Ungranted) != 0 {
		t.Errorf("unused=%v denied=%v ungranted=%v", christophe.Unused, christophe.Denied, christophe.Ungranted)
	}
	if !christophe.Admin || christophe.Owner != "christophe@example.com" || christophe.Kind != "human" && christophe.Kind != "access_key_user" {
		t.Errorf("admin=%v owner=%q kind=%q", christophe.Admin, christophe.Owner, christophe.Kind)
	}
	wantPolicy := `{"Version":"2012-10-17","Statement":[{"Sid":"IamUsed","Effect":"Allow","Action":["iam:AttachUserPolicy","iam:CreateAccessKey","iam:CreateUser"],"Resource":["arn:aws:iam::229654561268:user/malicious-iam-user"]}]}`
	if diff := cmp.Diff(wantPolicy, compact(t, christophe.LeastPrivilege)); diff != "" {
		t.Errorf("least privilege (-want +got)\n%s", diff)
	}

	backend := got["aws:arn:aws:iam::229654561268:role/app-backend"]
	if !backend.Admin || len(backend.Used) != 0 || backend.Utilization != 0 || string(backend.LeastPrivilege) != "null" {
		t.Errorf("app-backend: standing admin never used expected, got %+v", backend)
	}
	if diff := cmp.Diff([]string{"*", "sqs:DeleteMessage", "sqs:ReceiveMessage"}, backend.Unused); diff != "" {
		t.Errorf("app-backend unused (-want +got)\n%s", diff)
	}
}

func TestUsageNeedsInput(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := realMain(context.Background(), []string{"usage"}, &stdout, &stderr); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if code := realMain(context.Background(), []string{"usage", "-snapshot", "testdata-missing.json"}, &stdout, &stderr); code != 1 {
		t.Errorf("missing snapshot: exit %d, want 1", code)
	}
}

func compact(t *testing.T, raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func keys[T any](m map[string]T) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
