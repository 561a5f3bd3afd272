package usage

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/grants"
)

// Posture detectors: conditions of the grant and usage state rather than of one event.
const (
	DetectorNoOwner       = "posture_no_owner"
	DetectorKeyRotation   = "posture_key_rotation"
	DetectorStandingAdmin = "posture_standing_admin"
)

// OWASP Non-Human Identities Top 10 (2025) and MITRE ATT&CK ids of posture findings.
const (
	owaspImproperOffboarding = "NHI1:2025"
	owaspOverprivileged      = "NHI5:2025"
	owaspLongLivedSecrets    = "NHI7:2025"
	mitreCloudAccounts       = "T1078.004" // Valid Accounts: Cloud Accounts
	mitreAccountManipulation = "T1098"     // Account Manipulation
)

// PostureConfig sets the thresholds of the posture findings.
type PostureConfig struct {
	// KeyRotationAge: an active long-term key last rotated longer ago is past its rotation age.
	KeyRotationAge time.Duration
	// StandingAdminWindow: an admin-equivalent grant without an admin action for this long
	// (and observed for this long) is standing admin never exercised.
	StandingAdminWindow time.Duration
}

// DefaultPostureConfig returns 90 days for both.
func DefaultPostureConfig() PostureConfig {
	return PostureConfig{KeyRotationAge: 90 * 24 * time.Hour, StandingAdminWindow: 90 * 24 * time.Hour}
}

// Ownership is what the operator's catalog says about an identity.
type Ownership struct {
	Owner, Team string
	// Kind is the catalog's classification; unspecified leaves the identity's own.
	Kind events.IdentityKind
	// Suppressed reports whether the catalog silences a finding of detector with cause at t
	// (nil silences nothing).
	Suppressed func(detector, cause string, t time.Time) bool
}

// Owners answers who owns an identity. Implementations must be safe for concurrent use.
type Owners interface {
	Ownership(identity string) Ownership
}

// PostureInput is the state posture findings are evaluated from.
type PostureInput struct {
	Model    *grants.Model
	Activity *Activities
	// Owners is the catalog; nil knows no owner.
	Owners Owners
	Now    time.Time
	// ObservedSince is when the observation of events began: a standing admin finding
	// needs a whole window of it.
	ObservedSince time.Time
}

// Condition is a posture condition that holds, with the finding that reports it.
type Condition struct {
	Detector, Identity, Cause string
	// Bucket is the finding id's time bucket when the condition fixes one (the rotation
	// date of a key); empty means the day the condition was first seen.
	Bucket  string
	Finding *events.Finding
}

// Key identifies the condition, whatever its time bucket.
func (c Condition) Key() string { return c.Detector + "\x00" + c.Identity + "\x00" + c.Cause }

// FindingAt returns the condition's finding with its stable id: the id of a condition
// first seen on the day of onset.
func (c Condition) FindingAt(onset time.Time) *events.Finding {
	bucket := c.Bucket
	if bucket == "" {
		bucket = onset.UTC().Format(time.DateOnly)
	}
	f := proto.Clone(c.Finding).(*events.Finding)
	f.Id = events.FindingID(c.Detector, c.Identity, c.Cause, bucket)
	return f
}

// subject is one identity posture looks at.
type subject struct {
	id, provider, name, account string
	kind                        events.IdentityKind
	own                         Ownership
	inv                         grants.Identity
	act                         Activity
	seen                        bool
}

// EvaluatePosture returns the posture conditions that hold, sorted by detector, identity
// and cause. Conditions the catalog suppresses are left out.
func EvaluatePosture(cfg PostureConfig, in PostureInput) []Condition {
	subjects := postureSubjects(in)
	keys := map[string][]string{}
	creds := in.Model.Credentials()
	for _, c := range creds {
		if c.Active {
			keys[c.Identity] = append(keys[c.Identity], c.ID)
		}
	}
	var out []Condition
	for _, id := range sortedKeys(subjects) {
		s := subjects[id]
		if !s.kind.IsNHI() || s.kind == events.IdentityKind_IDENTITY_KIND_CONTROL_PLANE {
			continue
		}
		entries := in.Model.Entries(id)
		if c, ok := noOwner(in, s, entries, keys[id]); ok {
			out = append(out, c)
		}
		if c, ok := standingAdmin(cfg, in, s, entries, keys[id]); ok {
			out = append(out, c)
		}
	}
	for _, cred := range creds {
		s, ok := subjects[cred.Identity]
		if !ok {
			s = newSubject(in, cred.Identity)
		}
		if s.kind == events.IdentityKind_IDENTITY_KIND_HUMAN {
			continue
		}
		if c, ok := keyRotation(cfg, in, s, cred); ok {
			out = append(out, c)
		}
	}
	kept := out[:0]
	for _, c := range out {
		if s := subjects[c.Identity]; s.own.Suppressed != nil && s.own.Suppressed(c.Detector, c.Cause, in.Now) {
			continue
		}
		kept = append(kept, c)
	}
	sort.Slice(kept, func(i, j int) bool { return kept[i].Key() < kept[j].Key() })
	return kept
}

// postureSubjects gathers the identities the inventory lists, that hold grants, or that
// events showed.
func postureSubjects(in PostureInput) map[string]subject {
	ids := map[string]bool{}
	for _, inv := range in.Model.Identities() {
		ids[inv.ID] = true
	}
	for _, p := range in.Model.Principals() {
		if isIdentity(p) {
			ids[p] = true
		}
	}
	if in.Activity != nil {
		for _, a := range in.Activity.All() {
			ids[a.Identity] = true
		}
	}
	out := make(map[string]subject, len(ids))
	for id := range ids {
		out[id] = newSubject(in, id)
	}
	return out
}

func newSubject(in PostureInput, id string) subject {
	s := subject{id: id}
	if in.Owners != nil {
		s.own = in.Owners.Ownership(id)
	}
	s.inv, _ = in.Model.Identity(id)
	if in.Activity != nil {
		s.act, s.seen = in.Activity.Get(id)
	}
	s.provider, s.name, s.account = firstOf(s.act.Provider, s.inv.Provider, providerOfID(id)), firstOf(s.inv.Name, s.act.Name), firstOf(s.act.Account, s.inv.Account)
	s.kind = s.own.Kind
	for _, k := range []string{s.act.Kind, s.inv.Kind} {
		if s.kind != events.IdentityKind_IDENTITY_KIND_UNSPECIFIED {
			break
		}
		s.kind, _ = events.ParseIdentityKind(k)
	}
	if s.kind == events.IdentityKind_IDENTITY_KIND_UNSPECIFIED {
		s.kind = kindFromID(id)
	}
	if s.own.Kind == events.IdentityKind_IDENTITY_KIND_UNSPECIFIED && platformIdentity(id) {
		s.kind = events.IdentityKind_IDENTITY_KIND_CONTROL_PLANE
	}
	return s
}

func firstOf(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func providerOfID(id string) string {
	p, _, _ := strings.Cut(id, ":")
	return p
}

// kindFromID classifies an identity the inventory and the events left unclassified, from
// the form of its id: roles and service accounts are workloads', people are humans; an IAM
// user or a Kubernetes user can be either and stays unclassified.
func kindFromID(id string) events.IdentityKind {
	switch {
	case strings.HasPrefix(id, "aws:arn:") && strings.Contains(id, ":role/"):
		return events.IdentityKind_IDENTITY_KIND_WORKLOAD_ROLE
	case strings.HasPrefix(id, "gcp:user:"):
		return events.IdentityKind_IDENTITY_KIND_HUMAN
	case strings.HasPrefix(id, "gcp:") && strings.HasSuffix(id, "gserviceaccount.com"):
		return events.IdentityKind_IDENTITY_KIND_SERVICE_ACCOUNT
	case strings.HasPrefix(id, "k8s:") && strings.Contains(id, ":system:serviceaccount:"):
		return events.IdentityKind_IDENTITY_KIND_SERVICE_ACCOUNT
	}
	return events.IdentityKind_IDENTITY_KIND_UNSPECIFIED
}

// platformIdentity reports identities the platform owns and runs: Kubernetes service
// accounts of the system namespaces, Google-managed service agents (gcp-sa-* and every
// *.gserviceaccount.com but the user-managed iam., the default compute developer. and the
// App Engine appspot. ones). AWS service-linked roles are classified by the inventory.
func platformIdentity(id string) bool {
	if c, rest, ok := strings.Cut(strings.TrimPrefix(id, "k8s:"), ":system:serviceaccount:"); ok && strings.HasPrefix(id, "k8s:") && c != "" {
		ns, _, _ := strings.Cut(rest, ":")
		return ns == "kube-system" || ns == "kube-public" || ns == "kube-node-lease"
	}
	if email, ok := strings.CutPrefix(id, "gcp:"); ok && strings.HasSuffix(email, ".gserviceaccount.com") {
		domain := email[strings.LastIndexByte(email, '@')+1:]
		if strings.HasPrefix(domain, "gcp-sa-") {
			return true // service agents: service-<project number>@gcp-sa-<service>.iam.gserviceaccount.com
		}
		return !strings.HasSuffix(domain, ".iam.gserviceaccount.com") && domain != "developer.gserviceaccount.com" && domain != "appspot.gserviceaccount.com"
	}
	return false
}

// finding starts the finding of a condition on subject s.
func (s subject) finding(in PostureInput, detector string, sev events.Severity) *events.Finding {
	prov, _ := events.ParseProvider(s.provider)
	return &events.Finding{
		Detector: detector, Severity: sev, Provider: prov,
		Identity:        &events.Identity{Id: s.id, Kind: s.kind, Name: s.name, Account: s.account},
		Owner:           firstOf(s.own.Owner, s.inv.Owner),
		Team:            s.own.Team,
		TimeUnixNano:    in.Now.UnixNano(),
		CreatedUnixNano: in.Now.UnixNano(),
		Status:          events.FindingStatus_FINDING_STATUS_OPEN,
		Account:         s.account,
	}
}

// describe names the subject for a summary: "workload role app-backend (account 2296…)".
func (s subject) describe() string {
	name := s.name
	if name == "" {
		name = s.id
	}
	kind := strings.ReplaceAll(s.kind.Label(), "_", " ")
	if kind == "" {
		kind = "identity"
	}
	out := kind + " " + name
	if s.account != "" {
		out += " (" + s.account + ")"
	}
	return out
}

func day(t time.Time) string { return t.UTC().Format(time.DateOnly) }

func days(d time.Duration) int { return int(d / (24 * time.Hour)) }

// lastActivity says when the subject was last seen, for summaries.
func (s subject) lastActivity(in PostureInput) string {
	if s.seen {
		return "last active on " + day(s.act.Last)
	}
	if !in.ObservedSince.IsZero() {
		return "not seen in the events since " + day(in.ObservedSince)
	}
	return "not seen in the events"
}

func adminGrants(entries []grants.Entry) []string {
	set := map[string]bool{}
	for _, e := range entries {
		if e.Admin && !e.Deny {
			set[e.Grant] = true
		}
	}
	return sortedKeys(set)
}

func noOwner(in PostureInput, s subject, entries []grants.Entry, keys []string) (Condition, bool) {
	if s.own.Owner != "" || s.inv.Owner != "" {
		return Condition{}, false
	}
	admin := adminGrants(entries)
	sev := events.Severity_SEVERITY_MEDIUM
	switch {
	case len(admin) > 0:
		sev = events.Severity_SEVERITY_HIGH
	case len(entries) == 0 && !s.seen:
		sev = events.Severity_SEVERITY_LOW
	}
	f := s.finding(in, DetectorNoOwner, sev)
	f.Title = "Non-human identity without an owner"
	grantsText := strconv.Itoa(len(entries)) + " granted permission patterns"
	if len(admin) > 0 {
		grantsText += ", admin-equivalent through " + strings.Join(admin, ", ")
	}
	f.Summary = fmt.Sprintf("%s has no owner: no catalog rule names one and its inventory has no owner tag. "+
		"Nobody answers for its grants (%s)%s, nor for removing it when its workload is gone; %s.",
		capitalize(s.describe()), grantsText, ownedKeys(len(keys)), s.lastActivity(in))
	f.Recommendation = "Name an owner and a team for " + s.id + " in the catalog (a rule whose match covers it), or tag it with owner=<team> in its provider. " +
		"If nobody claims it, disable its credentials, watch for failures, then delete it."
	f.OwaspNhi = []string{owaspImproperOffboarding}
	f.MitreAttack = []string{mitreCloudAccounts}
	f.Cause = "no_owner"
	f.Evidence = []*events.Evidence{{TimeUnixNano: in.Now.UnixNano(), Fields: map[string]string{
		"kind": s.kind.Label(), "granted_patterns": strconv.Itoa(len(entries)), "admin_grants": strings.Join(admin, ","),
		"active_keys": strconv.Itoa(len(keys)), "last_seen": timeField(s.act.Last), "first_seen": timeField(s.act.First),
		"inventory": strconv.FormatBool(s.inv.ID != ""),
	}}}
	return Condition{Detector: DetectorNoOwner, Identity: s.id, Cause: f.Cause, Finding: f}, true
}

func standingAdmin(cfg PostureConfig, in PostureInput, s subject, entries []grants.Entry, keys []string) (Condition, bool) {
	admin := adminGrants(entries)
	if len(admin) == 0 {
		return Condition{}, false
	}
	// The admin grant and the observation must both span the window: a grant made last
	// week, or a week of events, cannot show ninety days without an admin action.
	since := in.ObservedSince
	for _, e := range entries {
		if e.Admin && !e.Deny && e.Since.After(since) {
			since = e.Since
		}
	}
	cutoff := in.Now.Add(-cfg.StandingAdminWindow)
	if since.IsZero() || since.After(cutoff) || s.act.LastAdmin.After(cutoff) {
		return Condition{}, false
	}
	sev := events.Severity_SEVERITY_MEDIUM
	if len(keys) > 0 {
		sev = events.Severity_SEVERITY_HIGH // standing admin behind a long-lived key
	}
	window := days(cfg.StandingAdminWindow)
	last := fmt.Sprintf("none since observation began on %s", day(since))
	if !s.act.LastAdmin.IsZero() {
		last = fmt.Sprintf("the last was %s on %s", s.act.LastAdminPermission, day(s.act.LastAdmin))
	}
	f := s.finding(in, DetectorStandingAdmin, sev)
	f.Title = "Standing admin grant never exercised"
	f.Summary = fmt.Sprintf("%s holds admin-equivalent grants (%s) but made no admin action (an allowed use of a sensitive permission) in the last %d days: %s. "+
		"Its admin power serves nobody and waits for whoever gets its credentials%s.",
		capitalize(s.describe()), strings.Join(admin, ", "), window, last, keysText(len(keys)))
	f.Recommendation = "Remove " + strings.Join(admin, ", ") + " from " + firstOf(s.name, s.id) +
		" and grant the least-privilege policy its observed use needs (nhiwatch usage prints it); give admin just in time when a task needs it."
	f.OwaspNhi = []string{owaspOverprivileged}
	f.MitreAttack = []string{mitreCloudAccounts, mitreAccountManipulation}
	f.Cause = "admin:" + strings.Join(admin, ",")
	ev := &events.Evidence{TimeUnixNano: in.Now.UnixNano(), Fields: map[string]string{
		"admin_grants": strings.Join(admin, ","), "window_days": strconv.Itoa(window), "observed_since": timeField(since),
		"last_admin_action": timeField(s.act.LastAdmin), "last_seen": timeField(s.act.Last), "active_keys": strconv.Itoa(len(keys)),
	}}
	if s.act.LastAdminEvent != "" {
		ev.EventId, ev.Permission, ev.TimeUnixNano = s.act.LastAdminEvent, s.act.LastAdminPermission, s.act.LastAdmin.UnixNano()
	}
	f.Evidence = []*events.Evidence{ev}
	bucket := "never"
	if !s.act.LastAdmin.IsZero() {
		bucket = day(s.act.LastAdmin) // a new admin action starts a new condition
	}
	return Condition{Detector: DetectorStandingAdmin, Identity: s.id, Cause: f.Cause, Bucket: bucket, Finding: f}, true
}

func ownedKeys(n int) string {
	switch n {
	case 0:
		return ""
	case 1:
		return " or its active long-term key"
	}
	return fmt.Sprintf(" or its %d active long-term keys", n)
}

func keysText(n int) string {
	switch n {
	case 0:
		return ""
	case 1:
		return ", and it has an active long-term key"
	}
	return fmt.Sprintf(", and it has %d active long-term keys", n)
}

func keyRotation(cfg PostureConfig, in PostureInput, s subject, c grants.Credential) (Condition, bool) {
	if !c.Active || c.LastRotated.IsZero() {
		return Condition{}, false
	}
	age := in.Now.Sub(c.LastRotated)
	if age <= cfg.KeyRotationAge {
		return Condition{}, false
	}
	lastUsed := c.LastUsed
	if in.Activity != nil {
		if t := in.Activity.CredentialLastUse(c.ID); t.After(lastUsed) {
			lastUsed = t
		}
	}
	admin := len(adminGrants(in.Model.Entries(c.Identity))) > 0
	sev := events.Severity_SEVERITY_MEDIUM
	if admin || age > 365*24*time.Hour {
		sev = events.Severity_SEVERITY_HIGH
	}
	used := "was never used as far as the credential report and the events show"
	if !lastUsed.IsZero() {
		used = "was last used on " + day(lastUsed)
	}
	f := s.finding(in, DetectorKeyRotation, sev)
	f.Title = fmt.Sprintf("Long-term key not rotated for %d days", days(age))
	f.Summary = fmt.Sprintf("Key %s of %s was last rotated on %s, %d days ago, past the %d-day rotation age, and %s. "+
		"A leaked copy of it still works.", keyName(c), s.describe(), day(c.LastRotated), days(age), days(cfg.KeyRotationAge), used)
	if admin {
		f.Summary += " Its identity holds admin-equivalent grants."
	}
	f.Recommendation = "Rotate it: create a second key, move " + firstOf(s.name, s.id) + "'s workload to it, deactivate the old key, watch for failed calls, then delete it. " +
		"Better, replace the long-term key with short-lived credentials (an IAM role, workload identity federation)."
	f.OwaspNhi = []string{owaspLongLivedSecrets}
	f.MitreAttack = []string{mitreCloudAccounts}
	f.Cause = c.ID
	f.Credential = &events.Credential{Id: c.ID, Type: credentialType(c.ID)}
	f.Evidence = []*events.Evidence{{TimeUnixNano: in.Now.UnixNano(), Fields: map[string]string{
		"credential": c.ID, "last_rotated": timeField(c.LastRotated), "age_days": strconv.Itoa(days(age)),
		"rotation_age_days": strconv.Itoa(days(cfg.KeyRotationAge)), "last_used": timeField(lastUsed), "source": c.Source,
	}}}
	return Condition{Detector: DetectorKeyRotation, Identity: c.Identity, Cause: c.ID, Bucket: day(c.LastRotated), Finding: f}, true
}

// keyName names a key for a summary: the access key id, or the credential report slot.
func keyName(c grants.Credential) string {
	if _, slot, ok := strings.Cut(c.ID, "#"); ok {
		return strings.ReplaceAll(slot, "_", " ")
	}
	if k, ok := strings.CutPrefix(c.ID, "aws:key:"); ok {
		return k
	}
	if i := strings.LastIndex(c.ID, "/keys/"); i >= 0 {
		return c.ID[i+len("/keys/"):]
	}
	return c.ID
}

func credentialType(id string) events.CredentialType {
	if strings.HasPrefix(id, "gcp:key:") {
		return events.CredentialType_CREDENTIAL_TYPE_SERVICE_ACCOUNT_KEY
	}
	return events.CredentialType_CREDENTIAL_TYPE_ACCESS_KEY
}

func timeField(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
