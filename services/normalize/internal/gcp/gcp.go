// Package gcp turns one GCP Cloud Audit Log entry (a full LogEntry, or its AuditLog payload
// alone) into an events.Event: the principal and its key or delegation chain, the permission
// checked, the caller's address, the outcome, and the IAM grants the call changed.
package gcp

import (
	"fmt"
	"strings"

	"github.com/valyala/fastjson"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/normalize/internal/k8s"
	"github.com/nhiwatch/nhiwatch/services/normalize/internal/record"
)

// Parser normalizes GCP audit log entries. It reuses buffers between records and is not safe
// for concurrent use.
type Parser struct {
	extras record.Extras
}

const auditLogType = "type.googleapis.com/google.cloud.audit.AuditLog"

// canon lists the keys of a LogEntry and AuditLog, for records whose keys were lower-cased.
var canon = record.NewCanon(
	"insertId", "logName", "timestamp", "receiveTimestamp", "protoPayload", "resource", "labels",
	"severity", "operation", "methodName", "serviceName", "resourceName", "authenticationInfo",
	"authorizationInfo", "requestMetadata", "principalEmail", "principalSubject", "serviceAccountKeyName",
	"serviceAccountDelegationInfo", "callerIp", "callerSuppliedUserAgent", "callerNetwork", "status",
	"serviceData", "policyDelta", "bindingDeltas", "resourceLocation", "currentLocations", "requestAttributes",
)

// Parse normalizes a parsed log entry; Parse may change v.
func (p *Parser) Parse(v *fastjson.Value, in record.Input) (*events.Event, error) {
	if v.Type() != fastjson.TypeObject {
		return nil, fmt.Errorf("%w: gcp log entry is a JSON %s, not an object", record.ErrMalformed, v.Type())
	}
	if canon.NeedsFolding(v, "protoPayload", "insertId", "logName", "receiveTimestamp", "methodName") {
		canon.Fold(v)
	}
	entry := v
	pp := v.Get("protoPayload")
	switch {
	case pp == nil && (v.Get("textPayload") != nil || v.Get("jsonPayload") != nil):
		return nil, fmt.Errorf("%w: gcp log entry carries a text or JSON payload, not an audit log", record.ErrUnsupported)
	case pp == nil:
		// The AuditLog payload alone.
		pp = v
	case pp.Type() != fastjson.TypeObject:
		return nil, fmt.Errorf("%w: gcp protoPayload is a JSON %s, not an object", record.ErrMalformed, pp.Type())
	}
	if t := typeOf(pp); t != "" && t != auditLogType {
		return nil, fmt.Errorf("%w: gcp protoPayload type %s is not an audit log", record.ErrUnsupported, record.Token(t))
	}
	for _, key := range []string{"methodName", "serviceName", "resourceName"} {
		if x := pp.Get(key); x != nil && x.Type() != fastjson.TypeString && x.Type() != fastjson.TypeNull {
			return nil, fmt.Errorf("%w: gcp %s is a JSON %s, not a string", record.ErrMalformed, key, x.Type())
		}
	}
	for _, key := range []string{"authenticationInfo", "requestMetadata", "status"} {
		if x := pp.Get(key); x != nil && x.Type() != fastjson.TypeObject && x.Type() != fastjson.TypeNull {
			return nil, fmt.Errorf("%w: gcp %s is a JSON %s, not an object", record.ErrMalformed, key, x.Type())
		}
	}
	if x := pp.Get("authorizationInfo"); x != nil && x.Type() != fastjson.TypeArray && x.Type() != fastjson.TypeNull {
		return nil, fmt.Errorf("%w: gcp authorizationInfo is a JSON %s, not an array", record.ErrMalformed, x.Type())
	}
	method := record.Str(pp, "methodName")
	if method == "" {
		return nil, fmt.Errorf("%w: gcp methodName", record.ErrMissingField)
	}
	when, ok := eventTime(entry, pp)
	if !ok {
		return nil, fmt.Errorf("%w: gcp timestamp", record.ErrMissingField)
	}
	service := record.Str(pp, "serviceName")
	if service == "" {
		service = record.Str(entry, "serviceName")
	}
	logName := record.Str(entry, "logName")
	insertID := record.Str(entry, "insertId")
	id := events.GCPEventID(logName, insertID)
	if insertID == "" {
		// Hand-written entries (test fixtures) lack an insertId: name them by their content.
		id = events.ContentEventID(events.Provider_PROVIDER_GCP, in.Data)
	}
	res := record.Object(entry, "resource")
	labels := record.Object(res, "labels")
	resourceName := record.Str(pp, "resourceName")
	project := projectOf(labels, logName, resourceName)
	authz := record.Array(pp, "authorizationInfo")
	ev := &events.Event{
		Id:               id,
		Provider:         events.Provider_PROVIDER_GCP,
		Source:           in.Source,
		TimeUnixNano:     when,
		ReceivedUnixNano: in.ReceivedNano(),
		ProviderEventId:  insertID,
		Account:          project,
		Action: &events.Action{
			Service:  service,
			Name:     method,
			Type:     logType(logName),
			Category: record.Str(res, "type"),
			Version:  "AuditLog",
		},
		Network: network(pp, labels),
		Outcome: outcome(pp, authz),
		Raw:     &events.RawRef{RecordId: in.RecordID, Source: in.Source, Position: in.Position},
	}
	if len(authz) > 0 {
		ev.Action.Permission = record.Str(authz[0], "permission")
	}
	ev.Action.ReadOnly = readOnly(ev.Action.Permission, method)
	resources(ev, pp, res, authz, resourceName, project)
	identity(ev, pp, labels, service)
	p.grants(ev, pp, labels, resourceName)
	ev.Extras = p.buildExtras(entry, pp, authz)
	return ev, nil
}

// typeOf returns a payload's @type (Panther spells it at_sign_type).
func typeOf(pp *fastjson.Value) string {
	if t := record.Str(pp, "@type"); t != "" {
		return t
	}
	return record.Str(pp, "at_sign_type")
}

func eventTime(entry, pp *fastjson.Value) (int64, bool) {
	for _, t := range []struct {
		v    *fastjson.Value
		keys []string
	}{
		{entry, []string{"timestamp"}},
		{pp, []string{"requestMetadata", "requestAttributes", "time"}},
		{entry, []string{"receiveTimestamp"}},
	} {
		if ts, ok := record.Time(t.v, t.keys...); ok {
			return ts.UnixNano(), true
		}
	}
	return 0, false
}

// logType returns the audit log of a logName: activity, data_access, system_event or policy.
func logType(logName string) string {
	i := strings.LastIndex(logName, "cloudaudit.googleapis.com")
	if i < 0 {
		return ""
	}
	t := logName[i+len("cloudaudit.googleapis.com"):]
	t = strings.TrimPrefix(strings.TrimPrefix(t, "%2F"), "/")
	return strings.TrimPrefix(t, "%2f")
}

// projectOf finds the project: the resource's project_id label, else the logName or
// resourceName "projects/<p>/…" prefix.
func projectOf(labels *fastjson.Value, logName, resourceName string) string {
	if p := record.Str(labels, "project_id"); p != "" {
		return p
	}
	for _, s := range []string{logName, resourceName} {
		if strings.HasPrefix(s, "projects/") {
			rest := s[len("projects/"):]
			if i := strings.IndexByte(rest, '/'); i > 0 && rest[:i] != "-" && rest[:i] != "_" {
				return rest[:i]
			}
		}
	}
	return ""
}

func readOnly(permission, method string) bool {
	verb := permission[strings.LastIndexByte(permission, '.')+1:]
	if verb == "" {
		verb = method[strings.LastIndexByte(method, '.')+1:]
	}
	lv := strings.ToLower(verb)
	return strings.HasPrefix(lv, "get") || strings.HasPrefix(lv, "list") || strings.HasPrefix(lv, "search") ||
		strings.HasPrefix(lv, "watch") || strings.HasPrefix(lv, "query") || lv == "testiampermissions"
}

// network fills the caller's address and agent, the region and the GKE cluster.
func network(pp, labels *fastjson.Value) *events.Network {
	md := record.Object(pp, "requestMetadata")
	n := &events.Network{UserAgent: record.Str(md, "callerSuppliedUserAgent")}
	ip := record.Str(md, "callerIp")
	if ip == "" {
		ip = record.Str(md, "callerIP")
	}
	switch ip {
	case "":
	case "private", "gce-internal-ip":
		// GCP hides addresses inside Google's or the customer's private network.
		n.Host, n.CloudInternal = ip, true
	default:
		n.Ip = ip
	}
	n.Cluster = record.Str(labels, "cluster_name")
	for _, k := range []string{"location", "region", "zone"} {
		if r := record.Str(labels, k); r != "" {
			n.Region = r
			break
		}
	}
	if n.Region == "" {
		if locs := record.Strings(pp, "resourceLocation", "currentLocations"); len(locs) > 0 {
			n.Region = locs[0]
		}
	}
	return n
}

// Codes of google.rpc.Code that mean the caller was refused.
const (
	codePermissionDenied = 7
	codeUnauthenticated  = 16
)

var codeNames = map[int64]string{
	1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND",
	6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION",
	10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE",
	15: "DATA_LOSS", 16: "UNAUTHENTICATED",
}

// outcome: denied when the status is PERMISSION_DENIED or UNAUTHENTICATED or a permission
// check says "granted": false; failed for any other non-zero status. An authorizationInfo
// entry without "granted" under an OK status counts as allowed (hand-written entries omit it).
func outcome(pp *fastjson.Value, authz []*fastjson.Value) *events.Outcome {
	st := record.Object(pp, "status")
	code, _ := record.Int(st, "code")
	o := &events.Outcome{Result: events.Result_RESULT_ALLOWED, ErrorMessage: record.Str(st, "message")}
	if code > 0 && code < 1<<31 {
		o.StatusCode = int32(code)
		o.ErrorCode = codeNames[code]
		o.Result = events.Result_RESULT_FAILED
	}
	if code == codePermissionDenied || code == codeUnauthenticated {
		o.Result = events.Result_RESULT_DENIED
	}
	for _, a := range authz {
		if g := a.Get("granted"); g != nil && g.Type() == fastjson.TypeFalse {
			o.Result = events.Result_RESULT_DENIED
			if o.ErrorCode == "" {
				o.ErrorCode = "PERMISSION_DENIED"
			}
		}
	}
	if o.Result == events.Result_RESULT_ALLOWED {
		o.ErrorMessage = ""
	}
	return o
}

// resources lists the resource the call named and the ones its permission checks named.
func resources(ev *events.Event, pp, res *fastjson.Value, authz []*fastjson.Value, resourceName, project string) {
	seen := map[string]bool{}
	add := func(id, typ string) {
		if id == "" || seen[id] || len(ev.Resources) >= 32 {
			return
		}
		seen[id] = true
		ev.Resources = append(ev.Resources, &events.Resource{Id: id, Type: typ, Name: id[strings.LastIndexByte(id, '/')+1:], Account: project})
	}
	add(resourceName, record.Str(res, "type"))
	for _, a := range authz {
		add(record.Str(a, "resource"), record.Str(a, "resourceAttributes", "type"))
	}
	_ = pp
}

// identity fills the principal, its credential and the delegation chain.
func identity(ev *events.Event, pp, labels *fastjson.Value, service string) {
	auth := record.Object(pp, "authenticationInfo")
	email := record.Str(auth, "principalEmail")
	subject := record.Str(auth, "principalSubject")
	cluster := record.Str(labels, "cluster_name")
	switch {
	case service == "k8s.io" && strings.HasPrefix(email, "system:"):
		// GKE: Kubernetes users (service accounts, nodes, components) in the cluster's audit log.
		ev.Identity = k8s.Identity(cluster, email, nil, "")
	case email != "":
		ev.Identity = principal(email)
	case subject != "":
		ev.Identity = subjectIdentity(subject)
	default:
		ev.Identity = &events.Identity{Id: "gcp:unknown", Type: "unknown"}
	}
	if ev.Identity.Account == "" {
		ev.Identity.Account = ev.Account
	}
	if key := record.Str(auth, "serviceAccountKeyName"); key != "" {
		ev.Credential = &events.Credential{Id: events.GCPKeyID(key), Type: events.CredentialType_CREDENTIAL_TYPE_SERVICE_ACCOUNT_KEY}
	} else if ev.Identity.Kind == events.IdentityKind_IDENTITY_KIND_SERVICE_ACCOUNT || ev.Identity.Kind == events.IdentityKind_IDENTITY_KIND_CI_CD {
		// Without a key name, a service account presented an OAuth access token (metadata
		// server, impersonation, workload identity).
		ev.Credential = &events.Credential{Type: events.CredentialType_CREDENTIAL_TYPE_OAUTH_TOKEN}
	}
	// serviceAccountDelegationInfo lists who delegated, first the original caller.
	var chain []string
	for _, d := range record.Array(auth, "serviceAccountDelegationInfo") {
		who := record.Str(d, "firstPartyPrincipal", "principalEmail")
		if who != "" {
			chain = append(chain, principal(who).Id)
			continue
		}
		if s := record.Str(d, "principalSubject"); s != "" {
			chain = append(chain, subjectIdentity(s).Id)
			continue
		}
		if tp := record.Object(d, "thirdPartyPrincipal", "thirdPartyClaims"); tp != nil {
			chain = append(chain, "gcp:third-party:"+record.Str(tp, "principal"))
		}
	}
	chain = append(chain, ev.Identity.Id)
	for i := 0; i+1 < len(chain); i++ {
		ev.Delegation = append(ev.Delegation, &events.Delegation{From: chain[i], To: chain[i+1], Kind: events.DelegationKind_DELEGATION_KIND_SERVICE_ACCOUNT_IMPERSONATION})
	}
}

// principal classifies a principal email: service accounts (Google-managed service agents as
// control plane, Cloud Build's as CI/CD), everything else a user.
func principal(email string) *events.Identity {
	id := &events.Identity{Name: email}
	domain := email[strings.LastIndexByte(email, '@')+1:]
	if !strings.HasSuffix(domain, "gserviceaccount.com") {
		id.Id = events.GCPUserID(email)
		id.Type = "user"
		id.Kind = events.IdentityKind_IDENTITY_KIND_HUMAN
		return id
	}
	id.Id = events.GCPServiceAccountID(email)
	id.Type = "serviceAccount"
	switch {
	case domain == "cloudbuild.gserviceaccount.com":
		id.Kind = events.IdentityKind_IDENTITY_KIND_CI_CD
	case strings.HasPrefix(domain, "gcp-sa-"), domain == "cloudservices.gserviceaccount.com",
		strings.HasPrefix(domain, "container-engine-robot."), strings.HasPrefix(domain, "compute-system."),
		strings.HasPrefix(domain, "cloudcomposer-accounts."), strings.HasPrefix(domain, "dataflow-service-producer-prod."),
		strings.HasPrefix(domain, "serverless-robot-prod."), strings.HasPrefix(domain, "gs-project-accounts."):
		id.Kind = events.IdentityKind_IDENTITY_KIND_CONTROL_PLANE
	default:
		id.Kind = events.IdentityKind_IDENTITY_KIND_SERVICE_ACCOUNT
	}
	return id
}

// subjectIdentity classifies a principalSubject without an email: workload identity
// federation principals (principal://…, principalSet://…) and prefixed members.
func subjectIdentity(s string) *events.Identity {
	if kind, email, ok := strings.Cut(s, ":"); ok && (kind == "user" || kind == "serviceAccount") {
		return principal(email)
	}
	return &events.Identity{Id: "gcp:principal:" + s, Name: s, Type: "federated", Kind: events.IdentityKind_IDENTITY_KIND_WORKLOAD_ROLE}
}

// MemberID is the canonical id of an IAM policy member: service accounts and users as identity
// ids; groups, domains, allUsers and federated principal sets kept as the provider's string.
func MemberID(m string) string {
	kind, rest, ok := strings.Cut(m, ":")
	if !ok {
		return m
	}
	switch kind {
	case "serviceAccount":
		return events.GCPServiceAccountID(rest)
	case "user":
		return events.GCPUserID(rest)
	}
	return m
}

// buildExtras keeps the entry's details worth having next to the event; a service account
// key's private key never.
func (p *Parser) buildExtras(entry, pp *fastjson.Value, authz []*fastjson.Value) []byte {
	x := &p.extras
	x.Reset()
	x.AddString("methodName", record.Str(pp, "methodName"))
	x.AddString("serviceName", record.Str(pp, "serviceName"))
	x.AddString("resourceName", record.Str(pp, "resourceName"))
	x.AddString("logName", record.Str(entry, "logName"))
	x.AddString("severity", record.Str(entry, "severity"))
	x.AddString("callerNetwork", record.Str(pp, "requestMetadata", "callerNetwork"))
	if len(authz) > 1 {
		var perms []string
		for _, a := range authz {
			if s := record.Str(a, "permission"); s != "" {
				perms = append(perms, s)
			}
		}
		x.AddStrings("permissions", perms)
	}
	x.Add("resourceLabels", entry.Get("resource", "labels"))
	x.Add("operation", entry.Get("operation"))
	x.Add("authenticationInfo", pp.Get("authenticationInfo"))
	for _, k := range []string{"request", "response"} {
		if r := record.Object(pp, k); r != nil {
			r.Del("privateKeyData")
			r.Del("private_key_data")
		}
	}
	x.Add("serviceData", pp.Get("serviceData"))
	x.Add("metadata", pp.Get("metadata"))
	if !secretBodies(pp) {
		x.Add("request", pp.Get("request"))
		x.Add("response", pp.Get("response"))
	}
	return x.Bytes()
}

// secretBodies reports whether a call's request and response bodies may carry secrets that
// redaction cannot recognise: GKE Secrets, ConfigMaps, token reviews and token requests, and
// Secret Manager payloads.
func secretBodies(pp *fastjson.Value) bool {
	m := strings.ToLower(record.Str(pp, "methodName"))
	for _, s := range []string{".secrets.", ".configmaps.", "tokenreviews", ".serviceaccounts.token", "accesssecretversion", "addsecretversion", "secretmanager"} {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}
