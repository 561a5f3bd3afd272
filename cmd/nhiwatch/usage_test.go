package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestUsagePosture evaluates posture on the Stratus Red Team iam-create-admin-user
// detonation against the snapshots of its account (taken the day before), as of
// 2024-11-15, with a catalog that owns app-backend.
func TestUsagePosture(t *testing.T) {
	cat := filepath.Join(t.TempDir(), "catalog.yaml")
	if err := os.WriteFile(cat, []byte(`version: 1
identities:
  - match: "aws:arn:aws:iam::229654561268:role/app-backend"
    owner: payments@example.com
    team: payments
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	args := []string{"usage", "-posture", "-taken", "2024-07-31T00:00:00Z", "-now", "2024-11-15T12:00:00Z", "-catalog", cat,
		"-snapshot", grantsTestdata + "aws-authorization-details.json", "-snapshot", grantsTestdata + "aws-credential-report.csv",
		"../../testdata/cloudtrail/stratus-red-team/aws.persistence.iam-create-admin-user.json"}
	if code := realMain(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	type line struct {
		ID, Detector, Severity, Identity, Owner, Cause string
		OWASP                                          []string `json:"owasp_nhi"`
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var f line
		if err := json.Unmarshal([]byte(l), &f); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		if f.ID == "" || len(f.OWASP) == 0 {
			t.Errorf("incomplete finding %s", l)
		}
		got = append(got, strings.Join([]string{f.Detector, f.Severity, strings.TrimPrefix(f.Identity, "aws:arn:aws:iam::229654561268:"), f.Owner}, " "))
	}
	want := []string{
		"posture_key_rotation high user/christophe christophe@example.com", // rotated 2024-06-10, admin through platform-admins
		"posture_key_rotation high user/ci/ci-deployer ",                   // rotated 2022
		"posture_key_rotation high user/ci/ci-deployer ",
		"posture_key_rotation high user/malicious-iam-user ", // created in the detonation, admin since
		"posture_no_owner medium user/ci/ci-deployer ",
		"posture_standing_admin medium role/app-backend payments@example.com", // AdministratorAccess, never used
		"posture_standing_admin high user/christophe christophe@example.com",  // last admin action: the detonation, 106 days before
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("posture findings (-want +got)\n%s", diff)
	}
}

// TestUsageOCSF prints the same replay as OCSF IAM Analysis Findings: one per report.
func TestUsageOCSF(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"usage", "-ocsf", "-now", "2024-08-02T00:00:00Z", "-snapshot", grantsTestdata + "aws-authorization-details.json",
		"../../testdata/cloudtrail/stratus-red-team/aws.persistence.iam-create-admin-user.json"}
	if code := realMain(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	reports := runUsage(t, "-snapshot", grantsTestdata+"aws-authorization-details.json",
		"../../testdata/cloudtrail/stratus-red-team/aws.persistence.iam-create-admin-user.json")
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != len(reports) {
		t.Fatalf("%d documents for %d reports", len(lines), len(reports))
	}
	for _, l := range lines {
		var d struct {
			ClassUID int   `json:"class_uid"`
			TypeUID  int   `json:"type_uid"`
			Time     int64 `json:"time"`
			User     struct {
				UID string `json:"uid"`
			} `json:"user"`
			Metadata struct {
				Version string `json:"version"`
			} `json:"metadata"`
			Results []struct {
				GrantedPrivileges []string `json:"granted_privileges"`
			} `json:"permission_analysis_results"`
		}
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatal(err)
		}
		if d.ClassUID != 2008 || d.TypeUID != 200801 || d.Metadata.Version != "1.6.0" || d.Time != time.Date(2024, 8, 2, 0, 0, 0, 0, time.UTC).UnixMilli() {
			t.Errorf("document %s", l)
		}
		r, ok := reports[d.User.UID]
		if !ok {
			t.Errorf("document for %q, which has no report", d.User.UID)
			continue
		}
		n := 0
		for _, res := range d.Results {
			n += len(res.GrantedPrivileges)
		}
		if n < len(r.Granted) {
			t.Errorf("%s: %d privileges in the analyses, %d granted patterns in the report", d.User.UID, n, len(r.Granted))
		}
	}
}

func TestUsageFlags(t *testing.T) {
	for _, args := range [][]string{
		{"usage", "-ocsf", "-posture", "x.json"},
		{"usage", "-now", "yesterday", "x.json"},
		{"usage", "-taken", "2024-13-01", "x.json"},
	} {
		var stdout, stderr bytes.Buffer
		if code := realMain(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, stderr.String())
		}
	}
}
