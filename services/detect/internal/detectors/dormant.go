package detectors

import (
	"fmt"
	"strings"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/netclass"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/state"
)

// dormant raises a dormant_credential_reuse finding when the event's long-lived credential,
// or else its identity, was unused for longer than the threshold before this event, or was
// created longer ago than the threshold and is used for the first time. With no history
// and no inventory baseline it is learning, and says nothing.
func (d *Detector) dormant(c *ctx) {
	threshold := uint32(c.cat.Dormancy(c.rule, c.kind) / time.Second)
	if credID := longLivedCredential(c.ev); credID != "" {
		cs := c.s.Cred(netclass.Hash64(credID), false)
		if cs == nil {
			cs = c.s.Cred(netclass.Hash64(credID), true)
			if d.env.Baseline != nil {
				if b, ok := d.env.Baseline.Credential(credID); ok {
					seed(&cs.Activity, &cs.Created, b)
				}
			}
		}
		if prev, first, ok := judge(&cs.Activity, cs.Created, c.t, threshold); ok {
			d.emitDormant(c, credID, prev, first, threshold)
			return
		}
	}
	if c.s.Events == 0 && c.s.Activity.Empty() && d.env.Baseline != nil {
		if b, ok := d.env.Baseline.Identity(c.ev.Identity.Id); ok {
			seed(&c.s.Activity, &c.s.Created, b)
		}
	}
	if prev, first, ok := judge(&c.s.Activity, c.s.Created, c.t, threshold); ok {
		d.emitDormant(c, "", prev, first, threshold)
	}
}

// seed records inventory activity in a state, so it is consulted once and persisted.
func seed(a *state.Activity, created *uint32, b Activity) {
	if !b.Created.IsZero() {
		*created = unixSeconds(b.Created.UnixNano())
	}
	if !b.LastUsed.IsZero() {
		a.Add(unixSeconds(b.LastUsed.UnixNano()), mergeGap)
	}
}

// judge decides whether activity at t follows a dormant period: the latest activity before
// t lies more than threshold before it (prev), or there is none and the credential was
// created more than threshold before t (first use).
func judge(a *state.Activity, created, t, threshold uint32) (prev uint32, firstUse, ok bool) {
	p, inside, has := a.Before(t)
	if has {
		if inside || t-p <= threshold {
			return 0, false, false
		}
		return p, false, true
	}
	if created != 0 && t > created && t-created > threshold {
		return created, true, true
	}
	return 0, false, false
}

func (d *Detector) emitDormant(c *ctx, credID string, prev uint32, firstUse bool, threshold uint32) {
	gapDays := (c.t - prev) / 86400
	thresholdDays := threshold / 86400
	sev := events.Severity_SEVERITY_MEDIUM
	if c.t-prev >= 2*threshold {
		sev = raise(sev, 1)
	}
	power := c.s.Power()
	if power >= PowerEscalate {
		sev = raise(sev, 1)
	}
	who := describe(c.ev.Identity, c.kind)
	subject, cause := who, "identity"
	if credID != "" {
		subject, cause = credentialLabel(c.ev.GetCredential())+" of "+who, "credential:"+credID
	}
	act := c.ev.GetAction()
	did := act.GetPermission()
	if did == "" {
		did = act.GetName()
	}
	var summary, title string
	if firstUse {
		title = fmt.Sprintf("%s used for the first time %d days after it was created", shortSubject(credID, c.ev), gapDays)
		summary = fmt.Sprintf("%s was used for the first time on %s (%s %s), %d days after it was created on %s; the dormancy threshold is %d days.",
			subject, day(c.t), did, from(c.ev), gapDays, day(prev), thresholdDays)
	} else {
		title = fmt.Sprintf("%s used again after %d days unused", shortSubject(credID, c.ev), gapDays)
		summary = fmt.Sprintf("%s was used on %s (%s %s) after %d days without use (last used %s); the dormancy threshold is %d days.",
			subject, day(c.t), did, from(c.ev), gapDays, day(prev), thresholdDays)
	}
	summary += " A credential that wakes up after months is often a forgotten secret in someone else's hands, or a workload that should have been offboarded."
	if power >= PowerEscalate {
		summary += " The identity holds " + PowerLabel(power) + " grants."
	}
	d.emit(c, draft{
		detector: DormantCredentialReuse,
		severity: sev,
		cause:    cause,
		title:    title,
		summary:  summary,
		recommendation: "Ask the owner whether this use was expected. If not, disable the credential at once and review the calls it made. " +
			"If the identity is no longer needed, offboard it; otherwise rotate the credential and set an expiry.",
		owasp: []string{NHI1ImproperOffboarding, NHI7LongLivedSecrets},
		mitre: []string{"T1078.004"},
		fields: map[string]string{
			"credential": credID, "previous_activity": day(prev), "gap_days": fmt.Sprint(gapDays),
			"threshold_days": fmt.Sprint(thresholdDays), "first_use": fmt.Sprint(firstUse),
		},
	})
}

func credentialLabel(c *events.Credential) string {
	switch c.GetType() {
	case events.CredentialType_CREDENTIAL_TYPE_ACCESS_KEY:
		return "access key " + lastField(c.GetId())
	case events.CredentialType_CREDENTIAL_TYPE_SERVICE_ACCOUNT_KEY:
		return "service-account key " + lastField(c.GetId())
	case events.CredentialType_CREDENTIAL_TYPE_K8S_TOKEN:
		return "token " + lastField(c.GetId())
	}
	return "credential " + c.GetId()
}

func shortSubject(credID string, ev *events.Event) string {
	if credID != "" {
		return credentialLabel(ev.GetCredential())
	}
	name := ev.Identity.GetName()
	if name == "" {
		name = principalName(ev.Identity.GetId())
	}
	return name
}

// lastField is what follows the last colon: AKIA… for aws:key:AKIA….
func lastField(id string) string {
	if i := strings.LastIndexByte(id, ':'); i >= 0 && i < len(id)-1 {
		return id[i+1:]
	}
	return id
}
