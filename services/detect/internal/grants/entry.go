package grants

import (
	"strings"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

// matches reports whether the entry applies to the request: permission, resources and scope.
func (e *Entry) matches(r *Request) bool {
	if e.Unresolved {
		return false
	}
	switch e.prov {
	case events.Provider_PROVIDER_AWS:
		return statementMatches(e.stmt, r)
	case events.Provider_PROVIDER_GCP:
		return gcpScopeMatch(e.Scope, r) && e.covers(r.Permission)
	case events.Provider_PROVIDER_K8S:
		return e.k8sMatches(r)
	}
	return false
}

// covers reports whether the entry's permission pattern covers perm, read literally (a
// pattern in perm stands for itself), whatever the resources.
func (e *Entry) covers(perm string) bool {
	if e.Unresolved || perm == "" {
		return false
	}
	switch e.prov {
	case events.Provider_PROVIDER_AWS:
		if len(e.stmt.Actions) > 0 && !awsActionMatch(e.stmt.Actions, perm) {
			return false
		}
		return len(e.stmt.NotActions) == 0 || !awsActionMatch(e.stmt.NotActions, perm)
	case events.Provider_PROVIDER_GCP:
		if !Glob(e.Permission, perm, false) {
			return false
		}
		for _, x := range e.def.Excluded {
			if Glob(x, perm, false) {
				return false
			}
		}
		return true
	case events.Provider_PROVIDER_K8S:
		verb, res := K8sPermission(perm)
		if e.url != "" {
			return (e.verb == "*" || e.verb == verb) && strings.HasPrefix(res, "/") && k8sURLMatch(e.url, res)
		}
		return (e.verb == "*" || e.verb == verb) && !strings.HasPrefix(res, "/") && k8sResourceMatch(e.res, res)
	}
	return false
}

func (e *Entry) k8sMatches(r *Request) bool {
	verb, res := K8sPermission(r.Permission)
	if e.verb != "*" && e.verb != verb {
		return false
	}
	if e.url != "" {
		return strings.HasPrefix(res, "/") && k8sURLMatch(e.url, res)
	}
	if strings.HasPrefix(res, "/") || !k8sResourceMatch(e.res, res) {
		return false
	}
	if e.Scope != "*" && e.Scope != r.Namespace {
		return false
	}
	if !k8sGroupMatch(e.rule.APIGroups, r.APIGroup) {
		return false
	}
	if len(e.rule.ResourceNames) > 0 {
		for _, want := range e.rule.ResourceNames {
			for _, got := range r.ResourceNames {
				if want == got {
					return true
				}
			}
		}
		return false
	}
	return true
}

// K8sPermission splits a Kubernetes permission "verb resource[/subresource]" (or
// "verb /non-resource/url") into its verb and resource.
func K8sPermission(p string) (verb, resource string) {
	verb, resource, _ = strings.Cut(strings.TrimSpace(p), " ")
	return verb, strings.TrimSpace(resource)
}

// k8sResourceMatch is RBAC's resource match: `*`, the exact resource[/subresource], or
// `*/subresource`.
func k8sResourceMatch(rule, res string) bool {
	if rule == "*" || rule == res {
		return true
	}
	if _, sub, ok := strings.Cut(res, "/"); ok && rule == "*/"+sub {
		return true
	}
	return false
}

// unknownAPIGroup stands for an event that does not say which API group it used.
const unknownAPIGroup = "\x00unknown"

// k8sGroupMatch is RBAC's API group match; an unknown group (an event that does not say)
// matches.
func k8sGroupMatch(groups []string, g string) bool {
	if g == unknownAPIGroup {
		return true
	}
	if len(groups) == 0 {
		return g == "" // a rule with no apiGroups matches the core group only
	}
	for _, x := range groups {
		if x == "*" || x == g {
			return true
		}
	}
	return false
}

// k8sURLMatch is RBAC's non-resource URL match: exact, or a prefix ending in `*`.
func k8sURLMatch(rule, path string) bool {
	if rule == "*" || rule == path {
		return true
	}
	return strings.HasSuffix(rule, "*") && strings.HasPrefix(path, strings.TrimSuffix(rule, "*"))
}

// gcpScopeMatch reports whether a binding on resource scope applies to a request. A project
// binding applies in that project; a binding on a resource inside a project (a bucket, a
// service account, a Cloud Run service) applies to requests on that resource or below it;
// a folder or organization binding applies everywhere it was imported for (the hierarchy
// between them and projects is not known here).
func gcpScopeMatch(scope string, r *Request) bool {
	if scope == "" || scope == "*" {
		return true
	}
	rest, ok := strings.CutPrefix(scope, "projects/")
	if !ok {
		return true
	}
	project, below, inside := strings.Cut(rest, "/")
	if r.Account != "" && project != r.Account {
		return false
	}
	if !inside || below == "" {
		return true
	}
	for _, res := range append(append([]string(nil), r.Resources...), r.ResourceNames...) {
		res = strings.TrimPrefix(res, "//")
		if i := strings.Index(res, "projects/"); i > 0 && !strings.HasPrefix(res, "projects/") {
			res = res[i:] // //run.googleapis.com/projects/p/… names the service first
		}
		if res == scope || strings.HasPrefix(res, scope+"/") {
			return true
		}
	}
	return false
}
