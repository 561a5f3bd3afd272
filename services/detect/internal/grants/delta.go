package grants

import (
	"strings"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

// prevDefinition is what a definition carried before the overlay's latest change of it,
// and the changes (by fingerprint) that made that change.
type prevDefinition struct {
	def *Definition
	fps map[string]bool
}

// Delta returns the effective-permission delta of a grant change for its grantee: the
// permission patterns the change gives that the grantee does not hold through any other
// grant, group or binding (with a scope at least as wide), and the sensitive permissions
// among them. A removal, a trust policy, a credential or a boundary adds nothing.
//
// The result is the same whether or not the change was applied already (Delta may run
// before or after Apply of its event): for a binding, the grantee's other grants are the
// baseline, not the binding itself; for a new content of a definition (a new default policy
// version, a GCP custom role, a (Cluster)Role's rules) with no grantee, the baseline is the
// content before that change.
//
// For a change to an IAM group's membership the candidates are the group's grants.
func (m *Model) Delta(gc *events.GrantChange) (added []string, sensitivePerms []string) {
	if gc == nil || gc.Op == events.GrantOp_GRANT_OP_REMOVE {
		return nil, nil
	}
	prov := changeProvider(gc)
	ev := &events.Event{Provider: prov, Account: changeAccount(prov, gc)}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rebuild()
	c := m.resolve(ev, gc)

	var candidates, existing []*Entry
	switch c.kind {
	case changeMembership:
		group := awsGroupPrincipal(gc.Grant, c.account)
		via := "group:" + groupName(group)
		for _, b := range m.bindingsOf(group) {
			if !b.Boundary {
				candidates = append(candidates, m.expand(c.grantee, b, via)...)
			}
		}
		for _, e := range m.entriesLocked(c.grantee, nil) {
			if e.Via != via && !strings.HasPrefix(e.Via, via+",") {
				existing = append(existing, e)
			}
		}
	case changeBinding:
		b := c.binding()
		if len(gc.Permissions) > 0 && c.definesContent() {
			d, _ := m.definitionFrom([]change{c}, nil)
			candidates = m.expandDefinition(c.grantee, d, b)
		} else {
			candidates = m.expand(c.grantee, b, "direct")
		}
		for _, e := range m.entriesLocked(c.grantee, nil) {
			if e.def == nil || e.def.Key != c.key || e.Via != "direct" && !strings.HasPrefix(e.Via, "binding:") {
				existing = append(existing, e)
			}
		}
	case changeDefinition:
		const subject = "(definition)"
		b := Binding{Principal: subject, Definition: c.key, Scope: orStar(gc.Scope)}
		base, _ := m.def(c.key)
		if rec, ok := m.ov.prev[c.key]; ok && rec.fps[fingerprint(gc)] {
			base = rec.def // applied already: compare with what it replaced
		}
		if base != nil {
			existing = m.expandDefinition(subject, *base, b)
		}
		d, ok := m.definitionFrom([]change{c}, base)
		if !ok {
			return nil, nil
		}
		candidates = m.expandDefinition(subject, d, b)
	default:
		return nil, nil
	}

	addedSet := map[string]bool{}
	for _, cand := range candidates {
		if !cand.Deny && !cand.Unresolved && !coveredBy(cand, existing) {
			addedSet[cand.Permission] = true
		}
	}
	sensSet := map[string]bool{}
	for _, s := range sensitive[c.prov] {
		for _, cand := range candidates {
			if !cand.Deny && cand.covers(s) && !coveredPermission(s, cand.Scope, existing) {
				sensSet[s] = true
				break
			}
		}
	}
	return sortedKeys(addedSet), sortedKeys(sensSet)
}

// expandDefinition expands a definition that may not be (or not so) in the model.
func (m *Model) expandDefinition(subject string, d Definition, b Binding) []*Entry {
	m.scratch = map[string]*Definition{d.Key: &d}
	b.Principal, b.Definition = subject, d.Key
	es := m.expand(subject, b, "direct")
	m.scratch = nil
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
