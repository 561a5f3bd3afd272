// Package ocsf turns nhiwatch findings and events into OCSF 1.3 documents for a SIEM:
// Detection Finding (class 2004) for findings, API Activity (6003) for every normalized
// event and Account Change (3001) for each grant an event changed. The JSON Schemas in
// schemas/ocsf describe exactly what this package emits, and the tests hold it to them.
package ocsf

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/dest"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/refs"
)

// Version is the OCSF schema version of the documents.
const Version = "1.3.0"

// Product names nhiwatch in metadata.product.
type Product struct {
	Name, Vendor, Version string
}

// Finding activities (activity_id of class 2004).
const (
	ActivityCreate = 1
	ActivityUpdate = 2
	ActivityClose  = 3
)

// Finding status ids (status_id of class 2004).
const (
	StatusNew        = 1
	StatusInProgress = 2
	StatusSuppressed = 3
	StatusResolved   = 4
)

// FindingStatusID maps a triage status label to the OCSF finding status.
func FindingStatusID(status string) (int, string) {
	switch status {
	case "acknowledged":
		return StatusInProgress, "In Progress"
	case "suppressed":
		return StatusSuppressed, "Suppressed"
	case "resolved":
		return StatusResolved, "Resolved"
	}
	return StatusNew, "New"
}

var severityNames = []string{"Unknown", "Informational", "Low", "Medium", "High", "Critical"}

// SeverityID maps an nhiwatch severity to OCSF severity_id and its caption.
func SeverityID(s events.Severity) (int, string) {
	if s >= 0 && int(s) < len(severityNames) {
		return int(s), severityNames[s]
	}
	return 0, "Unknown"
}

var activityNames = map[int]string{ActivityCreate: "Create", ActivityUpdate: "Update", ActivityClose: "Close"}

// FindingInput is what a Detection Finding is built from.
type FindingInput struct {
	Finding *events.Finding
	// Status is the triage status label (open, acknowledged, resolved, suppressed).
	Status string
	// Activity is ActivityCreate for the first export, ActivityUpdate for a repeat or a
	// status change, ActivityClose when the finding was resolved or suppressed.
	Activity int
	// Revision makes metadata.uid unique per export of the same finding.
	Revision uint64
	// Link is the finding's page or API URL, when one is configured.
	Link string
	// Now is the export time.
	Now time.Time
}

// DetectionFinding renders a finding as OCSF Detection Finding JSON.
func DetectionFinding(p Product, in FindingInput) ([]byte, error) {
	f := in.Finding
	if f.GetId() == "" {
		return nil, fmt.Errorf("ocsf: finding has no id")
	}
	sevID, sev := SeverityID(f.Severity)
	statusID, status := FindingStatusID(in.Status)
	activity := in.Activity
	if activityNames[activity] == "" {
		activity = ActivityCreate
	}
	created := f.CreatedUnixNano
	if created == 0 {
		created = f.TimeUnixNano
	}
	title := f.Title
	if title == "" {
		title = f.Detector
	}
	if title == "" {
		title = "nhiwatch finding"
	}
	doc := detectionFinding{
		ActivityID:   activity,
		ActivityName: activityNames[activity],
		CategoryUID:  2,
		CategoryName: "Findings",
		ClassUID:     2004,
		ClassName:    "Detection Finding",
		TypeUID:      200400 + activity,
		TypeName:     "Detection Finding: " + activityNames[activity],
		SeverityID:   sevID,
		Severity:     sev,
		StatusID:     statusID,
		Status:       status,
		IsAlert:      activity != ActivityClose,
		Time:         ms(created),
		EndTime:      ms(f.TimeUnixNano),
		Message:      title,
		Metadata:     metadata(p, fmt.Sprintf("%s:%d", f.Id, in.Revision), "nhiwatch.findings", in.Now, f.Provider),
		FindingInfo: findingInfo{
			UID:           f.Id,
			Title:         title,
			Desc:          f.Summary,
			Types:         findingTypes(f),
			Analytic:      &analytic{TypeID: analyticType(f.Detector), Type: analyticTypeName(analyticType(f.Detector)), Name: f.Detector, UID: f.Detector},
			Attacks:       attacks(f.MitreAttack),
			CreatedTime:   ms(created),
			FirstSeenTime: firstSeen(f),
			LastSeenTime:  ms(f.TimeUnixNano),
			RelatedEvents: relatedEvents(f.Evidence),
			DataSources:   dataSources(f.Provider),
			SrcURL:        in.Link,
			ModifiedTime:  ms(in.Now.UnixNano()),
		},
		Resources: findingResources(f),
		Evidences: evidences(f),
		Cloud:     cloud(f.Provider, f.Region, f.Account),
		Unmapped:  findingUnmapped(f),
	}
	if f.Recommendation != "" {
		doc.Remediation = &remediation{Desc: f.Recommendation, References: references(f)}
	}
	if doc.FindingInfo.FirstSeenTime == 0 {
		doc.FindingInfo.FirstSeenTime = doc.FindingInfo.LastSeenTime
	}
	if first := doc.FindingInfo.FirstSeenTime; first > 0 {
		doc.StartTime = first
	}
	return json.Marshal(doc)
}

func ms(unixNano int64) int64 {
	if unixNano <= 0 {
		return 0
	}
	return unixNano / int64(time.Millisecond)
}

func metadata(p Product, uid, logName string, now time.Time, prov events.Provider) metadataObj {
	m := metadataObj{
		Product:    product{Name: p.Name, VendorName: p.Vendor, Version: p.Version},
		Version:    Version,
		UID:        uid,
		LogName:    logName,
		LoggedTime: ms(now.UnixNano()),
	}
	if cloudProvider(prov) != "" {
		m.Profiles = []string{"cloud"}
	}
	return m
}

func cloudProvider(p events.Provider) string {
	switch p {
	case events.Provider_PROVIDER_AWS:
		return "AWS"
	case events.Provider_PROVIDER_GCP:
		return "GCP"
	}
	return ""
}

func cloud(p events.Provider, region, account string) *cloudObj {
	name := cloudProvider(p)
	if name == "" {
		return nil
	}
	c := &cloudObj{Provider: name, Region: region}
	if account != "" {
		c.Account = &accountObj{UID: account, TypeID: accountType(p), Type: accountTypeName(p)}
		if p == events.Provider_PROVIDER_GCP {
			c.ProjectUID = account
		}
	}
	return c
}

// accountType is the OCSF account type of the provider's account: 10 AWS Account, 11 GCP
// Project.
func accountType(p events.Provider) int {
	if p == events.Provider_PROVIDER_AWS {
		return 10
	}
	return 11
}

func accountTypeName(p events.Provider) string {
	if p == events.Provider_PROVIDER_AWS {
		return "AWS Account"
	}
	return "GCP Project"
}

func dataSources(p events.Provider) []string {
	switch p {
	case events.Provider_PROVIDER_AWS:
		return []string{"AWS CloudTrail"}
	case events.Provider_PROVIDER_GCP:
		return []string{"GCP Cloud Audit Logs"}
	case events.Provider_PROVIDER_K8S:
		return []string{"Kubernetes audit log"}
	}
	return nil
}

// analyticType: privilege expansion and posture are rules over what changed; dormancy and
// boundaries compare an identity with its own history.
func analyticType(detector string) int {
	switch {
	case detector == "dormant_credential_reuse", detector == "out_of_boundary":
		return 2
	case detector == "privilege_expansion", strings.HasPrefix(detector, "posture_"):
		return 1
	}
	return 99
}

func analyticTypeName(id int) string {
	switch id {
	case 1:
		return "Rule"
	case 2:
		return "Behavioral"
	}
	return "Other"
}

func findingTypes(f *events.Finding) []string {
	var out []string
	if f.Detector != "" {
		out = append(out, f.Detector)
	}
	for _, id := range f.OwaspNhi {
		out = append(out, "OWASP "+refs.Label(id))
	}
	return out
}

func attacks(ids []string) []attack {
	var out []attack
	for _, id := range ids {
		id = strings.ToUpper(strings.TrimSpace(id))
		if !validTechnique(id) {
			continue
		}
		a := attack{Version: "v15"}
		tech, _, sub := strings.Cut(id, ".")
		a.Technique = &technique{UID: tech, Name: techniqueName(tech), SrcURL: refs.MITREURL(tech)}
		if sub {
			a.SubTechnique = &technique{UID: id, Name: refs.MITREName(id), SrcURL: refs.MITREURL(id)}
		}
		out = append(out, a)
	}
	return out
}

func techniqueName(id string) string { return refs.MITREName(id) }

func validTechnique(id string) bool {
	tech, sub, hasSub := strings.Cut(id, ".")
	if len(tech) != 5 || tech[0] != 'T' || !digits(tech[1:]) {
		return false
	}
	return !hasSub || len(sub) == 3 && digits(sub)
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func firstSeen(f *events.Finding) int64 {
	var first int64
	for _, e := range f.Evidence {
		if e.TimeUnixNano > 0 && (first == 0 || e.TimeUnixNano < first) {
			first = e.TimeUnixNano
		}
	}
	return ms(first)
}

func relatedEvents(ev []*events.Evidence) []relatedEvent {
	var out []relatedEvent
	for _, e := range ev {
		if e.EventId != "" {
			out = append(out, relatedEvent{UID: e.EventId})
		}
	}
	return out
}

func references(f *events.Finding) []string {
	var out []string
	for _, id := range f.OwaspNhi {
		out = append(out, refs.OWASPURL(id))
	}
	for _, id := range f.MitreAttack {
		if validTechnique(strings.ToUpper(id)) {
			out = append(out, refs.MITREURL(id))
		}
	}
	return out
}

func findingResources(f *events.Finding) []resourceDetails {
	id := f.GetIdentity()
	if id.GetId() == "" {
		return nil
	}
	r := resourceDetails{
		UID:    id.Id,
		Name:   id.Name,
		Type:   identityType(id),
		Region: f.Region,
		Labels: []string{"identity"},
	}
	if id.Kind.IsNHI() {
		r.Labels = append(r.Labels, "nhi")
	}
	if f.Owner != "" {
		r.Owner = &user{Name: f.Owner}
	}
	if f.Team != "" {
		r.Group = &group{Name: f.Team}
	}
	out := []resourceDetails{r}
	if f.Grantee != "" && f.Grantee != id.Id {
		out = append(out, resourceDetails{UID: f.Grantee, Type: "identity", Labels: []string{"grantee"}})
	}
	return out
}

func identityType(id *events.Identity) string {
	if k := id.GetKind().Label(); k != "" {
		return k
	}
	if id.GetType() != "" {
		return id.GetType()
	}
	return "identity"
}

func userOf(id *events.Identity, account string, prov events.Provider) *user {
	if id.GetId() == "" && id.GetName() == "" {
		return nil
	}
	u := &user{UID: id.GetId(), Name: id.GetName(), Type: identityType(id), TypeID: userTypeID(id.GetKind())}
	acct := id.GetAccount()
	if acct == "" {
		acct = account
	}
	if acct != "" && cloudProvider(prov) != "" {
		u.Account = &accountObj{UID: acct, TypeID: accountType(prov), Type: accountTypeName(prov)}
	}
	for _, g := range id.GetGroups() {
		if g != "" {
			u.Groups = append(u.Groups, group{Name: g})
		}
	}
	return u
}

// userTypeID: 1 User for people, 3 System for the platform's own principals, 99 Other for
// the non-human identities OCSF 1.3 has no type for (type carries the nhiwatch kind).
func userTypeID(k events.IdentityKind) int {
	switch k {
	case events.IdentityKind_IDENTITY_KIND_HUMAN:
		return 1
	case events.IdentityKind_IDENTITY_KIND_CONTROL_PLANE:
		return 3
	case events.IdentityKind_IDENTITY_KIND_UNSPECIFIED:
		return 0
	}
	return 99
}

func evidences(f *events.Finding) []evidence {
	var out []evidence
	for _, e := range f.Evidence {
		ev := evidence{Actor: &actor{User: userOf(f.GetIdentity(), f.Account, f.Provider)}}
		if ev.Actor.User == nil {
			ev.Actor = nil
		}
		if cred := f.GetCredential().GetId(); cred != "" && ev.Actor != nil {
			ev.Actor.Session = &session{CredentialUID: cred, IsMFA: f.GetCredential().GetMfa()}
		}
		if e.Action != "" {
			ev.API = &api{Operation: e.Action}
		}
		if ip, err := netip.ParseAddr(e.Ip); err == nil {
			ev.SrcEndpoint = &endpoint{IP: ip.String()}
		}
		data := map[string]any{}
		if e.EventId != "" {
			data["event_uid"] = e.EventId
		}
		if e.Permission != "" {
			data["permission"] = e.Permission
		}
		if e.UserAgent != "" {
			data["user_agent"] = e.UserAgent
		}
		if e.Region != "" {
			data["region"] = e.Region
		}
		if e.TimeUnixNano > 0 {
			data["time"] = ms(e.TimeUnixNano)
		}
		if len(e.Fields) > 0 {
			data["fields"] = e.Fields
		}
		if len(data) > 0 {
			ev.Data = data
		}
		if ev.Actor == nil && ev.API == nil && ev.SrcEndpoint == nil && ev.Data == nil {
			continue
		}
		out = append(out, ev)
	}
	return out
}

func findingUnmapped(f *events.Finding) map[string]any {
	m := map[string]any{"detector": f.Detector}
	put := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	put("cause", f.Cause)
	put("grantee", f.Grantee)
	put("owner", f.Owner)
	put("team", f.Team)
	put("credential_uid", f.GetCredential().GetId())
	if len(f.PermissionsAdded) > 0 {
		m["permissions_added"] = f.PermissionsAdded
	}
	if len(f.SensitivePermissionsAdded) > 0 {
		m["sensitive_permissions_added"] = f.SensitivePermissionsAdded
	}
	if len(f.OwaspNhi) > 0 {
		m["owasp_nhi"] = f.OwaspNhi
	}
	if f.ReceivedUnixNano > 0 {
		m["received_time"] = ms(f.ReceivedUnixNano)
	}
	return m
}

// EventDocs renders a normalized event as API Activity JSON, followed by one Account
// Change per grant change that names a grantee.
func EventDocs(p Product, ev *events.Event, now time.Time) ([][]byte, error) {
	if ev.GetId() == "" {
		return nil, fmt.Errorf("ocsf: event has no id")
	}
	act := apiActivityID(ev.GetAction())
	statusID, status := outcomeStatus(ev.GetOutcome().GetResult())
	a := apiActivity{
		ActivityID:   act,
		ActivityName: apiActivityNames[act],
		CategoryUID:  6,
		CategoryName: "Application Activity",
		ClassUID:     6003,
		ClassName:    "API Activity",
		TypeUID:      600300 + act,
		TypeName:     "API Activity: " + apiActivityNames[act],
		SeverityID:   1,
		Severity:     "Informational",
		StatusID:     statusID,
		Status:       status,
		StatusCode:   ev.GetOutcome().GetErrorCode(),
		StatusDetail: ev.GetOutcome().GetErrorMessage(),
		Time:         ms(ev.TimeUnixNano),
		Message:      message(ev),
		Metadata:     metadata(p, ev.Id, "nhiwatch.events", now, ev.Provider),
		Actor:        eventActor(ev),
		API:          eventAPI(ev),
		SrcEndpoint:  srcEndpoint(ev.GetNetwork()),
		Resources:    eventResources(ev.GetResources()),
		Cloud:        cloud(ev.Provider, ev.GetNetwork().GetRegion(), ev.Account),
		Unmapped:     eventUnmapped(ev),
	}
	a.Metadata.EventCode = ev.GetAction().GetName()
	a.Metadata.OriginalTime = time.Unix(0, ev.TimeUnixNano).UTC().Format(time.RFC3339Nano)
	if ua := ev.GetNetwork().GetUserAgent(); ua != "" {
		a.HTTPRequest = &httpRequest{UserAgent: ua}
	}
	b, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	out := [][]byte{b}
	for i, gc := range ev.GrantChanges {
		if gc.GetGrantee() == "" {
			continue
		}
		c, err := accountChangeDoc(p, ev, i, gc, now, a)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

var apiActivityNames = map[int]string{0: "Unknown", 1: "Create", 2: "Read", 3: "Update", 4: "Delete", 99: "Other"}

// apiActivityID classifies the call by its verb: the first word of an AWS eventName or the
// last segment of a GCP methodName, or the Kubernetes verb.
func apiActivityID(a *events.Action) int {
	name := a.GetName()
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:]
	}
	lower := strings.ToLower(name)
	has := func(prefixes ...string) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(lower, p) {
				return true
			}
		}
		return false
	}
	switch {
	case name == "":
		return 0
	case has("delete", "remove", "detach", "deactivate", "destroy", "revoke", "untag"):
		return 4
	case has("create", "put", "add", "attach", "insert", "run", "issue", "generate", "import", "upload", "register", "tag", "assume"):
		return 1
	case has("update", "modify", "set", "patch", "change", "enable", "disable", "replace", "reset", "rotate", "apply", "undelete"):
		return 3
	case has("get", "list", "describe", "watch", "lookup", "search", "head", "query", "read", "check", "test", "batchget"):
		return 2
	case a.GetReadOnly():
		return 2
	}
	return 99
}

func outcomeStatus(r events.Result) (int, string) {
	switch r {
	case events.Result_RESULT_ALLOWED:
		return 1, "Success"
	case events.Result_RESULT_DENIED, events.Result_RESULT_FAILED:
		return 2, "Failure"
	}
	return 0, "Unknown"
}

func message(ev *events.Event) string {
	who := ev.GetIdentity().GetName()
	if who == "" {
		who = ev.GetIdentity().GetId()
	}
	return strings.TrimSpace(who + " " + ev.GetAction().GetName() + " " + ev.GetOutcome().GetResult().Label())
}

func eventActor(ev *events.Event) actor {
	a := actor{User: userOf(ev.GetIdentity(), ev.Account, ev.Provider)}
	if c := ev.GetCredential(); c.GetId() != "" || ev.GetIdentity().GetSessionName() != "" {
		a.Session = &session{CredentialUID: c.GetId(), IsMFA: c.GetMfa(), CreatedTime: ms(c.GetIssuedUnixNano()), UID: ev.GetIdentity().GetSessionName()}
		if len(ev.Delegation) > 0 {
			a.Session.Issuer = ev.Delegation[0].GetFrom()
		}
	}
	if h := ev.GetNetwork().GetHost(); h != "" {
		a.InvokedBy = h
	}
	if a.User == nil && a.Session == nil && a.InvokedBy == "" {
		a.AppName = "unknown"
	}
	return a
}

func eventAPI(ev *events.Event) api {
	act := ev.GetAction()
	op := act.GetName()
	if op == "" {
		op = "unknown"
	}
	out := api{Operation: op, Version: act.GetVersion()}
	if act.GetService() != "" {
		out.Service = &service{Name: act.GetService()}
	}
	if ev.ProviderEventId != "" {
		out.Request = &apiRequest{UID: ev.ProviderEventId}
	}
	o := ev.GetOutcome()
	if o.GetErrorCode() != "" || o.GetErrorMessage() != "" || o.GetStatusCode() != 0 {
		out.Response = &apiResponse{Code: int(o.GetStatusCode()), Error: o.GetErrorCode(), ErrorMessage: o.GetErrorMessage()}
	}
	return out
}

// srcEndpoint is the caller's address, or the service that called on the identity's
// behalf, or "unknown": the class requires a source endpoint and the log may name none.
func srcEndpoint(n *events.Network) endpoint {
	var e endpoint
	if ip, err := netip.ParseAddr(n.GetIp()); err == nil {
		e.IP = ip.String()
	}
	if n.GetHost() != "" {
		e.Hostname = n.GetHost()
	}
	if n.GetVpcEndpoint() != "" {
		e.UID = n.GetVpcEndpoint()
	}
	if e.IP == "" && e.Hostname == "" && e.UID == "" {
		e.Name = "unknown"
	}
	return e
}

func eventResources(rs []*events.Resource) []resourceDetails {
	var out []resourceDetails
	for _, r := range rs {
		if r.GetId() == "" && r.GetName() == "" {
			continue
		}
		out = append(out, resourceDetails{UID: r.Id, Name: r.Name, Type: r.Type, Namespace: r.Namespace})
	}
	return out
}

func eventUnmapped(ev *events.Event) map[string]any {
	m := map[string]any{}
	if p := ev.GetAction().GetPermission(); p != "" {
		m["permission"] = p
	}
	if k := ev.GetIdentity().GetKind().Label(); k != "" {
		m["identity_kind"] = k
	}
	if ev.Source != "" {
		m["source"] = ev.Source
	}
	if c := ev.GetNetwork().GetCluster(); c != "" {
		m["cluster"] = c
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

func accountChangeDoc(p Product, ev *events.Event, i int, gc *events.GrantChange, now time.Time, a apiActivity) ([]byte, error) {
	act, name := 99, "Other"
	switch gc.Op {
	case events.GrantOp_GRANT_OP_ADD:
		act, name = 7, "Attach Policy"
	case events.GrantOp_GRANT_OP_REMOVE:
		act, name = 8, "Detach Policy"
	}
	u := &user{UID: gc.Grantee}
	pol := &policy{Name: gc.Grant, UID: gc.Grant, IsApplied: gc.Op == events.GrantOp_GRANT_OP_ADD}
	if pol.Name == "" {
		pol.Name = gc.Mechanism
	}
	data := map[string]any{}
	if len(gc.Permissions) > 0 {
		perms := append([]string(nil), gc.Permissions...)
		sort.Strings(perms)
		data["permissions"] = perms
	}
	if gc.Scope != "" {
		data["scope"] = gc.Scope
	}
	if gc.Mechanism != "" {
		data["mechanism"] = gc.Mechanism
	}
	if len(gc.Principals) > 0 {
		data["principals"] = gc.Principals
	}
	if gc.Deny {
		data["effect"] = "Deny"
	}
	if len(data) > 0 {
		pol.Data = data
	}
	doc := accountChange{
		ActivityID:   act,
		ActivityName: name,
		CategoryUID:  3,
		CategoryName: "Identity & Access Management",
		ClassUID:     3001,
		ClassName:    "Account Change",
		TypeUID:      300100 + act,
		TypeName:     "Account Change: " + name,
		SeverityID:   1,
		Severity:     "Informational",
		StatusID:     a.StatusID,
		Status:       a.Status,
		StatusCode:   a.StatusCode,
		Time:         a.Time,
		Message:      fmt.Sprintf("%s %s %s on %s", a.Message, gc.Op.Label(), gc.Grant, gc.Grantee),
		Metadata:     metadata(p, fmt.Sprintf("%s:grant:%d", ev.Id, i), "nhiwatch.events", now, ev.Provider),
		User:         u,
		Actor:        &a.Actor,
		Policy:       pol,
		Cloud:        a.Cloud,
		HTTPRequest:  a.HTTPRequest,
	}
	doc.Metadata.EventCode = ev.GetAction().GetName()
	doc.Metadata.CorrelationUID = ev.Id
	src := a.SrcEndpoint
	doc.SrcEndpoint = &src
	return json.Marshal(doc)
}

// Notice renders a delivery as a Detection Finding: Create for a new finding, Update for a
// repeat or a triage change, Close when the finding was resolved or suppressed.
func Notice(p Product, n dest.Notice, now time.Time) ([]byte, error) {
	activity := ActivityCreate
	switch {
	case n.Kind == dest.StatusChange && (n.Status.Label() == "resolved" || n.Status.Label() == "suppressed"):
		activity = ActivityClose
	case n.Kind != dest.New:
		activity = ActivityUpdate
	}
	return DetectionFinding(p, FindingInput{
		Finding: n.Finding, Status: n.Status.Label(), Activity: activity, Revision: n.Revision, Link: n.Link, Now: now,
	})
}
