package gcp

import (
	"strings"

	"github.com/valyala/fastjson"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/normalize/internal/k8s"
	"github.com/nhiwatch/nhiwatch/services/normalize/internal/record"
)

// maxGrantChanges bounds the grant changes of one event.
const maxGrantChanges = 128

// grants derives the grant changes of a successful call: IAM policy binding changes, service
// account keys, credentials minted for another service account, custom roles, and RBAC
// objects written through GKE.
func (p *Parser) grants(ev *events.Event, pp, labels *fastjson.Value, resourceName string) {
	if ev.Outcome.Result != events.Result_RESULT_ALLOWED {
		return
	}
	method := ev.Action.Name
	short := method[strings.LastIndexByte(method, '.')+1:]
	var out []*events.GrantChange
	switch {
	case short == "SetIamPolicy" || strings.HasSuffix(strings.ToLower(short), "setiampolicy"):
		out = policyGrants(pp, resourceName)
	case short == "CreateServiceAccountKey" || short == "DeleteServiceAccountKey" || short == "UploadServiceAccountKey":
		op := events.GrantOp_GRANT_OP_ADD
		if strings.HasPrefix(short, "Delete") {
			op = events.GrantOp_GRANT_OP_REMOVE
		}
		keyName := record.Str(pp, "response", "name")
		if keyName == "" && op == events.GrantOp_GRANT_OP_REMOVE {
			keyName = firstNonEmpty(record.Str(pp, "request", "name"), resourceName)
		}
		sa := serviceAccountOf(labels, keyName, record.Str(pp, "request", "name"), resourceName)
		grant := "service_account_key"
		if strings.Contains(keyName, "/keys/") {
			grant = events.GCPKeyID("//iam.googleapis.com/" + strings.TrimPrefix(keyName, "//iam.googleapis.com/"))
		}
		out = append(out, &events.GrantChange{Op: op, Grantee: sa, Grant: grant, Mechanism: record.Snake(short)})
	case ev.Action.Service == "iamcredentials.googleapis.com" || short == "GenerateAccessToken" || short == "GenerateIdToken" || short == "SignJwt" || short == "SignBlob":
		target := serviceAccountOf(labels, record.Str(pp, "request", "name"), resourceName)
		if target != "" && target != ev.Identity.Id {
			out = append(out, &events.GrantChange{
				Op: events.GrantOp_GRANT_OP_ADD, Grantee: target, Grant: record.Snake(short), Mechanism: record.Snake(short),
				Principals: []string{ev.Identity.Id},
			})
			ev.Delegation = append(ev.Delegation, &events.Delegation{From: ev.Identity.Id, To: target, Kind: events.DelegationKind_DELEGATION_KIND_SERVICE_ACCOUNT_IMPERSONATION})
		}
	case ev.Action.Service == "iam.googleapis.com" && (short == "CreateRole" || short == "UpdateRole" || short == "DeleteRole" || short == "UndeleteRole"):
		op := map[string]events.GrantOp{"CreateRole": events.GrantOp_GRANT_OP_ADD, "UpdateRole": events.GrantOp_GRANT_OP_REPLACE, "DeleteRole": events.GrantOp_GRANT_OP_REMOVE, "UndeleteRole": events.GrantOp_GRANT_OP_ADD}[short]
		role := firstNonEmpty(record.Str(pp, "response", "name"), resourceName)
		perms := firstList(pp, [][]string{
			{"request", "role", "includedPermissions"}, {"request", "role", "included_permissions"},
			{"response", "includedPermissions"}, {"response", "included_permissions"},
			{"serviceData", "permissionDelta", "addedPermissions"},
		})
		out = append(out, &events.GrantChange{Op: op, Grantee: role, Grant: role, Permissions: perms, Scope: ev.Account, Mechanism: record.Snake(short)})
		if removed := record.Strings(pp, "serviceData", "permissionDelta", "removedPermissions"); len(removed) > 0 && op == events.GrantOp_GRANT_OP_REPLACE {
			out = append(out, &events.GrantChange{Op: events.GrantOp_GRANT_OP_REMOVE, Grantee: role, Grant: role, Permissions: removed, Scope: ev.Account, Mechanism: record.Snake(short)})
		}
	case ev.Action.Service == "k8s.io":
		out = gkeGrants(ev, pp, labels, method, resourceName)
	}
	if len(out) > maxGrantChanges {
		out = out[:maxGrantChanges]
	}
	ev.GrantChanges = out
}

// policyGrants reads SetIamPolicy: the binding deltas when the log has them, else every
// binding of the policy set (the whole policy is replaced).
func policyGrants(pp *fastjson.Value, resourceName string) []*events.GrantChange {
	var out []*events.GrantChange
	deltas := record.Array(pp, "serviceData", "policyDelta", "bindingDeltas")
	if deltas == nil {
		deltas = record.Array(pp, "metadata", "datasetChange", "bindingDeltas")
	}
	for _, d := range deltas {
		op := events.GrantOp_GRANT_OP_ADD
		if strings.EqualFold(record.Str(d, "action"), "REMOVE") {
			op = events.GrantOp_GRANT_OP_REMOVE
		}
		member := record.Str(d, "member")
		out = append(out, &events.GrantChange{Op: op, Grantee: MemberID(member), Grant: record.Str(d, "role"), Scope: resourceName, Mechanism: "set_iam_policy", Principals: []string{member}})
	}
	if len(deltas) > 0 {
		return out
	}
	bindings := record.Array(pp, "request", "policy", "bindings")
	if bindings == nil {
		bindings = record.Array(pp, "response", "bindings")
	}
	for _, b := range bindings {
		role := record.Str(b, "role")
		for _, member := range record.Strings(b, "members") {
			out = append(out, &events.GrantChange{Op: events.GrantOp_GRANT_OP_REPLACE, Grantee: MemberID(member), Grant: role, Scope: resourceName, Mechanism: "set_iam_policy", Principals: []string{member}})
		}
	}
	return out
}

// gkeGrants reads RBAC objects written through GKE (methodName
// io.k8s.authorization.rbac.v1.<resource>.<verb>) and token requests.
func gkeGrants(ev *events.Event, pp, labels *fastjson.Value, method, resourceName string) []*events.GrantChange {
	parts := strings.Split(method, ".")
	if len(parts) < 3 {
		return nil
	}
	verb, resource := parts[len(parts)-1], parts[len(parts)-2]
	sub := ""
	if resource == "token" && len(parts) >= 4 {
		resource, sub = parts[len(parts)-3], "token"
	}
	ns, name := "", resourceName[strings.LastIndexByte(resourceName, '/')+1:]
	if i := strings.Index(resourceName, "/namespaces/"); i >= 0 {
		ns, _, _ = strings.Cut(resourceName[i+len("/namespaces/"):], "/")
	}
	group := "core"
	if strings.Contains(method, ".rbac.") {
		group = "rbac.authorization.k8s.io"
	}
	return k8s.RBACGrants(record.Str(labels, "cluster_name"), ev.Identity.Id, verb, group, resource, sub, ns, name, record.Object(pp, "request"), record.Object(pp, "response"))
}

// serviceAccountOf finds the service account a key or credential call is about, from the
// first name of the form projects/P/serviceAccounts/EMAIL[/keys/K], else the resource's
// email_id label, else the numeric unique id in a name.
func serviceAccountOf(labels *fastjson.Value, names ...string) string {
	var uniqueID string
	for _, n := range names {
		if i := strings.Index(n, "/serviceAccounts/"); i >= 0 {
			id, _, _ := strings.Cut(n[i+len("/serviceAccounts/"):], "/")
			if strings.Contains(id, "@") {
				return events.GCPServiceAccountID(id)
			}
			if uniqueID == "" {
				uniqueID = id
			}
		}
	}
	if e := record.Str(labels, "email_id"); e != "" {
		return events.GCPServiceAccountID(e)
	}
	if uniqueID != "" {
		// A numeric unique id: the email is not in the entry.
		return "gcp:unique-id:" + uniqueID
	}
	return ""
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func firstList(v *fastjson.Value, paths [][]string) []string {
	for _, p := range paths {
		if l := record.Strings(v, p...); len(l) > 0 {
			return l
		}
	}
	return nil
}
