package detectors

import (
	"strings"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/netclass"
)

// OWASP Non-Human Identities Top 10 (2025) ids.
const (
	NHI1ImproperOffboarding  = "NHI1:2025"
	NHI2SecretLeakage        = "NHI2:2025"
	NHI3VulnerableThirdParty = "NHI3:2025"
	NHI4InsecureAuth         = "NHI4:2025"
	NHI5Overprivileged       = "NHI5:2025"
	NHI7LongLivedSecrets     = "NHI7:2025"
	NHI8EnvironmentIsolation = "NHI8:2025"
	NHI9Reuse                = "NHI9:2025"
	NHI10HumanUse            = "NHI10:2025"
)

// draft is a finding being built.
type draft struct {
	detector       string
	severity       events.Severity
	cause          string
	title          string
	summary        string
	recommendation string
	owasp          []string
	mitre          []string
	fields         map[string]string
	grantee        string
	added          []string
	sensitive      []string
}

// emit turns a draft into a finding, unless the catalog suppresses it or the identity
// already raised the same finding (same id).
func (d *Detector) emit(c *ctx, f draft) {
	day := time.Unix(int64(c.t), 0).UTC().Format("2006-01-02")
	id := events.FindingID(f.detector, c.ev.Identity.Id, f.cause, day)
	if c.rule.Suppressed(f.detector, f.cause, time.Unix(int64(c.t), 0)) != nil {
		d.Suppressed.Add(1)
		return
	}
	if !c.s.Fire(netclass.Hash64(id)) {
		return
	}
	ev := c.ev
	identity := cloneIdentity(ev.Identity)
	identity.Kind = c.kind
	fn := &events.Finding{
		Id:                        id,
		Detector:                  f.detector,
		Severity:                  f.severity,
		Title:                     f.title,
		Summary:                   f.summary,
		Provider:                  ev.Provider,
		Identity:                  identity,
		Credential:                ev.Credential,
		TimeUnixNano:              ev.TimeUnixNano,
		CreatedUnixNano:           d.env.Now().UnixNano(),
		Evidence:                  []*events.Evidence{evidence(ev, f.fields)},
		OwaspNhi:                  f.owasp,
		MitreAttack:               f.mitre,
		Recommendation:            f.recommendation,
		Cause:                     f.cause,
		Grantee:                   f.grantee,
		PermissionsAdded:          f.added,
		SensitivePermissionsAdded: f.sensitive,
		Status:                    events.FindingStatus_FINDING_STATUS_OPEN,
		Account:                   ev.Account,
		Region:                    ev.GetNetwork().GetRegion(),
		ReceivedUnixNano:          ev.ReceivedUnixNano,
	}
	if c.rule != nil {
		fn.Owner, fn.Team = c.rule.Owner, c.rule.Team
	}
	fn.Summary += catalogNote(c)
	c.found = append(c.found, fn)
}

func cloneIdentity(id *events.Identity) *events.Identity {
	if id == nil {
		return &events.Identity{}
	}
	return &events.Identity{
		Id: id.Id, Kind: id.Kind, Type: id.Type, Name: id.Name, Account: id.Account,
		SessionName: id.SessionName, Groups: id.Groups, PrincipalId: id.PrincipalId, SourceIdentity: id.SourceIdentity,
	}
}

// evidence is the event's key fields plus the detector's own.
func evidence(ev *events.Event, fields map[string]string) *events.Evidence {
	net := ev.GetNetwork()
	e := &events.Evidence{
		EventId:      ev.Id,
		TimeUnixNano: ev.TimeUnixNano,
		Action:       ev.GetAction().GetName(),
		Permission:   ev.GetAction().GetPermission(),
		Ip:           net.GetIp(),
		UserAgent:    net.GetUserAgent(),
		Region:       net.GetRegion(),
		Fields:       fields,
	}
	if e.Ip == "" {
		e.Ip = net.GetHost()
	}
	return e
}

// raise returns sev raised by n levels, capped at critical.
func raise(sev events.Severity, n int) events.Severity {
	v := int(sev) + n
	if v > int(events.Severity_SEVERITY_CRITICAL) {
		v = int(events.Severity_SEVERITY_CRITICAL)
	}
	return events.Severity(v)
}

// describe names an identity for a summary: "IAM user christophe (account 2296…)".
func describe(id *events.Identity, kind events.IdentityKind) string {
	name := id.GetName()
	if name == "" {
		name = id.GetId()
	}
	var what string
	switch id.GetType() {
	case "IAMUser":
		what = "IAM user"
	case "AssumedRole":
		what = "IAM role"
	case "serviceAccount":
		what = "service account"
	default:
		switch {
		case strings.HasPrefix(id.GetId(), "gcp:user:"):
			what = "GCP user"
		case strings.HasPrefix(id.GetId(), "gcp:"):
			what = "GCP service account"
		case strings.Contains(id.GetId(), ":system:serviceaccount:"):
			what = "Kubernetes service account"
		case strings.HasPrefix(id.GetId(), "k8s:"):
			what = "Kubernetes user"
		default:
			what = "identity"
		}
	}
	s := what + " " + name
	if kl := kind.Label(); kl != "" {
		s += " (" + strings.ReplaceAll(kl, "_", " ") + ")"
	}
	return s
}

// principalName is a short display name of an identity id or principal string.
func principalName(id string) string {
	s := strings.TrimPrefix(strings.TrimPrefix(strings.TrimPrefix(id, "aws:"), "gcp:"), "k8s:")
	if i := strings.LastIndexByte(s, '/'); i >= 0 && i < len(s)-1 && strings.HasPrefix(s, "arn:") {
		return s[i+1:]
	}
	return s
}

// from describes where an event came from: "from 203.0.113.7 with aws-cli/2.15".
func from(ev *events.Event) string {
	net := ev.GetNetwork()
	var parts []string
	switch {
	case net.GetIp() != "":
		parts = append(parts, "from "+net.GetIp())
	case net.GetHost() != "":
		parts = append(parts, "via "+net.GetHost())
	}
	if r := net.GetRegion(); r != "" {
		parts = append(parts, "in "+r)
	}
	if ua := net.GetUserAgent(); ua != "" {
		if len(ua) > 80 {
			ua = ua[:80] + "…"
		}
		parts = append(parts, "with user agent "+quote(ua))
	}
	return strings.Join(parts, " ")
}

func quote(s string) string { return "\"" + s + "\"" }

func day(t uint32) string { return time.Unix(int64(t), 0).UTC().Format("2006-01-02") }

// catalogNote tells the analyst who owns the identity and what it is for, or that nobody
// is recorded as its owner.
func catalogNote(c *ctx) string {
	r := c.rule
	if r == nil || r.Owner == "" {
		return " No owner is recorded for this identity in the catalog."
	}
	note := " Owner: " + r.Owner
	if r.Team != "" {
		note += " (team " + r.Team + ")"
	}
	if r.Purpose != "" {
		note += "; purpose: " + r.Purpose
	}
	return note + "."
}
