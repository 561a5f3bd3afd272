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
//
// The indexes of the snapshots (base) are rebuilt when a snapshot is imported; the changes
// of events are kept apart (overlay) and looked up over the base, so that applying a grant
// change costs in proportion to the changes, not to the inventory.
type Model struct {
	mu     sync.RWMutex
	layers map[string]*Snapshot
	ov     overlay

	baseDirty bool
	base      base
	// dirty marks the caches stale after a change.
	dirty     bool
	entries   map[string]map[string][]*Entry // by identity, then its groups
	bindCache map[string][]Binding           // bindings in force, by principal
	// scratch holds definitions Delta evaluates without putting them in force.
	scratch map[string]*Definition
}

// base is what the snapshots show.
type base struct {
	defs        map[string]*Definition
	bindings    map[string][]Binding // by principal
	bindingKeys map[string]bool
	groupsOf    map[string][]string // AWS member → group principals
	memberKeys  map[string]bool
	identities  map[string]*Identity
	creds       map[string]*Credential
}

// overlay is what events changed since the snapshots, with indexes by principal and
// member kept current as it changes.
type overlay struct {
	defs        map[string]timed[*Definition]
	bindings    map[string]timed[Binding] // by bindingKey
	removed     map[string]timed[Binding]
	memberships map[string]timed[Membership] // by membershipKey
	left        map[string]timed[Membership]
	creds       map[string]timed[Credential]
	// prev is what each definition carried before its latest change (for Delta).
	prev map[string]prevDefinition

	bindingsBy, removedBy map[string]map[string]bool // principal → binding keys
	groupsBy, leftBy      map[string]map[string]bool // member → membership keys
}

func newOverlay() overlay {
	return overlay{
		defs: map[string]timed[*Definition]{}, bindings: map[string]timed[Binding]{}, removed: map[string]timed[Binding]{},
		memberships: map[string]timed[Membership]{}, left: map[string]timed[Membership]{}, creds: map[string]timed[Credential]{},
		prev:       map[string]prevDefinition{},
		bindingsBy: map[string]map[string]bool{}, removedBy: map[string]map[string]bool{},
		groupsBy: map[string]map[string]bool{}, leftBy: map[string]map[string]bool{},
	}
}

func index(idx map[string]map[string]bool, owner, key string, add bool) {
	if add {
		if idx[owner] == nil {
			idx[owner] = map[string]bool{}
		}
		idx[owner][key] = true
		return
	}
	delete(idx[owner], key)
	if len(idx[owner]) == 0 {
		delete(idx, owner)
	}
}

// put and drop change an overlay map and its index by owner together.
func put[T any](mp map[string]timed[T], idx map[string]map[string]bool, k, owner string, t timed[T]) {
	mp[k] = t
	index(idx, owner, k, true)
}

func drop[T any](mp map[string]timed[T], idx map[string]map[string]bool, k string, owner func(T) string) {
	if t, ok := mp[k]; ok {
		delete(mp, k)
		index(idx, owner(t.v), k, false)
	}
}

func principalOf(b Binding) string  { return b.Principal }
func memberOf(ms Membership) string { return ms.Member }

func (o *overlay) setBinding(k string, t timed[Binding]) {
	put(o.bindings, o.bindingsBy, k, t.v.Principal, t)
}
func (o *overlay) delBinding(k string) { drop(o.bindings, o.bindingsBy, k, principalOf) }
func (o *overlay) setRemoved(k string, t timed[Binding]) {
	put(o.removed, o.removedBy, k, t.v.Principal, t)
}
func (o *overlay) delRemoved(k string) { drop(o.removed, o.removedBy, k, principalOf) }
func (o *overlay) setMembership(k string, t timed[Membership]) {
	put(o.memberships, o.groupsBy, k, t.v.Member, t)
}
func (o *overlay) delMembership(k string)                { drop(o.memberships, o.groupsBy, k, memberOf) }
func (o *overlay) setLeft(k string, t timed[Membership]) { put(o.left, o.leftBy, k, t.v.Member, t) }
func (o *overlay) delLeft(k string)                      { drop(o.left, o.leftBy, k, memberOf) }

// reindex rebuilds the indexes after entries were dropped from the maps directly.
func (o *overlay) reindex() {
	o.bindingsBy, o.removedBy, o.groupsBy, o.leftBy = map[string]map[string]bool{}, map[string]map[string]bool{}, map[string]map[string]bool{}, map[string]map[string]bool{}
	for k, t := range o.bindings {
		index(o.bindingsBy, t.v.Principal, k, true)
	}
	for k, t := range o.removed {
		index(o.removedBy, t.v.Principal, k, true)
	}
	for k, t := range o.memberships {
		index(o.groupsBy, t.v.Member, k, true)
	}
	for k, t := range o.left {
		index(o.leftBy, t.v.Member, k, true)
	}
}

type timed[T any] struct {
	v     T
	scope string
	at    time.Time
}

// NewModel returns an empty model that knows the built-in AWS managed policies and GCP
// predefined roles (see builtin.go).
func NewModel() *Model {
	return &Model{layers: map[string]*Snapshot{}, ov: newOverlay(), baseDirty: true, dirty: true}
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
	m.baseDirty = true
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
	m.ov.reindex()
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

// rebuild recomputes what is stale; the caller holds the write lock.
func (m *Model) rebuild() {
	if m.baseDirty {
		m.buildBase()
		m.baseDirty, m.dirty = false, true
	}
	if m.dirty {
		m.entries, m.bindCache = map[string]map[string][]*Entry{}, map[string][]Binding{}
		m.dirty = false
	}
}

// buildBase indexes the snapshots, in scope order.
func (m *Model) buildBase() {
	b := base{
		defs: builtinDefinitions(), bindings: map[string][]Binding{}, bindingKeys: map[string]bool{},
		groupsOf: map[string][]string{}, memberKeys: map[string]bool{}, identities: map[string]*Identity{}, creds: map[string]*Credential{},
	}
	for _, sc := range sortedKeys(m.layers) {
		s := m.layers[sc]
		for i := range s.Definitions {
			b.defs[s.Definitions[i].Key] = &s.Definitions[i]
		}
		for _, bd := range s.Bindings {
			if k := bindingKey(bd); !b.bindingKeys[k] {
				b.bindingKeys[k] = true
				b.bindings[bd.Principal] = append(b.bindings[bd.Principal], bd)
			}
		}
		for _, ms := range s.Memberships {
			if k := membershipKey(ms); !b.memberKeys[k] {
				b.memberKeys[k] = true
				b.groupsOf[ms.Member] = append(b.groupsOf[ms.Member], ms.Group)
			}
		}
		for i := range s.Identities {
			id := s.Identities[i]
			if prev, ok := b.identities[id.ID]; ok {
				mergeIdentity(prev, id)
				continue
			}
			b.identities[id.ID] = &id
		}
		for i := range s.Credentials {
			b.creds[s.Credentials[i].ID] = &s.Credentials[i]
		}
	}
	m.base = b
}

// def looks a definition up: Delta's scratch, then the events', then the snapshots'.
func (m *Model) def(key string) (*Definition, bool) {
	if d, ok := m.scratch[key]; ok {
		return d, true
	}
	if d, ok := m.ov.defs[key]; ok {
		return d.v, true
	}
	d, ok := m.base.defs[key]
	return d, ok
}

// bindingsOf returns the bindings of a principal in force: the snapshots' but those events
// removed, then those events added.
func (m *Model) bindingsOf(p string) []Binding {
	if bs, ok := m.bindCache[p]; ok {
		return bs
	}
	bs, added, removed := m.base.bindings[p], m.ov.bindingsBy[p], m.ov.removedBy[p]
	if len(added) > 0 || len(removed) > 0 {
		out := make([]Binding, 0, len(bs)+len(added))
		for _, b := range bs {
			if !removed[bindingKey(b)] {
				out = append(out, b)
			}
		}
		for _, k := range sortedKeys(added) {
			if !m.base.bindingKeys[k] {
				out = append(out, m.ov.bindings[k].v)
			}
		}
		bs = out
	}
	m.bindCache[p] = bs
	return bs
}

// bindingSince is when a binding came into force, when an event showed it.
func (m *Model) bindingSince(b Binding) time.Time {
	k := bindingKey(b)
	if m.base.bindingKeys[k] {
		return time.Time{}
	}
	return m.ov.bindings[k].at
}

// groupsOfMember returns the IAM groups of a member in force.
func (m *Model) groupsOfMember(member string) []string {
	gs, joined, left := m.base.groupsOf[member], m.ov.groupsBy[member], m.ov.leftBy[member]
	if len(joined) == 0 && len(left) == 0 {
		return gs
	}
	out := make([]string, 0, len(gs)+len(joined))
	for _, g := range gs {
		if !left[membershipKey(Membership{Member: member, Group: g})] {
			out = append(out, g)
		}
	}
	for _, k := range sortedKeys(joined) {
		if !m.base.memberKeys[k] {
			out = append(out, m.ov.memberships[k].v.Group)
		}
	}
	return out
}

// membershipSince is when a member joined a group, when an event showed it.
func (m *Model) membershipSince(member, group string) time.Time {
	k := membershipKey(Membership{Member: member, Group: group})
	if m.base.memberKeys[k] {
		return time.Time{}
	}
	return m.ov.memberships[k].at
}

// members returns every member of some group, sorted.
func (m *Model) members() []string {
	set := make(map[string]bool, len(m.base.groupsOf)+len(m.ov.groupsBy))
	for member := range m.base.groupsOf {
		set[member] = true
	}
	for member := range m.ov.groupsBy {
		set[member] = true
	}
	return sortedKeys(set)
}

// principals returns every principal holding a binding in force, sorted.
func (m *Model) principals() []string {
	var out []string
	for p := range m.base.bindings {
		if len(m.bindingsOf(p)) > 0 {
			out = append(out, p)
		}
	}
	for p := range m.ov.bindingsBy {
		if _, ok := m.base.bindings[p]; !ok && len(m.bindingsOf(p)) > 0 {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// eachBinding calls fn for every binding in force.
func (m *Model) eachBinding(fn func(principal string, b Binding)) {
	for _, p := range m.principals() {
		for _, b := range m.bindingsOf(p) {
			fn(p, b)
		}
	}
}

// definitionKeys returns the key of every definition in force.
func (m *Model) definitionKeys() []string {
	set := make(map[string]bool, len(m.base.defs)+len(m.ov.defs))
	for k := range m.base.defs {
		set[k] = true
	}
	for k := range m.ov.defs {
		set[k] = true
	}
	return sortedKeys(set)
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
	out := make([]Identity, 0, len(m.base.identities))
	for _, id := range m.base.identities {
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
	if v, ok := m.base.identities[id]; ok {
		return *v, true
	}
	return Identity{}, false
}

// Credentials returns the long-term credentials known, sorted by id: the snapshots', with
// the keys events created, deleted or (de)activated.
func (m *Model) Credentials() []Credential {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rebuild()
	creds := make(map[string]Credential, len(m.base.creds)+len(m.ov.creds))
	for k, c := range m.base.creds {
		creds[k] = *c
	}
	for _, k := range sortedKeys(m.ov.creds) {
		c := m.ov.creds[k].v
		if prev, ok := creds[c.ID]; ok && c.LastRotated.IsZero() {
			prev.Active = c.Active // deleted, deactivated or reactivated: its age is unchanged
			creds[c.ID] = prev
			continue
		}
		creds[c.ID] = c
	}
	out := make([]Credential, 0, len(creds))
	for _, k := range sortedKeys(creds) {
		out = append(out, creds[k])
	}
	return out
}

// Principals returns every principal that holds a binding directly, sorted.
func (m *Model) Principals() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rebuild()
	return m.principals()
}

// Definition returns a definition by key.
func (m *Model) Definition(key string) (Definition, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rebuild()
	if d, ok := m.def(key); ok {
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
	for _, k := range m.definitionKeys() {
		if d, _ := m.def(k); d.Kind == kind {
			out = append(out, *d)
		}
	}
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
	gk := ""
	if len(groups) > 0 {
		gk = strings.Join(groups, "\x00")
	}
	if es, ok := m.entries[identity][gk]; ok {
		return es
	}
	var es []*Entry
	seen := map[string]bool{}
	add := func(principal, via string, joined time.Time) {
		for _, b := range m.bindingsOf(principal) {
			if b.Boundary {
				continue
			}
			since := m.bindingSince(b)
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
	for _, g := range m.groupsOfMember(identity) {
		add(g, "group:"+groupName(g), m.membershipSince(identity, g))
	}
	for _, g := range k8sGroups(identity, groups) {
		add(g, "group:"+groupName(g), time.Time{})
	}
	if m.entries[identity] == nil {
		m.entries[identity] = map[string][]*Entry{}
	}
	m.entries[identity][gk] = es
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
	d, ok := m.def(b.Definition)
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
	for _, b := range m.bindingsOf(r.Identity) {
		if !b.Boundary {
			continue
		}
		d, ok := m.def(b.Definition)
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
