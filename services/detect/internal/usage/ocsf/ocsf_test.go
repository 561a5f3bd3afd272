package ocsf

import (
	"bytes"
	"encoding/json"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/schemas"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/grants"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/usage"
)

var update = flag.Bool("update", false, "rewrite the golden files")

const schemaBase = "https://github.com/nhiwatch/nhiwatch/schemas/"

// schema compiles the embedded JSON Schema of the class, with format assertions on.
func schema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	data, err := fs.ReadFile(schemas.OCSF, SchemaFile)
	if err != nil {
		t.Fatalf("schemas does not embed %s: %v", SchemaFile, err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(schemaBase+SchemaFile, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(schemaBase + SchemaFile)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validate(t testing.TB, s *jsonschema.Schema, doc []byte) error {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	return s.Validate(inst)
}

var (
	analysed = time.Date(2024, 8, 3, 0, 0, 0, 0, time.UTC)
	t0       = time.Date(2024, 8, 2, 10, 0, 0, 0, time.UTC)
)

const acct = "229654561268"

func awsID(rest string) string { return events.AWSIdentityID("arn:aws:iam::" + acct + ":" + rest) }

// reports replays a small day of the test account, a GCP project and a Kubernetes cluster
// against their inventory snapshots.
func reports(t *testing.T) []usage.Report {
	t.Helper()
	m := grants.NewModel()
	for _, f := range []string{"aws-authorization-details.json", "aws-credential-report.csv", "gcp-ancestors-iam-policy.json", "gcp-role-reportPublisher.json", "k8s-rbac.json"} {
		snaps, err := grants.ReadFile(filepath.Join("../../grants/testdata", f), grants.ImportOptions{Cluster: "prod", Taken: t0.Add(-24 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range snaps {
			if err := m.Import(s); err != nil {
				t.Fatal(err)
			}
		}
	}
	tr := usage.NewTracker(m)
	ok, denied := events.Result_RESULT_ALLOWED, events.Result_RESULT_DENIED
	ev := func(id string, prov events.Provider, account, identity, perm string, r events.Result, at time.Time, res ...*events.Resource) *events.Event {
		kind := events.IdentityKind_IDENTITY_KIND_SERVICE_ACCOUNT
		if prov == events.Provider_PROVIDER_AWS {
			kind = events.IdentityKind_IDENTITY_KIND_ACCESS_KEY_USER
		}
		return &events.Event{Id: id, Provider: prov, Account: account, TimeUnixNano: at.UnixNano(),
			Identity:  &events.Identity{Id: identity, Kind: kind},
			Action:    &events.Action{Permission: perm, Service: "core"},
			Outcome:   &events.Outcome{Result: r},
			Resources: res,
		}
	}
	deployer := awsID("user/ci/ci-deployer")
	fn := &events.Resource{Id: "arn:aws:lambda:us-east-1:" + acct + ":function:app-api", Type: "AWS::Lambda::Function"}
	evs := []*events.Event{
		ev("a1", events.Provider_PROVIDER_AWS, acct, deployer, "lambda:UpdateFunctionCode", ok, t0, fn),
		ev("a2", events.Provider_PROVIDER_AWS, acct, deployer, "lambda:GetFunction", ok, t0.Add(time.Minute), fn),
		ev("a3", events.Provider_PROVIDER_AWS, acct, deployer, "lambda:DeleteFunction", denied, t0.Add(2*time.Minute), fn),
		ev("a4", events.Provider_PROVIDER_AWS, acct, awsID("user/christophe"), "iam:CreateUser", ok, t0.Add(3*time.Minute)),
		ev("g1", events.Provider_PROVIDER_GCP, "acme-prod", events.GCPServiceAccountID("reporting@acme-prod.iam.gserviceaccount.com"), "storage.objects.get", ok, t0,
			&events.Resource{Id: "projects/_/buckets/reports/objects/q3.csv"}),
		ev("k1", events.Provider_PROVIDER_K8S, "prod", events.K8sServiceAccountID("prod", "payments", "api"), "get pods", ok, t0,
			&events.Resource{Id: "/namespaces/payments/pods/api-0", Namespace: "payments", Name: "api-0"}),
	}
	evs[0].Credential = &events.Credential{Id: deployer + "#access_key_1"}
	for _, e := range evs {
		tr.Observe(e)
	}
	return tr.Reports()
}

func TestDocumentsValidate(t *testing.T) {
	s := schema(t)
	rs := reports(t)
	if len(rs) < 10 {
		t.Fatalf("only %d reports", len(rs))
	}
	for _, r := range rs {
		doc, err := Render(r, Options{Time: analysed, ProductVersion: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if err := validate(t, s, doc); err != nil {
			t.Errorf("%s: %v\n%s", r.Identity, err, doc)
		}
	}
}

// TestGolden pins the document of ci-deployer (a user with keys, a customer managed
// policy, uses, a refused request); go test -update rewrites it.
func TestGolden(t *testing.T) {
	var r usage.Report
	for _, x := range reports(t) {
		if x.Identity == awsID("user/ci/ci-deployer") {
			r = x
		}
	}
	d, err := Build(r, Options{Time: analysed, ProductVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := "testdata/ci-deployer.golden.json"
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("document (-want +got)\n%s", diff)
	}
	if err := validate(t, schema(t), got); err != nil {
		t.Error(err)
	}
}

func TestSeverityAndLists(t *testing.T) {
	byID := map[string]*Document{}
	for _, r := range reports(t) {
		d, err := Build(r, Options{Time: analysed})
		if err != nil {
			t.Fatal(err)
		}
		byID[r.Identity] = d
	}
	tests := []struct {
		id       string
		severity int
		title    string
	}{
		{awsID("role/app-backend"), 4, "Admin-equivalent grants unused by app-backend"},
		{awsID("user/christophe"), 3, "Unused grants of christophe"},
		{awsID("user/ci/ci-deployer"), 2, "Unused grants of ci-deployer"},
	}
	for _, tt := range tests {
		d := byID[tt.id]
		if d == nil {
			t.Errorf("no document for %s", tt.id)
			continue
		}
		if d.SeverityID != tt.severity || d.FindingInfo.Title != tt.title {
			t.Errorf("%s: severity %d %q, want %d %q", tt.id, d.SeverityID, d.FindingInfo.Title, tt.severity, tt.title)
		}
	}
	dep := byID[awsID("user/ci/ci-deployer")]
	if len(dep.PermissionAnalysisResults) != 2 {
		t.Fatalf("ci-deployer has %d permission analyses, want its two grants", len(dep.PermissionAnalysisResults))
	}
	for _, pa := range dep.PermissionAnalysisResults {
		if pa.Policy.UID == "arn:aws:iam::"+acct+":policy/DeployLambda" {
			if pa.UnusedPrivilegesCount != 0 || pa.Policy.Type != "Customer Managed Policy" {
				t.Errorf("DeployLambda analysis %+v: both its patterns were used", pa)
			}
		}
	}
	if strings.Join(dep.Unmapped.NHIWatch.Denied, ",") != "lambda:DeleteFunction" || dep.Resources[0].UID != "arn:aws:lambda:us-east-1:"+acct+":function:app-api" {
		t.Errorf("denied %v, resources %+v", dep.Unmapped.NHIWatch.Denied, dep.Resources)
	}
	if c := dep.IdentityActivityMetrics.ProgrammaticCredentials; len(c) != 2 || c[0].LastUsedTime != t0.UnixMilli() {
		t.Errorf("credentials %+v: both keys, the first used at %v", c, t0)
	}
	if k := byID[events.K8sServiceAccountID("prod", "payments", "api")]; k.Cloud != nil || len(k.Metadata.Profiles) != 0 || k.User.Account.TypeID != 99 {
		t.Errorf("a Kubernetes identity: cloud %+v profiles %v account %+v", k.Cloud, k.Metadata.Profiles, k.User.Account)
	}
	if a, b := byID[awsID("role/app-backend")].FindingInfo.UID, byID[awsID("user/christophe")].FindingInfo.UID; a == b || a == "" {
		t.Errorf("finding uids %q and %q", a, b)
	}
}

// TestSchemaRejects checks that the schema holds the class's rules, on variants of a valid
// document.
func TestSchemaRejects(t *testing.T) {
	s := schema(t)
	var r usage.Report
	for _, x := range reports(t) {
		if x.Identity == awsID("user/ci/ci-deployer") {
			r = x
		}
	}
	valid, err := Render(r, Options{Time: analysed})
	if err != nil {
		t.Fatal(err)
	}
	if err := validate(t, s, valid); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(map[string]any){
		"no analysis at all": func(d map[string]any) {
			delete(d, "permission_analysis_results")
			delete(d, "identity_activity_metrics")
		},
		"type_uid not class*100+activity": func(d map[string]any) { d["type_uid"] = 200803 },
		"another class":                   func(d map[string]any) { d["class_uid"] = 2004 },
		"cloud profile without cloud":     func(d map[string]any) { delete(d, "cloud") },
		"an OCSF version without the class": func(d map[string]any) {
			d["metadata"].(map[string]any)["version"] = "1.3.0"
		},
		"unknown attribute": func(d map[string]any) { d["permissions"] = []string{"x"} },
		"negative unused count": func(d map[string]any) {
			d["permission_analysis_results"].([]any)[0].(map[string]any)["unused_privileges_count"] = -1
		},
		"credential without uid": func(d map[string]any) {
			d["identity_activity_metrics"].(map[string]any)["programmatic_credentials"] = []any{map[string]any{"type": "Access Key"}}
		},
		"time in seconds as a string": func(d map[string]any) { d["time"] = "1722643200" },
		"no finding uid": func(d map[string]any) {
			delete(d["finding_info"].(map[string]any), "uid")
		},
	} {
		t.Run(name, func(t *testing.T) {
			var d map[string]any
			if err := json.Unmarshal(valid, &d); err != nil {
				t.Fatal(err)
			}
			mutate(d)
			b, _ := json.Marshal(d)
			if err := validate(t, s, b); err == nil {
				t.Errorf("the schema accepts a document with %s", name)
			}
		})
	}
}

func TestBuildRefuses(t *testing.T) {
	if _, err := Build(usage.Report{}, Options{Time: analysed}); err == nil {
		t.Error("a report without an identity")
	}
	if _, err := Build(usage.Report{Identity: "aws:x"}, Options{}); err == nil {
		t.Error("no analysis time")
	}
}
