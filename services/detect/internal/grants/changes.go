package grants

import (
	"strings"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

// Grant changes from events.
//
// The mechanisms below are the ones normalize emits (services/normalize/internal/cloudtrail,
// gcp and k8s, grants.go and rbac.go); TestNormalizedGrantChanges in cmd/nhiwatch runs the
// real normalizer over the repository's audit logs into this code, so the two cannot drift
// apart unnoticed. A mechanism not listed changes nothing: trust policies, resource
// policies, shared snapshots, passed roles and login profiles say who may reach a resource
// or assume a role, not what an identity's own grants allow, and a change this model does
// not understand is better ignored than turned into a wrong grant.

// changeKind says what a grant change does to the model.
type changeKind int

const (
	changeIgnored changeKind = iota
	// changeBinding gives or takes a definition from a principal: an attached or inline
	// policy, a SetIamPolicy binding, a (Cluster)RoleBinding subject.
	changeBinding
	// changeBindingObject deletes a (Cluster)RoleBinding named by its object path.
	changeBindingObject
	// changeMembership puts an IAM user in a group or takes it out.
	changeMembership
	// changeBoundary sets or removes an AWS permissions boundary.
	changeBoundary
	// changeDefinition changes what a definition carries: a policy version, a GCP custom
	// role, a (Cluster)Role's rules.
	changeDefinition
	// changeCredential creates, deletes, activates or deactivates a long-term key.
	changeCredential
)

var awsKinds = map[string]changeKind{
	"attach_user_policy": changeBinding, "attach_role_policy": changeBinding, "attach_group_policy": changeBinding,
	"detach_user_policy": changeBinding, "detach_role_policy": changeBinding, "detach_group_policy": changeBinding,
	"put_user_policy": changeBinding, "put_role_policy": changeBinding, "put_group_policy": changeBinding,
	"delete_user_policy": changeBinding, "delete_role_policy": changeBinding, "delete_group_policy": changeBinding,
	"create_policy_version": changeDefinition, "set_default_policy_version": changeDefinition,
	"add_user_to_group": changeMembership, "remove_user_from_group": changeMembership,
	"put_user_permissions_boundary": changeBoundary, "put_role_permissions_boundary": changeBoundary,
	"delete_user_permissions_boundary": changeBoundary, "delete_role_permissions_boundary": changeBoundary,
	"create_access_key": changeCredential, "delete_access_key": changeCredential, "update_access_key": changeCredential,
}

var gcpKinds = map[string]changeKind{
	"set_iam_policy": changeBinding,
	"create_role":    changeDefinition, "update_role": changeDefinition, "delete_role": changeDefinition, "undelete_role": changeDefinition,
	"create_service_account_key": changeCredential, "upload_service_account_key": changeCredential,
	"delete_service_account_key": changeCredential,
}

// k8sKinds apply whatever the event's provider: GKE writes RBAC objects through GCP audit logs.
var k8sKinds = map[string]changeKind{
	"role_binding": changeBinding, "cluster_role_binding": changeBinding, "role_rules": changeDefinition,
}

// ignoredMechanisms are the mechanisms normalize emits that do not change an identity's own
// grants, each for a reason: trust policies and Roles Anywhere profiles (who may assume a
// role), login profiles, SSH keys, signing certificates and service-specific credentials
// (credentials of people or of one service, not permissions), instance profiles and passed
// roles (a resource acts as the role), resource policies and shared snapshots or images
// (who may reach a resource: out of scope), Identity Center assignments (people), and
// short-lived tokens minted for another identity (delegation, which the detectors follow).
var ignoredMechanisms = map[string]bool{
	"create_role": true, "update_assume_role_policy": true, "create_profile": true, "update_profile": true,
	"create_login_profile": true, "update_login_profile": true, "delete_login_profile": true,
	"create_service_specific_credential": true, "upload_ssh_public_key": true,
	"upload_signing_certificate":   true,
	"add_role_to_instance_profile": true, "remove_role_from_instance_profile": true, "pass_role": true,
	"lambda_add_permission": true, "lambda_remove_permission": true, "put_bucket_policy": true, "put_key_policy": true,
	"put_secret_resource_policy": true, "set_repository_policy": true, "put_glue_resource_policy": true,
	"share_snapshot": true, "share_image": true, "share_db_snapshot": true,
	"create_account_assignment": true, "delete_account_assignment": true,
	"generate_access_token": true, "generate_id_token": true, "sign_jwt": true, "sign_blob": true, "create_token": true,
}

// KnownMechanism reports whether this package models a grant-change mechanism or ignores it
// on purpose; an unknown one is ignored too, but is a sign that normalize learned something
// this model has not.
func KnownMechanism(p events.Provider, mechanism string) bool {
	if _, ok := k8sKinds[mechanism]; ok || ignoredMechanisms[mechanism] {
		return true
	}
	switch p {
	case events.Provider_PROVIDER_AWS:
		_, ok := awsKinds[mechanism]
		return ok
	case events.Provider_PROVIDER_GCP:
		_, ok := gcpKinds[mechanism]
		return ok
	}
	return false
}

// change is one grant change resolved against the model.
type change struct {
	gc      *events.GrantChange
	kind    changeKind
	prov    events.Provider
	account string // AWS account, GCP project, Kubernetes cluster
	grantee string // canonical principal
	key     string // definition key
	bscope  string // the binding's scope (GCP resource, Kubernetes namespace or "*")
	scope   string // the snapshot scope the change belongs to
}

// changeProvider is the provider a change is about when no event says it.
func changeProvider(gc *events.GrantChange) events.Provider {
	if _, ok := k8sKinds[gc.Mechanism]; ok {
		return events.Provider_PROVIDER_K8S
	}
	if p := providerOf(gc.Grantee, gc.Grant); p != events.Provider_PROVIDER_UNSPECIFIED {
		return p
	}
	_, aws := awsKinds[gc.Mechanism]
	_, gcp := gcpKinds[gc.Mechanism]
	switch {
	case aws && !gcp:
		return events.Provider_PROVIDER_AWS
	case gcp && !aws:
		return events.Provider_PROVIDER_GCP
	}
	return events.Provider_PROVIDER_UNSPECIFIED
}

// resolve classifies a change of an event and names what it touches; the caller holds the
// write lock and has rebuilt the indexes.
func (m *Model) resolve(ev *events.Event, gc *events.GrantChange) change {
	c := change{gc: gc, grantee: gc.Grantee}
	if k, ok := k8sKinds[gc.Mechanism]; ok {
		c.prov, c.kind = events.Provider_PROVIDER_K8S, k
		c.account = m.k8sCluster(ev, gc)
		c.scope = "k8s:" + c.account
		c.bscope = orStar(gc.Scope)
		c.key = m.k8sDefinitionKey(c.account, gc.Grant, gc.Scope)
		switch {
		case k == changeBinding && strings.HasPrefix(gc.Grantee, "/"):
			c.kind, c.grantee = changeBindingObject, ""
		case k == changeBinding && (gc.Grant == "" || gc.Grantee == ""):
			c.kind = changeIgnored // the binding's role or subject is not in the log
		}
		return c
	}
	switch ev.Provider {
	case events.Provider_PROVIDER_AWS:
		c.prov, c.kind, c.account = ev.Provider, awsKinds[gc.Mechanism], ev.Account
		c.scope = "aws:" + c.account
		switch c.kind {
		case changeBinding:
			c.key = gc.Grant
			if strings.HasPrefix(gc.Mechanism, "put_") || strings.HasPrefix(gc.Mechanism, "delete_") {
				c.key = InlinePolicyKey(gc.Grantee, gc.Grant)
			}
		case changeDefinition:
			c.key = gc.Grant
			if c.key == "" {
				c.key = gc.Grantee
			}
			c.grantee = ""
		case changeBoundary:
			c.key = gc.Grant
		case changeCredential:
			c.scope = "aws-credentials:" + c.account // a newer credential report supersedes it
		}
		if c.kind != changeDefinition && c.grantee == "" || c.key == "" && (c.kind == changeBinding || c.kind == changeDefinition) {
			c.kind = changeIgnored
		}
	case events.Provider_PROVIDER_GCP:
		c.prov, c.kind, c.account = ev.Provider, gcpKinds[gc.Mechanism], ev.Account
		switch c.kind {
		case changeBinding:
			c.grantee = gcpGrantee(gc.Grantee)
			c.key = gc.Grant
			c.bscope = gcpResource(gc.Scope, ev.Account)
			c.scope = "gcp:" + c.bscope
			if c.grantee == "" || c.key == "" {
				c.kind = changeIgnored // a deleted member holds nothing
			}
		case changeDefinition:
			c.key = gc.Grant
			if c.key == "" {
				c.key = gc.Grantee
			}
			c.grantee, c.scope = "", "gcp-roles:"+c.key
			if c.key == "" {
				c.kind = changeIgnored
			}
		case changeCredential:
			c.scope = "gcp:projects/" + ev.Account
		}
	}
	return c
}

// gcpGrantee maps a SetIamPolicy member to a principal: normalize gives service accounts
// and users as identity ids and other members (group:, domain:, allUsers, deleted:) as
// they are.
func gcpGrantee(g string) string {
	if strings.HasPrefix(g, "gcp:") {
		return g
	}
	return GCPPrincipal(g)
}

// gcpResource is the full resource of a GCP binding scope: a bare project id becomes
// projects/<id>, no scope the event's project.
func gcpResource(scope, project string) string {
	switch {
	case strings.Contains(scope, "/"):
		return scope
	case scope != "":
		return "projects/" + scope
	case project != "":
		return "projects/" + project
	}
	return "*"
}

// k8sCluster is the cluster a Kubernetes change is in: the one its grantee names, else the
// event's cluster (a GKE event's account is its project), else the cluster that defines
// the role it names.
func (m *Model) k8sCluster(ev *events.Event, gc *events.GrantChange) string {
	if c, _, ok := splitK8sID(gc.Grantee); ok {
		return c
	}
	if c := ev.GetNetwork().GetCluster(); c != "" {
		return c
	}
	if ev.Provider == events.Provider_PROVIDER_K8S && ev.Account != "" {
		return ev.Account
	}
	// Delta has no event: find the one cluster that defines the role.
	kind, name := "clusterrole", gc.Grant
	if i := strings.IndexByte(name, '/'); i >= 0 {
		kind, name = strings.ToLower(name[:i]), name[i+1:]
	}
	suffix := ":" + kind + ":" + name
	if kind == "role" {
		suffix = ":role:" + gc.Scope + ":" + name
	}
	found := ""
	for _, k := range m.definitionKeys() {
		if c, rest, ok := splitK8sID(k); ok && ":"+rest == suffix {
			if found != "" && found != c {
				return ""
			}
			found = c
		}
	}
	return found
}

// k8sDefinitionKey resolves a (Cluster)Role named in a change: "ClusterRole/name",
// "Role/name" (a Role of the binding's namespace), "Role/ns/name", or a bare name looked up
// as a Role of the scope's namespace first.
func (m *Model) k8sDefinitionKey(cluster, grant, scope string) string {
	if grant == "" {
		return ""
	}
	lower := strings.ToLower(grant)
	for _, p := range []string{"clusterrole/", "clusterroles/", "clusterrole:"} {
		if strings.HasPrefix(lower, p) {
			return K8sClusterRoleKey(cluster, grant[len(p):])
		}
	}
	for _, p := range []string{"role/", "roles/", "role:"} {
		if strings.HasPrefix(lower, p) {
			rest := grant[len(p):]
			if ns, name, ok := strings.Cut(rest, "/"); ok {
				return K8sRoleKey(cluster, ns, name)
			}
			return K8sRoleKey(cluster, scope, rest)
		}
	}
	if scope != "" && scope != "*" {
		if _, ok := m.def(K8sRoleKey(cluster, scope, grant)); ok {
			return K8sRoleKey(cluster, scope, grant)
		}
	}
	return K8sClusterRoleKey(cluster, grant)
}

// stale reports whether a change at time at is older than the snapshot in force for its
// scope (the snapshot shows its outcome already).
func (m *Model) stale(c change, at time.Time) bool {
	scopes := []string{c.scope}
	if c.prov == events.Provider_PROVIDER_GCP && c.kind == changeDefinition {
		scopes = append(scopes, "gcp-roles:"+gcpRoleParent(c.key))
	}
	for _, s := range scopes {
		if l, ok := m.layers[s]; ok && !at.After(l.Taken) {
			return true
		}
	}
	return false
}

// EntryChange is an entry that came into force (Active) or went out of it.
type EntryChange struct {
	Entry  Entry
	Active bool
}

// Apply brings the model up to date with one event: its grant changes (bindings added and
// removed, definitions replaced, IAM group membership, permissions boundaries) and the
// long-term keys it created, deleted or (de)activated. It returns the entries that changed
// for the identities concerned. Changes older than the snapshot in force for their scope
// are ignored (the snapshot already shows their outcome), so replaying old events after an
// import is harmless. Apply is idempotent: applying the same event twice changes nothing
// the second time.
func (m *Model) Apply(ev *events.Event) []EntryChange {
	if len(ev.GrantChanges) == 0 && !createsOrDeletesKey(ev) {
		return nil
	}
	if r := ev.GetOutcome().GetResult(); r != events.Result_RESULT_ALLOWED && r != events.Result_RESULT_UNSPECIFIED {
		return nil // a denied or failed request changed nothing
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rebuild()
	at := time.Unix(0, ev.TimeUnixNano).UTC()
	cs := make([]change, 0, len(ev.GrantChanges))
	for _, gc := range ev.GrantChanges {
		if gc == nil {
			continue
		}
		if c := m.resolve(ev, gc); c.kind != changeIgnored && !m.stale(c, at) {
			cs = append(cs, c)
		}
	}
	affected := map[string]bool{}
	for _, c := range cs {
		for _, id := range m.affectedBy(c) {
			affected[id] = true
		}
	}
	before := map[string][]*Entry{}
	for id := range affected {
		before[id] = m.entriesLocked(id, nil)
	}
	changed := m.applyChanges(cs, at)
	if m.applyKeyResources(ev, cs, at) {
		changed = true
	}
	if !changed {
		return nil
	}
	m.invalidate(cs, affected)
	var out []EntryChange
	for _, id := range sortedKeys(affected) {
		out = append(out, diffEntries(before[id], m.entriesLocked(id, nil))...)
	}
	return out
}

// invalidate drops the cached entries the changes may have altered: those of the affected
// identities, or all of them when a change reaches identities the model cannot list (a
// definition, a group's bindings, a Kubernetes binding deleted by name, a whole GCP policy).
func (m *Model) invalidate(cs []change, affected map[string]bool) {
	for _, c := range cs {
		switch {
		case c.kind == changeDefinition, c.kind == changeBindingObject,
			c.kind == changeBinding && (isGroupPrincipal(c.grantee) || c.gc.Op == events.GrantOp_GRANT_OP_REPLACE && c.prov == events.Provider_PROVIDER_GCP):
			m.dirty = true
			m.rebuild()
			return
		}
	}
	for id := range affected {
		delete(m.entries, id)
		delete(m.bindCache, id)
	}
}

func diffEntries(before, after []*Entry) []EntryChange {
	old := map[string]*Entry{}
	for _, e := range before {
		old[e.Key()] = e
	}
	var out []EntryChange
	for _, e := range after {
		k := e.Key()
		if _, ok := old[k]; ok {
			delete(old, k)
			continue
		}
		out = append(out, EntryChange{Entry: *e, Active: true})
	}
	for _, k := range sortedKeys(old) {
		out = append(out, EntryChange{Entry: *old[k], Active: false})
	}
	return out
}

// affectedBy lists the identities whose entries a change may alter.
func (m *Model) affectedBy(c change) []string {
	set := map[string]bool{}
	addPrincipal := func(p string) {
		if isGroupPrincipal(p) {
			for _, id := range m.membersOf(p) {
				set[id] = true
			}
			return
		}
		set[p] = true
	}
	switch c.kind {
	case changeBinding:
		addPrincipal(c.grantee)
		if c.prov == events.Provider_PROVIDER_GCP && c.gc.Op == events.GrantOp_GRANT_OP_REPLACE {
			m.eachBinding(func(p string, b Binding) {
				if b.Scope == c.bscope {
					addPrincipal(p)
				}
			})
		}
	case changeMembership, changeBoundary:
		addPrincipal(c.grantee)
	case changeBindingObject:
		name := k8sBindingName(c.gc.Grantee)
		m.eachBinding(func(p string, b Binding) {
			if b.Name == name && strings.HasPrefix(p, "k8s:"+c.account+":") {
				addPrincipal(p)
			}
		})
	case changeDefinition:
		m.eachBinding(func(p string, b Binding) {
			if b.Definition == c.key {
				addPrincipal(p)
			}
		})
	}
	return sortedKeys(set)
}

func isGroupPrincipal(p string) bool {
	return strings.Contains(p, ":group/") || strings.Contains(p, ":group:") || strings.HasPrefix(p, "gcp:group:") || strings.HasPrefix(p, "gcp:domain:")
}

func (m *Model) membersOf(group string) []string {
	var out []string
	for _, member := range m.members() {
		for _, g := range m.groupsOfMember(member) {
			if g == group {
				out = append(out, member)
			}
		}
	}
	return out
}

// awsGroupPrincipal turns a group name or ARN into its principal.
func awsGroupPrincipal(grant, account string) string {
	if strings.HasPrefix(grant, "aws:") {
		return grant
	}
	if strings.HasPrefix(grant, "arn:") {
		return events.AWSIdentityID(grant)
	}
	return events.AWSIdentityID("arn:aws:iam::" + account + ":group/" + grant)
}

// k8sBindingName is the binding name of a binding object path: /namespaces/ns/rolebindings/n
// is RoleBinding/ns/n, /clusterrolebindings/n is ClusterRoleBinding/n (as the RBAC import
// names them).
func k8sBindingName(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) == 4 && parts[0] == "namespaces" && parts[2] == "rolebindings":
		return "RoleBinding/" + parts[1] + "/" + parts[3]
	case len(parts) == 2 && parts[0] == "clusterrolebindings":
		return "ClusterRoleBinding/" + parts[1]
	}
	return ""
}

// applyChanges records the changes in the overlay; it reports whether anything changed.
func (m *Model) applyChanges(cs []change, at time.Time) bool {
	changed := false
	// A policy document arrives as one change per statement: its definition is built from
	// all of them at once.
	var keys []string
	groups := map[string][]change{}
	for _, c := range cs {
		if c.definesContent() {
			if _, ok := groups[c.key]; !ok {
				keys = append(keys, c.key)
			}
			groups[c.key] = append(groups[c.key], c)
		}
	}
	for _, k := range keys {
		if m.applyDefinition(groups[k], at) {
			changed = true
		}
	}
	// SetIamPolicy without binding deltas writes a resource's whole policy.
	replaced := map[string][]change{}
	for _, c := range cs {
		var ok bool
		switch c.kind {
		case changeBinding:
			if c.prov == events.Provider_PROVIDER_GCP && c.gc.Op == events.GrantOp_GRANT_OP_REPLACE {
				replaced[c.bscope] = append(replaced[c.bscope], c)
				continue
			}
			ok = m.applyBinding(c, at)
		case changeBindingObject:
			ok = m.removeBindingObject(c, at)
		case changeMembership:
			ok = m.applyMembership(c, at)
		case changeBoundary:
			ok = m.applyBoundary(c, at)
		case changeCredential:
			ok = m.applyCredential(c, at)
		}
		changed = changed || ok
	}
	for _, res := range sortedKeys(replaced) {
		if m.replaceBindings(res, replaced[res], at) {
			changed = true
		}
	}
	return changed
}

// definesContent reports whether the change carries (part of) a definition's content.
func (c change) definesContent() bool {
	switch c.kind {
	case changeDefinition:
		return true
	case changeBinding:
		return c.prov == events.Provider_PROVIDER_AWS && strings.HasPrefix(c.key, "inline:") &&
			c.gc.Op != events.GrantOp_GRANT_OP_REMOVE && len(c.gc.Permissions) > 0
	}
	return false
}

// binding is the binding a change gives or takes.
func (c change) binding() Binding {
	b := Binding{Principal: c.grantee, Definition: c.key, Scope: c.bscope}
	if c.prov == events.Provider_PROVIDER_AWS {
		b.Scope = "" // AWS policies carry their scope in their statements
	}
	return b
}

func (m *Model) applyBinding(c change, at time.Time) bool {
	b := c.binding()
	if c.gc.Op == events.GrantOp_GRANT_OP_REMOVE {
		return m.removeBindings(b.Principal, c.scope, at, func(p string, have Binding) bool {
			return p == b.Principal && !have.Boundary && have.Definition == b.Definition &&
				(c.prov == events.Provider_PROVIDER_AWS || have.Scope == b.Scope)
		})
	}
	m.addBinding(b, c.scope, at)
	return true
}

func (m *Model) addBinding(b Binding, scope string, at time.Time) {
	k := bindingKey(b)
	m.ov.delRemoved(k)
	m.ov.setBinding(k, timed[Binding]{b, scope, at})
	delete(m.bindCache, b.Principal)
}

// removeBindings takes every binding in force that match selects, of principal (of every
// principal when empty); it reports whether one was taken.
func (m *Model) removeBindings(principal, scope string, at time.Time, match func(principal string, b Binding) bool) bool {
	changed := false
	remove := func(p string, have Binding) {
		if !match(p, have) {
			return
		}
		k := bindingKey(have)
		m.ov.delBinding(k)
		m.ov.setRemoved(k, timed[Binding]{have, scope, at})
		changed = true
	}
	defer func() {
		if changed {
			m.bindCache = map[string][]Binding{} // after the walk, which reads it
		}
	}()
	if principal == "" {
		m.eachBinding(remove)
		return changed
	}
	for _, b := range m.bindingsOf(principal) {
		remove(principal, b)
	}
	return changed
}

// removeBindingObject applies the deletion of a (Cluster)RoleBinding named by its path.
func (m *Model) removeBindingObject(c change, at time.Time) bool {
	if c.gc.Op != events.GrantOp_GRANT_OP_REMOVE {
		return false // an update that does not list its subjects says nothing about them
	}
	name := k8sBindingName(c.gc.Grantee)
	if name == "" {
		return false
	}
	prefix := "k8s:" + c.account + ":"
	return m.removeBindings("", c.scope, at, func(p string, b Binding) bool {
		return b.Name == name && strings.HasPrefix(p, prefix)
	})
}

// replaceBindings applies a whole GCP policy written on a resource: the bindings it lists
// are in force there, every other one is gone.
func (m *Model) replaceBindings(resource string, cs []change, at time.Time) bool {
	keep := map[string]bool{}
	for _, c := range cs {
		keep[c.binding().Principal+"\x00"+c.key] = true
	}
	scope := cs[0].scope
	changed := m.removeBindings("", scope, at, func(p string, b Binding) bool {
		return b.Scope == resource && !keep[p+"\x00"+b.Definition] && providerOf(p, b.Definition) == events.Provider_PROVIDER_GCP
	})
	for _, c := range cs {
		m.addBinding(c.binding(), scope, at)
		changed = true
	}
	return changed
}

func (m *Model) applyMembership(c change, at time.Time) bool {
	ms := Membership{Member: c.grantee, Group: awsGroupPrincipal(c.gc.Grant, c.account)}
	k := membershipKey(ms)
	if c.gc.Op == events.GrantOp_GRANT_OP_REMOVE {
		m.ov.delMembership(k)
		m.ov.setLeft(k, timed[Membership]{ms, c.scope, at})
	} else {
		m.ov.delLeft(k)
		m.ov.setMembership(k, timed[Membership]{ms, c.scope, at})
	}
	return true
}

// applyBoundary sets or removes a permissions boundary: an identity has at most one, and
// deleting it names no policy.
func (m *Model) applyBoundary(c change, at time.Time) bool {
	changed := m.removeBindings(c.grantee, c.scope, at, func(p string, b Binding) bool {
		return p == c.grantee && b.Boundary && (c.gc.Op == events.GrantOp_GRANT_OP_REMOVE || b.Definition != c.key)
	})
	if c.gc.Op != events.GrantOp_GRANT_OP_REMOVE && c.key != "" {
		m.addBinding(Binding{Principal: c.grantee, Definition: c.key, Boundary: true}, c.scope, at)
		changed = true
	}
	return changed
}

// applyDefinition records the new content of one definition from the changes that carry it.
func (m *Model) applyDefinition(cs []change, at time.Time) bool {
	c0 := cs[0]
	cur, _ := m.def(c0.key)
	def, ok := m.definitionFrom(cs, cur)
	if !ok {
		return false
	}
	fps := map[string]bool{}
	for _, c := range cs {
		fps[fingerprint(c.gc)] = true
	}
	// Remember what the definition carried before, for Delta; applying the same event
	// again must not make the new content its own predecessor.
	if rec, seen := m.ov.prev[c0.key]; !seen || !sameKeys(rec.fps, fps) {
		var prev *Definition
		if cur != nil {
			cp := *cur
			prev = &cp
		}
		m.ov.prev[c0.key] = prevDefinition{def: prev, fps: fps}
	}
	m.ov.defs[c0.key] = timed[*Definition]{&def, c0.scope, at}
	return true
}

// definitionFrom builds a definition's new content from the changes of one event; cur is
// its content in force (nil when unknown). It reports false when the changes do not say
// what the content is.
func (m *Model) definitionFrom(cs []change, cur *Definition) (Definition, bool) {
	c0 := cs[0]
	switch c0.prov {
	case events.Provider_PROVIDER_AWS:
		def := Definition{Key: c0.key, Name: c0.key, Kind: KindAWSManagedPolicy}
		if strings.HasPrefix(c0.key, "inline:") {
			def.Name, def.Kind = c0.gc.Grant, KindAWSInlinePolicy
		}
		if c0.gc.Mechanism == "set_default_policy_version" {
			if cur == nil || cur.Versions[c0.gc.Scope] == nil {
				return Definition{}, false // the version's document is not known
			}
			def = *cur
			def.Statements, def.Version = cur.Versions[c0.gc.Scope], c0.gc.Scope
			return def, true
		}
		for _, c := range cs {
			if len(c.gc.Permissions) > 0 {
				def.Statements = append(def.Statements, statementFrom(c.gc))
			}
		}
		if cur != nil && def.Kind == KindAWSManagedPolicy {
			def.Versions = cur.Versions // a version not made the default is not known by id here
		}
		return def, len(def.Statements) > 0
	case events.Provider_PROVIDER_GCP:
		def := Definition{Key: c0.key, Name: c0.key, Kind: KindGCPRole}
		var added, removed []string
		deleted, delta := false, false
		for _, c := range cs {
			switch {
			case c.gc.Mechanism == "delete_role":
				deleted = true
			case c.gc.Op == events.GrantOp_GRANT_OP_REMOVE:
				removed, delta = append(removed, c.gc.Permissions...), true
			default:
				added = append(added, c.gc.Permissions...)
			}
		}
		switch {
		case deleted:
			return def, true // a deleted role grants nothing
		case delta && cur != nil:
			set := map[string]bool{}
			for _, p := range cur.Permissions {
				set[p] = true
			}
			for _, p := range added {
				set[p] = true
			}
			for _, p := range removed {
				delete(set, p)
			}
			def.Permissions = sortedKeys(set)
			return def, true
		case len(added) > 0:
			def.Permissions = uniqueSorted(added)
			return def, true
		}
		return Definition{}, false
	case events.Provider_PROVIDER_K8S:
		def := Definition{Key: c0.key, Kind: KindK8sClusterRole, Name: "ClusterRole/" + strings.TrimPrefix(c0.key, "k8s:"+c0.account+":clusterrole:")}
		if strings.Contains(c0.key, ":role:") {
			rest := strings.TrimPrefix(c0.key, "k8s:"+c0.account+":role:")
			def.Kind, def.Name = KindK8sRole, "Role/"+strings.Replace(rest, ":", "/", 1)
		}
		if c0.gc.Op == events.GrantOp_GRANT_OP_REMOVE {
			return def, true // a deleted role grants nothing
		}
		def.Rules = k8sRules(c0.gc.Permissions)
		return def, len(def.Rules) > 0 // a patch without rules leaves them as they were
	}
	return Definition{}, false
}

// statementFrom is the policy statement one grant change of a policy document carries:
// normalize gives one change per statement, with its actions and its resources joined by
// commas.
func statementFrom(gc *events.GrantChange) Statement {
	st := Statement{Effect: "Allow", Actions: append([]string(nil), gc.Permissions...)}
	if gc.Deny {
		st.Effect = "Deny"
	}
	for _, r := range strings.Split(gc.Scope, ",") {
		if r = strings.TrimSpace(r); r != "" {
			st.Resources = append(st.Resources, r)
		}
	}
	if len(st.Resources) == 0 {
		st.Resources = []string{"*"}
	}
	return st
}

// k8sRules turns "verb resource" and "verb /url" permissions into rules. The events do not
// name the API groups, so the rules apply in every group.
func k8sRules(perms []string) []Rule {
	var rules []Rule
	for _, p := range perms {
		verb, res := K8sPermission(p)
		switch {
		case verb == "" || res == "":
		case strings.HasPrefix(res, "/"):
			rules = append(rules, Rule{Verbs: []string{verb}, NonResourceURLs: []string{res}})
		default:
			rules = append(rules, Rule{Verbs: []string{verb}, Resources: []string{res}, APIGroups: []string{"*"}})
		}
	}
	return rules
}

// fingerprint identifies a grant change by its content.
func fingerprint(gc *events.GrantChange) string {
	return strings.Join([]string{gc.Op.String(), gc.Grantee, gc.Grant, gc.Scope, gc.Mechanism, boolStr(gc.Deny),
		strings.Join(gc.Permissions, ",")}, "\x00")
}

func boolStr(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func sameKeys(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func uniqueSorted(s []string) []string {
	set := map[string]bool{}
	for _, x := range s {
		set[x] = true
	}
	return sortedKeys(set)
}

// applyCredential records a long-term key a change created, deleted or (de)activated.
func (m *Model) applyCredential(c change, at time.Time) bool {
	id := c.gc.Grant
	if !strings.HasPrefix(id, "aws:key:") && !strings.HasPrefix(id, "gcp:key:") {
		return false // the log does not name the key
	}
	cred := Credential{ID: id, Identity: c.grantee, Source: "event"}
	if prev, ok := m.ov.creds[id]; ok {
		cred.LastRotated = prev.v.LastRotated // a later change of the same key keeps its age
	}
	switch {
	case c.gc.Op == events.GrantOp_GRANT_OP_REMOVE:
	case c.gc.Mechanism == "update_access_key":
		cred.Active = true // reactivated: its age is what it was
	default:
		cred.Active, cred.LastRotated = true, at
	}
	m.ov.creds[id] = timed[Credential]{cred, c.scope, at}
	return true
}

// createsOrDeletesKey reports whether an event creates or deletes a long-term key.
func createsOrDeletesKey(ev *events.Event) bool {
	switch ev.GetAction().GetPermission() {
	case "iam:CreateAccessKey", "iam:DeleteAccessKey", "iam.serviceAccountKeys.create", "iam.serviceAccountKeys.delete":
		return true
	}
	return false
}

// applyKeyResources records a long-term key created or deleted by the event from its
// resources, for the keys its grant changes do not name (normalize names a key in a grant
// change only when the caller made it for someone else).
func (m *Model) applyKeyResources(ev *events.Event, cs []change, at time.Time) bool {
	if !createsOrDeletesKey(ev) {
		return false
	}
	var id, owner string
	for _, r := range ev.Resources {
		switch {
		case r.Type == "AWS::IAM::AccessKey" && strings.HasPrefix(r.Name, "AKIA"):
			id = events.AWSAccessKeyID(r.Name)
		case r.Type == "AWS::IAM::AccessKey" && strings.HasPrefix(r.Id, "AKIA"):
			id = events.AWSAccessKeyID(r.Id)
		case r.Type == "AWS::IAM::AccessKey" && strings.HasPrefix(r.Id, "aws:key:"):
			id = r.Id
		case r.Type == "AWS::IAM::User" && strings.HasPrefix(r.Id, "arn:"):
			owner = events.AWSIdentityID(r.Id)
		case strings.Contains(r.Id, "/serviceAccounts/") && strings.Contains(r.Id, "/keys/"):
			id = events.GCPKeyID(r.Id)
			sa := r.Id[strings.Index(r.Id, "/serviceAccounts/")+len("/serviceAccounts/"):]
			sa, _, _ = strings.Cut(sa, "/")
			owner = events.GCPServiceAccountID(sa)
		}
	}
	if id == "" {
		return false
	}
	for _, c := range cs {
		if c.kind == changeCredential && c.gc.Grant == id {
			return false // applied from the grant change
		}
	}
	if owner == "" {
		owner = ev.GetIdentity().GetId()
	}
	scope := "aws-credentials:" + ev.Account
	if ev.Provider == events.Provider_PROVIDER_GCP {
		scope = "gcp:projects/" + ev.Account
	}
	c := Credential{ID: id, Identity: owner, Source: "event"}
	if perm := ev.GetAction().GetPermission(); strings.HasSuffix(perm, "create") || strings.HasSuffix(perm, "CreateAccessKey") {
		c.Active, c.LastRotated = true, at
	}
	m.ov.creds[id] = timed[Credential]{c, scope, at}
	return true
}
