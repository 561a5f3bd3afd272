// Package usage measures what every identity does against what it may do: per identity and
// permission, how often and when it was used, which grants were never used, which requests
// went beyond the grants, and the least-privilege policy the observed use needs. The same
// code serves `nhiwatch usage` (in process, over log files) and the detect service, which
// writes the statistics to ClickHouse (writer.go), raises posture findings (posture.go) and
// exports them as OCSF IAM Analysis Findings (ocsf.go).
package usage

import (
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/grants"
)

// maxResources bounds the resources remembered per identity and permission.
const maxResources = 16

// Use is the use of one permission by one identity.
type Use struct {
	Permission string    `json:"permission"`
	Count      uint64    `json:"count"`
	First      time.Time `json:"first"`
	Last       time.Time `json:"last"`
	Sensitive  bool      `json:"sensitive,omitempty"`
	// Resources are the ARNs or names the uses touched (at most maxResources); AnyResource
	// is set when a use named none or there were more.
	Resources   []string `json:"resources,omitempty"`
	AnyResource bool     `json:"-"`
	// Namespaces and APIGroups of Kubernetes uses ("" is cluster-scoped / the core group).
	Namespaces []string `json:"namespaces,omitempty"`
	APIGroups  []string `json:"api_groups,omitempty"`
}

func (u *Use) add(ev *events.Event, r *grants.Request) {
	t := time.Unix(0, ev.TimeUnixNano).UTC()
	if u.Count == 0 || t.Before(u.First) {
		u.First = t
	}
	if t.After(u.Last) {
		u.Last = t
	}
	u.Count++
	arns := 0
	for _, res := range r.Resources {
		if ev.Provider == events.Provider_PROVIDER_AWS && !strings.HasPrefix(res, "arn:") {
			continue
		}
		arns++
		u.Resources = addBounded(u.Resources, res, &u.AnyResource)
	}
	if arns == 0 {
		u.AnyResource = true
	}
	if ev.Provider == events.Provider_PROVIDER_K8S {
		u.Namespaces = addSet(u.Namespaces, r.Namespace)
		g := ev.GetAction().GetService()
		if g == "core" {
			g = ""
		}
		u.APIGroups = addSet(u.APIGroups, g)
	}
}

func addBounded(s []string, v string, overflow *bool) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	if len(s) >= maxResources {
		*overflow = true
		return s
	}
	return append(s, v)
}

func addSet(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// identityUsage is what one identity did.
type identityUsage struct {
	id, provider, kind, name, account string
	groups                            []string
	first, last                       time.Time
	used, denied                      map[string]*Use
	usedEntries                       map[string]bool // entry keys an allowed use matched
	ungranted                         map[string]bool
	credentials                       map[string]time.Time // credential id → last use
}

// Tracker accumulates usage from events and evaluates it against a grant model. It is
// safe for concurrent use; each event is counted once, however often it is observed.
type Tracker struct {
	mu       sync.Mutex
	model    *grants.Model
	activity *Activities
	ids      map[string]*identityUsage
	seen     map[string]struct{}
}

// NewTracker returns a Tracker over model (which Observe keeps current with the events'
// grant changes).
func NewTracker(model *grants.Model) *Tracker {
	return &Tracker{model: model, activity: NewActivities(), ids: map[string]*identityUsage{}, seen: map[string]struct{}{}}
}

// Model returns the tracker's grant model.
func (t *Tracker) Model() *grants.Model { return t.model }

// Activity returns the activity the tracker observed, for posture.
func (t *Tracker) Activity() *Activities { return t.activity }

// Counts reports whether an event is a use of a permission by an identity.
func Counts(ev *events.Event) bool {
	return ev.GetIdentity().GetId() != "" && ev.GetAction().GetPermission() != ""
}

// IsUse reports whether the outcome means the permission was granted: allowed, or
// authorised and failed for another reason (not found, throttled), or not logged.
func IsUse(r events.Result) bool { return r != events.Result_RESULT_DENIED }

// Observe counts one event: evaluates its permission against the grants in force before
// it, then applies the grant changes it made.
func (t *Tracker) Observe(ev *events.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.seen[ev.Id]; dup && ev.Id != "" {
		return
	}
	t.seen[ev.Id] = struct{}{}
	if Counts(ev) {
		t.observeUse(ev)
	}
	t.activity.Observe(ev)
	t.model.Apply(ev)
}

func (t *Tracker) observeUse(ev *events.Event) {
	id := ev.GetIdentity()
	u, ok := t.ids[id.Id]
	if !ok {
		u = &identityUsage{
			id: id.Id, provider: ev.Provider.Label(), name: id.Name, account: ev.Account,
			used: map[string]*Use{}, denied: map[string]*Use{}, usedEntries: map[string]bool{},
			ungranted: map[string]bool{}, credentials: map[string]time.Time{},
		}
		t.ids[id.Id] = u
	}
	if k := id.Kind.Label(); k != "" {
		u.kind = k
	}
	for _, g := range id.Groups {
		u.groups = addSet(u.groups, g)
	}
	at := time.Unix(0, ev.TimeUnixNano).UTC()
	if u.first.IsZero() || at.Before(u.first) {
		u.first = at
	}
	if at.After(u.last) {
		u.last = at
	}
	if c := ev.GetCredential().GetId(); c != "" && at.After(u.credentials[c]) {
		u.credentials[c] = at
	}
	r := grants.RequestFromEvent(ev)
	perm := r.Permission
	target := u.used
	if !IsUse(ev.GetOutcome().GetResult()) {
		target = u.denied
	}
	use, ok := target[perm]
	if !ok {
		use = &Use{Permission: perm, Sensitive: grants.IsSensitive(ev.Provider, perm)}
		target[perm] = use
	}
	use.add(ev, &r)
	if !IsUse(ev.GetOutcome().GetResult()) {
		return
	}
	d := t.model.Evaluate(r)
	for _, e := range d.Matched {
		u.usedEntries[e.Key()] = true
	}
	if d.Known && !d.Allowed {
		u.ungranted[perm] = true
	}
}

// IdentityIDs returns every identity seen in events or listed by the model, sorted.
func (t *Tracker) IdentityIDs() []string {
	t.mu.Lock()
	set := map[string]bool{}
	for id := range t.ids {
		set[id] = true
	}
	t.mu.Unlock()
	for _, id := range t.model.Identities() {
		set[id.ID] = true
	}
	for _, p := range t.model.Principals() {
		if isIdentity(p) {
			set[p] = true
		}
	}
	out := make([]string, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// isIdentity tells identity ids from group and other non-identity principals.
func isIdentity(p string) bool {
	switch {
	case strings.HasPrefix(p, "aws:arn:"):
		return strings.Contains(p, ":user/") || strings.Contains(p, ":role/")
	case strings.HasPrefix(p, "gcp:"):
		return !strings.HasPrefix(p, "gcp:group:") && !strings.HasPrefix(p, "gcp:domain:") &&
			!strings.HasPrefix(p, "gcp:principal") && p != "gcp:allUsers" && p != "gcp:allAuthenticatedUsers"
	case strings.HasPrefix(p, "k8s:"):
		return !strings.Contains(p, ":group:")
	}
	return false
}
