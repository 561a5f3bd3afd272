package detectors

import (
	"strings"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

// Power levels of a grant, from what it lets the grantee do.
const (
	// PowerNone: nothing worth a finding (a trust to an AWS service, a deny).
	PowerNone uint8 = iota
	// PowerRead: read-only access.
	PowerRead
	// PowerWrite: write access to some services or resources.
	PowerWrite
	// PowerEscalate: can gain more power or act as others (iam:PassRole, key or token
	// creation for others, RBAC bind/escalate/impersonate, secrets across namespaces).
	PowerEscalate
	// PowerAdmin: admin-equivalent (AdministratorAccess, IAMFullAccess, `*:*`, roles/owner,
	// roles/editor, cluster-admin).
	PowerAdmin
)

// PowerLabel names a power level for summaries and evidence.
func PowerLabel(p uint8) string {
	switch p {
	case PowerAdmin:
		return "admin-equivalent"
	case PowerEscalate:
		return "privilege-escalation capable"
	case PowerWrite:
		return "write"
	case PowerRead:
		return "read-only"
	}
	return "none"
}

// adminGrants are grants known to be admin-equivalent, by their last path segment or name.
var adminGrants = map[string]bool{
	"administratoraccess": true, "iamfullaccess": true, "awsorganizationsfullaccess": true,
	"roles/owner": true, "roles/editor": true, "roles/iam.securityadmin": true,
	"roles/resourcemanager.organizationadmin": true, "roles/resourcemanager.projectiamadmin": true,
	"roles/iam.organizationroleadmin": true,
	"cluster-admin":                   true, "system:masters": true,
}

// escalateGrants let the grantee gain power or act as another identity.
var escalateGrants = map[string]bool{
	"poweruseraccess": true, "awssso_fullaccess": true,
	"roles/iam.serviceaccounttokencreator": true, "roles/iam.serviceaccountkeyadmin": true,
	"roles/iam.serviceaccountuser": true, "roles/iam.serviceaccountadmin": true, "roles/iam.roleadmin": true,
	"roles/iam.workloadidentityuser": true, "roles/container.admin": true, "roles/compute.admin": true,
	"admin": true,
}

// readGrants are read-only grants.
var readGrants = map[string]bool{
	"readonlyaccess": true, "viewonlyaccess": true, "securityaudit": true, "roles/viewer": true,
	"roles/browser": true, "view": true, "system:aggregate-to-view": true,
}

// escalatePermissions are single permissions that let the holder gain power or act as others.
var escalatePermissions = map[string]bool{
	"iam:passrole": true, "iam:createaccesskey": true, "iam:createloginprofile": true, "iam:updateloginprofile": true,
	"iam:attachuserpolicy": true, "iam:attachrolepolicy": true, "iam:attachgrouppolicy": true,
	"iam:putuserpolicy": true, "iam:putrolepolicy": true, "iam:putgrouppolicy": true,
	"iam:createpolicyversion": true, "iam:setdefaultpolicyversion": true, "iam:addusertogroup": true,
	"iam:updateassumerolepolicy": true, "iam:createrole": true, "iam:createuser": true,
	"sts:assumerole": true, "sts:*": true, "lambda:updatefunctioncode": true, "ssm:sendcommand": true,
	"ec2:runinstances": true, "secretsmanager:getsecretvalue": true,
	"iam.serviceaccountkeys.create": true, "iam.serviceaccounts.getaccesstoken": true,
	"iam.serviceaccounts.signjwt": true, "iam.serviceaccounts.signblob": true, "iam.serviceaccounts.actas": true,
	"iam.serviceaccounts.implicitdelegation": true, "resourcemanager.projects.setiampolicy": true,
	"iam.roles.update": true, "iam.roles.create": true,
}

// GrantPower rates what a grant change gives its grantee and says why.
func GrantPower(g *events.GrantChange) (uint8, string) {
	if g.GetDeny() || g.GetOp() == events.GrantOp_GRANT_OP_REMOVE {
		return PowerNone, ""
	}
	best, why := PowerNone, ""
	gname := shortGrant(g.GetGrant())
	raise := func(p uint8, reason string) {
		if p > best {
			best, why = p, reason
		}
	}
	name := strings.ToLower(g.GetGrant())
	if strings.Contains(name, "awscompromisedkeyquarantine") || strings.Contains(name, "awsdenyall") {
		return PowerNone, "" // AWS's quarantine and deny-all policies take power away
	}
	short := name
	if i := strings.LastIndexByte(short, '/'); i >= 0 && !strings.HasPrefix(short, "roles/") {
		short = short[i+1:]
	}
	switch {
	case adminGrants[short] || adminGrants[name]:
		raise(PowerAdmin, gname+" is admin-equivalent")
	case escalateGrants[short] || escalateGrants[name]:
		raise(PowerEscalate, gname+" lets the grantee escalate or act as others")
	case strings.HasPrefix(name, "roles/") && strings.HasSuffix(name, "admin"):
		raise(PowerEscalate, gname+" is an administrator role")
	case strings.HasSuffix(short, "fullaccess"):
		raise(PowerWrite, gname+" grants full access to a service")
	case readGrants[short] || readGrants[name] || strings.HasSuffix(short, "readonlyaccess") || strings.HasSuffix(name, ".viewer"):
		raise(PowerRead, gname+" is read-only")
	}
	for _, p := range g.GetPermissions() {
		lp, reason := permissionPower(p)
		raise(lp, reason)
	}
	if isTrust(g) {
		// A trust change gives its principals the power to assume the role; rated by the
		// trust detector, not here.
		return best, why
	}
	if best == PowerNone && len(g.GetPermissions()) == 0 && g.GetGrant() != "" {
		// A grant known by name only (a customer managed policy, a custom role): at least
		// write until its document is known.
		lower := name
		switch {
		case strings.Contains(lower, "admin"):
			raise(PowerEscalate, gname+" is named as an administrator grant")
		case strings.Contains(lower, "readonly") || strings.Contains(lower, "read-only") || strings.Contains(lower, "viewer"):
			raise(PowerRead, gname+" is named read-only")
		default:
			raise(PowerWrite, gname+" grants unknown permissions")
		}
	}
	return best, why
}

// permissionPower rates one permission or pattern: an IAM action (s3:GetObject, iam:*),
// a GCP permission, or a Kubernetes rule as "verb resource".
func permissionPower(p string) (uint8, string) {
	lp := strings.ToLower(strings.TrimSpace(p))
	switch lp {
	case "":
		return PowerNone, ""
	case "*", "*:*", "* *", "* */*":
		return PowerAdmin, p + " allows every action"
	case "iam:*":
		return PowerAdmin, p + " allows every IAM action"
	}
	if verb, res, ok := strings.Cut(lp, " "); ok {
		// Kubernetes rule.
		switch {
		case verb == "*" && (res == "*" || strings.HasPrefix(res, "*")):
			return PowerAdmin, p + " allows everything"
		case verb == "escalate" || verb == "bind" || verb == "impersonate" || verb == "*" && (res == "roles" || res == "clusterroles" || res == "rolebindings" || res == "clusterrolebindings"):
			return PowerEscalate, p + " lets the holder escalate its RBAC power"
		case res == "serviceaccounts/token" && (verb == "create" || verb == "*"):
			return PowerEscalate, p + " lets the holder mint tokens of other service accounts"
		case res == "secrets" && (verb == "get" || verb == "list" || verb == "watch" || verb == "*"):
			return PowerEscalate, p + " reads secrets"
		case res == "pods/exec" || res == "nodes/proxy":
			return PowerEscalate, p + " executes in workloads"
		case verb == "get" || verb == "list" || verb == "watch":
			return PowerRead, p + " reads"
		}
		return PowerWrite, p + " writes"
	}
	if escalatePermissions[lp] {
		return PowerEscalate, p + " lets the holder escalate or act as others"
	}
	if strings.HasSuffix(lp, ":*") || strings.HasSuffix(lp, ".*") {
		return PowerWrite, p + " allows every action of a service"
	}
	action := lp
	if i := strings.LastIndexAny(lp, ":."); i >= 0 {
		action = lp[i+1:]
	}
	for _, r := range []string{"get", "list", "describe", "view", "read", "head", "lookup", "search", "batchget"} {
		if strings.HasPrefix(action, r) {
			return PowerRead, p + " reads"
		}
	}
	return PowerWrite, p + " writes"
}

// isTrust reports whether a grant change is a change of who may assume a role.
func isTrust(g *events.GrantChange) bool {
	if g.GetGrant() == "trust_policy" {
		return true
	}
	// AWS CreateRole carries its trust policy as grant "trust_policy"; GCP's CreateRole is a
	// custom role, not a trust.
	return g.GetMechanism() == "update_assume_role_policy"
}
