package grants

import (
	"sort"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

// Sensitive permissions are the ones an attacker wants: those that change what some
// identity may do (privilege escalation), mint or read credentials and secrets, run code
// as another identity, or blind the audit trail. The lists follow the documented
// privilege-escalation paths for each provider (Rhino Security Labs' AWS IAM escalation
// methods, GCP's service-account impersonation and setIamPolicy paths, the Kubernetes RBAC
// good-practices page on escalate, bind, impersonate, secrets and pods/exec).
var sensitive = map[events.Provider][]string{
	events.Provider_PROVIDER_AWS: {
		"iam:AddUserToGroup", "iam:AttachGroupPolicy", "iam:AttachRolePolicy", "iam:AttachUserPolicy",
		"iam:CreateAccessKey", "iam:CreateLoginProfile", "iam:CreatePolicyVersion", "iam:CreateRole",
		"iam:CreateUser", "iam:DeleteRolePermissionsBoundary", "iam:DeleteUserPermissionsBoundary",
		"iam:PassRole", "iam:PutGroupPolicy", "iam:PutRolePolicy", "iam:PutUserPolicy",
		"iam:SetDefaultPolicyVersion", "iam:UpdateAccessKey", "iam:UpdateAssumeRolePolicy",
		"iam:UpdateLoginProfile", "sts:AssumeRole", "sts:GetFederationToken",
		"lambda:UpdateFunctionCode", "lambda:CreateFunction", "lambda:UpdateFunctionConfiguration",
		"ssm:SendCommand", "ssm:StartSession", "ssm:GetParameter", "ssm:GetParameters",
		"secretsmanager:GetSecretValue", "secretsmanager:BatchGetSecretValue", "kms:Decrypt",
		"ec2:GetPasswordData", "ec2:ModifyInstanceAttribute", "ec2-instance-connect:SendSSHPublicKey",
		"cloudtrail:StopLogging", "cloudtrail:DeleteTrail", "cloudtrail:PutEventSelectors",
		"organizations:LeaveOrganization", "rolesanywhere:CreateTrustAnchor",
	},
	events.Provider_PROVIDER_GCP: {
		"iam.serviceAccountKeys.create", "iam.serviceAccounts.getAccessToken",
		"iam.serviceAccounts.getOpenIdToken", "iam.serviceAccounts.signBlob", "iam.serviceAccounts.signJwt",
		"iam.serviceAccounts.implicitDelegation", "iam.serviceAccounts.actAs",
		"iam.serviceAccounts.setIamPolicy", "iam.roles.create", "iam.roles.update",
		"resourcemanager.projects.setIamPolicy", "resourcemanager.folders.setIamPolicy",
		"resourcemanager.organizations.setIamPolicy", "storage.buckets.setIamPolicy",
		"secretmanager.versions.access", "cloudfunctions.functions.create",
		"cloudfunctions.functions.update", "compute.instances.setMetadata",
		"compute.projects.setCommonInstanceMetadata", "compute.instances.setServiceAccount",
		"container.clusters.getCredentials", "cloudbuild.builds.create", "run.services.create",
		"deploymentmanager.deployments.create", "orgpolicy.policy.set", "logging.sinks.delete",
	},
	events.Provider_PROVIDER_K8S: {
		"escalate roles", "escalate clusterroles", "bind roles", "bind clusterroles",
		"impersonate users", "impersonate groups", "impersonate serviceaccounts",
		"create rolebindings", "create clusterrolebindings", "update clusterroles", "patch clusterroles",
		"get secrets", "list secrets", "watch secrets", "create serviceaccounts/token",
		"create pods", "create pods/exec", "get pods/exec", "create pods/attach",
		"create deployments", "create daemonsets", "get nodes/proxy", "create nodes/proxy",
		"update certificatesigningrequests/approval",
		"create mutatingwebhookconfigurations", "create validatingwebhookconfigurations",
	},
}

// adminMarkers are permissions that let the holder grant itself anything: an entry that
// covers one of them is admin-equivalent. Each is also sensitive, so using one is an admin
// action (IsSensitive), which is what standing-admin posture looks for.
var adminMarkers = map[events.Provider][]string{
	events.Provider_PROVIDER_AWS: {"iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:PutUserPolicy", "iam:AttachUserPolicy", "iam:CreatePolicyVersion"},
	events.Provider_PROVIDER_GCP: {"resourcemanager.projects.setIamPolicy", "resourcemanager.folders.setIamPolicy", "resourcemanager.organizations.setIamPolicy"},
	events.Provider_PROVIDER_K8S: {"escalate clusterroles", "bind clusterroles", "escalate roles", "bind roles", "impersonate users", "impersonate groups", "impersonate serviceaccounts"},
}

// SensitivePermissions returns the sensitive permissions of a provider, sorted.
func SensitivePermissions(p events.Provider) []string {
	out := append([]string(nil), sensitive[p]...)
	sort.Strings(out)
	return out
}

// IsSensitive reports whether a used permission is sensitive.
func IsSensitive(p events.Provider, permission string) bool {
	fold := p == events.Provider_PROVIDER_AWS
	for _, s := range sensitive[p] {
		if s == permission || (fold && Glob(s, permission, true)) {
			return true
		}
	}
	return false
}

func isAdminEntry(e *Entry) bool {
	for _, m := range adminMarkers[e.prov] {
		if e.covers(m) {
			return true
		}
	}
	return false
}
