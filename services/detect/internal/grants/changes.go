package grants

import (
	"sort"
	"strings"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

// EntryChange is an entry that came into force (Active) or went out of it.
type EntryChange struct {
	Entry  Entry
	Active bool
}

// Apply brings the model up to date with one event: its grant changes (bindings added and
// removed, definitions replaced, IAM group membership) and the long-term credentials it
// created or deleted. It returns the entries that changed for the identities concerned.
// Changes older than the snapshot in force for their scope are ignored (the snapshot
// already shows their outcome), so replaying old events after an import is harmless.
// Apply is idempotent: applying the same event twice changes nothing the second time.
func (m *Model) Apply(ev *events.Event) []EntryChange {
	if len(ev.GrantChanges) == 0 && !createsOrDeletesKey(ev) {
		return nil
	}
	if ev.GetOutcome().GetResult() != events.Result_RESULT_ALLOWED && ev.GetOutcome().GetResult() != events.Result_RESULT_UNSPECIFIED {
		return nil // a denied or failed request changed nothing
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rebuild()
	at := time.Unix(0, ev.TimeUnixNano).UTC()
	affected := map[string]bool{}
	for _, gc := range ev.GrantChanges {
		for _, id := range m.affectedBy(ev, gc) {
			affected[id] = true
		}
	}
	before := map[string][]*Entry{}
	for id := range affected {
		before[id] = m.entriesLocked(id, nil)
	}
	changed := false
	for _, gc := range ev.GrantChanges {
		if m.applyChange(ev, gc, at) {
			changed = true
		}
	}
	if m.applyCredential(ev, at) {
		changed = true
	}
	if !changed {
		return nil
	}
	m.dirty = true
	m.rebuild()
	var out []EntryChange
	for _, id := range sortedKeys(affected) {
		after := m.entriesLocked(id, nil)
		out = append(out, diffEntries(before[id], after)...)
	}
	return out
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

// eventScope is the snapshot scope a change belongs to.
func eventScope(ev *events.Event, gc *events.GrantChange) string {
	switch ev.Provider {
	case events.Provider_PROVIDER_AWS:
		return "aws:" + ev.Account
	case events.Provider_PROVIDER_GCP:
		if strings.Contains(gc.GetScope(), "/") {
			return "gcp:" + gc.Scope
		}
		return "gcp:projects/" + ev.Account
	case events.Provider_PROVIDER_K8S:
		return "k8s:" + ev.Account
	}
	return ev.Provider.Label() + ":" + ev.Account
}

func (m *Model) stale(scope string, at time.Time) bool {
	l, ok := m.layers[scope]
	return ok && !at.After(l.Taken)
}

func isMembership(ev *events.Event, gc *events.GrantChange) bool {
	mech := strings.ToLower(gc.Mechanism)
	return ev.Provider == events.Provider_PROVIDER_AWS && gc.Grantee != "" &&
		(strings.Contains(mech, "user_to_group") || strings.Contains(mech, "user_from_group") || strings.Contains(gc.Grant, ":group/"))
}

func isTrustChange(gc *events.GrantChange) bool {
	mech := strings.ToLower(gc.Mechanism)
	return strings.Contains(mech, "assume_role_policy") || strings.Contains(mech, "trust")
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

// definitionKey resolves the definition a change grants.
func (m *Model) definitionKey(ev *events.Event, gc *events.GrantChange) string {
	switch ev.Provider {
	case events.Provider_PROVIDER_AWS:
		mech := strings.ToLower(gc.Mechanism)
		if strings.HasPrefix(gc.Grant, "arn:") && !strings.Contains(mech, "put_") && !strings.Contains(mech, "inline") {
			return gc.Grant
		}
		if gc.Grantee == "" {
			return gc.Grant
		}
		return InlinePolicyKey(gc.Grantee, gc.Grant)
	case events.Provider_PROVIDER_K8S:
		return m.k8sDefinitionKey(ev.Account, gc.Grant, gc.Scope)
	}
	return gc.Grant
}

// k8sDefinitionKey resolves a (Cluster)Role named in a change: "ClusterRole/name",
// "Role/ns/name", or a bare name looked up as a Role of the scope's namespace first.
func (m *Model) k8sDefinitionKey(cluster, grant, scope string) string {
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
		if _, ok := m.defs[K8sRoleKey(cluster, scope, grant)]; ok {
			return K8sRoleKey(cluster, scope, grant)
		}
	}
	return K8sClusterRoleKey(cluster, grant)
}

// definitionFromPermissions builds the definition a change's permissions describe.
func definitionFromPermissions(ev *events.Event, gc *events.GrantChange, key string) Definition {
	switch ev.Provider {
	case events.Provider_PROVIDER_AWS:
		kind := KindAWSInlinePolicy
		if strings.HasPrefix(key, "arn:") {
			kind = KindAWSManagedPolicy
		}
		name := gc.Grant
		resource := gc.Scope
		if resource == "" || !strings.HasPrefix(resource, "arn:") && resource != "*" {
			resource = "*"
		}
		return Definition{Key: key, Name: name, Kind: kind, Statements: AWSPolicyFromPermissions(gc.Permissions, resource, gc.Deny).Statements}
	case events.Provider_PROVIDER_K8S:
		kind, name := KindK8sClusterRole, "ClusterRole/"+strings.TrimPrefix(key, "k8s:"+ev.Account+":clusterrole:")
		if strings.Contains(key, ":role:") {
			kind = KindK8sRole
			rest := strings.TrimPrefix(key, "k8s:"+ev.Account+":role:")
			name = "Role/" + strings.Replace(rest, ":", "/", 1)
		}
		var rules []Rule
		for _, p := range gc.Permissions {
			verb, res := K8sPermission(p)
			if verb == "" || res == "" {
				continue
			}
			if strings.HasPrefix(res, "/") {
				rules = append(rules, Rule{Verbs: []string{verb}, NonResourceURLs: []string{res}})
				continue
			}
			rules = append(rules, Rule{Verbs: []string{verb}, Resources: []string{res}, APIGroups: []string{"*"}})
		}
		return Definition{Key: key, Name: name, Kind: kind, Rules: rules}
	}
	return Definition{Key: key, Name: gc.Grant, Kind: KindGCPRole, Permissions: append([]string(nil), gc.Permissions...)}
}

// affectedBy lists the identities whose entries a change may alter.
func (m *Model) affectedBy(ev *events.Event, gc *events.GrantChange) []string {
	if isTrustChange(gc) {
		return nil
	}
	if gc.Grantee != "" {
		if isGroupPrincipal(gc.Grantee) {
			return m.membersOf(gc.Grantee)
		}
		return []string{gc.Grantee}
	}
	key := m.definitionKey(ev, gc)
	set := map[string]bool{}
	for principal, bs := range m.bindings {
		for _, b := range bs {
			if b.Definition != key {
				continue
			}
			if isGroupPrincipal(principal) {
				for _, id := range m.membersOf(principal) {
					set[id] = true
				}
			} else {
				set[principal] = true
			}
		}
	}
	return sortedKeys(set)
}

func isGroupPrincipal(p string) bool {
	return strings.Contains(p, ":group/") || strings.Contains(p, ":group:") || strings.HasPrefix(p, "gcp:group:") || strings.HasPrefix(p, "gcp:domain:")
}

func (m *Model) membersOf(group string) []string {
	var out []string
	for member, gs := range m.groupsOf {
		for _, g := range gs {
			if g == group {
				out = append(out, member)
			}
		}
	}
	sort.Strings(out)
	return out
}

// applyChange records one grant change in the overlay; it reports whether anything changed.
func (m *Model) applyChange(ev *events.Event, gc *events.GrantChange, at time.Time) bool {
	scope := eventScope(ev, gc)
	if m.stale(scope, at) || isTrustChange(gc) {
		return false
	}
	if isMembership(ev, gc) {
		ms := Membership{Member: gc.Grantee, Group: awsGroupPrincipal(gc.Grant, ev.Account)}
		k := membershipKey(ms)
		if gc.Op == events.GrantOp_GRANT_OP_REMOVE {
			delete(m.ov.memberships, k)
			m.ov.left[k] = timed[Membership]{ms, scope, at}
		} else {
			delete(m.ov.left, k)
			m.ov.memberships[k] = timed[Membership]{ms, scope, at}
		}
		return true
	}
	key := m.definitionKey(ev, gc)
	if gc.Grantee == "" {
		if gc.Op == events.GrantOp_GRANT_OP_REMOVE || len(gc.Permissions) == 0 {
			return false // a definition deleted or renamed without content: bindings say the rest
		}
		m.ov.defs[key] = timed[Definition]{definitionFromPermissions(ev, gc, key), scope, at}
		return true
	}
	bscope := gc.Scope
	if ev.Provider == events.Provider_PROVIDER_AWS {
		bscope = "" // AWS policies carry their scope in their statements
	} else if bscope == "" {
		bscope = "*"
	}
	b := Binding{Principal: gc.Grantee, Definition: key, Scope: bscope}
	if gc.Op == events.GrantOp_GRANT_OP_REMOVE {
		changed := false
		for _, have := range m.bindings[gc.Grantee] {
			if have.Definition == key && (gc.Scope == "" || ev.Provider == events.Provider_PROVIDER_AWS || have.Scope == bscope) {
				k := bindingKey(have)
				delete(m.ov.bindings, k)
				m.ov.removed[k] = timed[Binding]{have, scope, at}
				changed = true
			}
		}
		return changed
	}
	if len(gc.Permissions) > 0 {
		_, known := m.defs[key]
		inline := strings.HasPrefix(key, "inline:")
		if inline || !known || gc.Op == events.GrantOp_GRANT_OP_REPLACE {
			m.ov.defs[key] = timed[Definition]{definitionFromPermissions(ev, gc, key), scope, at}
		}
	}
	k := bindingKey(b)
	delete(m.ov.removed, k)
	m.ov.bindings[k] = timed[Binding]{b, scope, at}
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

// applyCredential records a long-term key created or deleted by the event.
func (m *Model) applyCredential(ev *events.Event, at time.Time) bool {
	perm := ev.GetAction().GetPermission()
	if !createsOrDeletesKey(ev) {
		return false
	}
	var id, owner string
	for _, r := range ev.Resources {
		switch {
		case r.Type == "AWS::IAM::AccessKey" && r.Name != "":
			id = events.AWSAccessKeyID(r.Name)
		case r.Type == "AWS::IAM::AccessKey" && strings.HasPrefix(r.Id, "AKIA"):
			id = events.AWSAccessKeyID(r.Id)
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
	if owner == "" {
		owner = ev.GetIdentity().GetId()
	}
	scope := eventScope(ev, &events.GrantChange{})
	c := Credential{ID: id, Identity: owner, Source: "event:" + ev.Id}
	if strings.HasSuffix(perm, "create") || strings.HasSuffix(perm, "CreateAccessKey") {
		c.Active, c.LastRotated = true, at
	}
	m.ov.creds[id] = timed[Credential]{c, scope, at}
	return true
}

// Delta returns the effective-permission delta of a grant change for its grantee: the
// permission patterns the change adds that the grantee did not hold already, and the
// sensitive permissions among what it adds. Call it before Apply. A removal adds nothing.
//
// For a change to an IAM group's membership the delta is the group's grants; for a change
// of a definition (a new default policy version, a Role's rules) with no grantee, the delta
// is computed against the definition's previous content.
func (m *Model) Delta(gc *events.GrantChange) (added []string, sensitivePerms []string) {
	if gc == nil || gc.Op == events.GrantOp_GRANT_OP_REMOVE || isTrustChange(gc) {
		return nil, nil
	}
	prov := providerOf(gc.Grantee, gc.Grant)
	ev := &events.Event{Provider: prov, Account: changeAccount(prov, gc)}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rebuild()

	var candidates, existing []*Entry
	subject := gc.Grantee
	if subject == "" {
		subject = "(definition)"
	}
	key := m.definitionKey(ev, gc)
	switch {
	case isMembership(ev, gc):
		group := awsGroupPrincipal(gc.Grant, ev.Account)
		for _, b := range m.bindings[group] {
			candidates = append(candidates, m.expand(subject, b, "group:"+groupName(group))...)
		}
		existing = m.entriesLocked(gc.Grantee, nil)
	case gc.Grantee == "":
		if d, ok := m.defs[key]; ok {
			existing = m.expand(subject, Binding{Principal: subject, Definition: d.Key, Scope: gc.Scope}, "direct")
		}
		candidates = m.expandDefinition(subject, definitionFromPermissions(ev, gc, key), gc.Scope)
	default:
		if len(gc.Permissions) > 0 {
			candidates = m.expandDefinition(subject, definitionFromPermissions(ev, gc, key), gc.Scope)
		} else {
			candidates = m.expand(subject, Binding{Principal: subject, Definition: key, Scope: gc.Scope}, "direct")
		}
		existing = m.entriesLocked(gc.Grantee, nil)
	}

	addedSet := map[string]bool{}
	for _, c := range candidates {
		if c.Deny || c.Unresolved {
			continue
		}
		if !coveredBy(c, existing) {
			addedSet[c.Permission] = true
		}
	}
	sensSet := map[string]bool{}
	for _, s := range sensitive[prov] {
		gains := false
		for _, c := range candidates {
			if !c.Deny && c.covers(s) && !coveredPermission(s, c.Scope, existing) {
				gains = true
				break
			}
		}
		if gains {
			sensSet[s] = true
		}
	}
	return sortedKeys(addedSet), sortedKeys(sensSet)
}

// expandDefinition expands a definition that is not (yet) in the model.
func (m *Model) expandDefinition(subject string, d Definition, scope string) []*Entry {
	prev, had := m.defs[d.Key]
	m.defs[d.Key] = &d
	es := m.expand(subject, Binding{Principal: subject, Definition: d.Key, Scope: scope}, "direct")
	if had {
		m.defs[d.Key] = prev
	} else {
		delete(m.defs, d.Key)
	}
	return es
}

func changeAccount(p events.Provider, gc *events.GrantChange) string {
	switch p {
	case events.Provider_PROVIDER_AWS:
		for _, s := range []string{strings.TrimPrefix(gc.Grantee, "aws:"), gc.Grant} {
			if a := arnAccount(s); a != "" && a != "aws" {
				return a
			}
		}
	case events.Provider_PROVIDER_K8S:
		if c, _, ok := splitK8sID(gc.Grantee); ok {
			return c
		}
	}
	return ""
}

// coveredBy reports whether an existing Allow entry already grants everything c does.
func coveredBy(c *Entry, existing []*Entry) bool {
	for _, e := range existing {
		if e.Deny || e.Unresolved || e.prov != c.prov || !scopeCovers(e.Scope, c.Scope) {
			continue
		}
		if c.stmt != nil && len(c.stmt.NotActions) > 0 {
			if e.Permission == c.Permission || (e.stmt != nil && len(e.stmt.Actions) == 1 && e.stmt.Actions[0] == "*") {
				return true
			}
			continue
		}
		if e.covers(c.Permission) {
			return true
		}
	}
	return false
}

// coveredPermission reports whether existing entries already allow perm within scope, or
// deny it outright.
func coveredPermission(perm, scope string, existing []*Entry) bool {
	for _, e := range existing {
		if e.Unresolved || !e.covers(perm) {
			continue
		}
		if e.Deny && !e.Conditional {
			return true
		}
		if !e.Deny && scopeCovers(e.Scope, scope) {
			return true
		}
	}
	return false
}

func scopeCovers(sup, sub string) bool {
	return sup == "*" || sup == sub || (sub != "" && Glob(sup, sub, false))
}
