package grants

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

const acct = "229654561268"

func awsID(rest string) string { return events.AWSIdentityID("arn:aws:iam::" + acct + ":" + rest) }

var taken = time.Date(2024, 8, 1, 0, 0, 0, 0, time.UTC)

// loadModel imports the named fixtures into a new model.
func loadModel(t testing.TB, files ...string) *Model {
	t.Helper()
	m := NewModel()
	for _, f := range files {
		snaps, err := ReadFile(filepath.Join("testdata", f), ImportOptions{Cluster: "prod", Taken: taken})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range snaps {
			if err := m.Import(s); err != nil {
				t.Fatal(err)
			}
		}
	}
	return m
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, s string
		fold, want bool
	}{
		{"*", "s3:GetObject", true, true},
		{"s3:Get*", "s3:GetObject", true, true},
		{"s3:Get*", "S3:getobject", true, true},
		{"s3:Get*", "S3:getobject", false, false},
		{"s3:Get*", "s3:PutObject", true, false},
		{"iam:*", "iam:CreateUser", true, true},
		{"iam:*", "iamx:CreateUser", true, false},
		{"arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket/a/b", false, true},
		{"arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket", false, false},
		{"arn:aws:lambda:*:1:function:app-*", "arn:aws:lambda:us-east-1:1:function:app-api", false, true},
		{"ec2:Describe?pc*", "ec2:DescribeVpcs", true, true},
		{"a*b*c", "axxbyyc", false, true},
		{"a*b*c", "axxbyy", false, false},
		{"", "", false, true},
		{"", "x", false, false},
		{"**", "", false, true},
	}
	for _, tt := range tests {
		if got := Glob(tt.pattern, tt.s, tt.fold); got != tt.want {
			t.Errorf("Glob(%q, %q, %v) = %v, want %v", tt.pattern, tt.s, tt.fold, got, tt.want)
		}
	}
}

func TestParsePolicyDocumentForms(t *testing.T) {
	obj := `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*","Condition":{"Bool":{"aws:SecureTransport":"true"}}}}`
	want := PolicyDocument{Version: "2012-10-17", Statements: []Statement{{
		Effect: "Allow", Actions: []string{"s3:GetObject"}, Resources: []string{"arn:aws:s3:::b/*"}, Conditional: true,
	}}}
	encoded, _ := json.Marshal(url.QueryEscape(obj))
	plain, _ := json.Marshal(obj)
	for name, raw := range map[string]string{"object": obj, "url-encoded string": string(encoded), "JSON string": string(plain)} {
		t.Run(name, func(t *testing.T) {
			got, err := ParsePolicyDocument(json.RawMessage(raw))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
	for name, raw := range map[string]string{
		"empty":          ``,
		"bad effect":     `{"Statement":[{"Effect":"Maybe","Action":"*"}]}`,
		"no action":      `{"Statement":[{"Effect":"Allow","Resource":"*"}]}`,
		"action number":  `{"Statement":[{"Effect":"Allow","Action":3}]}`,
		"bad url escape": `"%zz"`,
	} {
		t.Run("invalid "+name, func(t *testing.T) {
			if _, err := ParsePolicyDocument(json.RawMessage(raw)); !errors.Is(err, ErrPolicyDocument) {
				t.Errorf("err = %v, want ErrPolicyDocument", err)
			}
		})
	}
}

// TestAuthorizationDetailsURLEncoded checks that the raw API form (every policy document a
// URL-encoded string) reads the same as the CLI's decoded form.
func TestAuthorizationDetailsURLEncoded(t *testing.T) {
	data, err := os.ReadFile("testdata/aws-authorization-details.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	encode := func(v any) string { b, _ := json.Marshal(v); return url.QueryEscape(string(b)) }
	for _, list := range []string{"UserDetailList", "GroupDetailList", "RoleDetailList"} {
		for _, it := range doc[list].([]any) {
			item := it.(map[string]any)
			for _, key := range []string{"UserPolicyList", "GroupPolicyList", "RolePolicyList"} {
				if ps, ok := item[key].([]any); ok {
					for _, p := range ps {
						pm := p.(map[string]any)
						pm["PolicyDocument"] = encode(pm["PolicyDocument"])
					}
				}
			}
		}
	}
	for _, p := range doc["Policies"].([]any) {
		for _, v := range p.(map[string]any)["PolicyVersionList"].([]any) {
			vm := v.(map[string]any)
			vm["Document"] = encode(vm["Document"])
		}
	}
	raw, _ := json.Marshal(doc)
	fromAPI, err := ImportAWSAuthorizationDetails(raw, taken)
	if err != nil {
		t.Fatal(err)
	}
	fromCLI, err := ImportAWSAuthorizationDetails(data, taken)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fromCLI, fromAPI); diff != "" {
		t.Errorf("URL-encoded form differs (-cli +api)\n%s", diff)
	}
	if fromCLI.Scope != "aws:"+acct {
		t.Errorf("scope = %q", fromCLI.Scope)
	}
}

func TestEvaluateAWS(t *testing.T) {
	m := loadModel(t, "aws-authorization-details.json")
	tests := []struct {
		name      string
		identity  string
		perm      string
		resources []string
		allowed   bool
		denied    bool
	}{
		{"group managed policy", awsID("user/christophe"), "iam:CreateUser", nil, true, false},
		{"actions are case-insensitive", awsID("user/christophe"), "IAM:createuser", nil, true, false},
		{"explicit deny wins over group allow", awsID("user/christophe"), "organizations:DescribeOrganization", nil, false, true},
		{"not granted", awsID("user/christophe"), "s3:GetObject", nil, false, false},
		{"resource pattern matches", awsID("user/ci/ci-deployer"), "s3:GetObject", []string{"arn:aws:s3:::deploy-artifacts/build/app.zip"}, true, false},
		{"resource pattern does not match", awsID("user/ci/ci-deployer"), "s3:GetObject", []string{"arn:aws:s3:::payroll/export.csv"}, false, false},
		{"bucket vs object ARN", awsID("user/ci/ci-deployer"), "s3:ListBucket", []string{"arn:aws:s3:::deploy-artifacts"}, true, false},
		{"unknown resource matches", awsID("user/ci/ci-deployer"), "s3:PutObject", nil, true, false},
		{"action wildcard in default version", awsID("user/ci/ci-deployer"), "lambda:GetFunctionConfiguration", []string{"arn:aws:lambda:us-east-1:" + acct + ":function:app-api"}, true, false},
		{"non-default version not in force", awsID("user/ci/ci-deployer"), "lambda:DeleteFunction", nil, false, false},
		{"NotAction allows within boundary", awsID("role/data-pipeline"), "s3:PutObject", nil, true, false},
		{"NotAction allows, boundary does not", awsID("role/data-pipeline"), "ec2:RunInstances", nil, false, false},
		{"NotAction excludes", awsID("role/data-pipeline"), "iam:CreateUser", nil, false, false},
		{"deny statement", awsID("role/data-pipeline"), "s3:DeleteBucket", nil, false, true},
		{"conditional allow counts", awsID("role/data-pipeline"), "iam:PassRole", []string{"arn:aws:iam::" + acct + ":role/data-loader"}, true, false},
		{"conditional allow resource mismatch", awsID("role/data-pipeline"), "iam:PassRole", []string{"arn:aws:iam::" + acct + ":role/admin"}, false, false},
		{"built-in AdministratorAccess", awsID("role/app-backend"), "ec2:TerminateInstances", nil, true, false},
		{"unknown identity", awsID("role/nobody"), "s3:GetObject", nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := m.Evaluate(Request{Identity: tt.identity, Provider: events.Provider_PROVIDER_AWS, Permission: tt.perm, Resources: tt.resources})
			if d.Allowed != tt.allowed || d.Denied != tt.denied {
				t.Errorf("allowed=%v denied=%v, want allowed=%v denied=%v (matched %v)", d.Allowed, d.Denied, tt.allowed, tt.denied, d.Matched)
			}
		})
	}
}

func TestPolicyVariables(t *testing.T) {
	m := NewModel()
	doc, err := ParsePolicyDocument(json.RawMessage(`{"Statement":[{"Effect":"Allow","Action":"iam:CreateAccessKey","Resource":"arn:aws:iam::1:user/${aws:username}"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	id := events.AWSIdentityID("arn:aws:iam::1:user/bob")
	if err := m.Import(&Snapshot{Scope: "aws:1", Taken: taken,
		Definitions: []Definition{{Key: "inline:x", Name: "self-keys", Kind: KindAWSInlinePolicy, Statements: doc.Statements}},
		Bindings:    []Binding{{Principal: id, Definition: "inline:x"}},
	}); err != nil {
		t.Fatal(err)
	}
	for res, want := range map[string]bool{"arn:aws:iam::1:user/bob": true, "arn:aws:iam::1:user/alice": false} {
		d := m.Evaluate(Request{Identity: id, Provider: events.Provider_PROVIDER_AWS, Permission: "iam:CreateAccessKey", Resources: []string{res}, UserName: "bob"})
		if d.Allowed != want {
			t.Errorf("%s: allowed=%v, want %v", res, d.Allowed, want)
		}
	}
}

func TestEvaluateGCP(t *testing.T) {
	m := loadModel(t, "gcp-ancestors-iam-policy.json", "gcp-role-reportPublisher.json")
	sa := func(n string) string { return events.GCPServiceAccountID(n + "@acme-prod.iam.gserviceaccount.com") }
	tests := []struct {
		name, identity, perm, project string
		allowed                       bool
	}{
		{"predefined role", sa("reporting"), "storage.objects.get", "acme-prod", true},
		{"predefined role, other permission", sa("reporting"), "storage.objects.delete", "acme-prod", false},
		{"custom role imported", sa("reporting"), "pubsub.topics.publish", "acme-prod", true},
		{"binding on another project", sa("reporting"), "storage.objects.get", "acme-dev", false},
		{"editor pattern", sa("legacy-ci"), "compute.instances.create", "acme-prod", true},
		{"editor excludes setIamPolicy", sa("legacy-ci"), "resourcemanager.projects.setIamPolicy", "acme-prod", false},
		{"token creator", sa("deployer"), "iam.serviceAccounts.getAccessToken", "acme-prod", true},
		{"conditional binding counts", sa("contractor-sync"), "secretmanager.versions.access", "acme-prod", true},
		{"owner", events.GCPUserID("alice@acme.example"), "resourcemanager.projects.setIamPolicy", "acme-prod", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := m.Evaluate(Request{Identity: tt.identity, Provider: events.Provider_PROVIDER_GCP, Permission: tt.perm, Account: tt.project})
			if d.Allowed != tt.allowed {
				t.Errorf("allowed=%v, want %v", d.Allowed, tt.allowed)
			}
		})
	}
	if !m.IsAdmin(events.GCPUserID("alice@acme.example")) || m.IsAdmin(sa("legacy-ci")) {
		t.Error("owner must be admin, editor must not")
	}
	if _, ok := m.Identity(sa("reporting")); !ok {
		t.Error("service account from bindings not listed as identity")
	}
	for _, p := range m.Principals() {
		if p == "" || p == "gcp:deleted:serviceAccount:old-job@acme-prod.iam.gserviceaccount.com?uid=104736256294618833310" {
			t.Errorf("deleted member imported as %q", p)
		}
	}
}

func TestUnresolvedRole(t *testing.T) {
	m := loadModel(t, "gcp-ancestors-iam-policy.json")
	sa := events.GCPServiceAccountID("reporting@acme-prod.iam.gserviceaccount.com")
	var unresolved []string
	for _, e := range m.Entries(sa) {
		if e.Unresolved {
			unresolved = append(unresolved, e.Grant)
		}
	}
	if diff := cmp.Diff([]string{"projects/acme-prod/roles/reportPublisher"}, unresolved); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	if d := m.Evaluate(Request{Identity: sa, Provider: events.Provider_PROVIDER_GCP, Permission: "pubsub.topics.publish", Account: "acme-prod"}); d.Allowed {
		t.Error("a role whose definition is unknown must grant nothing")
	}
}

func TestEvaluateK8s(t *testing.T) {
	m := loadModel(t, "k8s-rbac.json")
	sa := func(ns, n string) string { return events.K8sServiceAccountID("prod", ns, n) }
	tests := []struct {
		name, identity, perm, ns, group, resName string
		groups                                   []string
		allowed                                  bool
	}{
		{"Role in its namespace", sa("payments", "deploy-bot"), "update deployments", "payments", "apps", "", nil, true},
		{"Role outside its namespace", sa("payments", "deploy-bot"), "update deployments", "default", "apps", "", nil, false},
		{"wrong API group", sa("payments", "deploy-bot"), "update deployments", "payments", "extensions", "", nil, false},
		{"unknown API group matches", sa("payments", "deploy-bot"), "update deployments", "payments", unknownAPIGroup, "", nil, true},
		{"verb not granted", sa("payments", "deploy-bot"), "delete deployments", "payments", "apps", "", nil, false},
		{"ClusterRole through RoleBinding, subresource", sa("payments", "api"), "get pods/log", "payments", "", "", nil, true},
		{"subresource not granted", sa("payments", "api"), "create pods/exec", "payments", "", "", nil, false},
		{"resourceNames match", sa("ingress", "ingress-controller"), "get secrets", "ingress", "", "ingress-tls", nil, true},
		{"resourceNames mismatch", sa("ingress", "ingress-controller"), "get secrets", "ingress", "", "db-password", nil, false},
		{"cluster-admin ClusterRoleBinding", sa("argo", "argo-server"), "create clusterrolebindings", "", "rbac.authorization.k8s.io", "", nil, true},
		{"non-resource URL", sa("argo", "argo-server"), "get /metrics", "", "", "", nil, true},
		{"implicit system:authenticated group", sa("payments", "api"), "create selfsubjectaccessreviews", "", "authorization.k8s.io", "", nil, true},
		{"user RoleBinding", events.K8sUserID("prod", "system:admin"), "list pods", "default", "", "", nil, true},
		{"user other namespace", events.K8sUserID("prod", "system:admin"), "list pods", "ns1", "", "", nil, false},
		{"cluster-scoped not via RoleBinding", events.K8sUserID("prod", "system:admin"), "list nodes", "", "", "", nil, false},
		{"group from the event", events.K8sUserID("prod", "kubernetes-admin"), "delete nodes", "", "", "", []string{"system:masters"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Request{Identity: tt.identity, Provider: events.Provider_PROVIDER_K8S, Permission: tt.perm, Namespace: tt.ns, APIGroup: tt.group, Groups: tt.groups}
			if tt.resName != "" {
				r.ResourceNames = []string{tt.resName}
			}
			if d := m.Evaluate(r); d.Allowed != tt.allowed {
				t.Errorf("allowed=%v, want %v", d.Allowed, tt.allowed)
			}
		})
	}
	if !m.IsAdmin(sa("argo", "argo-server")) || m.IsAdmin(sa("payments", "api")) {
		t.Error("argo-server must be admin, api must not")
	}
}

func TestCredentialReport(t *testing.T) {
	m := loadModel(t, "aws-authorization-details.json", "aws-credential-report.csv")
	got := m.Credentials()
	want := []Credential{
		{ID: awsID("user/christophe") + "#access_key_1", Identity: awsID("user/christophe"), Active: true,
			LastRotated: time.Date(2024, 6, 10, 8, 0, 0, 0, time.UTC), LastUsed: time.Date(2024, 8, 1, 13, 33, 0, 0, time.UTC), Source: FormatAWSCredentialReport},
		{ID: awsID("user/ci/ci-deployer") + "#access_key_1", Identity: awsID("user/ci/ci-deployer"), Active: true,
			LastRotated: time.Date(2022, 11, 20, 16, 41, 0, 0, time.UTC), LastUsed: time.Date(2024, 7, 31, 22, 10, 0, 0, time.UTC), Source: FormatAWSCredentialReport},
		{ID: awsID("user/ci/ci-deployer") + "#access_key_2", Identity: awsID("user/ci/ci-deployer"), Active: true,
			LastRotated: time.Date(2023, 1, 5, 9, 0, 0, 0, time.UTC), Source: FormatAWSCredentialReport},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("credentials (-want +got)\n%s", diff)
	}
	id, _ := m.Identity(awsID("user/ci/ci-deployer"))
	if id.Kind != "access_key_user" || id.Created.IsZero() {
		t.Errorf("ci-deployer = %+v, want an access_key_user with its creation time", id)
	}
	if id, _ := m.Identity(awsID("role/data-pipeline")); id.Owner != "data-team" || id.Kind != "workload_role" {
		t.Errorf("data-pipeline = %+v, want owner data-team from its Owner tag", id)
	}
}

func TestDetectFormat(t *testing.T) {
	tests := map[string]string{
		`{"UserDetailList":[]}`:                                                                      FormatAWSAuthorizationDetails,
		"user,arn,user_creation_time\n":                                                              FormatAWSCredentialReport,
		`{"Content":"","ReportFormat":"text/csv"}`:                                                   FormatAWSCredentialReport,
		`{"bindings":[],"etag":"x","version":1}`:                                                     FormatGCPIAMPolicy,
		`[{"id":"p","type":"project","policy":{}}]`:                                                  FormatGCPIAMPolicy,
		`{"name":"roles/x","includedPermissions":["a.b.c"]}`:                                         FormatGCPRoles,
		`[{"name":"roles/x","stage":"GA","title":"X"}]`:                                              FormatGCPRoles,
		`{"apiVersion":"v1","kind":"List","items":[]}`:                                               FormatK8sRBAC,
		`{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"x"}}`: FormatK8sRBAC,
	}
	for in, want := range tests {
		got, err := DetectFormat([]byte(in))
		if err != nil || got != want {
			t.Errorf("DetectFormat(%.40q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{``, `[]`, `{"kind":"Pod","apiVersion":"v1"}`, `{"hello":1}`, `not json`, `[1,2]`} {
		if _, err := DetectFormat([]byte(in)); !errors.Is(err, ErrFormat) {
			t.Errorf("DetectFormat(%q) err = %v, want ErrFormat", in, err)
		}
	}
}

func TestCredentialReportJSONEnvelope(t *testing.T) {
	csv, err := os.ReadFile("testdata/aws-credential-report.csv")
	if err != nil {
		t.Fatal(err)
	}
	env, _ := json.Marshal(map[string]string{
		"Content": encodeBase64(csv), "ReportFormat": "text/csv", "GeneratedTime": "2024-08-01T14:00:00+00:00",
	})
	snaps, err := Parse(env, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 1 || len(snaps[0].Credentials) != 3 || !snaps[0].Taken.Equal(time.Date(2024, 8, 1, 14, 0, 0, 0, time.UTC)) {
		t.Errorf("got %+v", snaps)
	}
}

func TestBuiltinDefinitions(t *testing.T) {
	defs := builtinDefinitions()
	for _, key := range []string{AWSManagedPolicyARN("AdministratorAccess"), AWSManagedPolicyARN("IAMFullAccess"), "roles/owner", "roles/iam.serviceAccountTokenCreator"} {
		if _, ok := defs[key]; !ok {
			t.Errorf("built-in %s missing", key)
		}
	}
	var names []string
	for k := range defs {
		names = append(names, k)
	}
	sort.Strings(names)
	if len(names) < 45 {
		t.Errorf("only %d built-in definitions", len(names))
	}
}

func encodeBase64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// TestAdminMarkersAreSensitive: an admin action is the use of a sensitive permission, so
// every permission that makes a grant admin-equivalent must be sensitive itself.
func TestAdminMarkersAreSensitive(t *testing.T) {
	for prov, markers := range adminMarkers {
		for _, p := range markers {
			if !IsSensitive(prov, p) {
				t.Errorf("%s admin marker %s is not sensitive", prov.Label(), p)
			}
		}
	}
}
