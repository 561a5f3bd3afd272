package cloudtrail

import (
	"strings"

	"github.com/valyala/fastjson"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/normalize/internal/record"
)

// GitHub Actions' OIDC issuer: a web identity from it is a CI/CD pipeline.
const githubOIDC = "token.actions.githubusercontent.com"

// identity fills the identity, credential and delegation chain from userIdentity.
func identity(v *fastjson.Value, ev *events.Event) {
	u := record.Object(v, "userIdentity")
	id := &events.Identity{}
	ev.Identity = id
	if u == nil {
		if ev.Action.GetCategory() == "Insight" || ev.Action.GetType() == "AwsCloudTrailInsight" {
			// Insights are written by CloudTrail itself about the account.
			id.Id, id.Name, id.Type = "aws:service:cloudtrail.amazonaws.com", "cloudtrail.amazonaws.com", "AwsCloudTrailInsight"
			id.Kind = events.IdentityKind_IDENTITY_KIND_CONTROL_PLANE
			id.Account = ev.Account
			return
		}
		id.Id = "aws:unknown"
		return
	}
	typ := record.Str(u, "type")
	arn := record.Str(u, "arn")
	account := record.Str(u, "accountId")
	if account == "" {
		account = ev.Account
	}
	id.Type = typ
	id.Account = account
	id.PrincipalId = record.Str(u, "principalId")
	ctx := record.Object(u, "sessionContext")
	id.SourceIdentity = record.Str(ctx, "sourceIdentity")
	switch typ {
	case "IAMUser":
		id.Name = record.Str(u, "userName")
		switch {
		case arn != "":
			id.Id = events.AWSIdentityID(CanonicalARN(arn))
		case id.Name != "" && id.Name != hidden && account != "":
			id.Id = events.AWSIdentityID("arn:aws:iam::" + account + ":user/" + id.Name)
		default:
			// Failed console sign-ins of unknown users hide the name.
			id.Id = "aws:unknown"
		}
		id.Kind = events.IdentityKind_IDENTITY_KIND_ACCESS_KEY_USER
	case "AssumedRole":
		issuer := record.Object(ctx, "sessionIssuer")
		roleARN := record.Str(issuer, "arn")
		if roleARN == "" {
			roleARN = RoleARNFromSession(arn)
		}
		switch {
		case roleARN != "":
			id.Id = events.AWSIdentityID(CanonicalARN(roleARN))
		case id.PrincipalId != "":
			// AROA…:session: the role's unique id, without its name.
			roleID, _, _ := strings.Cut(id.PrincipalId, ":")
			id.Id = "aws:principal:" + roleID
		default:
			id.Id = "aws:unknown"
		}
		id.Name = record.Str(issuer, "userName")
		if id.Name == "" {
			id.Name = lastSegment(roleARN)
		}
		if i := strings.LastIndexByte(arn, '/'); i >= 0 && strings.Contains(arn, ":assumed-role/") {
			id.SessionName = arn[i+1:]
		}
		id.Kind = roleKind(roleARN, id.Name, record.Str(ctx, "webIdFederationData", "federatedProvider"))
		if fed := record.Str(ctx, "webIdFederationData", "federatedProvider"); fed != "" {
			ev.Delegation = append(ev.Delegation, &events.Delegation{
				From: "aws:federated:" + fed, To: id.Id, Kind: events.DelegationKind_DELEGATION_KIND_WEB_IDENTITY,
			})
		}
		if arn != "" {
			ev.Delegation = append(ev.Delegation, &events.Delegation{From: id.Id, To: arn, Kind: events.DelegationKind_DELEGATION_KIND_ASSUME_ROLE})
		}
	case "Root":
		id.Id = events.AWSIdentityID(arnOr(arn, "arn:aws:iam::"+account+":root"))
		id.Name = "root"
		id.Kind = events.IdentityKind_IDENTITY_KIND_HUMAN
	case "AWSService", "":
		svc := record.Str(u, "invokedBy")
		if typ == "" && (svc == "" || arn != "" || id.PrincipalId != "") {
			otherIdentity(u, arn, id)
			break
		}
		if svc == "" {
			svc = record.Str(v, "sourceIPAddress")
		}
		id.Id = "aws:service:" + svc
		id.Name = svc
		id.Kind = events.IdentityKind_IDENTITY_KIND_CONTROL_PLANE
	case "AWSAccount":
		// A principal of another account; the log shows its account and unique id only.
		id.Id = "aws:account:" + account
		id.Name = account
		switch {
		case strings.HasPrefix(id.PrincipalId, "AROA"):
			id.Kind = events.IdentityKind_IDENTITY_KIND_WORKLOAD_ROLE
		case strings.HasPrefix(id.PrincipalId, "AIDA"):
			id.Kind = events.IdentityKind_IDENTITY_KIND_ACCESS_KEY_USER
		}
	case "FederatedUser":
		id.Id = events.AWSIdentityID(arn)
		id.Name = lastSegment(arn)
		id.Kind = events.IdentityKind_IDENTITY_KIND_HUMAN
		if issuer := record.Str(ctx, "sessionIssuer", "arn"); issuer != "" {
			ev.Delegation = append(ev.Delegation, &events.Delegation{
				From: events.AWSIdentityID(CanonicalARN(issuer)), To: id.Id, Kind: events.DelegationKind_DELEGATION_KIND_FEDERATION,
			})
		}
	case "WebIdentityUser", "SAMLUser":
		provider := providerHost(record.Str(u, "identityProvider"))
		user := record.Str(u, "userName")
		id.Name = user
		if typ == "SAMLUser" {
			id.Id = "aws:saml:" + provider + ":" + user
			id.Kind = events.IdentityKind_IDENTITY_KIND_HUMAN
		} else {
			id.Id = "aws:web-identity:" + provider + ":" + user
			id.Kind = webIdentityKind(provider, user)
		}
		ev.Credential = &events.Credential{Type: events.CredentialType_CREDENTIAL_TYPE_WEB_IDENTITY, Delivery: webIdentityDelivery(provider)}
	case "IdentityCenterUser":
		user := record.Str(u, "onBehalfOf", "userId")
		id.Id = "aws:identity-center:" + user
		id.Name = user
		id.Kind = events.IdentityKind_IDENTITY_KIND_HUMAN
	default:
		otherIdentity(u, arn, id)
	}
	credential(v, u, ctx, ev)
}

// otherIdentity names a principal of a type nhiwatch does not classify (Unknown, or none).
func otherIdentity(u *fastjson.Value, arn string, id *events.Identity) {
	id.Name = record.Str(u, "userName")
	switch {
	case arn != "":
		id.Id = events.AWSIdentityID(CanonicalARN(arn))
	case id.PrincipalId != "":
		id.Id = "aws:principal:" + id.PrincipalId
	case id.Name != "":
		id.Id = "aws:user-name:" + id.Name
	default:
		id.Id = "aws:unknown"
	}
}

// hidden is what CloudTrail writes in place of values it will not log.
const hidden = "HIDDEN_DUE_TO_SECURITY_REASONS"

// roleKind classifies a role from its ARN and how its session was federated.
func roleKind(roleARN, name, federatedProvider string) events.IdentityKind {
	switch {
	case strings.Contains(roleARN, ":role/aws-reserved/sso.amazonaws.com/"), strings.HasPrefix(name, "AWSReservedSSO_"):
		return events.IdentityKind_IDENTITY_KIND_HUMAN
	case strings.Contains(roleARN, ":role/aws-service-role/"):
		return events.IdentityKind_IDENTITY_KIND_CONTROL_PLANE
	case strings.HasSuffix(federatedProvider, githubOIDC):
		return events.IdentityKind_IDENTITY_KIND_CI_CD
	}
	return events.IdentityKind_IDENTITY_KIND_WORKLOAD_ROLE
}

// webIdentityKind classifies the caller of AssumeRoleWithWebIdentity.
func webIdentityKind(provider, user string) events.IdentityKind {
	switch {
	case provider == githubOIDC:
		return events.IdentityKind_IDENTITY_KIND_CI_CD
	case strings.HasPrefix(user, "system:serviceaccount:"):
		// EKS IAM roles for service accounts: the subject is a Kubernetes service account.
		return events.IdentityKind_IDENTITY_KIND_SERVICE_ACCOUNT
	case provider == "accounts.google.com" || provider == "cognito-identity.amazonaws.com":
		return events.IdentityKind_IDENTITY_KIND_WORKLOAD_ROLE
	}
	return events.IdentityKind_IDENTITY_KIND_WORKLOAD_ROLE
}

func webIdentityDelivery(provider string) string {
	switch {
	case provider == githubOIDC:
		return "github_oidc"
	case strings.HasPrefix(provider, "oidc.eks."):
		return "irsa"
	}
	return "web_identity"
}

// providerHost strips the IAM OIDC/SAML provider ARN prefix: arn:aws:iam::A:oidc-provider/HOST → HOST.
func providerHost(p string) string {
	if strings.HasPrefix(p, "arn:") {
		if i := strings.Index(p, ":oidc-provider/"); i >= 0 {
			return p[i+len(":oidc-provider/"):]
		}
		if i := strings.Index(p, ":saml-provider/"); i >= 0 {
			return p[i+len(":saml-provider/"):]
		}
	}
	return p
}

// credential fills the credential that authenticated the request.
func credential(v, u, ctx *fastjson.Value, ev *events.Event) {
	keyID := record.Str(u, "accessKeyId")
	c := ev.Credential
	switch {
	case keyID != "" && keyID != hidden:
		c = &events.Credential{}
		if strings.HasPrefix(keyID, "AKIA") {
			c.Id = events.AWSAccessKeyID(keyID)
			c.Type = events.CredentialType_CREDENTIAL_TYPE_ACCESS_KEY
		} else {
			c.Id = events.AWSSessionCredentialID(keyID)
			c.Type = events.CredentialType_CREDENTIAL_TYPE_SESSION
		}
	case record.Str(v, "eventType") == "AwsConsoleSignIn":
		c = &events.Credential{Type: events.CredentialType_CREDENTIAL_TYPE_PASSWORD}
		c.Mfa = strings.EqualFold(record.Str(v, "additionalEventData", "MFAUsed"), "Yes")
	case record.Str(u, "credentialId") != "":
		// Identity Center and other bearer-token sessions (eventVersion 1.10+).
		c = &events.Credential{Id: "aws:credential:" + record.Str(u, "credentialId"), Type: events.CredentialType_CREDENTIAL_TYPE_SESSION}
	}
	if c == nil {
		return
	}
	if t, ok := record.Time(ctx, "attributes", "creationDate"); ok {
		c.IssuedUnixNano = t.UnixNano()
	}
	if record.Str(ctx, "attributes", "mfaAuthenticated") == "true" {
		c.Mfa = true
	}
	if ctx != nil && ctx.Exists("ec2RoleDelivery") {
		// Instance-profile credentials from the instance metadata service; the session name
		// is the instance id.
		c.Delivery = "ec2_role_delivery"
		c.IssuedTo = ev.Identity.SessionName
	}
	if fed := record.Str(ctx, "webIdFederationData", "federatedProvider"); fed != "" && c.Delivery == "" {
		c.Delivery = webIdentityDelivery(providerHost(fed))
	}
	// eventVersion 1.10+: what the service credential was issued to (an instance, a function).
	if to := record.Str(u, "inScopeOf", "credentialsIssuedTo"); to != "" {
		c.IssuedTo = to
	}
	ev.Credential = c
}

// RoleARNFromSession maps arn:aws:sts::A:assumed-role/R/S to arn:aws:iam::A:role/R.
func RoleARNFromSession(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || !strings.HasPrefix(parts[5], "assumed-role/") {
		return arn
	}
	rest := strings.TrimPrefix(parts[5], "assumed-role/")
	role := rest
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		role = rest[:i]
	}
	return "arn:" + parts[1] + ":iam::" + parts[4] + ":role/" + role
}

// CanonicalARN returns the ARN nhiwatch names an IAM principal by: role, user and group ARNs
// without their path (names are unique in an account whatever the path, and events that name
// a principal by name cannot know its path), and role sessions as their role.
func CanonicalARN(arn string) string {
	if strings.Contains(arn, ":assumed-role/") {
		arn = RoleARNFromSession(arn)
	}
	for _, kind := range []string{":role/", ":user/", ":group/"} {
		if i := strings.Index(arn, kind); i >= 0 && strings.HasPrefix(arn, "arn:") {
			rest := arn[i+len(kind):]
			if j := strings.LastIndexByte(rest, '/'); j >= 0 {
				return arn[:i+len(kind)] + rest[j+1:]
			}
			return arn
		}
	}
	return arn
}

func arnOr(arn, fallback string) string {
	if arn != "" {
		return arn
	}
	return fallback
}

func lastSegment(s string) string { return s[strings.LastIndexByte(s, '/')+1:] }
