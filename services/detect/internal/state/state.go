// Package state holds what the detectors remember about each identity and its long-lived
// credentials: when it was active (in event time), the networks, regions, user-agent
// families and clusters it acts from, the grants it holds and how powerful they are, and the
// findings it recently raised. A state is a compact struct of numbers — strings are hashed —
// so a million identities fit in a few hundred megabytes, and it encodes to a few hundred
// bytes for the NHI_DETECT_STATE KV bucket.
package state

import (
	"slices"
)

// Capacity limits of one identity's state. Past a learned-set limit the identity is marked
// saturated in that dimension and no longer judged on it (it is too varied to learn).
const (
	MaxSpans    = 4
	MaxNets     = 32
	MaxRegions  = 16
	MaxAgents   = 16
	MaxClusters = 8
	MaxGrants   = 32
	MaxCreds    = 8
	MaxFired    = 16
)

// Saturation flags.
const (
	SatNets uint8 = 1 << iota
	SatRegions
	SatAgents
	SatClusters
)

// Span is a stretch of activity [From, To] in Unix seconds of event time. Two activities
// closer than the merge gap share a span; gaps between spans are what dormancy measures.
type Span struct{ From, To uint32 }

// Activity is a bounded history of activity spans. When full, the two spans with the
// smallest gap between them merge, so the largest gaps — the dormant periods — survive.
type Activity struct {
	Spans [MaxSpans]Span
	N     uint8
}

// Empty reports whether no activity was recorded.
func (a *Activity) Empty() bool { return a.N == 0 }

// First and Last return the earliest and latest activity.
func (a *Activity) First() uint32 { return a.Spans[0].From }
func (a *Activity) Last() uint32  { return a.Spans[a.N-1].To }

// Before returns the latest activity at or before t. inside is true when t falls within a
// span (or at its edges); ok is false when nothing was active at or before t.
func (a *Activity) Before(t uint32) (prev uint32, inside, ok bool) {
	for i := int(a.N) - 1; i >= 0; i-- {
		s := a.Spans[i]
		if t >= s.From && t <= s.To {
			return t, true, true
		}
		if s.To < t {
			return s.To, false, true
		}
	}
	return 0, false, false
}

// Add records activity at t, merging it into a span closer than gap.
func (a *Activity) Add(t, gap uint32) {
	n := int(a.N)
	// Find the first span that ends at or after t - gap.
	i := 0
	for i < n && a.Spans[i].To+gap < t {
		i++
	}
	if i < n && a.Spans[i].From <= t+gap {
		s := &a.Spans[i]
		s.From = min(s.From, t)
		s.To = max(s.To, t)
		// The widened span may now touch its successor.
		for i+1 < int(a.N) && a.Spans[i+1].From <= a.Spans[i].To+gap {
			a.Spans[i].To = max(a.Spans[i].To, a.Spans[i+1].To)
			copy(a.Spans[i+1:], a.Spans[i+2:a.N])
			a.N--
		}
		return
	}
	if n == MaxSpans {
		a.mergeSmallestGap()
		n--
		// Recompute the insert position: a merge before i shifted it.
		i = 0
		for i < n && a.Spans[i].To < t {
			i++
		}
	}
	copy(a.Spans[i+1:n+1], a.Spans[i:n])
	a.Spans[i] = Span{t, t}
	a.N++
}

func (a *Activity) mergeSmallestGap() {
	best, bestGap := 0, ^uint32(0)
	for i := 0; i+1 < int(a.N); i++ {
		if g := a.Spans[i+1].From - a.Spans[i].To; g < bestGap {
			best, bestGap = i, g
		}
	}
	a.Spans[best].To = a.Spans[best+1].To
	copy(a.Spans[best+1:], a.Spans[best+2:a.N])
	a.N--
}

// Grant is one grant an identity holds: the hash of (mechanism-independent) grant name and
// scope, and its power level.
type Grant struct {
	Hash  uint64
	Power uint8
}

// Cred is one long-lived credential of an identity (access key, service-account key,
// Kubernetes token): when it was created and when it was used.
type Cred struct {
	Hash     uint64
	Created  uint32
	Activity Activity
}

// Identity is the state of one identity.
type Identity struct {
	// Seq is the last NHI_EVENTS stream sequence applied to this state: a redelivered
	// message at or below it is not applied again.
	Seq uint64
	// Created is when the identity was created, Unix seconds, 0 if unknown.
	Created uint32
	// Events counts the identity's own events (saturating).
	Events uint32
	// Kind is the last events.IdentityKind seen.
	Kind uint8
	// Sat flags learned dimensions that overflowed.
	Sat      uint8
	Activity Activity
	Nets     []uint64
	Regions  []uint32
	Agents   []uint32
	Clusters []uint32
	Grants   []Grant
	Creds    []Cred
	Fired    []uint64

	// Not persisted: the catalog rule cached for a catalog generation, and the message
	// being applied.
	RuleGen  uint32
	Rule     int32
	applying uint64
}

// Power is the highest power level of the grants held.
func (s *Identity) Power() uint8 {
	var p uint8
	for _, g := range s.Grants {
		p = max(p, g.Power)
	}
	return p
}

// AddEvent counts one own event.
func (s *Identity) AddEvent() {
	if s.Events < ^uint32(0) {
		s.Events++
	}
}

// Learned reports whether the identity's learning period is over at event time t: its
// first activity lies at least period before t and it acted at least minEvents times.
func (s *Identity) Learned(t, period uint32, minEvents int) bool {
	if s.Activity.Empty() || int64(s.Events) < int64(minEvents) {
		return false
	}
	return t >= s.Activity.First() && t-s.Activity.First() >= period
}

// HasNet, HasRegion, … report whether a value was learned.
func (s *Identity) HasNet(k uint64) bool     { _, ok := slices.BinarySearch(s.Nets, k); return ok }
func (s *Identity) HasRegion(k uint32) bool  { _, ok := slices.BinarySearch(s.Regions, k); return ok }
func (s *Identity) HasAgent(k uint32) bool   { _, ok := slices.BinarySearch(s.Agents, k); return ok }
func (s *Identity) HasCluster(k uint32) bool { _, ok := slices.BinarySearch(s.Clusters, k); return ok }

// LearnNet, LearnRegion, … add a value and report whether it was new. A full set marks the
// dimension saturated instead.
func (s *Identity) LearnNet(k uint64) bool { return insert64(&s.Nets, k, MaxNets, &s.Sat, SatNets) }
func (s *Identity) LearnRegion(k uint32) bool {
	return insert32(&s.Regions, k, MaxRegions, &s.Sat, SatRegions)
}
func (s *Identity) LearnAgent(k uint32) bool {
	return insert32(&s.Agents, k, MaxAgents, &s.Sat, SatAgents)
}
func (s *Identity) LearnCluster(k uint32) bool {
	return insert32(&s.Clusters, k, MaxClusters, &s.Sat, SatClusters)
}

func insert64(set *[]uint64, k uint64, limit int, sat *uint8, flag uint8) bool {
	i, ok := slices.BinarySearch(*set, k)
	if ok {
		return false
	}
	if len(*set) >= limit {
		*sat |= flag
		return true
	}
	*set = slices.Insert(*set, i, k)
	return true
}

func insert32(set *[]uint32, k uint32, limit int, sat *uint8, flag uint8) bool {
	i, ok := slices.BinarySearch(*set, k)
	if ok {
		return false
	}
	if len(*set) >= limit {
		*sat |= flag
		return true
	}
	*set = slices.Insert(*set, i, k)
	return true
}

// SetGrant records a grant held with its power; RemoveGrant drops it.
func (s *Identity) SetGrant(h uint64, power uint8) {
	i, ok := slices.BinarySearchFunc(s.Grants, h, func(g Grant, h uint64) int { return cmpU64(g.Hash, h) })
	if ok {
		s.Grants[i].Power = power
		return
	}
	if len(s.Grants) >= MaxGrants {
		// Keep the most powerful grants: drop the weakest if the new one is stronger.
		weakest := 0
		for j, g := range s.Grants {
			if g.Power < s.Grants[weakest].Power {
				weakest = j
			}
		}
		if s.Grants[weakest].Power >= power {
			return
		}
		s.Grants = slices.Delete(s.Grants, weakest, weakest+1)
		i, _ = slices.BinarySearchFunc(s.Grants, h, func(g Grant, h uint64) int { return cmpU64(g.Hash, h) })
	}
	s.Grants = slices.Insert(s.Grants, i, Grant{h, power})
}

// RemoveGrant drops a grant.
func (s *Identity) RemoveGrant(h uint64) {
	if i, ok := slices.BinarySearchFunc(s.Grants, h, func(g Grant, h uint64) int { return cmpU64(g.Hash, h) }); ok {
		s.Grants = slices.Delete(s.Grants, i, i+1)
	}
}

// Cred returns the credential with hash h, adding it when create is set (evicting the one
// used least recently when full). It returns nil when absent and not created.
func (s *Identity) Cred(h uint64, create bool) *Cred {
	for i := range s.Creds {
		if s.Creds[i].Hash == h {
			return &s.Creds[i]
		}
	}
	if !create {
		return nil
	}
	if len(s.Creds) >= MaxCreds {
		oldest := 0
		for i := range s.Creds {
			if lastOf(&s.Creds[i]) < lastOf(&s.Creds[oldest]) {
				oldest = i
			}
		}
		s.Creds = slices.Delete(s.Creds, oldest, oldest+1)
	}
	s.Creds = append(s.Creds, Cred{Hash: h})
	return &s.Creds[len(s.Creds)-1]
}

func lastOf(c *Cred) uint32 {
	if c.Activity.Empty() {
		return c.Created
	}
	return c.Activity.Last()
}

// Fire records a finding id hash and reports whether it is new: a finding raised again by
// a later event of the same cause and bucket is not published twice.
func (s *Identity) Fire(h uint64) bool {
	if slices.Contains(s.Fired, h) {
		return false
	}
	if len(s.Fired) >= MaxFired {
		s.Fired = slices.Delete(s.Fired, 0, 1)
	}
	s.Fired = append(s.Fired, h)
	return true
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
