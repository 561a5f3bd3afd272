// Package detectors holds nhiwatch's three stateful detectors — privilege_expansion,
// dormant_credential_reuse and out_of_boundary — and applies events to the per-identity
// state they share. Everything is judged in event time, so replaying old logs yields the
// findings those logs deserve, with the same finding ids.
//
// A Detector is not safe for concurrent use on one partition; each partition's goroutine
// calls Process with that partition's state.
package detectors

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/catalog"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/netclass"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/state"
)

// Detector names (DESIGN.md).
const (
	PrivilegeExpansion     = "privilege_expansion"
	DormantCredentialReuse = "dormant_credential_reuse"
	OutOfBoundary          = "out_of_boundary"
)

// mergeGap is the activity gap below which two activities share a span: well under the
// minimum dormancy threshold, so no dormant period is ever merged away.
const mergeGap = uint32(6 * 3600)

// Activity is what an inventory snapshot knows about an identity or credential.
type Activity struct {
	// Created is when it was created; zero when unknown.
	Created time.Time
	// LastUsed is when it was last used; zero when never or unknown.
	LastUsed time.Time
}

// Baseline supplies activity known from inventory snapshots (an AWS credential report, GCP
// key metadata), for identities and credentials the event history has not shown yet. It
// is consulted once per identity or credential, when it is first seen. Implementations
// must be safe for concurrent use.
type Baseline interface {
	Identity(id string) (Activity, bool)
	Credential(id string) (Activity, bool)
}

// Expander tells what permissions a grant change adds to its grantee, when grant documents
// are known (from inventory snapshots); sensitive lists those that allow escalation or
// data access. Implementations must be safe for concurrent use.
type Expander interface {
	Expand(g *events.GrantChange) (added, sensitive []string)
}

// Env is what the detectors consult besides the state.
type Env struct {
	Catalog *catalog.Holder
	// Partitions is P, to tell which grantees live in the partition being processed.
	Partitions uint32
	// AWSRanges are AWS's published address ranges; nil when not configured.
	AWSRanges *netclass.Ranges
	Baseline  Baseline
	Expander  Expander
	// Now stamps findings' creation time.
	Now func() time.Time
}

// Detector runs the three detectors.
type Detector struct {
	env Env
	// Suppressed counts findings a catalog suppression silenced.
	Suppressed atomic.Int64
}

// New returns a Detector.
func New(env Env) *Detector {
	if env.Now == nil {
		env.Now = time.Now
	}
	if env.Partitions == 0 {
		env.Partitions = 1
	}
	if env.Catalog == nil {
		env.Catalog = catalog.Static(catalog.Empty())
	}
	return &Detector{env: env}
}

// ctx is one event being processed for one identity.
type ctx struct {
	ev    *events.Event
	t     uint32 // event time, Unix seconds
	s     *state.Identity
	cat   *catalog.Catalog
	rule  *catalog.Rule
	kind  events.IdentityKind
	found []*events.Finding
	// Where the event came from, classified once.
	net    netclass.Network
	hasIP  bool
	family string
	class  string
}

// Process applies one event, delivered in NHI_EVENTS message seq (0 outside a stream), to
// the partition's state and returns the findings it raises. An event whose actor lives in
// the partition is the actor's activity; one delivered as a copy for a grantee only updates
// the grantee.
func (d *Detector) Process(part *state.Partition, ev *events.Event, seq uint64) []*events.Finding {
	if ev.GetIdentity().GetId() == "" || ev.TimeUnixNano <= 0 {
		return nil
	}
	cat := d.env.Catalog.Get()
	gen := d.env.Catalog.Generation()
	t := unixSeconds(ev.TimeUnixNano)
	var out []*events.Finding
	actorID := ev.Identity.Id
	actorKey := netclass.Hash64(actorID)
	if events.Partition(actorID, d.env.Partitions) == part.ID {
		s := part.Get(actorKey)
		if s.Apply(seq) {
			c := &ctx{ev: ev, t: t, s: s, cat: cat}
			c.net, c.hasIP = netclass.Parse(ev.GetNetwork().GetIp())
			c.family, c.class = netclass.Family(ev.GetNetwork().GetUserAgent())
			c.rule = d.rule(s, cat, gen, actorID)
			c.kind = ev.Identity.Kind
			if c.rule != nil && c.rule.Kind != events.IdentityKind_IDENTITY_KIND_UNSPECIFIED {
				c.kind = c.rule.Kind
			}
			d.privilege(c)
			if judgedForUse(c.kind) {
				d.dormant(c)
				d.boundary(c)
			}
			record(c)
			part.MarkDirty(actorKey)
			out = c.found
		}
	}
	// Grantees in this partition keep their grants current.
	for _, g := range ev.GrantChanges {
		if !isIdentityID(g.Grantee) || events.Partition(g.Grantee, d.env.Partitions) != part.ID {
			continue
		}
		key := netclass.Hash64(g.Grantee)
		gs := part.Get(key)
		if !gs.Apply(seq) {
			continue
		}
		applyGrant(gs, g, t)
		part.MarkDirty(key)
	}
	return out
}

// judgedForUse reports whether dormancy and boundaries apply to an identity kind: every
// non-human identity except the provider's own control plane.
func judgedForUse(k events.IdentityKind) bool {
	return k.IsNHI() && k != events.IdentityKind_IDENTITY_KIND_CONTROL_PLANE
}

// rule returns the catalog rule of an identity, cached in its state per catalog generation.
func (d *Detector) rule(s *state.Identity, cat *catalog.Catalog, gen uint32, id string) *catalog.Rule {
	if s.RuleGen != gen {
		s.Rule = int32(cat.Match(id))
		s.RuleGen = gen
	}
	return cat.Rule(int(s.Rule))
}

// record updates the actor's state with the event: activity, credential use, learned
// boundary dimensions.
func record(c *ctx) {
	s, ev := c.s, c.ev
	s.AddEvent()
	s.Kind = uint8(ev.Identity.Kind)
	s.Activity.Add(c.t, mergeGap)
	if cred := longLivedCredential(ev); cred != "" {
		cs := s.Cred(netclass.Hash64(cred), true)
		cs.Activity.Add(c.t, mergeGap)
	}
	learn(c)
}

// applyGrant updates a grantee's grants, and a new credential's creation time.
func applyGrant(s *state.Identity, g *events.GrantChange, t uint32) {
	if isCredentialMechanism(g.Mechanism) {
		if strings.Contains(g.Grant, ":key:") || strings.Contains(g.Grant, ":token:") {
			cs := s.Cred(netclass.Hash64(g.Grant), true)
			if cs.Created == 0 || t < cs.Created {
				cs.Created = t
			}
		}
		return
	}
	h := netclass.Hash64(g.Grant + "\x00" + g.Scope)
	if g.Op == events.GrantOp_GRANT_OP_REMOVE || g.Deny {
		s.RemoveGrant(h)
		return
	}
	p, _ := GrantPower(g)
	s.SetGrant(h, p)
}

// longLivedCredential returns the id of the event's credential when it is long-lived
// (access key, service-account key, Kubernetes token); sessions and tokens minted per
// request are judged through their identity.
func longLivedCredential(ev *events.Event) string {
	c := ev.GetCredential()
	switch c.GetType() {
	case events.CredentialType_CREDENTIAL_TYPE_ACCESS_KEY, events.CredentialType_CREDENTIAL_TYPE_SERVICE_ACCOUNT_KEY,
		events.CredentialType_CREDENTIAL_TYPE_K8S_TOKEN:
		return c.GetId()
	}
	return ""
}

func isIdentityID(s string) bool {
	return strings.HasPrefix(s, "aws:") || strings.HasPrefix(s, "gcp:") || strings.HasPrefix(s, "k8s:")
}

func unixSeconds(ns int64) uint32 {
	s := ns / 1e9
	if s < 0 {
		return 0
	}
	if s > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(s)
}
