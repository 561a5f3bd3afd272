package grants

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

func TestDelta(t *testing.T) {
	m := loadModel(t, "aws-authorization-details.json", "gcp-ancestors-iam-policy.json", "k8s-rbac.json")
	awsSensitive := SensitivePermissions(events.Provider_PROVIDER_AWS)
	iamSensitive := []string{}
	for _, s := range awsSensitive {
		if Glob("iam:*", s, true) {
			iamSensitive = append(iamSensitive, s)
		}
	}
	tests := []struct {
		name          string
		gc            *events.GrantChange
		wantAdded     []string
		wantSensitive []string
	}{
		{
			name: "AdministratorAccess to a new user",
			gc: &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: awsID("user/malicious-iam-user"),
				Grant: AWSManagedPolicyARN("AdministratorAccess"), Mechanism: "attach_user_policy"},
			wantAdded: []string{"*"}, wantSensitive: awsSensitive,
		},
		{
			name: "policy already held through a group adds nothing",
			gc: &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: awsID("user/christophe"),
				Grant: AWSManagedPolicyARN("IAMFullAccess"), Mechanism: "attach_user_policy"},
			wantAdded: []string{}, wantSensitive: []string{},
		},
		{
			name: "group membership brings the group's policies",
			gc: &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: awsID("user/ci/ci-deployer"),
				Grant: "platform-admins", Mechanism: "add_user_to_group"},
			wantAdded: []string{"iam:*", "organizations:DescribeAccount", "organizations:DescribeOrganization",
				"organizations:DescribeOrganizationalUnit", "organizations:DescribePolicy", "organizations:ListChildren",
				"organizations:ListParents", "organizations:ListPolicies", "organizations:ListPoliciesForTarget",
				"organizations:ListRoots", "organizations:ListTargetsForPolicy"},
			wantSensitive: iamSensitive,
		},
		{
			name: "inline policy from the event's document",
			gc: &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: awsID("role/app-backend"),
				Grant: "more", Mechanism: "put_role_policy", Permissions: []string{"s3:GetObject"}},
			wantAdded: []string{}, wantSensitive: []string{},
		},
		{
			name: "inline policy adds to a narrow user",
			gc: &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: awsID("user/ci/ci-deployer"),
				Grant: "keys", Mechanism: "put_user_policy", Permissions: []string{"iam:CreateAccessKey", "s3:GetObject"}},
			// s3:GetObject was held on one bucket only; on "*" it is new.
			wantAdded: []string{"iam:CreateAccessKey", "s3:GetObject"}, wantSensitive: []string{"iam:CreateAccessKey"},
		},
		{
			name: "GCP token creator",
			gc: &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: events.GCPServiceAccountID("reporting@acme-prod.iam.gserviceaccount.com"),
				Grant: "roles/iam.serviceAccountTokenCreator", Scope: "projects/acme-prod", Mechanism: "set_iam_policy"},
			wantAdded: []string{"iam.serviceAccounts.get", "iam.serviceAccounts.getAccessToken", "iam.serviceAccounts.getOpenIdToken",
				"iam.serviceAccounts.implicitDelegation", "iam.serviceAccounts.list", "iam.serviceAccounts.signBlob",
				"iam.serviceAccounts.signJwt"}, // resourcemanager.projects.* came with storage.objectViewer
			wantSensitive: []string{"iam.serviceAccounts.getAccessToken", "iam.serviceAccounts.getOpenIdToken",
				"iam.serviceAccounts.implicitDelegation", "iam.serviceAccounts.signBlob", "iam.serviceAccounts.signJwt"},
		},
		{
			name: "Kubernetes cluster-admin to a service account",
			gc: &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: events.K8sServiceAccountID("prod", "payments", "api"),
				Grant: "cluster-admin", Scope: "*", Mechanism: "cluster_role_binding"},
			wantAdded:     []string{"* *", "* /*"},
			wantSensitive: SensitivePermissions(events.Provider_PROVIDER_K8S),
		},
		{
			name: "Kubernetes role already held cluster-wide",
			gc: &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: events.K8sServiceAccountID("prod", "argo", "argo-server"),
				Grant: "pod-reader", Scope: "argo", Mechanism: "role_binding"},
			wantAdded: []string{}, wantSensitive: []string{},
		},
		{
			name: "removal adds nothing",
			gc: &events.GrantChange{Op: events.GrantOp_GRANT_OP_REMOVE, Grantee: awsID("role/app-backend"),
				Grant: AWSManagedPolicyARN("AdministratorAccess"), Mechanism: "detach_role_policy"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			added, sens := m.Delta(tt.gc)
			sortStrings(tt.wantAdded)
			if diff := cmp.Diff(tt.wantAdded, added); diff != "" {
				t.Errorf("added (-want +got)\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantSensitive, sens); diff != "" {
				t.Errorf("sensitive (-want +got)\n%s", diff)
			}
		})
	}
}

func grantEvent(id string, at time.Time, result events.Result, gcs ...*events.GrantChange) *events.Event {
	return &events.Event{
		Id: id, Provider: events.Provider_PROVIDER_AWS, Account: acct, TimeUnixNano: at.UnixNano(),
		Identity:     &events.Identity{Id: awsID("user/christophe")},
		Action:       &events.Action{Permission: "iam:AttachUserPolicy"},
		Outcome:      &events.Outcome{Result: result},
		GrantChanges: gcs,
	}
}

func TestApply(t *testing.T) {
	m := loadModel(t, "aws-authorization-details.json")
	user := awsID("user/malicious-iam-user")
	attach := &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: user, Grant: AWSManagedPolicyARN("AdministratorAccess"), Mechanism: "attach_user_policy"}
	detach := &events.GrantChange{Op: events.GrantOp_GRANT_OP_REMOVE, Grantee: user, Grant: AWSManagedPolicyARN("AdministratorAccess"), Mechanism: "detach_user_policy"}
	req := Request{Identity: user, Provider: events.Provider_PROVIDER_AWS, Permission: "iam:CreateUser"}

	if ch := m.Apply(grantEvent("denied", taken.Add(time.Hour), events.Result_RESULT_DENIED, attach)); ch != nil || m.Evaluate(req).Allowed {
		t.Fatalf("a denied attach changed the model: %v", ch)
	}
	if ch := m.Apply(grantEvent("old", taken.Add(-time.Hour), events.Result_RESULT_ALLOWED, attach)); ch != nil {
		t.Fatalf("an attach older than the snapshot changed the model: %v", ch)
	}
	ch := m.Apply(grantEvent("e1", taken.Add(time.Hour), events.Result_RESULT_ALLOWED, attach))
	want := []EntryChange{{Entry: Entry{Identity: user, Provider: "aws", Permission: "*", Grant: AWSManagedPolicyARN("AdministratorAccess"), Via: "direct", Scope: "*", Admin: true, Since: taken.Add(time.Hour)}, Active: true}}
	if diff := cmp.Diff(want, ch, cmp.AllowUnexported(Entry{}), cmpEntryIgnore); diff != "" {
		t.Errorf("attach changes (-want +got)\n%s", diff)
	}
	if !m.Evaluate(req).Allowed {
		t.Error("attached AdministratorAccess does not allow iam:CreateUser")
	}
	if ch := m.Apply(grantEvent("e1", taken.Add(time.Hour), events.Result_RESULT_ALLOWED, attach)); len(ch) != 0 {
		t.Errorf("applying the same event twice changed %v", ch)
	}
	ch = m.Apply(grantEvent("e2", taken.Add(2*time.Hour), events.Result_RESULT_ALLOWED, detach))
	if len(ch) != 1 || ch[0].Active {
		t.Errorf("detach changes = %+v, want one entry gone", ch)
	}
	if m.Evaluate(req).Allowed {
		t.Error("detached policy still allows")
	}

	// A new default version of a customer managed policy changes what its holders may do.
	newVersion := &events.GrantChange{Op: events.GrantOp_GRANT_OP_REPLACE, Grant: "arn:aws:iam::" + acct + ":policy/DeployLambda",
		Mechanism: "create_policy_version", Permissions: []string{"lambda:*"}}
	added, sens := m.Delta(newVersion)
	if diff := cmp.Diff([]string{"lambda:*"}, added); diff != "" {
		t.Errorf("new version delta (-want +got)\n%s", diff)
	}
	// UpdateFunctionCode was held on app-* functions only; now it is on every function.
	if diff := cmp.Diff([]string{"lambda:CreateFunction", "lambda:UpdateFunctionCode", "lambda:UpdateFunctionConfiguration"}, sens); diff != "" {
		t.Errorf("new version sensitive (-want +got)\n%s", diff)
	}
	ch = m.Apply(grantEvent("e3", taken.Add(3*time.Hour), events.Result_RESULT_ALLOWED, newVersion))
	if len(ch) == 0 || ch[0].Entry.Identity != awsID("user/ci/ci-deployer") {
		t.Errorf("policy version changes = %+v, want ci-deployer's entries", ch)
	}
	if !m.Evaluate(Request{Identity: awsID("user/ci/ci-deployer"), Provider: events.Provider_PROVIDER_AWS, Permission: "lambda:DeleteFunction"}).Allowed {
		t.Error("the new default version is not in force")
	}

	// A later snapshot replaces what events said before it.
	snaps, err := ReadFile("testdata/aws-authorization-details.json", ImportOptions{Taken: taken.Add(4 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Import(snaps[0]); err != nil {
		t.Fatal(err)
	}
	if m.Evaluate(Request{Identity: awsID("user/ci/ci-deployer"), Provider: events.Provider_PROVIDER_AWS, Permission: "lambda:DeleteFunction"}).Allowed {
		t.Error("an event older than the new snapshot is still in force")
	}
}

func TestApplyMembershipAndKeys(t *testing.T) {
	m := loadModel(t, "aws-authorization-details.json")
	deployer := awsID("user/ci/ci-deployer")
	join := &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: deployer, Grant: "platform-admins", Mechanism: "add_user_to_group"}
	m.Apply(grantEvent("j", taken.Add(time.Hour), events.Result_RESULT_ALLOWED, join))
	if !m.IsAdmin(deployer) {
		t.Error("joining platform-admins did not make ci-deployer an admin")
	}
	leave := &events.GrantChange{Op: events.GrantOp_GRANT_OP_REMOVE, Grantee: deployer, Grant: "platform-admins", Mechanism: "remove_user_from_group"}
	m.Apply(grantEvent("l", taken.Add(2*time.Hour), events.Result_RESULT_ALLOWED, leave))
	if m.IsAdmin(deployer) {
		t.Error("leaving platform-admins kept ci-deployer an admin")
	}

	ev := &events.Event{
		Id: "k", Provider: events.Provider_PROVIDER_AWS, Account: acct, TimeUnixNano: taken.Add(time.Hour).UnixNano(),
		Identity: &events.Identity{Id: awsID("user/christophe")},
		Action:   &events.Action{Permission: "iam:CreateAccessKey"},
		Outcome:  &events.Outcome{Result: events.Result_RESULT_ALLOWED},
		Resources: []*events.Resource{
			{Id: "arn:aws:iam::" + acct + ":user/malicious-iam-user", Type: "AWS::IAM::User"},
			{Id: "AKIATKKUJMKQ2EXAMPLE", Type: "AWS::IAM::AccessKey", Name: "AKIATKKUJMKQ2EXAMPLE"},
		},
	}
	m.Apply(ev)
	found := false
	for _, c := range m.Credentials() {
		if c.ID == "aws:key:AKIATKKUJMKQ2EXAMPLE" {
			found = c.Identity == awsID("user/malicious-iam-user") && c.Active && c.LastRotated.Equal(taken.Add(time.Hour))
		}
	}
	if !found {
		t.Errorf("created key not recorded: %+v", m.Credentials())
	}
}

var cmpEntryIgnore = cmp.FilterPath(func(p cmp.Path) bool {
	switch p.Last().String() {
	case ".prov", ".stmt", ".def", ".rule", ".verb", ".res", ".url":
		return true
	}
	return false
}, cmp.Ignore())

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
