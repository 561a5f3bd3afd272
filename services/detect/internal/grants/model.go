// Package grants models what every identity may do: the grants inventory snapshots show
// (AWS authorization details and credential reports, GCP IAM policies and roles, Kubernetes
// RBAC), kept current from the grant changes in the event stream, and evaluated the way
// each provider evaluates them (AWS policy statements with wildcards, NotAction,
// NotResource and explicit Deny; GCP roles and their permissions; Kubernetes rules by verb,
// resource, API group, namespace and resource name).
//
// A Model is safe for concurrent use. Callers that need the effective-permission delta of
// a grant change call Delta before Apply.
package grants

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

// Model holds the grants of every identity: inventory snapshots, one per scope, with the
// changes seen in events on top.
type Model struct {
	mu     sync.RWMutex
	layers map[string]*Snapshot
	ov     overlay

	// Built from layers and overlay when dirty.
	dirty      bool
	defs       map[string]*Definition
	bindings   map[string][]Binding // by principal
	groupsOf   map[string][]string  // AWS member → group principals
	identities map[string]*Identity
	creds      map[string]*Credential
	entries    map[string][]*Entry // cache by identity + groups
	// since is when a binding or membership that events added came into force (by
	// bindingKey and membershipKey); snapshot ones are not in it (in force since before).
	since map[string]time.Time
}

// overlay is what events changed since the snapshots.
type overlay struct {
	defs        map[string]timed[Definition]
	bindings    map[string]timed[Binding] // by bindingKey
	removed     map[string]timed[Binding]
	memberships map[string]timed[Membership] // by member + group; zero Member when removed
	left        map[string]timed[Membership]
	creds       map[string]timed[Credential]
	// prev is what each definition carried before its latest change (for Delta).
	prev map[string]prevDefinition
}

type timed[T any] struct {
	v     T
	scope string
	at    time.Time
}

// NewModel returns an empty model that knows the built-in AWS managed policies and GCP
// predefined roles (see builtin.go).
func NewModel() *Model {
	return &Model{
		layers: map[string]*Snapshot{},
		ov: overlay{
			defs:        map[string]timed[Definition]{},
			bindings:    map[string]timed[Binding]{},
			removed:     map[string]timed[Binding]{},
			memberships: map[string]timed[Membership]{},
			left:        map[string]timed[Membership]{},
			creds:       map[string]timed[Credential]{},
			prev:        map[string]prevDefinition{},
		},
		dirty: true,
	}
}

// Import puts a snapshot in force, replacing any earlier snapshot of the same scope. Event
// changes of that scope older than the snapshot are dropped: the snapshot already shows
// their outcome. An older snapshot than the one in force is ignored.
func (m *Model) Import(s *Snapshot) error {
	if s == nil || s.Scope == "" {
		return fmt.Errorf("grants: snapshot without a scope")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.layers[s.Scope]; ok && s.Taken.Before(cur.Taken) {
		return nil
	}
	m.layers[s.Scope] = s
	dropOlder(m.ov.defs, s.Scope, s.Taken)
	// A definition the snapshot shows supersedes older changes of it, whatever their scope
	// (a role list and a single role describe the same role).
	for i := range s.Definitions {
		k := s.Definitions[i].Key
		if d, ok := m.ov.defs[k]; ok && !d.at.After(s.Taken) {
			delete(m.ov.defs, k)
		}
	}
	dropOlder(m.ov.bindings, s.Scope, s.Taken)
	dropOlder(m.ov.removed, s.Scope, s.Taken)
	dropOlder(m.ov.memberships, s.Scope, s.Taken)
	dropOlder(m.ov.left, s.Scope, s.Taken)
	dropOlder(m.ov.creds, s.Scope, s.Taken)
	m.dirty = true
	return nil
}

func dropOlder[T any](mp map[string]timed[T], scope string, t time.Time) {
	for k, v := range mp {
		if v.scope == scope && !v.at.After(t) {
			delete(mp, k)
		}
	}
}

// Snapshots returns the snapshots in force, sorted by scope.
func (m *Model) Snapshots() []*Snapshot {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*Snapshot, 0, len(m.layers))
	for _, s := range m.layers {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Scope < out[j].Scope })
	return out
}

func bindingKey(b Binding) string {
	k := b.Principal + "\x00" + b.Definition + "\x00" + b.Scope + "\x00" + b.Name
	if b.Boundary {
		k += "\x00boundary"
	}
	return k
}

func membershipKey(ms Membership) string { return ms.Member + "\x00" + ms.Group }

// rebuild recomputes the indexes; the caller holds the write lock.
func (m *Model) rebuild() {
	if !m.dirty {
		return
	}
	m.defs = builtinDefinitions()
	m.bindings = map[string][]Binding{}
	m.groupsOf = map[string][]string{}
	m.identities = map[string]*Identity{}
	m.creds = map[string]*Credential{}
	m.entries = map[string][]*Entry{}
	m.since = map[string]time.Time{}

	scopes := make([]string, 0, len(m.layers))
	for sc := range m.layers {
		scopes = append(scopes, sc)
	}
	sort.Strings(scopes)
	seenB := map[string]bool{}
	seenM := map[string]bool{}
	for _, sc := range scopes {
		s := m.layers[sc]
		for i := range s.Definitions {
			d := s.Definitions[i]
			m.defs[d.Key] = &d
		}
		for _, b := range s.Bindings {
			k := bindingKey(b)
			if _, gone := m.ov.removed[k]; gone || seenB[k] {
				continue
			}
			seenB[k] = true
			m.bindings[b.Principal] = append(m.bindings[b.Principal], b)
		}
		for _, ms := range s.Memberships {
			k := membershipKey(ms)
			if _, gone := m.ov.left[k]; gone || seenM[k] {
				continue
			}
			seenM[k] = true
			m.groupsOf[ms.Member] = append(m.groupsOf[ms.Member], ms.Group)
		}
		for i := range s.Identities {
			id := s.Identities[i]
			if prev, ok := m.identities[id.ID]; ok {
				mergeIdentity(prev, id)
				continue
			}
			m.identities[id.ID] = &id
		}
		for i := range s.Credentials {
			c := s.Credentials[i]
			m.creds[c.ID] = &c
		}
	}
	for _, k := range sortedKeys(m.ov.defs) {
		d := m.ov.defs[k].v
		m.defs[d.Key] = &d
	}
	for _, k := range sortedKeys(m.ov.bindings) {
		if seenB[k] {
			continue
		}
		b := m.ov.bindings[k].v
		m.bindings[b.Principal] = append(m.bindings[b.Principal], b)
		m.since[k] = m.ov.bindings[k].at
	}
	for _, k := range sortedKeys(m.ov.memberships) {
		if seenM[k] {
			continue
		}
		ms := m.ov.memberships[k].v
		m.groupsOf[ms.Member] = append(m.groupsOf[ms.Member], ms.Group)
		m.since[k] = m.ov.memberships[k].at
	}
	for _, k := range sortedKeys(m.ov.creds) {
		c := m.ov.creds[k].v
		if prev, ok := m.creds[c.ID]; ok && c.LastRotated.IsZero() {
			prev.Active = c.Active // deleted, deactivated or reactivated: its age is unchanged
			continue
		}
		m.creds[c.ID] = &c
	}
	m.dirty = false
}

func mergeIdentity(dst *Identity, src Identity) {
	if dst.Kind == "" {
		dst.Kind = src.Kind
	}
	if dst.Owner == "" {
		dst.Owner = src.Owner
	}
	if dst.Created.IsZero() {
		dst.Created = src.Created
	}
	if dst.Name == "" {
		dst.Name = src.Name
	}
}

func sortedKeys[T any](mp map[string]T) []string {
	out := make([]string, 0, len(mp))
	for k := range mp {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Identities returns the identities the snapshots list, sorted by id.
func (m *Model) Identities() []Identity {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rebuild()
	out := make([]Identity, 0, len(m.identities))
	for _, id := range m.identities {
		out = append(out, *id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Identity returns what the snapshots say about one identity.
func (m *Model) Identity(id string) (Identity, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rebuild()
	if v, ok := m.identities[id]; ok {
		return *v, true
	}
	return Identity{}, false
}

// Credentials returns the long-term credentials known, sorted by id.
func (m *Model) Credentials() []Credential {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rebuild()
	out := make([]Credential, 0, len(m.creds))
	for _, c := range m.creds {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Principals returns every principal that holds a binding directly, sorted.
func (m *Model) Principals() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rebuild()
	return sortedKeys(m.bindings)
}

// Definition returns a definition by key.
func (m *Model) Definition(key string) (Definition, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rebuild()
	if d, ok := m.defs[key]; ok {
		return *d, true
	}
	return Definition{}, false
}

// Definitions returns every definition of a kind, sorted by key.
func (m *Model) Definitions(kind string) []Definition {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rebuild()
	var out []Definition
	for _, d := range m.defs {
		if d.Kind == kind {
			out = append(out, *d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Entries returns the permission entries of an identity: its own bindings and those of its
// groups (IAM groups it is a member of; the Kubernetes groups given, plus the groups every
// service account is in). Boundaries are not entries.
func (m *Model) Entries(identity string, groups ...string) []Entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	es := m.entriesLocked(identity, groups)
	out := make([]Entry, len(es))
	for i, e := range es {
		out[i] = *e
	}
	return out
}

func (m *Model) entriesLocked(identity string, groups []string) []*Entry {
	m.rebuild()
	ck := identity
	if len(groups) > 0 {
		ck += "\x00" + strings.Join(groups, "\x00")
	}
	if es, ok := m.entries[ck]; ok {
		return es
	}
	var es []*Entry
	seen := map[string]bool{}
	add := func(principal, via string, joined time.Time) {
		for _, b := range m.bindings[principal] {
			if b.Boundary {
				continue
			}
			since := m.since[bindingKey(b)]
			if joined.After(since) {
				since = joined
			}
			for _, e := range m.expand(identity, b, via) {
				if k := e.Key(); !seen[k] {
					seen[k] = true
					e.Since = since
					es = append(es, e)
				}
			}
		}
	}
	add(identity, "direct", time.Time{})
	for _, g := range m.groupsOf[identity] {
		add(g, "group:"+groupName(g), m.since[membershipKey(Membership{Member: identity, Group: g})])
	}
	for _, g := range k8sGroups(identity, groups) {
		add(g, "group:"+groupName(g), time.Time{})
	}
	m.entries[ck] = es
	return es
}

// groupName is the short name of a group principal for display.
func groupName(principal string) string {
	if i := strings.LastIndex(principal, ":group/"); i >= 0 {
		return principal[i+len(":group/"):]
	}
	if i := strings.LastIndex(principal, ":group:"); i >= 0 {
		return principal[i+len(":group:"):]
	}
	return principal
}

// k8sGroups returns the group principals of a Kubernetes identity: the given groups, and
// for a service account the groups the API server always puts it in.
func k8sGroups(identity string, groups []string) []string {
	cluster, rest, ok := splitK8sID(identity)
	if !ok {
		return nil
	}
	set := map[string]bool{}
	for _, g := range groups {
		set[g] = true
	}
	if ns, ok := strings.CutPrefix(rest, "system:serviceaccount:"); ok {
		if i := strings.IndexByte(ns, ':'); i > 0 {
			set["system:serviceaccounts"] = true
			set["system:serviceaccounts:"+ns[:i]] = true
			set["system:authenticated"] = true
		}
	}
	out := make([]string, 0, len(set))
	for _, g := range sortedKeys(set) {
		out = append(out, K8sGroupPrincipal(cluster, g))
	}
	return out
}

// K8sGroupPrincipal is the principal of a Kubernetes group.
func K8sGroupPrincipal(cluster, group string) string { return "k8s:" + cluster + ":group:" + group }

// splitK8sID splits k8s:<cluster>:<rest>.
func splitK8sID(id string) (cluster, rest string, ok bool) {
	s, ok := strings.CutPrefix(id, "k8s:")
	if !ok {
		return "", "", false
	}
	cluster, rest, ok = strings.Cut(s, ":")
	return cluster, rest, ok
}

// expand turns one binding into entries.
func (m *Model) expand(identity string, b Binding, via string) []*Entry {
	if b.Name != "" && via == "direct" {
		via = "binding:" + b.Name
	} else if b.Name != "" {
		via += ",binding:" + b.Name
	}
	d, ok := m.defs[b.Definition]
	prov := providerOf(b.Principal, b.Definition)
	if !ok {
		return []*Entry{{
			Identity: identity, Provider: prov.Label(), Permission: "(" + b.Definition + ")",
			Grant: b.Definition, Via: via, Scope: orStar(b.Scope), Unresolved: true, prov: prov,
		}}
	}
	var out []*Entry
	switch d.Kind {
	case KindAWSManagedPolicy, KindAWSInlinePolicy:
		for i := range d.Statements {
			st := &d.Statements[i]
			base := Entry{
				Identity: identity, Provider: "aws", Grant: d.Name, Via: via, Scope: awsScope(st),
				Deny: st.Deny(), Conditional: st.Conditional, prov: events.Provider_PROVIDER_AWS, def: d,
			}
			if len(st.NotActions) > 0 {
				e := base
				e.Permission = "NotAction(" + strings.Join(st.NotActions, ",") + ")"
				e.stmt = st
				out = append(out, &e)
				continue
			}
			for _, a := range st.Actions {
				e := base
				e.Permission = a
				narrowed := *st
				narrowed.Actions = []string{a}
				e.stmt = &narrowed
				out = append(out, &e)
			}
		}
	case KindGCPRole:
		for _, p := range d.Permissions {
			out = append(out, &Entry{
				Identity: identity, Provider: "gcp", Permission: p, Grant: d.Name, Via: via,
				Scope: orStar(b.Scope), Conditional: b.Conditional, prov: events.Provider_PROVIDER_GCP, def: d,
			})
		}
	case KindK8sClusterRole, KindK8sRole:
		for i := range d.Rules {
			r := &d.Rules[i]
			base := Entry{
				Identity: identity, Provider: "k8s", Grant: d.Name, Via: via, Scope: orStar(b.Scope),
				prov: events.Provider_PROVIDER_K8S, def: d, rule: r,
			}
			for _, v := range r.Verbs {
				for _, res := range r.Resources {
					e := base
					e.verb, e.res = v, res
					e.Permission = v + " " + res
					if len(r.ResourceNames) > 0 {
						e.Permission += " (" + strings.Join(r.ResourceNames, ",") + ")"
					}
					out = append(out, &e)
				}
				for _, u := range r.NonResourceURLs {
					e := base
					e.verb, e.url = v, u
					e.Permission = v + " " + u
					if u == "*" {
						e.Permission = v + " /*" // shown as a path, apart from the resource "*"
					}
					e.Scope = "*"
					out = append(out, &e)
				}
			}
		}
	}
	for _, e := range out {
		e.Admin = !e.Deny && isAdminEntry(e)
	}
	return out
}

func orStar(s string) string {
	if s == "" {
		return "*"
	}
	return s
}

// providerOf guesses the provider of a principal or grant from its form.
func providerOf(principal, grant string) events.Provider {
	for _, s := range []string{principal, grant} {
		switch {
		case strings.HasPrefix(s, "aws:"), strings.HasPrefix(s, "arn:"), strings.HasPrefix(s, "inline:aws:"):
			return events.Provider_PROVIDER_AWS
		case strings.HasPrefix(s, "gcp:"), strings.HasPrefix(s, "roles/"), strings.HasPrefix(s, "projects/"), strings.HasPrefix(s, "organizations/"):
			return events.Provider_PROVIDER_GCP
		case strings.HasPrefix(s, "k8s:"):
			return events.Provider_PROVIDER_K8S
		}
	}
	return events.Provider_PROVIDER_UNSPECIFIED
}

// Decision is the outcome of evaluating a request against the model.
type Decision struct {
	// Allowed: an Allow entry matched, no Deny did, and the permissions boundary (if any)
	// allows it too.
	Allowed bool
	// Denied: an explicit Deny matched (it wins over any Allow).
	Denied bool
	// Known: the model holds grants for the identity at all.
	Known bool
	// Matched are the Allow entries that matched.
	Matched []Entry
}

// Evaluate decides whether the model grants the request.
func (m *Model) Evaluate(r Request) Decision {
	m.mu.Lock()
	defer m.mu.Unlock()
	es := m.entriesLocked(r.Identity, r.Groups)
	d := Decision{Known: len(es) > 0}
	for _, e := range es {
		if !e.matches(&r) {
			continue
		}
		if e.Deny {
			if !e.Conditional {
				d.Denied = true
			}
			continue
		}
		d.Matched = append(d.Matched, *e)
	}
	d.Allowed = len(d.Matched) > 0 && !d.Denied && m.boundaryAllows(&r)
	return d
}

// boundaryAllows applies an AWS permissions boundary: when the identity has one, the
// request must also be allowed, and not denied, by the boundary policy.
func (m *Model) boundaryAllows(r *Request) bool {
	for _, b := range m.bindings[r.Identity] {
		if !b.Boundary {
			continue
		}
		d, ok := m.defs[b.Definition]
		if !ok {
			return true // an unknown boundary cannot be evaluated; do not guess a denial
		}
		allowed := false
		for i := range d.Statements {
			st := &d.Statements[i]
			if !statementMatches(st, r) {
				continue
			}
			if st.Deny() {
				return false
			}
			allowed = true
		}
		return allowed
	}
	return true
}

// IsAdmin reports whether an identity holds an admin-equivalent grant.
func (m *Model) IsAdmin(identity string, groups ...string) bool {
	for _, e := range m.Entries(identity, groups...) {
		if e.Admin {
			return true
		}
	}
	return false
}
