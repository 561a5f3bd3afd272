package detectors

import (
	"slices"
	"strings"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

// privilege raises privilege_expansion findings for what an allowed event gave some
// identity: grants (policies, roles, bindings, group membership), trust (who may assume a
// role), credentials created or tokens minted for another identity, and secrets read
// across Kubernetes namespaces.
func (d *Detector) privilege(c *ctx) {
	ev := c.ev
	if r := ev.GetOutcome().GetResult(); r != events.Result_RESULT_ALLOWED && r != events.Result_RESULT_UNSPECIFIED {
		return
	}
	credentialSeen := false
	for _, g := range ev.GrantChanges {
		if g.Op == events.GrantOp_GRANT_OP_REMOVE || g.Deny {
			continue
		}
		switch {
		case isCredentialMechanism(g.Mechanism):
			credentialSeen = true
			d.credentialFor(c, g.Grantee, g.Grant, g.Mechanism)
		case isTrust(g):
			d.trust(c, g)
		case identityGrant(g):
			d.grant(c, g)
		}
	}
	if !credentialSeen {
		if target, mech, ok := credentialAction(ev); ok {
			d.credentialFor(c, target, "", mech)
		}
	}
	d.crossNamespaceSecrets(c)
}

// baseSeverity is the severity of a grant by its power, before the actor and self-grant
// adjustments.
func baseSeverity(p uint8) events.Severity {
	switch p {
	case PowerAdmin:
		return events.Severity_SEVERITY_HIGH
	case PowerEscalate:
		return events.Severity_SEVERITY_MEDIUM
	case PowerWrite:
		return events.Severity_SEVERITY_LOW
	case PowerRead:
		return events.Severity_SEVERITY_INFO
	}
	return events.Severity_SEVERITY_UNSPECIFIED
}

// identityGrant reports whether a grant change gives an identity (or a managed policy
// attached to identities) power. Resource policies and resource sharing grant access to one
// resource, not power to an identity: they are left to posture checks.
func identityGrant(g *events.GrantChange) bool {
	m := g.Mechanism
	if strings.HasPrefix(m, "share_") || strings.HasPrefix(m, "lambda_") || strings.Contains(m, "resource_policy") ||
		strings.HasSuffix(m, "bucket_policy") || strings.HasSuffix(m, "key_policy") || strings.HasSuffix(m, "repository_policy") {
		return false
	}
	if definitionGrant(g) {
		return true
	}
	if !isIdentityID(g.Grantee) || strings.HasSuffix(g.Grantee, ":root") || strings.HasPrefix(g.Grantee, "aws:service:") {
		return false
	}
	return true
}

// definitionGrant reports whether a grant change rewrites what a grant itself allows — a
// managed policy's default version, a GCP custom role, a Kubernetes (Cluster)Role's rules —
// rather than giving a grant to an identity: every identity holding it gains the power.
func definitionGrant(g *events.GrantChange) bool {
	switch g.Mechanism {
	case "create_policy_version", "set_default_policy_version":
		return strings.Contains(g.Grantee, ":policy/")
	case "create_role", "update_role", "undelete_role":
		return strings.Contains(g.Grantee, "roles/")
	case "role_rules":
		return true
	}
	return false
}

// grant handles a policy, role, binding or group grant.
func (d *Detector) grant(c *ctx, g *events.GrantChange) {
	power, why := GrantPower(g)
	if g.Mechanism == "pass_role" {
		// Passing a role to compute is routine; it expands power only when the role is
		// more powerful, which only its grants tell.
		power, why = passedRolePower(g, d.env.Expander)
	}
	if power == PowerNone || (definitionGrant(g) || c.kind == events.IdentityKind_IDENTITY_KIND_CONTROL_PLANE) && power < PowerEscalate {
		// A role or policy rewritten to allow reads or ordinary writes is routine, and so
		// is the control plane granting ordinary roles.
		return
	}
	actor := c.ev.Identity
	nhi := judgedForUse(c.kind)
	self := g.Grantee == actor.Id
	bump := 0
	var notes []string
	if nhi {
		bump++
		notes = append(notes, "The actor is itself a non-human identity: a workload or pipeline changing IAM is unusual and is how a stolen credential escalates.")
	}
	if self {
		bump++
		notes = append(notes, "It granted the power to itself.")
	}
	sev := raise(baseSeverity(power), bump)
	if sev < events.Severity_SEVERITY_LOW {
		return
	}
	var added, sensitive []string
	if d.env.Expander != nil {
		added, sensitive = d.env.Expander.Expand(g)
	}
	if len(added) == 0 {
		added = g.Permissions
	}
	grantee := principalName(g.Grantee)
	where := ""
	if g.Scope != "" && g.Scope != "*" {
		where = " on " + g.Scope
	}
	grantText := shortGrant(g.Grant)
	if grantText != g.Grant {
		grantText += " (" + g.Grant + ")"
	}
	summary := describe(actor, c.kind) + " " + grantVerb(g.Mechanism) + " " + grantText + where + " to " + granteeDescription(g.Grantee) +
		inAccount(c.ev) + " " + from(c.ev) + ". Why it matters: " + why + ", so " + grantee + " now holds " + PowerLabel(power) + " power."
	if len(sensitive) > 0 {
		summary += " Sensitive permissions added: " + strings.Join(first(sensitive, 8), ", ") + "."
	}
	if len(notes) > 0 {
		summary += " " + strings.Join(notes, " ")
	}
	mitre := []string{"T1098.003"}
	if c.ev.Provider == events.Provider_PROVIDER_K8S {
		mitre = []string{"T1098.006"}
	}
	title := grantee + " gained " + shortGrant(g.Grant) + " (" + PowerLabel(power) + ")"
	if definitionGrant(g) {
		title = shortGrant(g.Grant) + " now grants " + PowerLabel(power) + " power to every identity that holds it"
	}
	d.emit(c, draft{
		detector: PrivilegeExpansion,
		severity: sev,
		cause:    "grant:" + g.Grantee + ":" + g.Grant + ":" + g.Scope,
		title:    title,
		summary:  summary,
		recommendation: "Confirm with the owner that " + grantee + " needs " + g.Grant + ". If the change was not planned, revert it, " +
			"revoke the actor's credential and review what " + grantee + " did since. Prefer least-privilege grants scoped to the resources needed.",
		owasp:   []string{NHI5Overprivileged},
		mitre:   mitre,
		grantee: g.Grantee,
		added:   added, sensitive: sensitive,
		fields: map[string]string{
			"grantee": g.Grantee, "grant": g.Grant, "mechanism": g.Mechanism, "scope": g.Scope,
			"power": PowerLabel(power), "op": g.Op.Label(),
		},
	})
}

// trust handles a change of who may assume a role.
func (d *Detector) trust(c *ctx, g *events.GrantChange) {
	roleAccount := arnAccount(strings.TrimPrefix(g.Grantee, "aws:"))
	if roleAccount == "" {
		roleAccount = c.ev.Account
	}
	sev := events.Severity_SEVERITY_UNSPECIFIED
	var worst []string
	kind := ""
	for _, p := range g.Principals {
		s, k := trustSeverity(p, roleAccount)
		switch {
		case s > sev:
			sev, worst, kind = s, []string{p}, k
		case s == sev && s > events.Severity_SEVERITY_UNSPECIFIED:
			worst = append(worst, p)
		}
	}
	nhi := judgedForUse(c.kind)
	if nhi {
		sev = raise(sev, 1)
	}
	if sev < events.Severity_SEVERITY_LOW {
		return
	}
	slices.Sort(worst)
	role := principalName(g.Grantee)
	shown := make([]string, len(worst))
	for i, p := range worst {
		shown[i] = principalDisplay(p)
	}
	who := strings.Join(shown, ", ")
	summary := describe(c.ev.Identity, c.kind) + " changed the trust policy of role " + role + inAccount(c.ev) + " " + from(c.ev) +
		": " + kind + " " + who + " may now assume it and act with all of the role's permissions."
	if nhi {
		summary += " The actor is itself a non-human identity: a workload or pipeline changing trust policies is unusual."
	}
	d.emit(c, draft{
		detector: PrivilegeExpansion,
		severity: sev,
		cause:    "trust:" + g.Grantee + ":" + strings.Join(worst, ","),
		title:    role + " can now be assumed by " + kind + " " + who,
		summary:  summary,
		recommendation: "Check that " + who + " is a partner the owner of " + role + " expects. If not, restore the previous trust policy, " +
			"revoke the actor's credential, and look for AssumeRole calls on " + role + " from " + who + ".",
		owasp:   []string{NHI5Overprivileged, NHI3VulnerableThirdParty},
		mitre:   []string{"T1098.003", "T1199"},
		grantee: strings.Join(worst, ","),
		fields: map[string]string{
			"role": g.Grantee, "principals": strings.Join(g.Principals, ","), "mechanism": g.Mechanism, "trusted": who,
		},
	})
}

// trustSeverity rates one trusted principal of a role in roleAccount. Principals come as
// normalize writes them: "*", identity ids (aws:arn:…), aws:service:…, aws:federated:…, and
// a "!" prefix for NotPrincipal.
func trustSeverity(p, roleAccount string) (events.Severity, string) {
	lp := strings.ToLower(p)
	switch {
	case p == "*" || lp == "aws:*" || strings.HasPrefix(p, "!"):
		return events.Severity_SEVERITY_CRITICAL, "anyone (principal *)"
	case strings.HasPrefix(lp, "aws:service:") || strings.HasSuffix(lp, ".amazonaws.com"):
		return events.Severity_SEVERITY_UNSPECIFIED, ""
	case strings.HasPrefix(lp, "aws:federated:") || strings.Contains(lp, ":oidc-provider/") || strings.Contains(lp, ":saml-provider/"):
		return events.Severity_SEVERITY_MEDIUM, "federated identity provider"
	}
	arn := strings.TrimPrefix(p, "aws:")
	acct := arnAccount(arn)
	if acct == "" && isAccountID(arn) {
		acct = arn
	}
	if acct != "" && roleAccount != "" && acct != roleAccount {
		return events.Severity_SEVERITY_HIGH, "external account"
	}
	if strings.HasPrefix(arn, "arn:") && strings.Contains(arn, ":rolesanywhere:") {
		return events.Severity_SEVERITY_MEDIUM, "IAM Roles Anywhere profile"
	}
	if acct != "" {
		return events.Severity_SEVERITY_INFO, "principal"
	}
	return events.Severity_SEVERITY_UNSPECIFIED, ""
}

// passedRolePower rates a role passed to compute: by what the grants know of it, else by
// its name.
func passedRolePower(g *events.GrantChange, x Expander) (uint8, string) {
	if x != nil {
		if _, sensitive := x.Expand(g); len(sensitive) > 0 {
			return PowerEscalate, g.Grant + " carries sensitive permissions (" + strings.Join(first(sensitive, 4), ", ") + ")"
		}
	}
	if strings.Contains(strings.ToLower(principalName(g.Grant)), "admin") {
		return PowerEscalate, g.Grant + " is named as an administrator role"
	}
	return PowerNone, ""
}

// credentialFor handles a credential created, or a token minted, for target.
func (d *Detector) credentialFor(c *ctx, target, credID, mech string) {
	actor := c.ev.Identity
	if target == "" {
		return
	}
	if c.kind == events.IdentityKind_IDENTITY_KIND_CONTROL_PLANE {
		// Kubelets mint tokens for the pods they run, AWS services keys for their own
		// service-linked work: the platform doing its job.
		return
	}
	self := target == actor.Id
	if self && !strings.Contains(mech, "service_account_key") {
		// A principal rotating its own key or password is routine.
		return
	}
	nhi := judgedForUse(c.kind)
	sev := events.Severity_SEVERITY_MEDIUM
	if nhi {
		sev = raise(sev, 1)
	}
	what, mitre, owasp := credentialWords(mech)
	name := principalName(target)
	summary := describe(actor, c.kind) + " " + what + " for " + granteeDescription(target) + inAccount(c.ev) + " " + from(c.ev) +
		". Whoever holds it can act as " + name + " with all of its permissions"
	if strings.Contains(mech, "key") {
		summary += ", and a key does not expire on its own"
	}
	summary += "."
	if nhi {
		summary += " The actor is itself a non-human identity: workloads rarely create credentials for other identities."
	}
	fields := map[string]string{"grantee": target, "mechanism": mech}
	if credID != "" {
		fields["credential"] = credID
	}
	d.emit(c, draft{
		detector: PrivilegeExpansion,
		severity: sev,
		cause:    "credential:" + target + ":" + mech + ":" + credID,
		title:    strings.ToUpper(what[:1]) + what[1:] + " for " + name,
		summary:  summary,
		recommendation: "Confirm with the owner of " + name + " that the credential was expected. If not, deactivate and delete it, " +
			"revoke the actor's credential, and review every use of the new credential.",
		owasp:   owasp,
		mitre:   mitre,
		grantee: target,
		fields:  fields,
	})
}

// credentialWords describes a credential mechanism: what was made, and the technique ids.
func credentialWords(mech string) (string, []string, []string) {
	switch mech {
	case "create_access_key":
		return "created an access key", []string{"T1098.001"}, []string{NHI7LongLivedSecrets, NHI5Overprivileged}
	case "create_login_profile", "update_login_profile":
		return "set a console password", []string{"T1098.001", "T1078.004"}, []string{NHI10HumanUse, NHI5Overprivileged}
	case "create_service_account_key":
		return "created a service-account key", []string{"T1098.001"}, []string{NHI7LongLivedSecrets, NHI5Overprivileged}
	case "create_token":
		return "minted a service-account token", []string{"T1528"}, []string{NHI5Overprivileged}
	case "create_service_specific_credential":
		return "created a service-specific credential", []string{"T1098.001"}, []string{NHI7LongLivedSecrets, NHI5Overprivileged}
	case "upload_ssh_public_key", "upload_signing_certificate":
		return "uploaded a key", []string{"T1098.001", "T1098.004"}, []string{NHI7LongLivedSecrets, NHI5Overprivileged}
	}
	return "minted an access token", []string{"T1550.001", "T1528"}, []string{NHI5Overprivileged}
}

// isCredentialMechanism reports whether a grant change records a credential created or a
// token minted for its grantee.
func isCredentialMechanism(m string) bool {
	switch m {
	case "create_access_key", "create_login_profile", "update_login_profile", "create_service_account_key",
		"generate_access_token", "generate_id_token", "sign_jwt", "sign_blob", "create_token",
		"create_service_specific_credential", "upload_ssh_public_key", "upload_signing_certificate":
		return true
	}
	return false
}

// credentialAction recognises credential creation from the action when normalize recorded
// no grant change for it: the target comes from the resources.
func credentialAction(ev *events.Event) (target, mech string, ok bool) {
	act := ev.GetAction()
	name := act.GetName()
	switch ev.Provider {
	case events.Provider_PROVIDER_AWS:
		switch act.GetPermission() {
		case "iam:CreateAccessKey":
			mech = "create_access_key"
		case "iam:CreateLoginProfile":
			mech = "create_login_profile"
		case "iam:UpdateLoginProfile":
			mech = "update_login_profile"
		default:
			return "", "", false
		}
		for _, r := range ev.Resources {
			if r.Type == "AWS::IAM::User" || strings.Contains(r.Id, ":user/") {
				return events.AWSIdentityID(r.Id), mech, true
			}
		}
		return "", "", false
	case events.Provider_PROVIDER_GCP:
		switch {
		case strings.HasSuffix(name, "CreateServiceAccountKey"):
			mech = "create_service_account_key"
		case strings.HasSuffix(name, "GenerateAccessToken"):
			mech = "generate_access_token"
		case strings.HasSuffix(name, "GenerateIdToken"):
			mech = "generate_id_token"
		case strings.HasSuffix(name, "SignJwt"):
			mech = "sign_jwt"
		case strings.HasSuffix(name, "SignBlob"):
			mech = "sign_blob"
		default:
			return "", "", false
		}
		for _, r := range ev.Resources {
			if i := strings.Index(r.Id, "/serviceAccounts/"); i >= 0 {
				email := r.Id[i+len("/serviceAccounts/"):]
				if j := strings.IndexByte(email, '/'); j >= 0 {
					email = email[:j]
				}
				return events.GCPServiceAccountID(email), mech, true
			}
		}
	case events.Provider_PROVIDER_K8S:
		if act.GetPermission() != "create serviceaccounts/token" && !(name == "create" && hasResourceType(ev, "serviceaccounts/token")) {
			return "", "", false
		}
		for _, r := range ev.Resources {
			if ns, sa, ok := k8sServiceAccountResource(r); ok {
				return events.K8sServiceAccountID(k8sCluster(ev), ns, sa), "create_token", true
			}
		}
	}
	return "", "", false
}

// crossNamespaceSecrets handles a Kubernetes service account reading secrets outside its
// own namespace: it gains the power of every credential stored there.
func (d *Detector) crossNamespaceSecrets(c *ctx) {
	ev := c.ev
	if ev.Provider != events.Provider_PROVIDER_K8S {
		return
	}
	verb := ev.GetAction().GetName()
	if verb != "get" && verb != "list" && verb != "watch" {
		return
	}
	own, ok := k8sServiceAccountNamespace(ev.Identity.Id)
	if !ok {
		return
	}
	for _, r := range ev.Resources {
		if r.Type != "secrets" || r.Namespace == own {
			continue
		}
		ns := r.Namespace
		scope := "namespace " + ns
		if ns == "" {
			ns, scope = "*", "every namespace"
		}
		d.emit(c, draft{
			detector: PrivilegeExpansion,
			severity: raise(events.Severity_SEVERITY_MEDIUM, 1),
			cause:    "secrets:" + ns,
			title:    principalName(ev.Identity.Id) + " read secrets in " + scope,
			summary: describe(ev.Identity, c.kind) + " (namespace " + own + ") " + verb + " secrets in " + scope + " " + from(ev) +
				". Secrets hold the tokens and keys of other workloads, so it can now act as them.",
			recommendation: "Check the RoleBindings that let this service account read secrets outside " + own +
				"; remove them unless it is an operator that must, and rotate the secrets it read.",
			owasp:   []string{NHI5Overprivileged, NHI2SecretLeakage},
			mitre:   []string{"T1552.007"},
			grantee: ev.Identity.Id,
			fields:  map[string]string{"namespace": ns, "verb": verb, "own_namespace": own},
		})
		return
	}
}

func hasResourceType(ev *events.Event, t string) bool {
	for _, r := range ev.Resources {
		if r.Type == t {
			return true
		}
	}
	return false
}

// k8sServiceAccountResource reads /namespaces/<ns>/serviceaccounts/<name>[/token].
func k8sServiceAccountResource(r *events.Resource) (ns, name string, ok bool) {
	parts := strings.Split(strings.Trim(r.Id, "/"), "/")
	for i := 0; i+3 < len(parts); i++ {
		if parts[i] == "namespaces" && parts[i+2] == "serviceaccounts" {
			return parts[i+1], parts[i+3], true
		}
	}
	if r.Namespace != "" && r.Name != "" && strings.HasPrefix(r.Type, "serviceaccounts") {
		return r.Namespace, r.Name, true
	}
	return "", "", false
}

// k8sServiceAccountNamespace returns the namespace of a Kubernetes service-account id.
func k8sServiceAccountNamespace(id string) (string, bool) {
	const marker = ":system:serviceaccount:"
	i := strings.Index(id, marker)
	if i < 0 || !strings.HasPrefix(id, "k8s:") {
		return "", false
	}
	rest := id[i+len(marker):]
	ns, _, ok := strings.Cut(rest, ":")
	return ns, ok
}

// k8sCluster is the cluster of a Kubernetes event.
func k8sCluster(ev *events.Event) string {
	if c := ev.GetNetwork().GetCluster(); c != "" {
		return c
	}
	return ev.Account
}

func grantVerb(mech string) string {
	switch {
	case strings.HasPrefix(mech, "attach_"):
		return "attached"
	case strings.HasPrefix(mech, "put_"):
		return "put an inline policy"
	case mech == "create_policy_version" || mech == "set_default_policy_version":
		return "made a new default version of"
	case mech == "add_user_to_group":
		return "added membership of group"
	case mech == "set_iam_policy":
		return "bound"
	case strings.Contains(mech, "binding"):
		return "bound"
	case strings.Contains(mech, "rules"):
		return "changed the rules of"
	case mech == "pass_role":
		return "passed role"
	}
	return "granted"
}

func granteeDescription(id string) string {
	switch {
	case strings.Contains(id, ":user/"):
		return "IAM user " + principalName(id)
	case strings.Contains(id, ":role/"):
		return "role " + principalName(id)
	case strings.Contains(id, ":group/"):
		return "group " + principalName(id)
	case strings.Contains(id, ":system:serviceaccount:"):
		return "Kubernetes service account " + principalName(id)
	case strings.HasPrefix(id, "gcp:user:"):
		return "GCP user " + strings.TrimPrefix(id, "gcp:user:")
	case strings.HasPrefix(id, "gcp:"):
		return "GCP service account " + strings.TrimPrefix(id, "gcp:")
	}
	return principalName(id)
}

func inAccount(ev *events.Event) string {
	if ev.Account == "" {
		return ""
	}
	switch ev.Provider {
	case events.Provider_PROVIDER_GCP:
		return " in project " + ev.Account
	case events.Provider_PROVIDER_K8S:
		return " in cluster " + ev.Account
	}
	return " in account " + ev.Account
}

// shortGrant is a grant's last path segment: AdministratorAccess for its managed-policy ARN.
func shortGrant(g string) string {
	if strings.HasPrefix(g, "arn:") {
		if i := strings.LastIndexByte(g, '/'); i >= 0 {
			return g[i+1:]
		}
	}
	return g
}

// arnAccount returns the account field of an ARN.
func arnAccount(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) < 5 || parts[0] != "arn" {
		return ""
	}
	return parts[4]
}

func isAccountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// principalDisplay shows a trusted principal: "193672423079" for an account root.
func principalDisplay(p string) string {
	arn := strings.TrimPrefix(p, "aws:")
	if strings.HasSuffix(arn, ":root") {
		if a := arnAccount(arn); a != "" {
			return a
		}
	}
	return strings.TrimPrefix(p, "aws:")
}
