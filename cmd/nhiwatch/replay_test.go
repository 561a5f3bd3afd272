package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestReplay backtests the Stratus Red Team NHI techniques with benign logs mixed in, through
// the real pipeline, and checks the findings printed and that a second run prints the same.
func TestReplay(t *testing.T) {
	dir := "../../testdata/cloudtrail/"
	args := []string{"-catalog", "../../examples/catalog.yaml"}
	for _, f := range []string{
		"stratus-red-team/aws.persistence.iam-backdoor-role.json",
		"stratus-red-team/aws.persistence.iam-backdoor-user.json",
		"stratus-red-team/aws.persistence.iam-create-admin-user.json",
		"stratus-red-team/aws.persistence.iam-create-backdoor-role.json",
		"stratus-red-team/aws.credential-access.ec2-steal-instance-credentials.json",
		"stratus-red-team/aws.execution.ssm-send-command.json",
		"lookup-events/aws_cloudtrail.jsonl",
		"s3-delivery/111111111111_CloudTrail_eu-central-1_20171211T1505Z_A6kvhMoVeCsc7v8U.json.gz",
	} {
		args = append(args, dir+f)
	}
	run := func() ([]replayFinding, string) {
		var out, errb bytes.Buffer
		if err := replayCmd(context.Background(), args, &out, &errb); err != nil {
			t.Fatalf("replay: %v\n%s", err, errb.String())
		}
		var fs []replayFinding
		sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var f replayFinding
			if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
				t.Fatalf("not a JSON object: %q: %v", sc.Text(), err)
			}
			fs = append(fs, f)
		}
		return fs, out.String()
	}
	got, first := run()
	type key struct{ Detector, Severity, Identity, Owner, Cause string }
	var keys []key
	for _, f := range got {
		keys = append(keys, key{f.Detector, f.Severity, f.Identity, f.Owner, f.Cause})
		if f.ID == "" || f.Title == "" || f.Summary == "" || len(f.Evidence) == 0 || f.Evidence[0].EventID == "" || f.Time == "" {
			t.Errorf("incomplete finding: %+v", f)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Cause < keys[j].Cause })
	const red = "red-team@example.com"
	want := []key{
		{"privilege_expansion", "high", "aws:arn:aws:iam::229654561268:user/christophe", red, "credential:aws:arn:aws:iam::229654561268:user/malicious-iam-user:create_access_key:aws:key:AKIAXAFZN8JEPF6L682H"},
		{"privilege_expansion", "high", "aws:arn:aws:iam::946986569305:user/christophe", red, "credential:aws:arn:aws:iam::946986569305:user/stratus-red-team-backdoor-u-user:create_access_key:aws:key:AKIAL80DWDVKKM0UXEER"},
		{"privilege_expansion", "critical", "aws:arn:aws:iam::229654561268:user/christophe", red, "grant:aws:arn:aws:iam::229654561268:user/malicious-iam-user:arn:aws:iam::aws:policy/AdministratorAccess:"},
		{"privilege_expansion", "critical", "aws:arn:aws:iam::609418236337:user/christophe", red, "grant:aws:arn:aws:iam::609418236337:role/stratus-red-team-malicious-iam-role:arn:aws:iam::aws:policy/AdministratorAccess:"},
		{"privilege_expansion", "critical", "aws:arn:aws:iam::609418236337:user/christophe", red, "trust:aws:arn:aws:iam::609418236337:role/stratus-red-team-malicious-iam-role:aws:arn:aws:iam::193672423079:root"},
		{"privilege_expansion", "critical", "aws:arn:aws:iam::751203476945:user/christophe", red, "trust:aws:arn:aws:iam::751203476945:role/stratus-red-team-backdoor-r-role:aws:arn:aws:iam::193672423079:root"},
		{"out_of_boundary", "high", "aws:arn:aws:iam::017622104382:role/stratus-red-team-ec2-steal-credentials-role", "", "workload:unusual_client=stratus-red-team"},
	}
	sort.Slice(want, func(i, j int) bool { return want[i].Cause < want[j].Cause })
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("findings (-want +got):\n%s", diff)
	}
	if _, second := run(); second != first {
		t.Errorf("a second replay printed different findings:\n%s\nthen\n%s", first, second)
	}
}

// TestReplayUsage checks the command line errors.
func TestReplayUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"-format", "xml", "x.json"}, {"-partitions", "0", "x.json"}} {
		var out, errb bytes.Buffer
		err := replayCmd(context.Background(), args, &out, &errb)
		if _, ok := err.(usageError); !ok {
			t.Errorf("replay %v: error %v, want a usage error", args, err)
		}
	}
	var out, errb bytes.Buffer
	missing := filepath.Join(t.TempDir(), "missing.json")
	if err := replayCmd(context.Background(), []string{missing}, &out, &errb); err != nil || out.Len() != 0 {
		t.Errorf("a missing file: err %v, output %q", err, out.String())
	}
	if _, err := os.Stat(missing); err == nil || !bytes.Contains(errb.Bytes(), []byte("missing.json")) {
		t.Errorf("a missing file is not reported: %q", errb.String())
	}
}
