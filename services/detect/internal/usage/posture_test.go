package usage

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/catalog"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/grants"
)

// postureWorld is the test account's snapshot (authorization details and credential report
// of account 229654561268, taken 2024-08-01) and a few months of its events.
type postureWorld struct {
	model *grants.Model
	act   *Activities
}

func newPostureWorld(t *testing.T) postureWorld {
	w := postureWorld{model: loadModel(t, "aws-authorization-details.json", "aws-credential-report.csv"), act: NewActivities()}
	christophe := awsID("user/christophe")
	deployer := awsID("user/ci/ci-deployer")
	evs := []*events.Event{
		// Observation begins: ci-deployer deploys code every day or so.
		awsEvent("d1", deployer, "lambda:UpdateFunctionCode", events.Result_RESULT_ALLOWED, t0),
		// christophe administers IAM (an admin action) in the autumn.
		awsEvent("c1", christophe, "iam:CreateUser", events.Result_RESULT_ALLOWED, time.Date(2024, 10, 20, 9, 0, 0, 0, time.UTC)),
		awsEvent("d2", deployer, "lambda:UpdateFunctionCode", events.Result_RESULT_ALLOWED, time.Date(2024, 11, 10, 9, 0, 0, 0, time.UTC)),
	}
	evs[2].Credential = &events.Credential{Id: deployer + "#access_key_2"}
	// malicious-iam-user is made admin a few days before the evaluation.
	attach := awsEvent("a1", christophe, "iam:AttachUserPolicy", events.Result_RESULT_ALLOWED, time.Date(2024, 11, 12, 9, 0, 0, 0, time.UTC))
	attach.GrantChanges = []*events.GrantChange{{Op: events.GrantOp_GRANT_OP_ADD, Grantee: awsID("user/malicious-iam-user"),
		Grant: grants.AWSManagedPolicyARN("AdministratorAccess"), Mechanism: "attach_user_policy"}}
	evs = append(evs, attach)
	for _, ev := range evs {
		w.act.Observe(ev)
		w.model.Apply(ev)
	}
	return w
}

var evalTime = time.Date(2024, 11, 15, 12, 0, 0, 0, time.UTC)

func (w postureWorld) evaluate(owners Owners) []Condition {
	return EvaluatePosture(DefaultPostureConfig(), PostureInput{
		Model: w.model, Activity: w.act, Owners: owners, Now: evalTime, ObservedSince: w.act.Since(),
	})
}

type condSummary struct {
	Detector, Identity, Cause, Bucket string
	Severity                          events.Severity
}

func summarize(cs []Condition) []condSummary {
	var out []condSummary
	for _, c := range cs {
		out = append(out, condSummary{c.Detector, strings.TrimPrefix(c.Identity, "aws:arn:aws:iam::"+acct+":"), c.Cause, c.Bucket, c.Finding.Severity})
	}
	return out
}

func TestEvaluatePosture(t *testing.T) {
	w := newPostureWorld(t)
	got := summarize(w.evaluate(nil))
	deployer := awsID("user/ci/ci-deployer")
	want := []condSummary{
		{DetectorKeyRotation, "user/christophe", awsID("user/christophe") + "#access_key_1", "2024-06-10", events.Severity_SEVERITY_HIGH},
		{DetectorKeyRotation, "user/ci/ci-deployer", deployer + "#access_key_1", "2022-11-20", events.Severity_SEVERITY_HIGH},
		{DetectorKeyRotation, "user/ci/ci-deployer", deployer + "#access_key_2", "2023-01-05", events.Severity_SEVERITY_HIGH},
		// app-backend and malicious-iam-user hold AdministratorAccess with no owner.
		{DetectorNoOwner, "role/app-backend", "no_owner", "", events.Severity_SEVERITY_HIGH},
		{DetectorNoOwner, "user/ci/ci-deployer", "no_owner", "", events.Severity_SEVERITY_MEDIUM},
		// app-backend has had AdministratorAccess since before observation began (105 days)
		// and used none of it; christophe used IAM in October; malicious-iam-user got it
		// three days ago.
		{DetectorStandingAdmin, "role/app-backend", "admin:arn:aws:iam::aws:policy/AdministratorAccess", "never", events.Severity_SEVERITY_MEDIUM},
	}
	slices.SortFunc(want, func(a, b condSummary) int {
		return strings.Compare(a.Detector+"\x00"+awsIDOf(a.Identity)+"\x00"+a.Cause, b.Detector+"\x00"+awsIDOf(b.Identity)+"\x00"+b.Cause)
	})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("conditions (-want +got)\n%s", diff)
	}
	// malicious-iam-user (no kind in the inventory, an IAM user) is not classified, so it
	// gets no ownership finding; its admin grant is new.
	for _, c := range w.evaluate(nil) {
		f := c.Finding
		if f.Title == "" || f.Summary == "" || f.Recommendation == "" || len(f.OwaspNhi) == 0 || len(f.MitreAttack) == 0 ||
			len(f.Evidence) == 0 || f.Cause != c.Cause || f.Detector != c.Detector || f.Identity.GetId() != c.Identity ||
			f.Status != events.FindingStatus_FINDING_STATUS_OPEN || f.Provider != events.Provider_PROVIDER_AWS {
			t.Errorf("incomplete finding %+v", f)
		}
	}
}

func awsIDOf(rest string) string { return awsID(rest) }

func TestPostureFindingText(t *testing.T) {
	w := newPostureWorld(t)
	byKey := map[string]*events.Finding{}
	for _, c := range w.evaluate(nil) {
		byKey[c.Detector+" "+strings.TrimPrefix(c.Identity, "aws:arn:aws:iam::"+acct+":")] = c.FindingAt(evalTime)
	}
	f := byKey[DetectorStandingAdmin+" role/app-backend"]
	wantSummary := "Workload role app-backend (229654561268) holds admin-equivalent grants (arn:aws:iam::aws:policy/AdministratorAccess) " +
		"but made no admin action (an allowed use of a sensitive permission) in the last 90 days: none since observation began on 2024-08-02. " +
		"Its admin power serves nobody and waits for whoever gets its credentials."
	if f == nil || f.Summary != wantSummary {
		t.Errorf("standing admin summary:\n%q\nwant\n%q", f.GetSummary(), wantSummary)
	}
	if diff := cmp.Diff([]string{"NHI5:2025"}, f.GetOwaspNhi()); diff != "" {
		t.Errorf("owasp (-want +got)\n%s", diff)
	}
	k := byKey[DetectorKeyRotation+" user/ci/ci-deployer"]
	if k == nil || !strings.Contains(k.Summary, "access key 1") && !strings.Contains(k.Summary, "access key 2") || k.Credential.GetType() != events.CredentialType_CREDENTIAL_TYPE_ACCESS_KEY {
		t.Errorf("key rotation finding %+v", k)
	}
	o := byKey[DetectorNoOwner+" role/app-backend"]
	if o == nil || !strings.Contains(o.Summary, "admin-equivalent through arn:aws:iam::aws:policy/AdministratorAccess") || o.Owner != "" {
		t.Errorf("no owner finding %+v", o)
	}
}

func TestPostureUsesKeyActivity(t *testing.T) {
	w := newPostureWorld(t)
	for _, c := range w.evaluate(nil) {
		if c.Cause == awsID("user/ci/ci-deployer")+"#access_key_2" {
			if !strings.Contains(c.Finding.Summary, "last used on 2024-11-10") {
				t.Errorf("key 2 was used on 2024-11-10 (an event): %s", c.Finding.Summary)
			}
			return
		}
	}
	t.Error("no finding for ci-deployer's second key")
}

func TestPostureCatalog(t *testing.T) {
	w := newPostureWorld(t)
	cat, err := catalog.Parse("catalog.yaml", []byte(`version: 1
identities:
  - match: "aws:arn:aws:iam::229654561268:role/app-backend"
    owner: payments@example.com
    team: payments
  - match: "aws:arn:aws:iam::229654561268:user/ci/*"
    owner: platform@example.com
    suppress:
      - detector: "*"
        cause: "*#access_key_1"
        reason: being replaced by OIDC federation
        until: 2099-01-01
  - match: "aws:arn:aws:iam::229654561268:user/malicious-iam-user"
    kind: ci_cd
`))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*events.Finding{}
	for _, c := range w.evaluate(CatalogOwners(catalog.Static(cat))) {
		got[c.Detector+" "+strings.TrimPrefix(c.Identity, "aws:arn:aws:iam::"+acct+":")+" "+c.Cause] = c.Finding
	}
	for _, gone := range []string{
		DetectorNoOwner + " role/app-backend no_owner",
		DetectorNoOwner + " user/ci/ci-deployer no_owner",
		DetectorKeyRotation + " user/ci/ci-deployer " + awsID("user/ci/ci-deployer") + "#access_key_1",
	} {
		if got[gone] != nil {
			t.Errorf("%s: owned or suppressed, still reported", gone)
		}
	}
	if f := got[DetectorStandingAdmin+" role/app-backend admin:arn:aws:iam::aws:policy/AdministratorAccess"]; f == nil || f.Owner != "payments@example.com" || f.Team != "payments" {
		t.Errorf("standing admin of app-backend carries owner %q team %q", f.GetOwner(), f.GetTeam())
	}
	if f := got[DetectorNoOwner+" user/malicious-iam-user no_owner"]; f == nil || f.Identity.Kind != events.IdentityKind_IDENTITY_KIND_CI_CD {
		t.Errorf("the catalog's kind makes malicious-iam-user an NHI with no owner: %+v", f)
	}
}

func TestStandingAdminNeedsAWholeWindow(t *testing.T) {
	w := newPostureWorld(t)
	in := PostureInput{Model: w.model, Activity: w.act, Now: evalTime, ObservedSince: evalTime.Add(-30 * 24 * time.Hour)}
	for _, c := range EvaluatePosture(DefaultPostureConfig(), in) {
		if c.Detector == DetectorStandingAdmin {
			t.Errorf("30 days of observation cannot show 90 days without admin actions: %+v", c)
		}
	}
	// malicious-iam-user, a CI identity by the catalog, was made admin 3 days before.
	owners := ownersFunc(func(id string) Ownership {
		if id == awsID("user/malicious-iam-user") {
			return Ownership{Kind: events.IdentityKind_IDENTITY_KIND_CI_CD}
		}
		return Ownership{}
	})
	for _, tt := range []struct {
		window time.Duration
		want   []string
	}{
		// christophe's last admin action is the attach, 3 days before.
		{5 * 24 * time.Hour, []string{awsID("role/app-backend")}},
		{2 * 24 * time.Hour, []string{awsID("role/app-backend"), awsID("user/christophe"), awsID("user/malicious-iam-user")}},
	} {
		cfg := DefaultPostureConfig()
		cfg.StandingAdminWindow = tt.window
		var ids []string
		for _, c := range EvaluatePosture(cfg, PostureInput{Model: w.model, Activity: w.act, Owners: owners, Now: evalTime, ObservedSince: w.act.Since()}) {
			if c.Detector == DetectorStandingAdmin {
				ids = append(ids, c.Identity)
			}
		}
		if diff := cmp.Diff(tt.want, ids); diff != "" {
			t.Errorf("standing admin with a %s window (-want +got)\n%s", tt.window, diff)
		}
	}
}

type ownersFunc func(string) Ownership

func (f ownersFunc) Ownership(id string) Ownership { return f(id) }

func TestConditionIDs(t *testing.T) {
	w := newPostureWorld(t)
	a, b := w.evaluate(nil), w.evaluate(nil)
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("%d and %d conditions", len(a), len(b))
	}
	for i := range a {
		fa, fb := a[i].FindingAt(evalTime), b[i].FindingAt(evalTime.Add(10*time.Hour))
		if fa.Id != fb.Id || fa.Id == "" {
			t.Errorf("%s: ids %q and %q for the same condition on the same day", a[i].Key(), fa.Id, fb.Id)
		}
	}
	for _, c := range a {
		if c.Bucket == "" && c.FindingAt(evalTime).Id == c.FindingAt(evalTime.Add(48*time.Hour)).Id {
			t.Errorf("%s: a condition first seen on another day must get another id", c.Key())
		}
		if c.Bucket != "" && c.FindingAt(evalTime).Id != c.FindingAt(evalTime.Add(48*time.Hour)).Id {
			t.Errorf("%s: a condition with a fixed bucket must keep its id", c.Key())
		}
	}
}

func TestPlatformIdentities(t *testing.T) {
	for id, want := range map[string]bool{
		events.K8sServiceAccountID("prod", "kube-system", "coredns"):                    true,
		events.K8sServiceAccountID("prod", "payments", "api"):                           false,
		events.GCPServiceAccountID("service-123@gcp-sa-pubsub.iam.gserviceaccount.com"): true,
		events.GCPServiceAccountID("123@cloudservices.gserviceaccount.com"):             true,
		events.GCPServiceAccountID("123-compute@developer.gserviceaccount.com"):         false,
		events.GCPServiceAccountID("reporting@acme-prod.iam.gserviceaccount.com"):       false,
		awsID("role/app-backend"): false,
	} {
		if got := platformIdentity(id); got != want {
			t.Errorf("platformIdentity(%s) = %v, want %v", id, got, want)
		}
	}
}
