// Package testfixture builds the findings and events notify's tests send: shaped like what
// detect emits for the Stratus Red Team CloudTrail logs in testdata/ (an IAM role attaching
// AdministratorAccess to itself, a Kubernetes service account reading secrets).
package testfixture

import (
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

// T0 is the time of the triggering event.
var T0 = time.Date(2024, 5, 2, 9, 58, 31, 0, time.UTC)

// CIRole is the identity of Finding.
const CIRole = "aws:arn:aws:iam::123456789012:role/ci-deploy"

// Finding is a critical privilege expansion: a CI/CD role gave itself AdministratorAccess.
func Finding() *events.Finding {
	evTime := T0.UnixNano()
	return &events.Finding{
		Id:       events.FindingID("privilege_expansion", CIRole, "attach_role_policy:arn:aws:iam::aws:policy/AdministratorAccess", "2024-05-02"),
		Detector: "privilege_expansion",
		Severity: events.Severity_SEVERITY_CRITICAL,
		Title:    "ci-deploy attached AdministratorAccess to itself",
		Summary: "The CI/CD role ci-deploy attached the AWS managed policy AdministratorAccess to itself " +
			"from 198.51.100.23. A pipeline identity that grants itself admin can take over the account.",
		Provider: events.Provider_PROVIDER_AWS,
		Identity: &events.Identity{
			Id: CIRole, Kind: events.IdentityKind_IDENTITY_KIND_CI_CD, Type: "AssumedRole", Name: "ci-deploy",
			Account: "123456789012", SessionName: "github-actions-4711",
		},
		Credential:      &events.Credential{Id: "aws:session:ASIAEXAMPLE2XYZ", Type: events.CredentialType_CREDENTIAL_TYPE_SESSION},
		Owner:           "alice@example.com",
		Team:            "platform",
		TimeUnixNano:    evTime,
		CreatedUnixNano: evTime + int64(800*time.Millisecond),
		Evidence: []*events.Evidence{{
			EventId: "aws:123456789012:3b2c1f4e-9a7d-4c1e-8f3a-2d9b6e5c4a10", TimeUnixNano: evTime,
			Action: "AttachRolePolicy", Permission: "iam:AttachRolePolicy", Ip: "198.51.100.23",
			UserAgent: "aws-cli/2.15.0", Region: "us-east-1",
			Fields: map[string]string{"policy": "arn:aws:iam::aws:policy/AdministratorAccess", "grantee": CIRole},
		}},
		OwaspNhi:                  []string{"NHI5"},
		MitreAttack:               []string{"T1098.003"},
		Recommendation:            "Detach AdministratorAccess from ci-deploy (aws iam detach-role-policy --role-name ci-deploy --policy-arn arn:aws:iam::aws:policy/AdministratorAccess), then review what the role did since 09:58 UTC.",
		Cause:                     "attach_role_policy:arn:aws:iam::aws:policy/AdministratorAccess",
		Grantee:                   CIRole,
		PermissionsAdded:          []string{"*"},
		SensitivePermissionsAdded: []string{"*"},
		Status:                    events.FindingStatus_FINDING_STATUS_OPEN,
		Account:                   "123456789012",
		Region:                    "us-east-1",
		ReceivedUnixNano:          evTime + int64(300*time.Millisecond),
	}
}

// K8sFinding is a medium out-of-boundary finding with no owner and no credential.
func K8sFinding() *events.Finding {
	id := "k8s:prod:system:serviceaccount:payments:api"
	return &events.Finding{
		Id:           events.FindingID("out_of_boundary", id, "namespace:kube-system", "2024-05-02"),
		Detector:     "out_of_boundary",
		Severity:     events.Severity_SEVERITY_MEDIUM,
		Title:        "payments/api read secrets in kube-system",
		Summary:      "The service account payments/api listed secrets in kube-system, a namespace it never used before.",
		Provider:     events.Provider_PROVIDER_K8S,
		Identity:     &events.Identity{Id: id, Kind: events.IdentityKind_IDENTITY_KIND_SERVICE_ACCOUNT, Name: "system:serviceaccount:payments:api", Account: "prod", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:payments"}},
		TimeUnixNano: T0.UnixNano(),
		Evidence:     []*events.Evidence{{EventId: "k8s:prod:5f1c:ResponseComplete", TimeUnixNano: T0.UnixNano(), Action: "list", Permission: "list secrets", Ip: "10.0.3.7"}},
		MitreAttack:  []string{"T1552.007", "not-a-technique"},
		Cause:        "namespace:kube-system",
		Account:      "prod",
	}
}

// Events are normalized events of the three providers: a grant change with a grantee, a
// denied read, a GCP key creation and a Kubernetes call without an IP.
func Events() []*events.Event {
	t := T0.UnixNano()
	return []*events.Event{
		{
			Id: "aws:123456789012:3b2c1f4e-9a7d-4c1e-8f3a-2d9b6e5c4a10", Provider: events.Provider_PROVIDER_AWS, Source: "trail",
			TimeUnixNano: t, ProviderEventId: "3b2c1f4e-9a7d-4c1e-8f3a-2d9b6e5c4a10", Account: "123456789012",
			Identity:   &events.Identity{Id: CIRole, Kind: events.IdentityKind_IDENTITY_KIND_CI_CD, Type: "AssumedRole", Name: "ci-deploy", Account: "123456789012", SessionName: "github-actions-4711"},
			Credential: &events.Credential{Id: "aws:session:ASIAEXAMPLE2XYZ", Type: events.CredentialType_CREDENTIAL_TYPE_SESSION, IssuedUnixNano: t - int64(time.Minute)},
			Delegation: []*events.Delegation{{From: "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com", To: CIRole, Kind: events.DelegationKind_DELEGATION_KIND_ASSUME_ROLE}},
			Action:     &events.Action{Service: "iam", Name: "AttachRolePolicy", Permission: "iam:AttachRolePolicy", Type: "AwsApiCall", Category: "Management", Version: "1.08"},
			Resources:  []*events.Resource{{Id: "arn:aws:iam::123456789012:role/ci-deploy", Type: "AWS::IAM::Role", Name: "ci-deploy"}},
			Network:    &events.Network{Ip: "198.51.100.23", UserAgent: "aws-cli/2.15.0", Region: "us-east-1"},
			Outcome:    &events.Outcome{Result: events.Result_RESULT_ALLOWED},
			GrantChanges: []*events.GrantChange{{
				Op: events.GrantOp_GRANT_OP_ADD, Grantee: CIRole, Grant: "arn:aws:iam::aws:policy/AdministratorAccess",
				Permissions: []string{"*"}, Scope: "*", Mechanism: "attach_role_policy",
			}},
		},
		{
			Id: "aws:123456789012:denied-1", Provider: events.Provider_PROVIDER_AWS, Source: "trail", TimeUnixNano: t + 1e9,
			Account:    "123456789012",
			Identity:   &events.Identity{Id: "aws:arn:aws:iam::123456789012:user/legacy-backup", Kind: events.IdentityKind_IDENTITY_KIND_ACCESS_KEY_USER, Type: "IAMUser", Name: "legacy-backup"},
			Credential: &events.Credential{Id: "aws:key:AKIAEXAMPLEKEY123456", Type: events.CredentialType_CREDENTIAL_TYPE_ACCESS_KEY},
			Action:     &events.Action{Service: "s3", Name: "ListBuckets", Permission: "s3:ListAllMyBuckets", ReadOnly: true},
			Network:    &events.Network{Ip: "2001:db8::17", Region: "eu-west-1"},
			Outcome:    &events.Outcome{Result: events.Result_RESULT_DENIED, ErrorCode: "AccessDenied", ErrorMessage: "User is not authorized to perform s3:ListAllMyBuckets"},
		},
		{
			Id: "gcp:7f3a9c", Provider: events.Provider_PROVIDER_GCP, Source: "audit", TimeUnixNano: t + 2e9, Account: "prod-project",
			Identity:  &events.Identity{Id: "gcp:deployer@prod-project.iam.gserviceaccount.com", Kind: events.IdentityKind_IDENTITY_KIND_SERVICE_ACCOUNT, Name: "deployer@prod-project.iam.gserviceaccount.com"},
			Action:    &events.Action{Service: "iam.googleapis.com", Name: "google.iam.admin.v1.CreateServiceAccountKey", Permission: "iam.serviceAccountKeys.create"},
			Resources: []*events.Resource{{Id: "projects/prod-project/serviceAccounts/runner@prod-project.iam.gserviceaccount.com", Type: "iam.googleapis.com/ServiceAccount"}},
			Network:   &events.Network{Ip: "203.0.113.9", UserAgent: "google-cloud-sdk/470.0.0"},
			Outcome:   &events.Outcome{Result: events.Result_RESULT_ALLOWED},
			GrantChanges: []*events.GrantChange{
				{Op: events.GrantOp_GRANT_OP_REMOVE, Grantee: "gcp:runner@prod-project.iam.gserviceaccount.com", Grant: "roles/owner", Mechanism: "set_iam_policy"},
				{Op: events.GrantOp_GRANT_OP_ADD, Grant: "roles/viewer", Mechanism: "set_iam_policy"},
			},
		},
		{
			Id: "k8s:prod:5f1c:ResponseComplete", Provider: events.Provider_PROVIDER_K8S, Source: "k8s", TimeUnixNano: t + 3e9, Account: "prod",
			Identity:  &events.Identity{Id: "k8s:prod:system:serviceaccount:payments:api", Kind: events.IdentityKind_IDENTITY_KIND_SERVICE_ACCOUNT, Name: "system:serviceaccount:payments:api"},
			Action:    &events.Action{Service: "core", Name: "list", Permission: "list secrets", ReadOnly: true, Version: "audit.k8s.io/v1"},
			Resources: []*events.Resource{{Id: "/namespaces/kube-system/secrets", Type: "secrets", Namespace: "kube-system"}},
			Network:   &events.Network{Cluster: "prod"},
			Outcome:   &events.Outcome{Result: events.Result_RESULT_ALLOWED, StatusCode: 200},
		},
	}
}
