package usage

import (
	"sort"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/grants"
)

// Report is usage against grants for one identity: what `nhiwatch usage` prints.
type Report struct {
	Identity string `json:"identity"`
	Provider string `json:"provider"`
	Kind     string `json:"kind,omitempty"`
	Name     string `json:"name,omitempty"`
	// Account is the AWS account, GCP project or Kubernetes cluster.
	Account string `json:"account,omitempty"`
	Owner   string `json:"owner,omitempty"`
	// Granted are the permission patterns the identity's Allow grants carry.
	Granted []string `json:"granted"`
	// Used are the permissions it exercised (allowed, or authorised and failed).
	Used []string `json:"used"`
	// Unused are the granted patterns no use matched.
	Unused []string `json:"unused"`
	// Denied are the permissions it tried and was refused: beyond its grant.
	Denied []string `json:"denied"`
	// Ungranted are permissions it used that no known grant allows (a stale snapshot, a
	// resource policy, a grant outside the imported scopes).
	Ungranted []string `json:"ungranted"`
	// Utilization is the share of granted patterns that were used, 0 to 1.
	Utilization float64 `json:"utilization"`
	// Admin: it holds an admin-equivalent grant. AdminUsed: it used a sensitive permission.
	Admin         bool       `json:"admin"`
	SensitiveUsed []string   `json:"sensitive_used"`
	FirstSeen     *time.Time `json:"first_seen,omitempty"`
	LastSeen      *time.Time `json:"last_seen,omitempty"`
	Uses          []Use      `json:"uses"`
	DeniedUses    []Use      `json:"denied_uses"`
	Grants        []Grant    `json:"grants"`
	// Credentials are the credentials the events showed it use and the long-term keys the
	// inventory lists for it.
	Credentials []CredentialUse `json:"credentials,omitempty"`
	// LeastPrivilege is the policy the observed use needs (see leastpriv.go).
	LeastPrivilege any `json:"least_privilege"`
}

// CredentialUse is one credential of the identity.
type CredentialUse struct {
	ID string `json:"id"`
	// LastUsed is its last use in the events, or in the credential report.
	LastUsed *time.Time `json:"last_used,omitempty"`
	// LastRotated and Active are known for long-term keys from the inventory or key events.
	LastRotated *time.Time `json:"last_rotated,omitempty"`
	Active      *bool      `json:"active,omitempty"`
}

// Grant is one grant of the identity with what it carries and what of it was used.
type Grant struct {
	Grant       string   `json:"grant"`
	Via         string   `json:"via"`
	Scope       string   `json:"scope"`
	Deny        bool     `json:"deny,omitempty"`
	Admin       bool     `json:"admin,omitempty"`
	Unresolved  bool     `json:"unresolved,omitempty"`
	Permissions []string `json:"permissions"`
	Used        []string `json:"used"`
}

// Report builds the report of one identity.
func (t *Tracker) Report(id string) Report { return t.report(id, keysByIdentity(t.model)) }

// keysByIdentity indexes the model's long-term keys by identity.
func keysByIdentity(m *grants.Model) map[string][]grants.Credential {
	out := map[string][]grants.Credential{}
	for _, c := range m.Credentials() {
		out[c.Identity] = append(out[c.Identity], c)
	}
	return out
}

func (t *Tracker) report(id string, keys map[string][]grants.Credential) Report {
	t.mu.Lock()
	u := t.ids[id]
	var used, denied []Use
	var usedEntries, ungranted map[string]bool
	var groups []string
	creds := map[string]*CredentialUse{}
	rep := Report{Identity: id}
	if u != nil {
		rep.Provider, rep.Kind, rep.Name, rep.Account = u.provider, u.kind, u.name, u.account
		for c, last := range u.credentials {
			last := last
			creds[c] = &CredentialUse{ID: c, LastUsed: &last}
		}
		first, last := u.first, u.last
		rep.FirstSeen, rep.LastSeen = &first, &last
		used, denied = useList(u.used), useList(u.denied)
		usedEntries, ungranted = copySet(u.usedEntries), copySet(u.ungranted)
		groups = append(groups, u.groups...)
	}
	t.mu.Unlock()

	if inv, ok := t.model.Identity(id); ok {
		if rep.Kind == "" {
			rep.Kind = inv.Kind
		}
		if rep.Name == "" {
			rep.Name = inv.Name
		}
		rep.Owner = inv.Owner
		if rep.Provider == "" {
			rep.Provider = inv.Provider
		}
		if rep.Account == "" {
			rep.Account = inv.Account
		}
	}
	rep.Credentials = credentialUses(keys[id], creds)
	entries := t.model.Entries(id, groups...)
	if rep.Provider == "" && len(entries) > 0 {
		rep.Provider = entries[0].Provider
	}
	grantIdx := map[string]int{}
	granted, usedPatterns := map[string]bool{}, map[string]bool{}
	for _, e := range entries {
		gk := e.Grant + "\x00" + e.Via + "\x00" + e.Scope + "\x00" + boolKey(e.Deny)
		i, ok := grantIdx[gk]
		if !ok {
			i = len(rep.Grants)
			grantIdx[gk] = i
			rep.Grants = append(rep.Grants, Grant{Grant: e.Grant, Via: e.Via, Scope: e.Scope, Deny: e.Deny, Unresolved: e.Unresolved, Used: []string{}})
		}
		g := &rep.Grants[i]
		g.Permissions = append(g.Permissions, e.Permission)
		g.Admin = g.Admin || e.Admin
		rep.Admin = rep.Admin || e.Admin
		if e.Deny {
			continue
		}
		granted[e.Permission] = true
		if usedEntries[e.Key()] {
			usedPatterns[e.Permission] = true
			g.Used = append(g.Used, e.Permission)
		}
	}
	rep.Granted = sortedSet(granted)
	rep.Unused = []string{}
	for _, p := range rep.Granted {
		if !usedPatterns[p] {
			rep.Unused = append(rep.Unused, p)
		}
	}
	if len(rep.Granted) > 0 {
		rep.Utilization = float64(len(usedPatterns)) / float64(len(rep.Granted))
	}
	rep.Uses, rep.DeniedUses = nonNilUses(used), nonNilUses(denied)
	rep.Used, rep.Denied, rep.SensitiveUsed = []string{}, []string{}, []string{}
	for _, x := range used {
		rep.Used = append(rep.Used, x.Permission)
		if x.Sensitive {
			rep.SensitiveUsed = append(rep.SensitiveUsed, x.Permission)
		}
	}
	for _, x := range denied {
		rep.Denied = append(rep.Denied, x.Permission)
	}
	rep.Ungranted = sortedSet(ungranted)
	if rep.Grants == nil {
		rep.Grants = []Grant{}
	}
	prov, _ := events.ParseProvider(rep.Provider)
	rep.LeastPrivilege = LeastPrivilege(prov, id, used, t.model)
	return rep
}

// credentialUses adds the identity's long-term keys to the credentials it used, sorted by id.
func credentialUses(keys []grants.Credential, creds map[string]*CredentialUse) []CredentialUse {
	for _, c := range keys {
		cu, ok := creds[c.ID]
		if !ok {
			cu = &CredentialUse{ID: c.ID}
			creds[c.ID] = cu
		}
		active := c.Active
		cu.Active = &active
		if !c.LastRotated.IsZero() {
			rotated := c.LastRotated
			cu.LastRotated = &rotated
		}
		if !c.LastUsed.IsZero() && (cu.LastUsed == nil || c.LastUsed.After(*cu.LastUsed)) {
			used := c.LastUsed
			cu.LastUsed = &used
		}
	}
	out := make([]CredentialUse, 0, len(creds))
	for _, k := range sortedKeys(creds) {
		out = append(out, *creds[k])
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Reports builds the report of every identity, sorted by id.
func (t *Tracker) Reports() []Report {
	ids := t.IdentityIDs()
	keys := keysByIdentity(t.model)
	out := make([]Report, 0, len(ids))
	for _, id := range ids {
		out = append(out, t.report(id, keys))
	}
	return out
}

func useList(m map[string]*Use) []Use {
	out := make([]Use, 0, len(m))
	for _, u := range m {
		c := *u
		c.Resources = append([]string(nil), u.Resources...)
		sort.Strings(c.Resources)
		c.Namespaces = append([]string(nil), u.Namespaces...)
		sort.Strings(c.Namespaces)
		c.APIGroups = append([]string(nil), u.APIGroups...)
		sort.Strings(c.APIGroups)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Permission < out[j].Permission })
	return out
}

func nonNilUses(u []Use) []Use {
	if u == nil {
		return []Use{}
	}
	return u
}

func copySet(m map[string]bool) map[string]bool {
	out := make(map[string]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func boolKey(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
