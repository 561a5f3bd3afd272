package usage

import (
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/grants"
)

// maxScopedResources is how many distinct ARNs a least-privilege statement lists before it
// falls back to "*".
const maxScopedResources = 10

// LeastPrivilege returns the smallest grant that covers the observed uses: for AWS an IAM
// policy document with one statement per service, for GCP the predefined roles that cover
// the used permissions and a custom role of exactly those permissions, for Kubernetes the
// Role (per namespace) and ClusterRole manifests as YAML. nil when nothing was used.
func LeastPrivilege(p events.Provider, identity string, used []Use, model *grants.Model) any {
	if len(used) == 0 {
		return nil
	}
	switch p {
	case events.Provider_PROVIDER_AWS:
		return AWSPolicy(used)
	case events.Provider_PROVIDER_GCP:
		return GCPRoles(used, model)
	case events.Provider_PROVIDER_K8S:
		return K8sManifests(identity, used)
	}
	return nil
}

// AWSStatement is a statement of a generated policy.
type AWSStatement struct {
	Sid      string   `json:"Sid"`
	Effect   string   `json:"Effect"`
	Action   []string `json:"Action"`
	Resource []string `json:"Resource"`
}

// AWSPolicyDocument is a generated IAM policy.
type AWSPolicyDocument struct {
	Version   string         `json:"Version"`
	Statement []AWSStatement `json:"Statement"`
}

// AWSPolicy groups used actions by service; a service's statement names the ARNs its uses
// touched when every use named its ARNs and there are few, and "*" otherwise.
func AWSPolicy(used []Use) AWSPolicyDocument {
	type svc struct {
		actions   map[string]bool
		resources map[string]bool
		any       bool
	}
	by := map[string]*svc{}
	for _, u := range used {
		prefix, _, ok := strings.Cut(u.Permission, ":")
		if !ok {
			continue
		}
		s, ok := by[prefix]
		if !ok {
			s = &svc{actions: map[string]bool{}, resources: map[string]bool{}}
			by[prefix] = s
		}
		s.actions[u.Permission] = true
		s.any = s.any || u.AnyResource
		for _, r := range u.Resources {
			// AWS-owned ARNs (managed policies) are parameters, never the resource the
			// action is authorised on.
			if !strings.HasPrefix(r, "arn:aws:iam::aws:") {
				s.resources[r] = true
			}
		}
	}
	doc := AWSPolicyDocument{Version: "2012-10-17", Statement: []AWSStatement{}}
	for _, prefix := range sortedKeys(by) {
		s := by[prefix]
		res := []string{"*"}
		if !s.any && len(s.resources) > 0 && len(s.resources) <= maxScopedResources {
			res = sortedSet(s.resources)
		}
		doc.Statement = append(doc.Statement, AWSStatement{
			Sid: sid(prefix), Effect: "Allow", Action: sortedSet(s.actions), Resource: res,
		})
	}
	return doc
}

// sid makes a statement id from a service prefix: alphanumeric only.
func sid(prefix string) string {
	var b strings.Builder
	up := true
	for _, r := range prefix {
		switch {
		case r >= 'a' && r <= 'z':
			if up {
				r -= 'a' - 'A'
			}
			b.WriteRune(r)
			up = false
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			b.WriteRune(r)
			up = false
		default:
			up = true
		}
	}
	return b.String() + "Used"
}

// GCPLeastPrivilege is the GCP part of a least-privilege recommendation.
type GCPLeastPrivilege struct {
	// Roles are predefined roles that together cover every used permission they can,
	// chosen greedily (most uncovered permissions first, then the smaller role).
	Roles []string `json:"roles"`
	// Uncovered are used permissions no known predefined role covers.
	Uncovered []string `json:"uncovered"`
	// Excess counts the permissions the roles grant beyond what was used.
	Excess int `json:"excess"`
	// CustomRole is a role of exactly the used permissions, as `gcloud iam roles create
	// --file` reads it.
	CustomRole GCPCustomRole `json:"custom_role"`
}

// GCPCustomRole is a custom role definition.
type GCPCustomRole struct {
	Title               string   `json:"title"`
	Description         string   `json:"description"`
	Stage               string   `json:"stage"`
	IncludedPermissions []string `json:"includedPermissions"`
}

// GCPRoles finds predefined roles covering the used permissions and the custom role.
func GCPRoles(used []Use, model *grants.Model) GCPLeastPrivilege {
	need := map[string]bool{}
	for _, u := range used {
		need[u.Permission] = true
	}
	perms := sortedSet(need)
	out := GCPLeastPrivilege{
		Roles: []string{}, Uncovered: []string{},
		CustomRole: GCPCustomRole{Title: "Least privilege", Description: "Exactly the permissions observed in use (nhiwatch).", Stage: "GA", IncludedPermissions: perms},
	}
	type cand struct {
		name  string
		perms map[string]bool
	}
	var cands []cand
	for _, d := range model.Definitions(grants.KindGCPRole) {
		if !strings.HasPrefix(d.Name, "roles/") || len(d.Excluded) > 0 {
			continue
		}
		set := map[string]bool{}
		concrete := true
		for _, p := range d.Permissions {
			if strings.ContainsAny(p, "*?") {
				concrete = false
				break
			}
			set[p] = true
		}
		if concrete {
			cands = append(cands, cand{d.Name, set})
		}
	}
	left := map[string]bool{}
	for _, p := range perms {
		left[p] = true
	}
	chosen := map[string]bool{}
	for len(left) > 0 {
		best, bestN := -1, 0
		for i, c := range cands {
			n := 0
			for p := range left {
				if c.perms[p] {
					n++
				}
			}
			if n > bestN || (n == bestN && n > 0 && len(c.perms) < len(cands[best].perms)) ||
				(n == bestN && n > 0 && len(c.perms) == len(cands[best].perms) && c.name < cands[best].name) {
				best, bestN = i, n
			}
		}
		if best < 0 {
			break
		}
		out.Roles = append(out.Roles, cands[best].name)
		for p := range cands[best].perms {
			chosen[p] = true
			delete(left, p)
		}
	}
	out.Uncovered = sortedSet(left)
	for p := range chosen {
		if !need[p] {
			out.Excess++
		}
	}
	sort.Strings(out.Roles)
	return out
}

type k8sRuleDoc struct {
	APIGroups       []string `yaml:"apiGroups,omitempty"`
	Resources       []string `yaml:"resources,omitempty"`
	NonResourceURLs []string `yaml:"nonResourceURLs,omitempty"`
	Verbs           []string `yaml:"verbs"`
}

type k8sRoleDoc struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace,omitempty"`
	} `yaml:"metadata"`
	Rules []k8sRuleDoc `yaml:"rules"`
}

// K8sManifests returns a Role per namespace the uses touched and a ClusterRole for
// cluster-scoped resources and non-resource URLs, as multi-document YAML.
func K8sManifests(identity string, used []Use) string {
	type key struct{ ns, group, res string }
	verbs := map[key]map[string]bool{}
	urls := map[string]map[string]bool{}
	for _, u := range used {
		verb, res := grants.K8sPermission(u.Permission)
		if verb == "" || res == "" {
			continue
		}
		if strings.HasPrefix(res, "/") {
			if urls[res] == nil {
				urls[res] = map[string]bool{}
			}
			urls[res][verb] = true
			continue
		}
		nss, groups := u.Namespaces, u.APIGroups
		if len(nss) == 0 {
			nss = []string{""}
		}
		if len(groups) == 0 {
			groups = []string{""}
		}
		for _, ns := range nss {
			for _, g := range groups {
				k := key{ns, g, res}
				if verbs[k] == nil {
					verbs[k] = map[string]bool{}
				}
				verbs[k][verb] = true
			}
		}
	}
	name := k8sName(identity) + "-least-privilege"
	byNS := map[string][]k8sRuleDoc{}
	keys := make([]key, 0, len(verbs))
	for k := range verbs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.ns != b.ns {
			return a.ns < b.ns
		}
		if a.group != b.group {
			return a.group < b.group
		}
		return a.res < b.res
	})
	for _, k := range keys {
		vs := sortedSet(verbs[k])
		rules := byNS[k.ns]
		merged := false
		for i := range rules { // one rule per API group and verb set
			r := &rules[i]
			if len(r.APIGroups) == 1 && r.APIGroups[0] == k.group && strings.Join(r.Verbs, ",") == strings.Join(vs, ",") {
				r.Resources = append(r.Resources, k.res)
				merged = true
				break
			}
		}
		if !merged {
			rules = append(rules, k8sRuleDoc{APIGroups: []string{k.group}, Resources: []string{k.res}, Verbs: vs})
		}
		byNS[k.ns] = rules
	}
	for _, u := range sortedKeys(urls) {
		byNS[""] = append(byNS[""], k8sRuleDoc{NonResourceURLs: []string{u}, Verbs: sortedSet(urls[u])})
	}
	var docs []string
	for _, ns := range sortedKeys(byNS) {
		d := k8sRoleDoc{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role", Rules: byNS[ns]}
		d.Metadata.Name, d.Metadata.Namespace = name, ns
		if ns == "" {
			d.Kind = "ClusterRole"
		}
		b, err := yaml.Marshal(d)
		if err != nil {
			continue // plain structs of strings always marshal
		}
		docs = append(docs, string(b))
	}
	return strings.Join(docs, "---\n")
}

// k8sName is a DNS-1123 name for the identity: the service account or user name.
func k8sName(identity string) string {
	name := identity
	if i := strings.LastIndexByte(identity, ':'); i >= 0 {
		name = identity[i+1:]
	}
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	s := strings.Trim(b.String(), "-.")
	if s == "" {
		s = "identity"
	}
	return s
}

func sortedKeys[T any](m map[string]T) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
