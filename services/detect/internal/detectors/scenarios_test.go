package detectors

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/catalog"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/netclass"
)

var day0 = time.Date(2024, 1, 1, 9, 0, 0, 0, time.UTC)

// call builds an event of an IAM user acting with an access key.
func call(user, key string, at time.Time, ip, ua, region string) *events.Event {
	id := "aws:arn:aws:iam::111122223333:user/" + user
	return &events.Event{
		Id: fmt.Sprintf("aws:111122223333:%s-%d-%s", user, at.UnixNano(), ip), Provider: events.Provider_PROVIDER_AWS,
		TimeUnixNano: at.UnixNano(), Account: "111122223333",
		Identity:   &events.Identity{Id: id, Kind: events.IdentityKind_IDENTITY_KIND_ACCESS_KEY_USER, Type: "IAMUser", Name: user},
		Credential: &events.Credential{Id: "aws:key:" + key, Type: events.CredentialType_CREDENTIAL_TYPE_ACCESS_KEY},
		Action:     &events.Action{Service: "s3", Name: "ListBuckets", Permission: "s3:ListAllMyBuckets", ReadOnly: true},
		Network:    &events.Network{Ip: ip, UserAgent: ua, Region: region},
		Outcome:    &events.Outcome{Result: events.Result_RESULT_ALLOWED},
	}
}

// daily returns one call a day for n days from start.
func daily(user, key string, start time.Time, n int) []*events.Event {
	var out []*events.Event
	for i := 0; i < n; i++ {
		out = append(out, call(user, key, start.Add(time.Duration(i)*24*time.Hour), "198.51.100.7", "aws-sdk-go/1.44.0 (go1.21; linux; amd64)", "eu-west-1"))
	}
	return out
}

type fakeBaseline map[string]Activity

func (b fakeBaseline) Identity(id string) (Activity, bool)   { a, ok := b[id]; return a, ok }
func (b fakeBaseline) Credential(id string) (Activity, bool) { a, ok := b[id]; return a, ok }

// TestDormancy builds the baselines the shared logs lack: a history of daily use, then a
// gap longer than the threshold (90 days by default; 30 days by catalog rule), then one use.
func TestDormancy(t *testing.T) {
	rule30, err := catalog.Parse("test", []byte("identities:\n  - match: '*:user/batch-*'\n    owner: data@example.com\n    dormancy: 30d\n"))
	if err != nil {
		t.Fatal(err)
	}
	history := daily("svc-backup", "AKIAOLD", day0, 10)
	tests := []struct {
		name     string
		cat      *catalog.Catalog
		baseline fakeBaseline
		evs      []*events.Event
		want     []summary
	}{
		{
			name: "key unused 120 days then used",
			evs:  append(history, call("svc-backup", "AKIAOLD", day0.Add(129*24*time.Hour), "198.51.100.7", "aws-sdk-go/1.44.0", "eu-west-1")),
			want: []summary{{DormantCredentialReuse, "aws:arn:aws:iam::111122223333:user/svc-backup", "", "medium", "credential:aws:key:AKIAOLD"}},
		},
		{
			name: "key unused 80 days: under the threshold",
			evs:  append(daily("svc-backup", "AKIAOLD", day0, 10), call("svc-backup", "AKIAOLD", day0.Add(89*24*time.Hour), "198.51.100.7", "aws-sdk-go/1.44.0", "eu-west-1")),
		},
		{
			name: "a new key of a dormant identity: the identity is reported",
			evs:  append(daily("svc-backup", "AKIAOLD", day0, 10), call("svc-backup", "AKIANEW", day0.Add(200*24*time.Hour), "198.51.100.7", "aws-sdk-go/1.44.0", "eu-west-1")),
			want: []summary{{DormantCredentialReuse, "aws:arn:aws:iam::111122223333:user/svc-backup", "", "high", "identity"}},
		},
		{
			name: "catalog threshold of 30 days",
			cat:  rule30,
			evs:  append(daily("batch-etl", "AKIABATCH", day0, 5), call("batch-etl", "AKIABATCH", day0.Add(40*24*time.Hour), "198.51.100.7", "aws-sdk-go", "eu-west-1")),
			want: []summary{{DormantCredentialReuse, "aws:arn:aws:iam::111122223333:user/batch-etl", "", "medium", "credential:aws:key:AKIABATCH"}},
		},
		{
			name: "no history: learning, no finding",
			evs:  []*events.Event{call("fresh", "AKIAFRESH", day0, "198.51.100.7", "aws-sdk-go", "eu-west-1")},
		},
		{
			name:     "inventory says last used 100 days ago",
			baseline: fakeBaseline{"aws:key:AKIAINV": {Created: day0.Add(-400 * 24 * time.Hour), LastUsed: day0.Add(-100 * 24 * time.Hour)}},
			evs:      []*events.Event{call("legacy", "AKIAINV", day0, "198.51.100.7", "aws-sdk-go", "eu-west-1")},
			want:     []summary{{DormantCredentialReuse, "aws:arn:aws:iam::111122223333:user/legacy", "", "medium", "credential:aws:key:AKIAINV"}},
		},
		{
			name:     "inventory says created 200 days ago, never used",
			baseline: fakeBaseline{"aws:key:AKIANEVER": {Created: day0.Add(-200 * 24 * time.Hour)}},
			evs:      []*events.Event{call("legacy", "AKIANEVER", day0, "198.51.100.7", "aws-sdk-go", "eu-west-1")},
			want:     []summary{{DormantCredentialReuse, "aws:arn:aws:iam::111122223333:user/legacy", "", "high", "credential:aws:key:AKIANEVER"}},
		},
		{
			name: "late, out-of-order history: judged against the latest earlier activity",
			evs: func() []*events.Event {
				evs := daily("svc-late", "AKIALATE", day0, 3)
				recent := call("svc-late", "AKIALATE", day0.Add(100*24*time.Hour), "198.51.100.7", "aws-sdk-go", "eu-west-1")
				// The use on day 50 arrives after the use on day 100: neither gap exceeds 90 days.
				late := call("svc-late", "AKIALATE", day0.Add(50*24*time.Hour), "198.51.100.7", "aws-sdk-go", "eu-west-1")
				return append(evs, late, recent)
			}(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := Env{}
			if tt.baseline != nil {
				env.Baseline = tt.baseline
			}
			got := newWorld(tt.cat, 4, env).feed(tt.evs...)
			if diff := cmp.Diff(sortSummaries(tt.want), summarize(got)); diff != "" {
				t.Errorf("findings mismatch (-want +got):\n%s", diff)
			}
			for _, f := range got {
				checkFinding(t, f)
				if tt.cat != nil && f.Owner != "data@example.com" {
					t.Errorf("owner = %q, want the catalog's", f.Owner)
				}
			}
		})
	}
}

// TestBoundaries covers learned and declared boundaries and workload credentials.
func TestBoundaries(t *testing.T) {
	declared, err := catalog.Parse("test", []byte(`
identities:
  - match: "aws:arn:aws:iam::111122223333:user/deploy-*"
    owner: platform@example.com
    team: platform
    kind: ci_cd
    boundary:
      cidrs: [198.51.100.0/24]
      regions: [eu-west-1]
      user_agents: ["aws-sdk-go*"]
`))
	if err != nil {
		t.Fatal(err)
	}
	sdk := "aws-sdk-go/1.44.0 (go1.21; linux; amd64)"
	learnedHistory := daily("svc-report", "AKIAREP", day0, 30) // past the 7-day, 20-event learning period
	tests := []struct {
		name string
		cat  *catalog.Catalog
		evs  []*events.Event
		want []summary
	}{
		{
			name: "declared: inside the boundary",
			cat:  declared,
			evs:  []*events.Event{call("deploy-web", "AKIADEP", day0, "198.51.100.9", sdk, "eu-west-1")},
		},
		{
			name: "declared: another network and region",
			cat:  declared,
			evs:  []*events.Event{call("deploy-web", "AKIADEP", day0, "203.0.113.50", sdk, "us-east-1")},
			want: []summary{{OutOfBoundary, "aws:arn:aws:iam::111122223333:user/deploy-web", "", "high", "declared:network=203.0.113.0/24;region=us-east-1"}},
		},
		{
			name: "declared: a client that is not the declared one",
			cat:  declared,
			evs:  []*events.Event{call("deploy-web", "AKIADEP", day0, "198.51.100.9", "curl/8.4.0", "eu-west-1")},
			want: []summary{{OutOfBoundary, "aws:arn:aws:iam::111122223333:user/deploy-web", "", "medium", "declared:user_agent=curl"}},
		},
		{
			name: "learned: same places after learning",
			evs:  append(learnedHistory[:len(learnedHistory):len(learnedHistory)], call("svc-report", "AKIAREP", day0.Add(31*24*time.Hour), "198.51.100.200", sdk, "eu-west-1")),
		},
		{
			name: "learned: new network, region and client",
			evs:  append(learnedHistory[:len(learnedHistory):len(learnedHistory)], call("svc-report", "AKIAREP", day0.Add(31*24*time.Hour), "203.0.113.9", "python-requests/2.31", "ap-southeast-2")),
			want: []summary{{OutOfBoundary, "aws:arn:aws:iam::111122223333:user/svc-report", "", "high", "learned:network=203.0.113.0/24;region=ap-southeast-2;client=python-requests"}},
		},
		{
			name: "learned: a new network during the learning period is learned silently",
			evs:  append(daily("svc-new", "AKIANEW", day0, 3), call("svc-new", "AKIANEW", day0.Add(3*24*time.Hour), "203.0.113.9", sdk, "ap-southeast-2")),
		},
		{
			name: "workload: EC2 instance credentials used from outside AWS",
			evs: []*events.Event{func() *events.Event {
				ev := call("x", "x", day0, "192.0.2.10", sdk, "eu-west-1")
				ev.Identity = &events.Identity{Id: "aws:arn:aws:iam::111122223333:role/web", Kind: events.IdentityKind_IDENTITY_KIND_WORKLOAD_ROLE, Type: "AssumedRole", Name: "web"}
				ev.Credential = &events.Credential{Id: "aws:session:ASIAX", Type: events.CredentialType_CREDENTIAL_TYPE_SESSION, Delivery: "ec2_role_delivery", IssuedTo: "i-0abc"}
				return ev
			}()},
			want: []summary{{OutOfBoundary, "aws:arn:aws:iam::111122223333:role/web", "", "high", "workload:outside_aws"}},
		},
		{
			name: "workload: Kubernetes service account from a public address",
			evs: []*events.Event{{
				Id: "k8s:demo:1:ResponseComplete", Provider: events.Provider_PROVIDER_K8S, TimeUnixNano: day0.UnixNano(), Account: "demo",
				Identity: &events.Identity{Id: "k8s:demo:system:serviceaccount:payments:api", Kind: events.IdentityKind_IDENTITY_KIND_SERVICE_ACCOUNT, Name: "system:serviceaccount:payments:api"},
				Action:   &events.Action{Name: "list", Permission: "list pods"},
				Network:  &events.Network{Ip: "203.0.113.77", UserAgent: "kubectl/v1.29.0", Cluster: "demo"},
				Outcome:  &events.Outcome{Result: events.Result_RESULT_ALLOWED},
			}},
			want: []summary{{OutOfBoundary, "k8s:demo:system:serviceaccount:payments:api", "", "high", "workload:public_address=203.0.113.0/24"}},
		},
	}
	aws := testRanges(t, "3.0.0.0/9", "52.0.0.0/10", "18.128.0.0/9")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := newWorld(tt.cat, 4, Env{AWSRanges: aws}).feed(tt.evs...)
			if diff := cmp.Diff(sortSummaries(tt.want), summarize(got)); diff != "" {
				t.Errorf("findings mismatch (-want +got):\n%s", diff)
			}
			for _, f := range got {
				checkFinding(t, f)
				if tt.cat != nil && (f.Owner != "platform@example.com" || f.Team != "platform") {
					t.Errorf("owner, team = %q, %q; want the catalog's", f.Owner, f.Team)
				}
			}
		})
	}
}

// TestSuppression checks that a catalog suppression silences a matching finding.
func TestSuppression(t *testing.T) {
	cat, err := catalog.Parse("test", []byte(`
identities:
  - match: "*:role/stratus-red-team-ec2-steal-credentials-role"
    suppress:
      - detector: out_of_boundary
        cause: "workload:unusual_client=*"
        reason: red-team exercise INC-42
`))
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(cat, 4, Env{})
	if got := w.feed(readEvents(t, testdata+"cloudtrail/stratus-red-team/aws.credential-access.ec2-steal-instance-credentials.json")...); len(got) != 0 {
		t.Fatalf("want the finding suppressed, got %v", summarize(got))
	}
	if w.det.Suppressed.Load() == 0 {
		t.Fatal("suppression not counted")
	}
}

// TestSameIDs checks that the same events give the same finding ids whatever the partition
// count or how often they are replayed.
func TestSameIDs(t *testing.T) {
	evs := readEvents(t, testdata+"cloudtrail/stratus-red-team/aws.persistence.iam-create-admin-user.json")
	ids := func(p uint32) []string {
		var out []string
		for _, f := range newWorld(nil, p, Env{}).feed(evs...) {
			out = append(out, f.Id)
		}
		return out
	}
	a, b := ids(1), ids(8)
	if len(a) == 0 || cmp.Diff(a, b) != "" {
		t.Fatalf("ids differ across partition counts: %v vs %v", a, b)
	}
	w := newWorld(nil, 4, Env{})
	first := w.feed(evs...)
	if again := w.feed(evs...); len(again) != 0 || len(first) == 0 {
		t.Fatalf("a replay of the same events raised %d findings again", len(again))
	}
}

func testRanges(t *testing.T, prefixes ...string) *netclass.Ranges {
	t.Helper()
	var ps []netip.Prefix
	for _, p := range prefixes {
		ps = append(ps, netip.MustParsePrefix(p))
	}
	return netclass.NewRanges(ps)
}
