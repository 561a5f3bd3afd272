package normalize_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/normalize"
)

// Records written for these tests from the providers' documented formats (CloudTrail
// userIdentity element reference, Cloud Audit Logs AuditLog, audit.k8s.io/v1 Event), for the
// cases the public samples lack. Each checks the fields detectors rely on.
func TestRepresentativeRecords(t *testing.T) {
	tests := []struct {
		name   string
		data   string
		want   *events.Event // only Identity, Credential, Delegation, Action.Permission, Outcome.Result, GrantChanges compared
		result events.Result
	}{
		{
			name: "github actions oidc session",
			data: `{"eventVersion":"1.09","eventID":"g1","eventTime":"2024-05-01T10:00:00Z","eventSource":"s3.amazonaws.com","eventName":"PutObject","awsRegion":"us-east-1","sourceIPAddress":"20.1.2.3","recipientAccountId":"111122223333",
				"requestParameters":{"bucketName":"artifacts","key":"build.zip"},
				"userIdentity":{"type":"AssumedRole","principalId":"AROAEXAMPLE:GitHubActions","arn":"arn:aws:sts::111122223333:assumed-role/deploy/GitHubActions","accountId":"111122223333","accessKeyId":"ASIAEXAMPLEGITHUB001",
				"sessionContext":{"sessionIssuer":{"type":"Role","arn":"arn:aws:iam::111122223333:role/ci/deploy","userName":"deploy"},"webIdFederationData":{"federatedProvider":"arn:aws:iam::111122223333:oidc-provider/token.actions.githubusercontent.com","attributes":{}},"attributes":{"creationDate":"2024-05-01T09:59:00Z","mfaAuthenticated":"false"}}}}`,
			want: &events.Event{
				Identity:   &events.Identity{Id: "aws:arn:aws:iam::111122223333:role/deploy", Kind: events.IdentityKind_IDENTITY_KIND_CI_CD, Type: "AssumedRole", Name: "deploy", Account: "111122223333", SessionName: "GitHubActions", PrincipalId: "AROAEXAMPLE:GitHubActions"},
				Credential: &events.Credential{Id: "aws:session:ASIAEXAMPLEGITHUB001", Type: events.CredentialType_CREDENTIAL_TYPE_SESSION, IssuedUnixNano: 1714557540000000000, Delivery: "github_oidc"},
				Delegation: []*events.Delegation{
					{From: "aws:federated:arn:aws:iam::111122223333:oidc-provider/token.actions.githubusercontent.com", To: "aws:arn:aws:iam::111122223333:role/deploy", Kind: events.DelegationKind_DELEGATION_KIND_WEB_IDENTITY},
					{From: "aws:arn:aws:iam::111122223333:role/deploy", To: "arn:aws:sts::111122223333:assumed-role/deploy/GitHubActions", Kind: events.DelegationKind_DELEGATION_KIND_ASSUME_ROLE},
				},
				Action: &events.Action{Permission: "s3:PutObject"},
			},
		},
		{
			name: "eks irsa assume role with web identity",
			data: `{"eventVersion":"1.08","eventID":"w1","eventTime":"2024-05-01T10:00:00Z","eventSource":"sts.amazonaws.com","eventName":"AssumeRoleWithWebIdentity","awsRegion":"eu-west-1","sourceIPAddress":"10.0.1.5","recipientAccountId":"111122223333",
				"userIdentity":{"type":"WebIdentityUser","principalId":"arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC:sts.amazonaws.com:system:serviceaccount:payments:api","userName":"system:serviceaccount:payments:api","identityProvider":"arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC"},
				"requestParameters":{"roleArn":"arn:aws:iam::111122223333:role/payments-api","roleSessionName":"botocore-session-1"},
				"responseElements":{"credentials":{"accessKeyId":"ASIAEXAMPLEIRSA0001","sessionToken":"secret","expiration":"x"},"assumedRoleUser":{"arn":"arn:aws:sts::111122223333:assumed-role/payments-api/botocore-session-1"}}}`,
			want: &events.Event{
				Identity:   &events.Identity{Id: "aws:web-identity:oidc.eks.eu-west-1.amazonaws.com/id/ABC:system:serviceaccount:payments:api", Kind: events.IdentityKind_IDENTITY_KIND_SERVICE_ACCOUNT, Type: "WebIdentityUser", Name: "system:serviceaccount:payments:api", Account: "111122223333", PrincipalId: "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC:sts.amazonaws.com:system:serviceaccount:payments:api"},
				Credential: &events.Credential{Type: events.CredentialType_CREDENTIAL_TYPE_WEB_IDENTITY, Delivery: "irsa"},
				Delegation: []*events.Delegation{{From: "aws:web-identity:oidc.eks.eu-west-1.amazonaws.com/id/ABC:system:serviceaccount:payments:api", To: "aws:arn:aws:iam::111122223333:role/payments-api", Kind: events.DelegationKind_DELEGATION_KIND_WEB_IDENTITY}},
				Action:     &events.Action{Permission: "sts:AssumeRoleWithWebIdentity"},
			},
		},
		{
			name: "denied put role policy with deny statement",
			data: `{"eventVersion":"1.08","eventID":"p1","eventTime":"2024-05-01T10:00:00Z","eventSource":"iam.amazonaws.com","eventName":"PutRolePolicy","recipientAccountId":"111122223333","errorCode":"AccessDenied","errorMessage":"not authorized",
				"userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/bot","accessKeyId":"AKIAEXAMPLEBOT00001"},
				"requestParameters":{"roleName":"r","policyName":"p","policyDocument":"{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\"}}"}}`,
			result: events.Result_RESULT_DENIED,
			want: &events.Event{
				Identity:   &events.Identity{Id: "aws:arn:aws:iam::111122223333:user/bot", Kind: events.IdentityKind_IDENTITY_KIND_ACCESS_KEY_USER, Type: "IAMUser", Account: "111122223333"},
				Credential: &events.Credential{Id: "aws:key:AKIAEXAMPLEBOT00001", Type: events.CredentialType_CREDENTIAL_TYPE_ACCESS_KEY},
				Action:     &events.Action{Permission: "iam:PutRolePolicy"},
			},
		},
		{
			name: "put user policy with allow and deny",
			data: `{"eventVersion":"1.08","eventID":"p2","eventTime":"2024-05-01T10:00:00Z","eventSource":"iam.amazonaws.com","eventName":"PutUserPolicy","recipientAccountId":"111122223333",
				"userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/bot","accessKeyId":"AKIAEXAMPLEBOT00001"},
				"requestParameters":{"userName":"other","policyName":"p","policyDocument":"{\"Statement\":[{\"Effect\":\"Allow\",\"Action\":[\"iam:*\",\"s3:GetObject\"],\"Resource\":\"*\"},{\"Effect\":\"Deny\",\"NotAction\":\"s3:*\",\"Resource\":\"arn:aws:s3:::b/*\"}]}"}}`,
			want: &events.Event{
				Identity:   &events.Identity{Id: "aws:arn:aws:iam::111122223333:user/bot", Kind: events.IdentityKind_IDENTITY_KIND_ACCESS_KEY_USER, Type: "IAMUser", Account: "111122223333"},
				Credential: &events.Credential{Id: "aws:key:AKIAEXAMPLEBOT00001", Type: events.CredentialType_CREDENTIAL_TYPE_ACCESS_KEY},
				Action:     &events.Action{Permission: "iam:PutUserPolicy"},
				GrantChanges: []*events.GrantChange{
					{Op: events.GrantOp_GRANT_OP_ADD, Grantee: "aws:arn:aws:iam::111122223333:user/other", Grant: "p", Permissions: []string{"iam:*", "s3:GetObject"}, Scope: "*", Mechanism: "put_user_policy"},
					{Op: events.GrantOp_GRANT_OP_ADD, Grantee: "aws:arn:aws:iam::111122223333:user/other", Grant: "p", Permissions: []string{"!s3:*"}, Scope: "arn:aws:s3:::b/*", Mechanism: "put_user_policy", Deny: true},
				},
			},
		},
		{
			name: "gcp set iam policy binding deltas",
			data: `{"insertId":"s1","logName":"projects/p/logs/cloudaudit.googleapis.com%2Factivity","timestamp":"2024-05-01T10:00:00Z","resource":{"type":"project","labels":{"project_id":"p"}},
				"protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","serviceName":"cloudresourcemanager.googleapis.com","methodName":"SetIamPolicy","resourceName":"projects/p",
				"authenticationInfo":{"principalEmail":"deployer@p.iam.gserviceaccount.com","serviceAccountKeyName":"//iam.googleapis.com/projects/p/serviceAccounts/deployer@p.iam.gserviceaccount.com/keys/abc"},
				"authorizationInfo":[{"resource":"projects/p","permission":"resourcemanager.projects.setIamPolicy","granted":true}],
				"serviceData":{"@type":"type.googleapis.com/google.iam.v1.logging.AuditData","policyDelta":{"bindingDeltas":[
					{"action":"ADD","role":"roles/owner","member":"serviceAccount:deployer@p.iam.gserviceaccount.com"},
					{"action":"REMOVE","role":"roles/viewer","member":"group:ops@example.com"}]}}}}`,
			want: &events.Event{
				Identity:   &events.Identity{Id: "gcp:deployer@p.iam.gserviceaccount.com", Kind: events.IdentityKind_IDENTITY_KIND_SERVICE_ACCOUNT, Type: "serviceAccount", Name: "deployer@p.iam.gserviceaccount.com", Account: "p"},
				Credential: &events.Credential{Id: "gcp:key://iam.googleapis.com/projects/p/serviceAccounts/deployer@p.iam.gserviceaccount.com/keys/abc", Type: events.CredentialType_CREDENTIAL_TYPE_SERVICE_ACCOUNT_KEY},
				Action:     &events.Action{Permission: "resourcemanager.projects.setIamPolicy"},
				GrantChanges: []*events.GrantChange{
					{Op: events.GrantOp_GRANT_OP_ADD, Grantee: "gcp:deployer@p.iam.gserviceaccount.com", Grant: "roles/owner", Scope: "projects/p", Mechanism: "set_iam_policy", Principals: []string{"serviceAccount:deployer@p.iam.gserviceaccount.com"}},
					{Op: events.GrantOp_GRANT_OP_REMOVE, Grantee: "group:ops@example.com", Grant: "roles/viewer", Scope: "projects/p", Mechanism: "set_iam_policy", Principals: []string{"group:ops@example.com"}},
				},
			},
		},
		{
			name: "gcp generate access token for another service account",
			data: `{"insertId":"t1","logName":"projects/p/logs/cloudaudit.googleapis.com%2Fdata_access","timestamp":"2024-05-01T10:00:00Z","resource":{"type":"service_account","labels":{"project_id":"p","email_id":"admin@p.iam.gserviceaccount.com"}},
				"protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","serviceName":"iamcredentials.googleapis.com","methodName":"GenerateAccessToken","resourceName":"projects/-/serviceAccounts/1234567890",
				"authenticationInfo":{"principalEmail":"app@p.iam.gserviceaccount.com"},"requestMetadata":{"callerIp":"private"},
				"authorizationInfo":[{"permission":"iam.serviceAccounts.getAccessToken","granted":true}],"request":{"name":"projects/-/serviceAccounts/admin@p.iam.gserviceaccount.com"}}}`,
			want: &events.Event{
				Identity:   &events.Identity{Id: "gcp:app@p.iam.gserviceaccount.com", Kind: events.IdentityKind_IDENTITY_KIND_SERVICE_ACCOUNT, Type: "serviceAccount", Name: "app@p.iam.gserviceaccount.com", Account: "p"},
				Credential: &events.Credential{Type: events.CredentialType_CREDENTIAL_TYPE_OAUTH_TOKEN},
				Delegation: []*events.Delegation{{From: "gcp:app@p.iam.gserviceaccount.com", To: "gcp:admin@p.iam.gserviceaccount.com", Kind: events.DelegationKind_DELEGATION_KIND_SERVICE_ACCOUNT_IMPERSONATION}},
				Action:     &events.Action{Permission: "iam.serviceAccounts.getAccessToken"},
				GrantChanges: []*events.GrantChange{
					{Op: events.GrantOp_GRANT_OP_ADD, Grantee: "gcp:admin@p.iam.gserviceaccount.com", Grant: "generate_access_token", Mechanism: "generate_access_token", Principals: []string{"gcp:app@p.iam.gserviceaccount.com"}},
				},
			},
		},
		{
			name: "gcp permission denied",
			data: `{"insertId":"d1","logName":"projects/p/logs/cloudaudit.googleapis.com%2Factivity","timestamp":"2024-05-01T10:00:00Z",
				"protoPayload":{"serviceName":"iam.googleapis.com","methodName":"google.iam.admin.v1.CreateServiceAccountKey","status":{"code":7,"message":"denied"},
				"authenticationInfo":{"principalEmail":"bob@example.com"},"authorizationInfo":[{"permission":"iam.serviceAccountKeys.create"}]}}`,
			result: events.Result_RESULT_DENIED,
			want: &events.Event{
				Identity: &events.Identity{Id: "gcp:user:bob@example.com", Kind: events.IdentityKind_IDENTITY_KIND_HUMAN, Type: "user", Name: "bob@example.com", Account: "p"},
				Action:   &events.Action{Permission: "iam.serviceAccountKeys.create"},
			},
		},
		{
			name: "k8s service account binds cluster-admin with a bound token",
			data: `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"b1","stage":"ResponseComplete","verb":"create",
				"requestURI":"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings","stageTimestamp":"2024-05-01T10:00:00Z","sourceIPs":["10.1.2.3"],
				"user":{"username":"system:serviceaccount:ci:deployer","uid":"u-1","groups":["system:serviceaccounts","system:serviceaccounts:ci"],
					"extra":{"authentication.kubernetes.io/credential-id":["JTI=7c1d"],"authentication.kubernetes.io/pod-name":["deployer-5d9"],"authentication.kubernetes.io/pod-uid":["p-1"]}},
				"objectRef":{"resource":"clusterrolebindings","name":"pwn","apiGroup":"rbac.authorization.k8s.io","apiVersion":"v1"},
				"responseStatus":{"metadata":{},"code":201},"annotations":{"authorization.k8s.io/decision":"allow"},
				"requestObject":{"kind":"ClusterRoleBinding","metadata":{"name":"pwn"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},
					"subjects":[{"kind":"ServiceAccount","name":"deployer","namespace":"ci"},{"kind":"Group","name":"devs"}]}}`,
			want: &events.Event{
				Identity:   &events.Identity{Id: "k8s:test:system:serviceaccount:ci:deployer", Kind: events.IdentityKind_IDENTITY_KIND_SERVICE_ACCOUNT, Type: "serviceaccount", Name: "ci/deployer", Account: "test", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:ci"}, PrincipalId: "u-1"},
				Credential: &events.Credential{Id: "k8s:test:token:JTI=7c1d", Type: events.CredentialType_CREDENTIAL_TYPE_K8S_TOKEN, IssuedTo: "pod:ci/deployer-5d9", Delivery: "bound_token"},
				Action:     &events.Action{Permission: "create clusterrolebindings"},
				GrantChanges: []*events.GrantChange{
					{Op: events.GrantOp_GRANT_OP_ADD, Grantee: "k8s:test:system:serviceaccount:ci:deployer", Grant: "ClusterRole/cluster-admin", Scope: "*", Mechanism: "cluster_role_binding", Principals: []string{"k8s:test:system:serviceaccount:ci:deployer"}},
					{Op: events.GrantOp_GRANT_OP_ADD, Grantee: "k8s:test:group:devs", Grant: "ClusterRole/cluster-admin", Scope: "*", Mechanism: "cluster_role_binding", Principals: []string{"k8s:test:group:devs"}},
				},
			},
		},
		{
			name: "k8s impersonation and role rules",
			data: `{"kind":"Event","apiVersion":"audit.k8s.io/v1beta1","auditID":"r1","stage":"ResponseComplete","verb":"update","stageTimestamp":"2024-05-01T10:00:00Z",
				"user":{"username":"alice@example.com","groups":["system:authenticated"]},"impersonatedUser":{"username":"system:serviceaccount:kube-system:admin"},
				"objectRef":{"resource":"roles","namespace":"apps","name":"editor","apiGroup":"rbac.authorization.k8s.io"},"responseStatus":{"code":200},
				"requestObject":{"kind":"Role","rules":[{"apiGroups":[""],"resources":["pods","pods/exec"],"verbs":["get","create"]},{"apiGroups":["*"],"resources":["*"],"verbs":["escalate"]}]}}`,
			want: &events.Event{
				// The credential is the impersonator's (a human's here, so none is named).
				Identity:   &events.Identity{Id: "k8s:test:system:serviceaccount:kube-system:admin", Kind: events.IdentityKind_IDENTITY_KIND_SERVICE_ACCOUNT, Type: "serviceaccount", Name: "kube-system/admin", Account: "test"},
				Delegation: []*events.Delegation{{From: "k8s:test:user:alice@example.com", To: "k8s:test:system:serviceaccount:kube-system:admin", Kind: events.DelegationKind_DELEGATION_KIND_K8S_IMPERSONATION}},
				Action:     &events.Action{Permission: "update roles"},
				GrantChanges: []*events.GrantChange{
					{Op: events.GrantOp_GRANT_OP_REPLACE, Grantee: "/namespaces/apps/roles/editor", Grant: "Role/editor", Permissions: []string{"get pods", "get pods/exec", "create pods", "create pods/exec", "escalate *"}, Scope: "apps", Mechanism: "role_rules"},
				},
			},
		},
		{
			name: "k8s forbidden",
			data: `{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"f1","stage":"ResponseComplete","verb":"list","stageTimestamp":"2024-05-01T10:00:00Z",
				"user":{"username":"system:node:ip-10-0-0-1"},"objectRef":{"resource":"secrets","namespace":"kube-system"},"responseStatus":{"code":403,"reason":"Forbidden"}}`,
			result: events.Result_RESULT_DENIED,
			want: &events.Event{
				Identity: &events.Identity{Id: "k8s:test:user:system:node:ip-10-0-0-1", Kind: events.IdentityKind_IDENTITY_KIND_CONTROL_PLANE, Type: "node", Name: "system:node:ip-10-0-0-1", Account: "test"},
				Action:   &events.Action{Permission: "list secrets"},
			},
		},
	}
	n := normalize.NewNormalizer()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := n.Normalize(normalize.Input{Data: []byte(tt.data), Format: "auto", Cluster: "test"})
			if err != nil {
				t.Fatal(err)
			}
			want := tt.result
			if want == events.Result_RESULT_UNSPECIFIED {
				want = events.Result_RESULT_ALLOWED
			}
			if ev.Outcome.Result != want {
				t.Errorf("result = %s, want %s", ev.Outcome.Result.Label(), want.Label())
			}
			got := &events.Event{Identity: ev.Identity, Credential: ev.Credential, Delegation: ev.Delegation, Action: &events.Action{Permission: ev.Action.Permission}, GrantChanges: ev.GrantChanges}
			if diff := cmp.Diff(tt.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
