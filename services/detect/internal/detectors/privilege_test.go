package detectors

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

// grantEvent is an allowed event of actor carrying grant changes, as normalize writes them.
func grantEvent(p events.Provider, actor string, kind events.IdentityKind, action string, gs ...*events.GrantChange) *events.Event {
	return &events.Event{
		Id: "ev-" + action, Provider: p, TimeUnixNano: day0.UnixNano(), Account: "acct",
		Identity:     &events.Identity{Id: actor, Kind: kind},
		Action:       &events.Action{Name: action},
		Network:      &events.Network{Ip: "10.1.2.3", UserAgent: "kubectl/v1.29.0"},
		Outcome:      &events.Outcome{Result: events.Result_RESULT_ALLOWED},
		GrantChanges: gs,
	}
}

// TestPrivilegeExpansionGCPAndK8s covers the GCP and Kubernetes grant changes normalize
// derives (SetIamPolicy binding deltas, service-account keys and tokens, custom roles,
// RBAC bindings and rules, service-account tokens), and how severity rises.
func TestPrivilegeExpansionGCPAndK8s(t *testing.T) {
	const (
		gcpSA    = "gcp:deployer@proj.iam.gserviceaccount.com"
		gcpOther = "gcp:billing@proj.iam.gserviceaccount.com"
		gcpHuman = "gcp:user:alice@example.com"
		k8sSA    = "k8s:prod:system:serviceaccount:ci:deployer"
		k8sOther = "k8s:prod:system:serviceaccount:payments:api"
		k8sHuman = "k8s:prod:user:alice"
	)
	sa := events.IdentityKind_IDENTITY_KIND_SERVICE_ACCOUNT
	human := events.IdentityKind_IDENTITY_KIND_HUMAN
	gcp, k8s := events.Provider_PROVIDER_GCP, events.Provider_PROVIDER_K8S
	tests := []struct {
		name string
		ev   *events.Event
		want []summary
	}{
		{
			name: "GCP: an NHI binds roles/owner to another service account",
			ev: grantEvent(gcp, gcpSA, sa, "SetIamPolicy", &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: gcpOther, Grant: "roles/owner",
				Scope: "projects/proj", Mechanism: "set_iam_policy"}),
			want: []summary{{PrivilegeExpansion, gcpSA, gcpOther, "critical", "grant:" + gcpOther + ":roles/owner:projects/proj"}},
		},
		{
			name: "GCP: an NHI grants itself token creator",
			ev: grantEvent(gcp, gcpSA, sa, "SetIamPolicy", &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: gcpSA, Grant: "roles/iam.serviceAccountTokenCreator",
				Scope: "projects/proj", Mechanism: "set_iam_policy"}),
			want: []summary{{PrivilegeExpansion, gcpSA, gcpSA, "critical", "grant:" + gcpSA + ":roles/iam.serviceAccountTokenCreator:projects/proj"}},
		},
		{
			name: "GCP: a person grants roles/viewer: read-only, not raised",
			ev: grantEvent(gcp, gcpHuman, human, "SetIamPolicy", &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: gcpOther, Grant: "roles/viewer",
				Scope: "projects/proj", Mechanism: "set_iam_policy"}),
		},
		{
			name: "GCP: a binding removed is not an expansion",
			ev: grantEvent(gcp, gcpSA, sa, "SetIamPolicy", &events.GrantChange{Op: events.GrantOp_GRANT_OP_REMOVE, Grantee: gcpOther, Grant: "roles/owner",
				Scope: "projects/proj", Mechanism: "set_iam_policy"}),
		},
		{
			name: "GCP: a service-account key created",
			ev: grantEvent(gcp, gcpHuman, human, "google.iam.admin.v1.CreateServiceAccountKey", &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: gcpOther,
				Grant: "gcp:key://iam.googleapis.com/projects/proj/serviceAccounts/billing@proj.iam.gserviceaccount.com/keys/abc", Mechanism: "create_service_account_key"}),
			want: []summary{{PrivilegeExpansion, gcpHuman, gcpOther, "medium", "credential:" + gcpOther + ":create_service_account_key:gcp:key://iam.googleapis.com/projects/proj/serviceAccounts/billing@proj.iam.gserviceaccount.com/keys/abc"}},
		},
		{
			name: "GCP: an NHI mints an access token for another service account",
			ev: grantEvent(gcp, gcpSA, sa, "GenerateAccessToken", &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: gcpOther, Grant: "generate_access_token",
				Mechanism: "generate_access_token"}),
			want: []summary{{PrivilegeExpansion, gcpSA, gcpOther, "high", "credential:" + gcpOther + ":generate_access_token:generate_access_token"}},
		},
		{
			name: "GCP: a custom role gains setIamPolicy",
			ev: grantEvent(gcp, gcpHuman, human, "UpdateRole", &events.GrantChange{Op: events.GrantOp_GRANT_OP_REPLACE, Grantee: "projects/proj/roles/deployer",
				Grant: "projects/proj/roles/deployer", Permissions: []string{"resourcemanager.projects.setIamPolicy", "storage.objects.get"}, Mechanism: "update_role"}),
			want: []summary{{PrivilegeExpansion, gcpHuman, "projects/proj/roles/deployer", "medium", "grant:projects/proj/roles/deployer:projects/proj/roles/deployer:"}},
		},
		{
			name: "K8s: cluster-admin bound to a service account by a service account",
			ev: grantEvent(k8s, k8sSA, sa, "create", &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: k8sOther, Grant: "ClusterRole/cluster-admin",
				Scope: "*", Mechanism: "cluster_role_binding"}),
			want: []summary{{PrivilegeExpansion, k8sSA, k8sOther, "critical", "grant:" + k8sOther + ":ClusterRole/cluster-admin:*"}},
		},
		{
			name: "K8s: edit bound by a person",
			ev: grantEvent(k8s, k8sHuman, human, "create", &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: k8sOther, Grant: "ClusterRole/edit",
				Scope: "payments", Mechanism: "role_binding"}),
			want: []summary{{PrivilegeExpansion, k8sHuman, k8sOther, "low", "grant:" + k8sOther + ":ClusterRole/edit:payments"}},
		},
		{
			name: "K8s: a ClusterRole rewritten with escalate",
			ev: grantEvent(k8s, k8sHuman, human, "update", &events.GrantChange{Op: events.GrantOp_GRANT_OP_REPLACE, Grantee: "/clusterroles/ops",
				Grant: "ClusterRole/ops", Permissions: []string{"get pods", "escalate clusterroles"}, Scope: "*", Mechanism: "role_rules"}),
			want: []summary{{PrivilegeExpansion, k8sHuman, "/clusterroles/ops", "medium", "grant:/clusterroles/ops:ClusterRole/ops:*"}},
		},
		{
			name: "K8s: a Role rewritten to read pods: routine",
			ev: grantEvent(k8s, k8sHuman, human, "update", &events.GrantChange{Op: events.GrantOp_GRANT_OP_REPLACE, Grantee: "/namespaces/a/roles/r",
				Grant: "Role/r", Permissions: []string{"get pods", "list pods"}, Scope: "a", Mechanism: "role_rules"}),
		},
		{
			name: "K8s: a token minted for another service account",
			ev: grantEvent(k8s, k8sSA, sa, "create", &events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: k8sOther, Grant: "token",
				Scope: "payments", Mechanism: "create_token"}),
			want: []summary{{PrivilegeExpansion, k8sSA, k8sOther, "high", "credential:" + k8sOther + ":create_token:token"}},
		},
		{
			name: "K8s: secrets listed across namespaces",
			ev: func() *events.Event {
				ev := grantEvent(k8s, k8sSA, sa, "list")
				ev.Resources = []*events.Resource{{Id: "/namespaces/payments/secrets", Type: "secrets", Namespace: "payments"}}
				return ev
			}(),
			want: []summary{{PrivilegeExpansion, k8sSA, k8sSA, "high", "secrets:payments"}},
		},
		{
			name: "K8s: secrets of its own namespace",
			ev: func() *events.Event {
				ev := grantEvent(k8s, k8sSA, sa, "get")
				ev.Resources = []*events.Resource{{Id: "/namespaces/ci/secrets/x", Type: "secrets", Namespace: "ci"}}
				return ev
			}(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := newWorld(nil, 4, Env{}).feed(tt.ev)
			if diff := cmp.Diff(sortSummaries(tt.want), summarize(got)); diff != "" {
				t.Errorf("findings mismatch (-want +got):\n%s", diff)
			}
			for _, f := range got {
				checkFinding(t, f)
			}
		})
	}
}

// TestGranteeStateFromCopies checks that a grant delivered to the grantee's partition raises
// the grantee's power, and a later dormant reuse by the grantee is rated with it.
func TestGranteeStateFromCopies(t *testing.T) {
	w := newWorld(nil, 8, Env{})
	grantee := "aws:arn:aws:iam::111122223333:user/svc-backup"
	evs := daily("svc-backup", "AKIAOLD", day0, 3)
	grant := grantEvent(events.Provider_PROVIDER_AWS, "aws:arn:aws:iam::111122223333:user/admin", events.IdentityKind_IDENTITY_KIND_HUMAN, "AttachUserPolicy",
		&events.GrantChange{Op: events.GrantOp_GRANT_OP_ADD, Grantee: grantee, Grant: "arn:aws:iam::aws:policy/AdministratorAccess", Mechanism: "attach_user_policy"})
	grant.TimeUnixNano = day0.Add(5 * 24 * time.Hour).UnixNano()
	evs = append(evs, grant, call("svc-backup", "AKIAOLD", day0.Add(120*24*time.Hour), "198.51.100.7", "aws-sdk-go", "eu-west-1"))
	var dormant []summary
	for _, s := range summarize(w.feed(evs...)) {
		if s.Detector == DormantCredentialReuse {
			dormant = append(dormant, s)
		}
	}
	// Medium, +1 because the grantee now holds admin-equivalent grants.
	want := []summary{{DormantCredentialReuse, grantee, "", "high", "credential:aws:key:AKIAOLD"}}
	if diff := cmp.Diff(want, dormant); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
