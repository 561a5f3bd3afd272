// Package k8s turns one Kubernetes audit event (audit.k8s.io/v1 or v1beta1) into an
// events.Event: the user (or the user it impersonated), its token, the verb on a resource,
// the answer, and the RBAC grants the request changed.
package k8s

import (
	"fmt"
	"strings"

	"github.com/valyala/fastjson"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/normalize/internal/record"
)

// Parser normalizes Kubernetes audit events. It reuses buffers between records and is not
// safe for concurrent use.
type Parser struct {
	extras record.Extras
}

// Extra keys of the authenticated user, as the API server writes them and as Panther rewrites
// them ("/" spelled "_slash_", "." as "_").
var (
	credentialIDKeys = []string{"authentication.kubernetes.io/credential-id", "authentication_kubernetes_io_slash_credential-id"}
	podNameKeys      = []string{"authentication.kubernetes.io/pod-name", "authentication_kubernetes_io_slash_pod-name"}
	podUIDKeys       = []string{"authentication.kubernetes.io/pod-uid", "authentication_kubernetes_io_slash_pod-uid"}
	nodeNameKeys     = []string{"authentication.kubernetes.io/node-name", "authentication_kubernetes_io_slash_node-name"}
)

// Parse normalizes a parsed audit event. cluster names the cluster (from the source's
// configuration); Parse may change v.
func (p *Parser) Parse(v *fastjson.Value, in record.Input) (*events.Event, error) {
	if v.Type() != fastjson.TypeObject {
		return nil, fmt.Errorf("%w: k8s audit event is a JSON %s, not an object", record.ErrMalformed, v.Type())
	}
	for _, key := range []string{"apiVersion", "kind", "stage", "auditID", "verb", "requestURI"} {
		if x := v.Get(key); x != nil && x.Type() != fastjson.TypeString && x.Type() != fastjson.TypeNull {
			return nil, fmt.Errorf("%w: k8s %s is a JSON %s, not a string", record.ErrMalformed, key, x.Type())
		}
	}
	for _, key := range []string{"user", "impersonatedUser", "objectRef", "responseStatus", "annotations"} {
		if x := v.Get(key); x != nil && x.Type() != fastjson.TypeObject && x.Type() != fastjson.TypeNull {
			return nil, fmt.Errorf("%w: k8s %s is a JSON %s, not an object", record.ErrMalformed, key, x.Type())
		}
	}
	apiVersion := record.Str(v, "apiVersion")
	switch apiVersion {
	case "", "audit.k8s.io/v1", "audit.k8s.io/v1beta1":
	default:
		return nil, fmt.Errorf("%w: k8s apiVersion %s (nhiwatch reads audit.k8s.io/v1 and v1beta1)", record.ErrUnsupported, record.Token(apiVersion))
	}
	if kind := record.Str(v, "kind"); kind != "" && kind != "Event" {
		return nil, fmt.Errorf("%w: k8s kind %s, not an audit Event", record.ErrUnsupported, record.Token(kind))
	}
	stage := record.Str(v, "stage")
	switch stage {
	case "ResponseComplete", "Panic", "":
		// Hand-written events (test fixtures) omit the stage; they describe a whole request.
	case "RequestReceived", "ResponseStarted":
		// The same request is logged again at ResponseComplete: keep one event per request.
		return nil, fmt.Errorf("%w: k8s stage %s (only ResponseComplete and Panic become events)", record.ErrSkipped, stage)
	default:
		return nil, fmt.Errorf("%w: k8s stage is none of RequestReceived, ResponseStarted, ResponseComplete, Panic", record.ErrUnsupported)
	}
	when, ok := eventTime(v)
	if !ok {
		return nil, fmt.Errorf("%w: k8s stageTimestamp or requestReceivedTimestamp", record.ErrMissingField)
	}
	verb := record.Str(v, "verb")
	if verb == "" {
		return nil, fmt.Errorf("%w: k8s verb", record.ErrMissingField)
	}
	user := record.Object(v, "user")
	if record.Str(user, "username") == "" {
		return nil, fmt.Errorf("%w: k8s user.username", record.ErrMissingField)
	}
	cluster := in.Cluster
	if cluster == "" {
		cluster = "default"
	}
	auditID := record.Str(v, "auditID")
	id := events.K8sEventID(cluster, auditID, stage)
	if auditID == "" {
		id = events.ContentEventID(events.Provider_PROVIDER_K8S, in.Data)
	}
	ref := record.Object(v, "objectRef")
	resource, sub := record.Str(ref, "resource"), record.Str(ref, "subresource")
	namespace, name := record.Str(ref, "namespace"), record.Str(ref, "name")
	group := record.Str(ref, "apiGroup")
	if group == "" {
		group = "core"
	}
	ev := &events.Event{
		Id:               id,
		Provider:         events.Provider_PROVIDER_K8S,
		Source:           in.Source,
		TimeUnixNano:     when,
		ReceivedUnixNano: in.ReceivedNano(),
		ProviderEventId:  auditID,
		Account:          cluster,
		Action: &events.Action{
			Service:    group,
			Name:       verb,
			Permission: Permission(verb, resource, sub, record.Str(v, "requestURI")),
			ReadOnly:   readOnlyVerbs[verb],
			Type:       stage,
			Category:   record.Str(v, "level"),
			Version:    apiVersion,
		},
		Network: &events.Network{Cluster: cluster, UserAgent: record.Str(v, "userAgent")},
		Outcome: outcome(v),
		Raw:     &events.RawRef{RecordId: in.RecordID, Source: in.Source, Position: in.Position},
	}
	if ips := record.Strings(v, "sourceIPs"); len(ips) > 0 {
		ev.Network.Ip = ips[0]
	}
	if resource != "" {
		ev.Resources = []*events.Resource{{
			Id: objectID(namespace, resource, name), Type: resource, Name: name, Namespace: namespace, Account: cluster,
		}}
	}
	p.identity(v, ev, cluster)
	p.grants(v, ev, cluster, resource, sub, namespace, name)
	ev.Extras = p.buildExtras(v)
	return ev, nil
}

// eventTime is when the request was served: stageTimestamp, else when it was received; v1beta1
// events and hand-written ones may carry only timestamp or metadata.creationTimestamp.
func eventTime(v *fastjson.Value) (int64, bool) {
	for _, keys := range [][]string{{"stageTimestamp"}, {"requestReceivedTimestamp"}, {"timestamp"}, {"metadata", "creationTimestamp"}} {
		if t, ok := record.Time(v, keys...); ok {
			return t.UnixNano(), true
		}
	}
	return 0, false
}

var readOnlyVerbs = map[string]bool{"get": true, "list": true, "watch": true}

// Permission is the RBAC permission a request exercised: "<verb> <resource>[/<subresource>]",
// or "<verb> <path>" for a non-resource URL (/healthz, /version).
func Permission(verb, resource, sub, requestURI string) string {
	if resource == "" {
		path := requestURI
		if i := strings.IndexByte(path, '?'); i >= 0 {
			path = path[:i]
		}
		if path == "" {
			return verb
		}
		return verb + " " + path
	}
	if sub != "" {
		return verb + " " + resource + "/" + sub
	}
	return verb + " " + resource
}

// objectID names an object: /namespaces/<ns>/<resource>/<name>, or /<resource>/<name> when
// it is cluster-scoped.
func objectID(namespace, resource, name string) string {
	var b strings.Builder
	if namespace != "" {
		b.WriteString("/namespaces/")
		b.WriteString(namespace)
	}
	b.WriteByte('/')
	b.WriteString(resource)
	if name != "" {
		b.WriteByte('/')
		b.WriteString(name)
	}
	return b.String()
}

func outcome(v *fastjson.Value) *events.Outcome {
	st := record.Object(v, "responseStatus")
	o := &events.Outcome{Result: events.Result_RESULT_ALLOWED, ErrorCode: record.Str(st, "reason"), ErrorMessage: record.Str(st, "message")}
	if code, ok := record.Int(st, "code"); ok && code >= 0 && code < 1000 {
		o.StatusCode = int32(code)
	}
	switch {
	case o.StatusCode == 401 || o.StatusCode == 403:
		o.Result = events.Result_RESULT_DENIED
	case o.StatusCode >= 400:
		o.Result = events.Result_RESULT_FAILED
	case o.StatusCode == 0 && record.Str(st, "status") == "Failure":
		o.Result = events.Result_RESULT_FAILED
	}
	if record.Str(v, "annotations", "authorization.k8s.io/decision") == "forbid" {
		o.Result = events.Result_RESULT_DENIED
	}
	if o.Result == events.Result_RESULT_ALLOWED {
		o.ErrorCode, o.ErrorMessage = "", ""
	}
	return o
}

// identity fills the identity, credential and delegation chain. With impersonation the
// effective identity is the impersonated user; the impersonator is the delegation's origin.
func (p *Parser) identity(v *fastjson.Value, ev *events.Event, cluster string) {
	user := record.Object(v, "user")
	actor := userIdentity(user, cluster)
	ev.Identity = actor
	ev.Credential = credential(user, actor, cluster)
	if arn := firstExtra(user, "canonicalArn"); arn != "" {
		// EKS: an IAM role or user mapped to this Kubernetes user by aws-iam-authenticator.
		ev.Delegation = append(ev.Delegation, &events.Delegation{From: events.AWSIdentityID(arn), To: actor.Id, Kind: events.DelegationKind_DELEGATION_KIND_FEDERATION})
	}
	if imp := record.Object(v, "impersonatedUser"); imp != nil && record.Str(imp, "username") != "" {
		target := userIdentity(imp, cluster)
		ev.Delegation = append(ev.Delegation, &events.Delegation{From: actor.Id, To: target.Id, Kind: events.DelegationKind_DELEGATION_KIND_K8S_IMPERSONATION})
		ev.Identity = target
	}
}

// userIdentity classifies a Kubernetes user: service accounts, nodes and control-plane
// components by their reserved names; everyone else (OIDC, certificate and cloud IAM users)
// as a human unless the catalog says otherwise.
func userIdentity(u *fastjson.Value, cluster string) *events.Identity {
	return Identity(cluster, record.Str(u, "username"), record.Strings(u, "groups"), record.Str(u, "uid"))
}

// Identity classifies the Kubernetes user name of a cluster (GKE audit entries in GCP logs
// use it too).
func Identity(cluster, name string, groups []string, uid string) *events.Identity {
	id := &events.Identity{Name: name, Account: cluster, Groups: groups, PrincipalId: uid}
	switch {
	case strings.HasPrefix(name, "system:serviceaccount:"):
		rest := strings.TrimPrefix(name, "system:serviceaccount:")
		ns, sa, _ := strings.Cut(rest, ":")
		id.Id = events.K8sServiceAccountID(cluster, ns, sa)
		id.Name = ns + "/" + sa
		id.Type = "serviceaccount"
		id.Kind = events.IdentityKind_IDENTITY_KIND_SERVICE_ACCOUNT
		return id
	case strings.HasPrefix(name, "system:node:"):
		id.Type = "node"
		id.Kind = events.IdentityKind_IDENTITY_KIND_CONTROL_PLANE
	case name == "system:anonymous":
		id.Type = "anonymous"
	case name != "system:admin" && (strings.HasPrefix(name, "system:") || strings.HasPrefix(name, "eks:") || strings.HasPrefix(name, "aksService")):
		// system:kube-scheduler, system:kube-controller-manager, system:apiserver, EKS and
		// AKS components.
		id.Type = "system"
		id.Kind = events.IdentityKind_IDENTITY_KIND_CONTROL_PLANE
	default:
		id.Type = "user"
		id.Kind = events.IdentityKind_IDENTITY_KIND_HUMAN
	}
	id.Id = events.K8sUserID(cluster, name)
	return id
}

// credential names the credential that authenticated the user: the token or certificate in
// authentication.kubernetes.io/credential-id, or on EKS the IAM session the user came from.
func credential(u *fastjson.Value, id *events.Identity, cluster string) *events.Credential {
	var c *events.Credential
	if cid := firstExtra(u, credentialIDKeys...); cid != "" {
		c = &events.Credential{Id: events.K8sTokenID(cluster, cid), Type: events.CredentialType_CREDENTIAL_TYPE_K8S_TOKEN}
		if strings.HasPrefix(cid, "X509SHA256=") {
			c.Type = events.CredentialType_CREDENTIAL_TYPE_CLIENT_CERTIFICATE
		}
	} else if key := firstExtra(u, "accessKeyId"); key != "" {
		c = &events.Credential{Id: events.AWSSessionCredentialID(key), Type: events.CredentialType_CREDENTIAL_TYPE_SESSION, Delivery: "eks_iam"}
		if strings.HasPrefix(key, "AKIA") {
			c.Id, c.Type = events.AWSAccessKeyID(key), events.CredentialType_CREDENTIAL_TYPE_ACCESS_KEY
		}
	} else if id.Kind == events.IdentityKind_IDENTITY_KIND_SERVICE_ACCOUNT {
		c = &events.Credential{Type: events.CredentialType_CREDENTIAL_TYPE_K8S_TOKEN}
	}
	if c == nil {
		return nil
	}
	if pod := firstExtra(u, podNameKeys...); pod != "" {
		ns := ""
		if id.Kind == events.IdentityKind_IDENTITY_KIND_SERVICE_ACCOUNT {
			ns, _, _ = strings.Cut(id.Name, "/")
		}
		c.IssuedTo = "pod:" + ns + "/" + pod
		c.Delivery = "bound_token"
	} else if node := firstExtra(u, nodeNameKeys...); node != "" {
		c.IssuedTo = "node:" + node
		c.Delivery = "bound_token"
	}
	return c
}

// firstExtra returns the first value of the first of keys present in user.extra.
func firstExtra(u *fastjson.Value, keys ...string) string {
	extra := record.Object(u, "extra")
	if extra == nil {
		return ""
	}
	for _, k := range keys {
		if vals := record.Strings(extra, k); len(vals) > 0 {
			return vals[0]
		}
	}
	return ""
}

// buildExtras keeps the audit details worth having next to the event: never the request or
// response bodies (they may carry Secret data, tokens or whole manifests).
func (p *Parser) buildExtras(v *fastjson.Value) []byte {
	x := &p.extras
	x.Reset()
	x.AddString("requestURI", record.Str(v, "requestURI"))
	x.AddString("level", record.Str(v, "level"))
	if ips := record.Strings(v, "sourceIPs"); len(ips) > 1 {
		x.AddStrings("sourceIPs", ips)
	}
	if imp := record.Object(v, "impersonatedUser"); imp != nil {
		x.AddString("impersonator", record.Str(v, "user", "username"))
	}
	if ref := record.Object(v, "objectRef"); ref != nil {
		x.AddString("apiVersion", record.Str(ref, "apiVersion"))
		x.AddString("uid", record.Str(ref, "uid"))
	}
	x.Add("annotations", v.Get("annotations"))
	x.Add("userExtra", v.Get("user", "extra"))
	return x.Bytes()
}
