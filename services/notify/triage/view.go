package triage

import (
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

// Finding is a finding as the API and the CLI show it.
type Finding struct {
	ID             string     `json:"id"`
	Detector       string     `json:"detector"`
	Severity       string     `json:"severity"`
	Title          string     `json:"title"`
	Summary        string     `json:"summary,omitempty"`
	Provider       string     `json:"provider,omitempty"`
	Account        string     `json:"account,omitempty"`
	Region         string     `json:"region,omitempty"`
	Identity       string     `json:"identity"`
	IdentityKind   string     `json:"identity_kind,omitempty"`
	IdentityName   string     `json:"identity_name,omitempty"`
	Credential     string     `json:"credential,omitempty"`
	Owner          string     `json:"owner,omitempty"`
	Team           string     `json:"team,omitempty"`
	Cause          string     `json:"cause,omitempty"`
	Grantee        string     `json:"grantee,omitempty"`
	Permissions    []string   `json:"permissions_added,omitempty"`
	Time           time.Time  `json:"time,omitzero"`
	OWASPNHI       []string   `json:"owasp_nhi,omitempty"`
	MITREATTACK    []string   `json:"mitre_attack,omitempty"`
	Recommendation string     `json:"recommendation,omitempty"`
	Evidence       []Evidence `json:"evidence,omitempty"`
}

// Evidence is one event a finding rests on.
type Evidence struct {
	EventID    string            `json:"event_id,omitempty"`
	Time       time.Time         `json:"time,omitzero"`
	Action     string            `json:"action,omitempty"`
	Permission string            `json:"permission,omitempty"`
	IP         string            `json:"ip,omitempty"`
	UserAgent  string            `json:"user_agent,omitempty"`
	Region     string            `json:"region,omitempty"`
	Fields     map[string]string `json:"fields,omitempty"`
}

// Item is a finding with its status.
type Item struct {
	Finding Finding `json:"finding"`
	Status  Status  `json:"status"`
}

// Detail is a finding with its status and the history of its changes, oldest first.
type Detail struct {
	Item
	History []Status `json:"history"`
}

// View converts a finding for display.
func View(f *events.Finding) Finding {
	v := Finding{
		ID: f.Id, Detector: f.Detector, Severity: f.Severity.Label(), Title: f.Title, Summary: f.Summary,
		Provider: f.Provider.Label(), Account: f.Account, Region: f.Region,
		Identity: f.GetIdentity().GetId(), IdentityKind: f.GetIdentity().GetKind().Label(), IdentityName: f.GetIdentity().GetName(),
		Credential: f.GetCredential().GetId(), Owner: f.Owner, Team: f.Team, Cause: f.Cause, Grantee: f.Grantee,
		Permissions: f.PermissionsAdded, OWASPNHI: f.OwaspNhi, MITREATTACK: f.MitreAttack, Recommendation: f.Recommendation,
	}
	if f.TimeUnixNano > 0 {
		v.Time = time.Unix(0, f.TimeUnixNano).UTC()
	}
	for _, e := range f.Evidence {
		ev := Evidence{EventID: e.EventId, Action: e.Action, Permission: e.Permission, IP: e.Ip, UserAgent: e.UserAgent, Region: e.Region, Fields: e.Fields}
		if e.TimeUnixNano > 0 {
			ev.Time = time.Unix(0, e.TimeUnixNano).UTC()
		}
		v.Evidence = append(v.Evidence, ev)
	}
	return v
}

// Filter selects findings to list.
type Filter struct {
	// Status is open, acknowledged, resolved or suppressed; empty lists all.
	Status string
	// MinSeverity is the lowest severity listed.
	MinSeverity string
	Detector    string
	// Identity is a substring of the identity id.
	Identity string
	// Limit bounds the answer (default 100, at most 1000).
	Limit int
}

func (f *Filter) normalize() error {
	switch f.Status {
	case "", StatusOpen, StatusAcknowledged, StatusResolved, StatusSuppressed:
	default:
		return errorf("unknown status %q", f.Status)
	}
	if f.MinSeverity != "" {
		if _, err := events.ParseSeverity(f.MinSeverity); err != nil {
			return errorf("%v", err)
		}
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	if f.Limit > 1000 {
		f.Limit = 1000
	}
	return nil
}
