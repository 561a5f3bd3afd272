package usage

import (
	"sort"
	"sync"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/grants"
)

// Activity is what the events showed of one identity, as much as posture needs: when it
// was first and last seen and its last admin action (the use of a sensitive permission).
type Activity struct {
	Identity string    `json:"id"`
	Provider string    `json:"provider,omitempty"`
	Kind     string    `json:"kind,omitempty"`
	Name     string    `json:"name,omitempty"`
	Account  string    `json:"account,omitempty"`
	First    time.Time `json:"first"`
	Last     time.Time `json:"last"`
	// LastAdmin is the time of the last allowed use of a sensitive permission, with the
	// permission and the event.
	LastAdmin           time.Time `json:"last_admin,omitzero"`
	LastAdminPermission string    `json:"last_admin_permission,omitempty"`
	LastAdminEvent      string    `json:"last_admin_event,omitempty"`
}

// merge folds another record of the same identity in: earliest first, latest last.
func (a *Activity) merge(b Activity) bool {
	changed := false
	if !b.First.IsZero() && (a.First.IsZero() || b.First.Before(a.First)) {
		a.First, changed = b.First, true
	}
	if b.Last.After(a.Last) {
		a.Last, changed = b.Last, true
	}
	if b.LastAdmin.After(a.LastAdmin) {
		a.LastAdmin, a.LastAdminPermission, a.LastAdminEvent, changed = b.LastAdmin, b.LastAdminPermission, b.LastAdminEvent, true
	}
	for _, f := range []struct {
		dst *string
		src string
	}{{&a.Provider, b.Provider}, {&a.Kind, b.Kind}, {&a.Name, b.Name}, {&a.Account, b.Account}} {
		if *f.dst == "" && f.src != "" {
			*f.dst, changed = f.src, true
		}
	}
	return changed
}

// Activities keeps the activity of every identity seen and the last use of every
// credential. It is safe for concurrent use. Observing the same event twice changes
// nothing, so a replay of the stream after a restart is harmless.
type Activities struct {
	mu    sync.Mutex
	ids   map[string]*Activity
	creds map[string]time.Time
	// since is the earliest event time observed.
	since time.Time
	// dirty are the identities and credentials changed since TakeChanged.
	dirtyIDs, dirtyCreds map[string]bool
}

// NewActivities returns an empty record.
func NewActivities() *Activities {
	return &Activities{ids: map[string]*Activity{}, creds: map[string]time.Time{}, dirtyIDs: map[string]bool{}, dirtyCreds: map[string]bool{}}
}

// Observe records one event: its identity was active at its time, its credential was used,
// and an allowed use of a sensitive permission is an admin action.
func (a *Activities) Observe(ev *events.Event) {
	id := ev.GetIdentity()
	if id.GetId() == "" || ev.TimeUnixNano <= 0 {
		return
	}
	at := time.Unix(0, ev.TimeUnixNano).UTC()
	rec := Activity{Identity: id.Id, Provider: ev.Provider.Label(), Kind: id.Kind.Label(), Name: id.Name, Account: ev.Account, First: at, Last: at}
	perm := ev.GetAction().GetPermission()
	if perm != "" && IsUse(ev.GetOutcome().GetResult()) && grants.IsSensitive(ev.Provider, perm) {
		rec.LastAdmin, rec.LastAdminPermission, rec.LastAdminEvent = at, perm, ev.Id
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.mergeLocked(rec)
	if c := ev.GetCredential().GetId(); c != "" && at.After(a.creds[c]) {
		a.creds[c] = at
		a.dirtyCreds[c] = true
	}
	if a.since.IsZero() || at.Before(a.since) {
		a.since = at
	}
}

func (a *Activities) mergeLocked(rec Activity) {
	cur, ok := a.ids[rec.Identity]
	if !ok {
		cp := rec
		a.ids[rec.Identity] = &cp
		a.dirtyIDs[rec.Identity] = true
		return
	}
	if cur.merge(rec) {
		a.dirtyIDs[rec.Identity] = true
	}
}

// Merge folds in a record kept elsewhere (the persisted summary).
func (a *Activities) Merge(rec Activity) {
	if rec.Identity == "" {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.mergeLocked(rec)
	if !rec.First.IsZero() && (a.since.IsZero() || rec.First.Before(a.since)) {
		a.since = rec.First
	}
}

// MergeCredential folds in the last use of a credential kept elsewhere.
func (a *Activities) MergeCredential(id string, last time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if last.After(a.creds[id]) {
		a.creds[id] = last
		a.dirtyCreds[id] = true
	}
}

// Get returns the activity of one identity.
func (a *Activities) Get(id string) (Activity, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r, ok := a.ids[id]; ok {
		return *r, true
	}
	return Activity{}, false
}

// All returns every identity's activity, sorted by identity.
func (a *Activities) All() []Activity {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Activity, 0, len(a.ids))
	for _, r := range a.ids {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Identity < out[j].Identity })
	return out
}

// CredentialLastUse returns the last use of a credential (zero when never seen).
func (a *Activities) CredentialLastUse(id string) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.creds[id]
}

// Since returns the earliest event time observed.
func (a *Activities) Since() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.since
}

// TakeChanged returns the records changed since the last call and clears their marks, for
// persisting the summary incrementally; after a failed attempt, Restore marks them again.
func (a *Activities) TakeChanged() ([]Activity, map[string]time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ids := make([]Activity, 0, len(a.dirtyIDs))
	for id := range a.dirtyIDs {
		ids = append(ids, *a.ids[id])
	}
	creds := make(map[string]time.Time, len(a.dirtyCreds))
	for id := range a.dirtyCreds {
		creds[id] = a.creds[id]
	}
	a.dirtyIDs, a.dirtyCreds = map[string]bool{}, map[string]bool{}
	sort.Slice(ids, func(i, j int) bool { return ids[i].Identity < ids[j].Identity })
	return ids, creds
}

// Restore marks records as changed again after a failed attempt to persist them.
func (a *Activities) Restore(ids []Activity, creds map[string]time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range ids {
		a.dirtyIDs[r.Identity] = true
	}
	for id := range creds {
		a.dirtyCreds[id] = true
	}
}
