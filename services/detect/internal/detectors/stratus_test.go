package detectors

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const testdata = "../../../../testdata/"

// TestStratusTechniques runs the Stratus Red Team detonation logs of the NHI techniques
// through normalize and the detectors and checks each yields the right finding.
func TestStratusTechniques(t *testing.T) {
	tests := []struct {
		technique string
		want      []summary
	}{
		{"aws.persistence.iam-backdoor-role", []summary{{
			// The trust policy now lets an external account assume the role.
			Detector: PrivilegeExpansion, Identity: "aws:arn:aws:iam::751203476945:user/christophe",
			Grantee: "aws:arn:aws:iam::193672423079:root", Severity: "critical",
			Cause: "trust:aws:arn:aws:iam::751203476945:role/stratus-red-team-backdoor-r-role:aws:arn:aws:iam::193672423079:root",
		}}},
		{"aws.persistence.iam-backdoor-user", []summary{{
			Detector: PrivilegeExpansion, Identity: "aws:arn:aws:iam::946986569305:user/christophe",
			Grantee: "aws:arn:aws:iam::946986569305:user/stratus-red-team-backdoor-u-user", Severity: "high",
			Cause: "credential:aws:arn:aws:iam::946986569305:user/stratus-red-team-backdoor-u-user:create_access_key:aws:key:AKIAL80DWDVKKM0UXEER",
		}}},
		{"aws.persistence.iam-create-admin-user", []summary{
			{
				Detector: PrivilegeExpansion, Identity: "aws:arn:aws:iam::229654561268:user/christophe",
				Grantee: "aws:arn:aws:iam::229654561268:user/malicious-iam-user", Severity: "critical",
				Cause: "grant:aws:arn:aws:iam::229654561268:user/malicious-iam-user:arn:aws:iam::aws:policy/AdministratorAccess:",
			},
			{
				Detector: PrivilegeExpansion, Identity: "aws:arn:aws:iam::229654561268:user/christophe",
				Grantee: "aws:arn:aws:iam::229654561268:user/malicious-iam-user", Severity: "high",
				Cause: "credential:aws:arn:aws:iam::229654561268:user/malicious-iam-user:create_access_key:aws:key:AKIAXAFZN8JEPF6L682H",
			},
		}},
		{"aws.persistence.iam-create-backdoor-role", []summary{
			{
				Detector: PrivilegeExpansion, Identity: "aws:arn:aws:iam::609418236337:user/christophe",
				Grantee: "aws:arn:aws:iam::193672423079:root", Severity: "critical",
				Cause: "trust:aws:arn:aws:iam::609418236337:role/stratus-red-team-malicious-iam-role:aws:arn:aws:iam::193672423079:root",
			},
			{
				Detector: PrivilegeExpansion, Identity: "aws:arn:aws:iam::609418236337:user/christophe",
				Grantee: "aws:arn:aws:iam::609418236337:role/stratus-red-team-malicious-iam-role", Severity: "critical",
				Cause: "grant:aws:arn:aws:iam::609418236337:role/stratus-red-team-malicious-iam-role:arn:aws:iam::aws:policy/AdministratorAccess:",
			},
		}},
		{"aws.credential-access.ec2-steal-instance-credentials", []summary{{
			// The instance role's session is used by the attack tool, not an SDK on the instance.
			Detector: OutOfBoundary, Identity: "aws:arn:aws:iam::017622104382:role/stratus-red-team-ec2-steal-credentials-role",
			Severity: "high", Cause: "workload:unusual_client=stratus-red-team",
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.technique, func(t *testing.T) {
			evs := readEvents(t, testdata+"cloudtrail/stratus-red-team/"+tt.technique+".json")
			for _, p := range []uint32{1, 4, 16} {
				got := newWorld(nil, p, Env{}).feed(evs...)
				if diff := cmp.Diff(sortSummaries(tt.want), summarize(got)); diff != "" {
					t.Errorf("partitions %d: findings mismatch (-want +got):\n%s", p, diff)
				}
				for _, f := range got {
					checkFinding(t, f)
				}
			}
		})
	}
}

// checkFinding checks what every finding must carry for an analyst.
func checkFinding(t *testing.T, f interface {
	GetId() string
	GetTitle() string
	GetSummary() string
	GetRecommendation() string
	GetOwaspNhi() []string
	GetMitreAttack() []string
}) {
	t.Helper()
	if f.GetId() == "" || f.GetTitle() == "" || len(f.GetSummary()) < 80 || f.GetRecommendation() == "" ||
		len(f.GetOwaspNhi()) == 0 || len(f.GetMitreAttack()) == 0 {
		t.Errorf("incomplete finding: %+v", f)
	}
}

// TestBenignSets checks that logs with no NHI power gain, dormancy or boundary breach yield
// none of the three findings. The Stratus techniques left out below are NHI power gains
// by design and are listed with the finding they raise.
func TestBenignSets(t *testing.T) {
	expected := map[string]string{
		// The five techniques of TestStratusTechniques.
		"aws.persistence.iam-backdoor-role.json":                    "tested above",
		"aws.persistence.iam-backdoor-user.json":                    "tested above",
		"aws.persistence.iam-create-admin-user.json":                "tested above",
		"aws.persistence.iam-create-backdoor-role.json":             "tested above",
		"aws.credential-access.ec2-steal-instance-credentials.json": "tested above",
		// A console password set on another IAM user: a credential for another principal.
		"aws.persistence.iam-create-user-login-profile.json":          PrivilegeExpansion,
		"aws.privilege-escalation.iam-update-user-login-profile.json": PrivilegeExpansion,
		// A Roles Anywhere profile lets certificates of a trust anchor assume a role: a new trust.
		"aws.persistence.rolesanywhere-create-trust-anchor.json": PrivilegeExpansion,
	}
	files, err := filepath.Glob(testdata + "cloudtrail/stratus-red-team/*.json")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files,
		testdata+"cloudtrail/s3-delivery/111111111111_CloudTrail_eu-central-1_20171211T1505Z_A6kvhMoVeCsc7v8U.json.gz",
		testdata+"cloudtrail/lookup-events/aws_cloudtrail.jsonl",
		testdata+"gcp/jsonl/gcp_logging.jsonl",
		testdata+"k8s/audit-log/audit2rbac-demo.log",
	)
	more, _ := filepath.Glob(testdata + "cloudtrail/eventbridge/*.json")
	files = append(files, more...)
	more, _ = filepath.Glob(testdata + "gcp/logentry/*.json")
	files = append(files, more...)
	for _, path := range files {
		name := filepath.Base(path)
		want, special := expected[name]
		if want == "tested above" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			got := newWorld(nil, 4, Env{}).feed(readEvents(t, path)...)
			if special {
				if len(got) == 0 {
					t.Fatalf("want a %s finding, got none", want)
				}
				for _, f := range got {
					if f.Detector != want {
						t.Errorf("unexpected %s finding: %s", f.Detector, f.Title)
					}
					checkFinding(t, f)
				}
				return
			}
			for _, f := range got {
				t.Errorf("unexpected finding: %s %s: %s (%s)", f.Detector, f.Severity.Label(), f.Title, f.Cause)
			}
		})
	}
	if testing.Verbose() {
		t.Log("benign sets checked:", strings.Join(func() []string {
			var s []string
			for _, f := range files {
				s = append(s, filepath.Base(f))
			}
			return s
		}(), ", "))
	}
}
