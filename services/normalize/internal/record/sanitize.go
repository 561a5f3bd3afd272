package record

import (
	"strings"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/redact"
)

// RedactEvent passes every string of ev through redact.String: whatever a parser copied from
// a record, nothing shaped like a secret leaves normalize. Extras are redacted as they are
// built (Extras).
func RedactEvent(ev *events.Event) {
	// Events repeat strings (the identity id in the delegation chain, the account in the
	// identity and resources): each distinct string is checked once.
	var m memo
	r := m.redact
	if id := ev.Identity; id != nil {
		id.Id, id.Type, id.Name, id.Account = r(id.Id), r(id.Type), r(id.Name), r(id.Account)
		id.SessionName, id.PrincipalId, id.SourceIdentity = r(id.SessionName), r(id.PrincipalId), r(id.SourceIdentity)
		m.all(id.Groups)
	}
	if c := ev.Credential; c != nil {
		c.Id, c.IssuedTo, c.Delivery = r(c.Id), r(c.IssuedTo), r(c.Delivery)
	}
	for _, d := range ev.Delegation {
		d.From, d.To = r(d.From), r(d.To)
	}
	if a := ev.Action; a != nil {
		a.Service, a.Name, a.Permission = r(a.Service), r(a.Name), r(a.Permission)
		a.Type, a.Category, a.Version = r(a.Type), r(a.Category), r(a.Version)
	}
	for _, res := range ev.Resources {
		id := r(res.Id)
		if id != res.Id && res.Name != "" && strings.Contains(res.Id, res.Name) && !strings.Contains(id, res.Name) {
			// The name was cut from the part of the id that held a secret.
			res.Name = redact.Marker
		}
		res.Id, res.Type, res.Name, res.Namespace, res.Account = id, r(res.Type), r(res.Name), r(res.Namespace), r(res.Account)
	}
	if n := ev.Network; n != nil {
		n.Ip, n.Host, n.UserAgent, n.VpcEndpoint = r(n.Ip), r(n.Host), r(n.UserAgent), r(n.VpcEndpoint)
		n.Cluster, n.Region = r(n.Cluster), r(n.Region)
	}
	if o := ev.Outcome; o != nil {
		o.ErrorCode, o.ErrorMessage = r(o.ErrorCode), r(o.ErrorMessage)
	}
	for _, g := range ev.GrantChanges {
		g.Grantee, g.Grant, g.Scope, g.Mechanism = r(g.Grantee), r(g.Grant), r(g.Scope), r(g.Mechanism)
		m.all(g.Permissions)
		m.all(g.Principals)
	}
	ev.Account, ev.ProviderEventId = r(ev.Account), r(ev.ProviderEventId)
}

// memo remembers the strings already checked in one event.
type memo struct {
	in, out [16]string
	n       int
}

func (m *memo) redact(s string) string {
	if len(s) < 8 {
		return s // too short for any secret pattern
	}
	for i := 0; i < m.n; i++ {
		if m.in[i] == s {
			return m.out[i]
		}
	}
	out := redact.String(s)
	if m.n < len(m.in) {
		m.in[m.n], m.out[m.n] = s, out
		m.n++
	}
	return out
}

func (m *memo) all(ss []string) {
	for i, s := range ss {
		ss[i] = m.redact(s)
	}
}
