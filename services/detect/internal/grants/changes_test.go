package grants

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

// The grant changes in these tests have the shapes normalize emits (one change per policy
// statement, group ARNs, "Role/name" role refs, binding object paths, …); the real
// normalizer's output over the repository's audit logs is tested in cmd/nhiwatch
// (TestNormalizedGrantChanges).

func changeEvent(prov events.Provider, account, id string, at time.Time, gcs ...*events.GrantChange) *events.Event {
	return &events.Event{
		Id: id, Provider: prov, Account: account, TimeUnixNano: at.UnixNano(),
		Identity:     &events.Identity{Id: "actor"},
		Action:       &events.Action{Permission: "x"},
		Outcome:      &events.Outcome{Result: events.Result_RESULT_ALLOWED},
		GrantChanges: gcs,
	}
}

func awsChange(m *Model, t *testing.T, id string, gcs ...*events.GrantChange) []EntryChange {
	t.Helper()
	return m.Apply(changeEvent(events.Provider_PROVIDER_AWS, acct, id, taken.Add(time.Hour), gcs...))
}

func allowed(m *Model, identity, perm string, resources ...string) bool {
	return m.Evaluate(Request{Identity: identity, Provider: events.Provider_PROVIDER_AWS, Permission: perm, Resources: resources}).Allowed
}

func permissionsOf(m *Model, identity string) []string {
	var out []string
	for _, e := range m.Entries(identity) {
		out = append(out, e.Grant+" "+e.Permission)
	}
	slices.Sort(out)
	return out
}

func TestApplyInlinePolicyStatements(t *testing.T) {
	m := loadModel(t, "aws-authorization-details.json")
	user := awsID("user/ci/ci-deployer")
	// PutUserPolicy of a two-statement document: normalize sends one change per statement.
	put := []*events.GrantChange{
		{Op: events.GrantOp_GRANT_OP_ADD, Grantee: user, Grant: "artifacts-rw", Mechanism: "put_user_policy",
			Permissions: []string{"s3:PutObject", "s3:GetObject"}, Scope: "arn:aws:s3:::deploy-artifacts/*,arn:aws:s3:::deploy-staging/*"},
		{Op: events.GrantOp_GRANT_OP_ADD, Grantee: user, Grant: "artifacts-rw", Mechanism: "put_user_policy",
			Permissions: []string{"s3:PutObject"}, Scope: "arn:aws:s3:::deploy-staging/locked/*", Deny: true},
	}
	awsChange(m, t, "put", put...)
	d, ok := m.Definition(InlinePolicyKey(user, "artifacts-rw"))
	if !ok || len(d.Statements) != 2 {
		t.Fatalf("inline policy = %+v, want both statements", d)
	}
	for _, tt := range []struct {
		res  string
		want bool
	}{
		{"arn:aws:s3:::deploy-staging/build/app.zip", true},
		{"arn:aws:s3:::deploy-staging/locked/app.zip", false},
		{"arn:aws:s3:::other-bucket/app.zip", false},
	} {
		if got := allowed(m, user, "s3:PutObject", tt.res); got != tt.want {
			t.Errorf("s3:PutObject on %s allowed = %v, want %v", tt.res, got, tt.want)
		}
	}
	// Putting the policy again with one statement replaces the document.
	awsChange(m, t, "put2", &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: user, Grant: "artifacts-rw",
		Mechanism: "put_user_policy", Permissions: []string{"s3:GetObject"}, Scope: "*"})
	if allowed(m, user, "s3:PutObject", "arn:aws:s3:::deploy-staging/build/app.zip") {
		t.Error("the replaced document still allows s3:PutObject")
	}
	m.Apply(changeEvent(events.Provider_PROVIDER_AWS, acct, "del", taken.Add(2*time.Hour),
		&events.GrantChange{Op: events.GrantOp_GRANT_OP_REMOVE, Grantee: user, Grant: "artifacts-rw", Mechanism: "delete_user_policy"}))
	for _, p := range permissionsOf(m, user) {
		if p == "artifacts-rw s3:GetObject" {
			t.Error("deleted inline policy still in force")
		}
	}
}

func TestApplyIgnoresWhatIsNotAGrant(t *testing.T) {
	m := loadModel(t, "aws-authorization-details.json")
	role := awsID("role/app-backend")
	before := permissionsOf(m, role)
	target := awsID("user/ci/ci-deployer")
	ch := awsChange(m, t, "e",
		// Trust policies say who may assume the role, not what the role may do.
		&events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: role, Grant: "trust_policy", Mechanism: "create_role",
			Permissions: []string{"sts:AssumeRole"}, Principals: []string{"aws:arn:aws:iam::193672423079:root"}},
		&events.GrantChange{Op: events.GrantOp_GRANT_OP_REPLACE, Grantee: role, Grant: "trust_policy", Mechanism: "update_assume_role_policy",
			Permissions: []string{"sts:AssumeRole"}, Principals: []string{"*"}},
		&events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: target, Grant: "login_profile", Mechanism: "create_login_profile"},
		&events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: "*", Grant: "arn:aws:s3:::b", Mechanism: "put_bucket_policy",
			Permissions: []string{"s3:GetObject"}, Scope: "arn:aws:s3:::b/*"},
		&events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: "arn:aws:ec2:us-east-1:" + acct + ":instance/i-1",
			Grant: role, Permissions: []string{"iam:PassRole"}, Mechanism: "pass_role"},
		&events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: target, Grant: "ssh_public_key", Mechanism: "upload_ssh_public_key"},
		&events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: target, Grant: "x", Mechanism: "a_mechanism_normalize_may_add_later"},
	)
	if len(ch) != 0 {
		t.Errorf("non-grant changes changed entries: %+v", ch)
	}
	if diff := cmp.Diff(before, permissionsOf(m, role)); diff != "" {
		t.Errorf("role grants (-want +got)\n%s", diff)
	}
	for _, e := range m.Entries(target) {
		if e.Unresolved {
			t.Errorf("unresolved grant %s from a non-grant change", e.Grant)
		}
	}
}

func TestApplyAccessKeys(t *testing.T) {
	m := loadModel(t, "aws-authorization-details.json")
	user := awsID("user/malicious-iam-user")
	create := &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: user, Grant: "aws:key:AKIAXAFZN8JEPF6L682H", Mechanism: "create_access_key"}
	if ch := awsChange(m, t, "k", create); len(ch) != 0 {
		t.Errorf("a key is not a grant: %+v", ch)
	}
	if es := m.Entries(user); len(es) != 0 {
		t.Errorf("a key gave grants: %+v", es)
	}
	want := Credential{ID: "aws:key:AKIAXAFZN8JEPF6L682H", Identity: user, Active: true, LastRotated: taken.Add(time.Hour), Source: "event"}
	cred := func() Credential {
		for _, c := range m.Credentials() {
			if c.ID == want.ID {
				return c
			}
		}
		return Credential{}
	}
	if diff := cmp.Diff(want, cred()); diff != "" {
		t.Errorf("created key (-want +got)\n%s", diff)
	}
	m.Apply(changeEvent(events.Provider_PROVIDER_AWS, acct, "off", taken.Add(2*time.Hour),
		&events.GrantChange{Op: events.GrantOp_GRANT_OP_REMOVE, Grantee: user, Grant: want.ID, Mechanism: "update_access_key"}))
	if c := cred(); c.Active || !c.LastRotated.Equal(want.LastRotated) {
		t.Errorf("deactivated key = %+v", c)
	}
	m.Apply(changeEvent(events.Provider_PROVIDER_AWS, acct, "on", taken.Add(3*time.Hour),
		&events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: user, Grant: want.ID, Mechanism: "update_access_key"}))
	if c := cred(); !c.Active || !c.LastRotated.Equal(want.LastRotated) {
		t.Errorf("reactivated key = %+v, want active with its first rotation time", c)
	}
}

func TestApplyPermissionsBoundary(t *testing.T) {
	m := loadModel(t, "aws-authorization-details.json")
	role := awsID("role/app-backend") // AdministratorAccess
	boundary := "arn:aws:iam::" + acct + ":policy/DataPipelineBoundary"
	if !allowed(m, role, "iam:CreateUser") {
		t.Fatal("app-backend is not admin before the boundary")
	}
	awsChange(m, t, "b", &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: role, Grant: boundary,
		Mechanism: "put_role_permissions_boundary", Deny: true})
	if allowed(m, role, "iam:CreateUser") {
		t.Error("the boundary does not limit app-backend")
	}
	for _, e := range m.Entries(role) {
		if e.Grant == boundary {
			t.Errorf("a boundary gave the entry %+v", e)
		}
	}
	m.Apply(changeEvent(events.Provider_PROVIDER_AWS, acct, "nb", taken.Add(2*time.Hour),
		&events.GrantChange{Op: events.GrantOp_GRANT_OP_REMOVE, Grantee: role, Mechanism: "delete_role_permissions_boundary", Deny: true}))
	if !allowed(m, role, "iam:CreateUser") {
		t.Error("deleting the boundary did not lift it")
	}
}

func TestApplyPolicyVersions(t *testing.T) {
	m := loadModel(t, "aws-authorization-details.json")
	deployer := awsID("user/ci/ci-deployer")
	policy := "arn:aws:iam::" + acct + ":policy/DeployLambda"
	if !allowed(m, deployer, "lambda:UpdateFunctionCode", "arn:aws:lambda:us-east-1:"+acct+":function:app-api") {
		t.Fatal("v2 does not allow app-* functions")
	}
	// normalize names the policy as grantee and grant of a new default version.
	newVersion := []*events.GrantChange{
		{Op: events.GrantOp_GRANT_OP_REPLACE, Grantee: policy, Grant: policy, Mechanism: "create_policy_version", Permissions: []string{"lambda:*"}, Scope: "*"},
		{Op: events.GrantOp_GRANT_OP_REPLACE, Grantee: policy, Grant: policy, Mechanism: "create_policy_version", Permissions: []string{"iam:PassRole"}, Scope: "*"},
	}
	wantAdded := []string{"iam:PassRole", "lambda:*"}
	var before [][]string
	for _, gc := range newVersion {
		added, _ := m.Delta(gc)
		before = append(before, added)
	}
	awsChange(m, t, "v3", newVersion...)
	if !allowed(m, deployer, "iam:PassRole") || !allowed(m, deployer, "lambda:DeleteFunction") {
		t.Error("both statements of the new version must be in force")
	}
	var after [][]string
	for _, gc := range newVersion {
		added, _ := m.Delta(gc)
		after = append(after, added)
	}
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("Delta differs before and after Apply (-before +after)\n%s", diff)
	}
	if got := append(append([]string(nil), before[0]...), before[1]...); !slices.Equal(sortedCopy(got), wantAdded) {
		t.Errorf("delta = %v, want %v", got, wantAdded)
	}
	awsChange(m, t, "v3", newVersion...) // again: no change, Delta still the same
	if added, _ := m.Delta(newVersion[0]); !slices.Equal(added, before[0]) {
		t.Errorf("Delta after a repeated Apply = %v, want %v", added, before[0])
	}
	// Back to v1, known from the export's PolicyVersionList.
	m.Apply(changeEvent(events.Provider_PROVIDER_AWS, acct, "v1", taken.Add(2*time.Hour),
		&events.GrantChange{Op: events.GrantOp_GRANT_OP_REPLACE, Grantee: policy, Grant: policy, Mechanism: "set_default_policy_version", Scope: "v1"}))
	if allowed(m, deployer, "iam:PassRole") {
		t.Error("set_default_policy_version v1 left the v3 document in force")
	}
	if d, _ := m.Definition(policy); d.Version != "v1" {
		t.Errorf("default version = %q, want v1", d.Version)
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	slices.Sort(out)
	return out
}

func TestApplyGCP(t *testing.T) {
	m := loadModel(t, "gcp-ancestors-iam-policy.json", "gcp-role-reportPublisher.json")
	at := taken.Add(time.Hour)
	gcp := func(id string, gcs ...*events.GrantChange) []EntryChange {
		return m.Apply(changeEvent(events.Provider_PROVIDER_GCP, "acme-prod", id, at, gcs...))
	}
	req := func(id, perm string, resources ...string) bool {
		return m.Evaluate(Request{Identity: id, Provider: events.Provider_PROVIDER_GCP, Permission: perm, Account: "acme-prod", Resources: resources}).Allowed
	}
	reporting := events.GCPServiceAccountID("reporting@acme-prod.iam.gserviceaccount.com")
	deployer := events.GCPServiceAccountID("deployer@acme-prod.iam.gserviceaccount.com")

	// Binding deltas: members as normalize gives them.
	ch := gcp("delta",
		&events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: reporting, Grant: "roles/secretmanager.secretAccessor",
			Scope: "projects/acme-prod", Mechanism: "set_iam_policy", Principals: []string{"serviceAccount:reporting@acme-prod.iam.gserviceaccount.com"}},
		&events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: "group:sre@acme.example", Grant: "roles/viewer",
			Scope: "projects/acme-prod", Mechanism: "set_iam_policy"},
		&events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: "deleted:serviceAccount:gone@acme-prod.iam.gserviceaccount.com?uid=1",
			Grant: "roles/owner", Scope: "projects/acme-prod", Mechanism: "set_iam_policy"})
	if !req(reporting, "secretmanager.versions.access") || len(ch) == 0 {
		t.Errorf("binding delta not in force: %+v", ch)
	}
	if !slices.Contains(m.Principals(), "gcp:group:sre@acme.example") {
		t.Errorf("group member not mapped to its principal: %v", m.Principals())
	}
	for _, p := range m.Principals() {
		if p == "gcp:deleted:serviceAccount:gone@acme-prod.iam.gserviceaccount.com?uid=1" || p == "" {
			t.Errorf("a deleted member holds a binding: %q", p)
		}
	}

	// A whole policy written without deltas replaces every binding on the resource.
	gcp("whole",
		&events.GrantChange{Op: events.GrantOp_GRANT_OP_REPLACE, Grantee: deployer, Grant: "roles/iam.serviceAccountTokenCreator",
			Scope: "projects/acme-prod", Mechanism: "set_iam_policy"},
		&events.GrantChange{Op: events.GrantOp_GRANT_OP_REPLACE, Grantee: "user:alice@acme.example", Grant: "roles/owner",
			Scope: "projects/acme-prod", Mechanism: "set_iam_policy"})
	if req(reporting, "storage.objects.get") || req(reporting, "secretmanager.versions.access") {
		t.Error("bindings left out of the written policy are still in force")
	}
	if !req(deployer, "iam.serviceAccounts.getAccessToken") || !req(events.GCPUserID("alice@acme.example"), "compute.instances.delete") {
		t.Error("bindings of the written policy are not in force")
	}

	// A binding on one Cloud Run service applies to that service only.
	svc := "projects/acme-prod/locations/us-west1/services/api"
	gcp("run", &events.GrantChange{Op: events.GrantOp_GRANT_OP_REPLACE, Grantee: reporting, Grant: "roles/run.invoker",
		Scope: svc, Mechanism: "set_iam_policy"})
	if !req(reporting, "run.routes.invoke", svc) || req(reporting, "run.routes.invoke", "projects/acme-prod/locations/us-west1/services/other") {
		t.Error("a service-level binding must allow on its service only")
	}

	// Custom roles: create, update by delta, delete.
	role := "projects/acme-prod/roles/exporter"
	gcp("cr", &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: role, Grant: role, Permissions: []string{"bigquery.tables.export", "storage.objects.create"},
		Scope: "acme-prod", Mechanism: "create_role"},
		&events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: deployer, Grant: role, Scope: "projects/acme-prod", Mechanism: "set_iam_policy"})
	if !req(deployer, "bigquery.tables.export") {
		t.Error("created role not in force")
	}
	m.Apply(changeEvent(events.Provider_PROVIDER_GCP, "acme-prod", "ur", at.Add(time.Minute),
		&events.GrantChange{Op: events.GrantOp_GRANT_OP_REPLACE, Grantee: role, Grant: role, Permissions: []string{"bigquery.tables.getData"}, Scope: "acme-prod", Mechanism: "update_role"},
		&events.GrantChange{Op: events.GrantOp_GRANT_OP_REMOVE, Grantee: role, Grant: role, Permissions: []string{"bigquery.tables.export"}, Scope: "acme-prod", Mechanism: "update_role"}))
	if d, _ := m.Definition(role); !slices.Equal(d.Permissions, []string{"bigquery.tables.getData", "storage.objects.create"}) {
		t.Errorf("updated role = %v", d.Permissions)
	}
	m.Apply(changeEvent(events.Provider_PROVIDER_GCP, "acme-prod", "dr", at.Add(2*time.Minute),
		&events.GrantChange{Op: events.GrantOp_GRANT_OP_REMOVE, Grantee: role, Grant: role, Scope: "acme-prod", Mechanism: "delete_role"}))
	if req(deployer, "storage.objects.create") {
		t.Error("a deleted role still grants")
	}

	// Service account keys are credentials, not grants.
	key := "gcp:key://iam.googleapis.com/projects/acme-prod/serviceAccounts/deployer@acme-prod.iam.gserviceaccount.com/keys/69049163b1"
	gcp("key", &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: deployer, Grant: key, Mechanism: "create_service_account_key"})
	found := false
	for _, c := range m.Credentials() {
		found = found || c.ID == key && c.Identity == deployer && c.Active
	}
	for _, e := range m.Entries(deployer) {
		if e.Unresolved {
			t.Errorf("key became a grant: %+v", e)
		}
	}
	if !found {
		t.Errorf("key not recorded: %+v", m.Credentials())
	}
}

func TestApplyKubernetes(t *testing.T) {
	m := loadModel(t, "k8s-rbac.json") // cluster "prod"
	at := taken.Add(time.Hour)
	k8s := func(id string, gcs ...*events.GrantChange) {
		m.Apply(changeEvent(events.Provider_PROVIDER_K8S, "prod", id, at, gcs...))
	}
	req := func(id, perm, ns string) bool {
		return m.Evaluate(Request{Identity: id, Provider: events.Provider_PROVIDER_K8S, Permission: perm, Namespace: ns, Account: "prod", APIGroup: unknownAPIGroup}).Allowed
	}
	bot := events.K8sServiceAccountID("prod", "payments", "deploy-bot")
	ci := events.K8sServiceAccountID("prod", "ci", "builder")

	k8s("rb", &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: ci, Grant: "Role/deployer", Scope: "payments",
		Mechanism: "role_binding", Principals: []string{ci}})
	if !req(ci, "patch deployments", "payments") || req(ci, "patch deployments", "default") {
		t.Error("a RoleBinding to Role/deployer must allow in payments only")
	}
	k8s("crb", &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: ci, Grant: "ClusterRole/pod-reader", Scope: "*",
		Mechanism: "cluster_role_binding", Principals: []string{ci}})
	if !req(ci, "list pods", "kube-system") {
		t.Error("ClusterRoleBinding not in force")
	}
	// Role rules rewritten, then the role deleted.
	k8s("rules", &events.GrantChange{Op: events.GrantOp_GRANT_OP_REPLACE, Grantee: "/namespaces/payments/roles/deployer", Grant: "Role/deployer",
		Permissions: []string{"get deployments", "create pods/exec"}, Scope: "payments", Mechanism: "role_rules"})
	if !req(bot, "create pods/exec", "payments") || req(bot, "patch deployments", "payments") {
		t.Error("rewritten Role rules not in force")
	}
	k8s("delrole", &events.GrantChange{Op: events.GrantOp_GRANT_OP_REMOVE, Grantee: "/namespaces/payments/roles/deployer", Grant: "Role/deployer",
		Scope: "payments", Mechanism: "role_rules"})
	if req(bot, "get deployments", "payments") {
		t.Error("a deleted Role still grants")
	}
	// A binding deleted by name (the log names no subjects).
	api := events.K8sServiceAccountID("prod", "payments", "api")
	if !req(api, "get pods", "payments") {
		t.Fatal("api cannot read pods before the deletion")
	}
	k8s("delrb", &events.GrantChange{Op: events.GrantOp_GRANT_OP_REMOVE, Grantee: "/namespaces/payments/rolebindings/api-pod-reader",
		Scope: "payments", Mechanism: "role_binding"})
	if req(api, "get pods", "payments") {
		t.Error("the deleted RoleBinding still grants")
	}
	// GKE writes RBAC through GCP audit logs: the cluster comes from the event's network.
	gke := changeEvent(events.Provider_PROVIDER_GCP, "acme-prod", "gke", at,
		&events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: events.K8sServiceAccountID("prod", "ci", "gke-builder"),
			Grant: "ClusterRole/cluster-admin", Scope: "*", Mechanism: "cluster_role_binding"})
	gke.Network = &events.Network{Cluster: "prod"}
	m.Apply(gke)
	if !m.IsAdmin(events.K8sServiceAccountID("prod", "ci", "gke-builder")) {
		t.Error("a GKE ClusterRoleBinding to cluster-admin is not in force")
	}
	// Token requests are short-lived credentials, not grants.
	k8s("tok", &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: events.K8sServiceAccountID("prod", "kube-system", "kube-proxy"),
		Grant: "token", Scope: "kube-system", Mechanism: "create_token"})
	if es := m.Entries(events.K8sServiceAccountID("prod", "kube-system", "kube-proxy")); len(es) != 0 {
		for _, e := range es {
			if e.Grant == "token" || e.Unresolved {
				t.Errorf("token request became a grant: %+v", e)
			}
		}
	}
}

func TestEntrySince(t *testing.T) {
	m := loadModel(t, "aws-authorization-details.json")
	deployer := awsID("user/ci/ci-deployer")
	for _, e := range m.Entries(deployer) {
		if !e.Since.IsZero() {
			t.Errorf("snapshot entry %s has Since %v", e.Permission, e.Since)
		}
	}
	joined := taken.Add(5 * time.Hour)
	m.Apply(changeEvent(events.Provider_PROVIDER_AWS, acct, "j", joined, &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD,
		Grantee: deployer, Grant: "arn:aws:iam::" + acct + ":group/platform-admins", Mechanism: "add_user_to_group"}))
	n := 0
	for _, e := range m.Entries(deployer) {
		if e.Via == "group:platform-admins" {
			n++
			if !e.Since.Equal(joined) {
				t.Errorf("entry through the group joined at %v has Since %v", joined, e.Since)
			}
		}
	}
	if n == 0 {
		t.Error("no entries through platform-admins")
	}
}
