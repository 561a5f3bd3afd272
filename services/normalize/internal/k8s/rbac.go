package k8s

import (
	"strings"

	"github.com/valyala/fastjson"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/normalize/internal/record"
)

const rbacGroup = "rbac.authorization.k8s.io"

// maxGrantChanges bounds the grant changes of one event.
const maxGrantChanges = 128

// grants derives the RBAC grant changes of a successful write, and the token a request made
// for another service account.
func (p *Parser) grants(v *fastjson.Value, ev *events.Event, cluster, resource, sub, namespace, name string) {
	if ev.Outcome.Result != events.Result_RESULT_ALLOWED {
		return
	}
	ev.GrantChanges = RBACGrants(cluster, ev.Identity.Id, ev.Action.Name, ev.Action.Service, resource, sub, namespace, name,
		record.Object(v, "requestObject"), record.Object(v, "responseObject"))
}

// RBACGrants derives the grant changes of a successful write of an RBAC object ((Cluster)Role
// rules, (Cluster)RoleBinding subjects and roleRef) or of a token request for another
// service account. req and resp are the request and response bodies when logged.
func RBACGrants(cluster, actor, verb, group, resource, sub, namespace, name string, req, resp *fastjson.Value) []*events.GrantChange {
	var op events.GrantOp
	switch verb {
	case "create":
		op = events.GrantOp_GRANT_OP_ADD
	case "update", "patch":
		op = events.GrantOp_GRANT_OP_REPLACE
	case "delete":
		op = events.GrantOp_GRANT_OP_REMOVE
	default:
		return nil
	}
	// The object as written: the request body, else the body the server answered with.
	obj := req
	if obj == nil || (obj.Get("subjects") == nil && obj.Get("roleRef") == nil && obj.Get("rules") == nil) {
		if resp != nil {
			obj = resp
		}
	}
	if name == "" {
		name = record.Str(obj, "metadata", "name")
	}
	scope := namespace
	if scope == "" {
		scope = "*"
	}
	var out []*events.GrantChange
	switch {
	case group == rbacGroup && (resource == "rolebindings" || resource == "clusterrolebindings"):
		mech := "role_binding"
		if resource == "clusterrolebindings" {
			mech = "cluster_role_binding"
		}
		grant := record.Str(obj, "roleRef", "kind") + "/" + record.Str(obj, "roleRef", "name")
		if grant == "/" {
			grant = ""
		}
		subjects := record.Array(obj, "subjects")
		for _, s := range subjects {
			who := subjectID(s, cluster, namespace)
			if who == "" {
				continue
			}
			out = append(out, &events.GrantChange{Op: op, Grantee: who, Grant: grant, Scope: scope, Mechanism: mech, Principals: []string{who}})
		}
		if len(subjects) == 0 {
			// A delete (or a patch without subjects) names only the binding.
			out = append(out, &events.GrantChange{Op: op, Grantee: objectID(namespace, resource, name), Grant: grant, Scope: scope, Mechanism: mech})
		}
	case group == rbacGroup && (resource == "roles" || resource == "clusterroles"):
		kind := "Role"
		if resource == "clusterroles" {
			kind = "ClusterRole"
		}
		out = append(out, &events.GrantChange{
			Op: op, Grantee: objectID(namespace, resource, name), Grant: kind + "/" + name,
			Permissions: rulePermissions(record.Array(obj, "rules")), Scope: scope, Mechanism: "role_rules",
		})
	case resource == "serviceaccounts" && sub == "token" && verb == "create":
		target := events.K8sServiceAccountID(cluster, namespace, name)
		if target != actor {
			out = append(out, &events.GrantChange{
				Op: events.GrantOp_GRANT_OP_ADD, Grantee: target, Grant: "token", Scope: namespace,
				Mechanism: "create_token", Principals: []string{actor},
			})
		}
	}
	if len(out) > maxGrantChanges {
		out = out[:maxGrantChanges]
	}
	return out
}

// subjectID is the canonical id of a binding subject: service accounts and users as identity
// ids, groups as k8s:<cluster>:group:<name>.
func subjectID(s *fastjson.Value, cluster, bindingNamespace string) string {
	name := record.Str(s, "name")
	if name == "" {
		return ""
	}
	switch record.Str(s, "kind") {
	case "ServiceAccount":
		ns := record.Str(s, "namespace")
		if ns == "" {
			ns = bindingNamespace
		}
		return events.K8sServiceAccountID(cluster, ns, name)
	case "Group":
		return "k8s:" + cluster + ":group:" + name
	default:
		if strings.HasPrefix(name, "system:serviceaccount:") {
			ns, sa, _ := strings.Cut(strings.TrimPrefix(name, "system:serviceaccount:"), ":")
			return events.K8sServiceAccountID(cluster, ns, sa)
		}
		return events.K8sUserID(cluster, name)
	}
}

// maxRulePermissions bounds the permissions listed for one role.
const maxRulePermissions = 256

// rulePermissions lists a role's rules as "verb resource", the form events name the permission
// they exercised (without the API group), and "verb /url" for non-resource URLs.
func rulePermissions(rules []*fastjson.Value) []string {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] && len(out) < maxRulePermissions {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, r := range rules {
		verbs := record.Strings(r, "verbs")
		for _, verb := range verbs {
			for _, res := range record.Strings(r, "resources") {
				add(verb + " " + res)
			}
			for _, url := range record.Strings(r, "nonResourceURLs") {
				add(verb + " " + url)
			}
		}
	}
	return out
}
