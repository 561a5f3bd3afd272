package cloudtrail

import (
	"net/url"
	"sort"
	"strings"

	"github.com/valyala/fastjson"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/normalize/internal/record"
)

// maxStatements bounds the grant changes one policy document yields.
const maxStatements = 64

// statement is one IAM policy statement as far as grants go.
type statement struct {
	deny bool
	// actions are the statement's Action entries; NotAction entries are prefixed with "!".
	actions []string
	// resources are Resource entries; NotResource entries are prefixed with "!".
	resources []string
	// principals are canonical ids of the Principal entries (trust and resource policies);
	// NotPrincipal entries are prefixed with "!".
	principals []string
	// conditional is set when the statement has a Condition.
	conditional bool
}

// policyDoc reads an IAM policy document that a record carries either as a JSON string
// (IAM requestParameters, sometimes URL-encoded) or as an object (S3 bucketPolicy).
// It returns nil when v holds no readable document.
func (p *Parser) policyDoc(v *fastjson.Value) []statement {
	if v == nil {
		return nil
	}
	doc := v
	if v.Type() == fastjson.TypeString {
		b, _ := v.StringBytes()
		s := strings.TrimSpace(string(b))
		if strings.HasPrefix(s, "%7B") || strings.HasPrefix(s, "%7b") {
			if u, err := url.QueryUnescape(s); err == nil {
				s = u
			}
		}
		d, err := p.doc.Parse(s)
		if err != nil {
			return nil
		}
		doc = d
	}
	if doc.Type() != fastjson.TypeObject {
		return nil
	}
	st := doc.Get("Statement")
	if st == nil {
		return nil
	}
	var items []*fastjson.Value
	switch st.Type() {
	case fastjson.TypeArray:
		items, _ = st.Array()
	case fastjson.TypeObject:
		items = []*fastjson.Value{st}
	}
	var out []statement
	for _, s := range items {
		if len(out) == maxStatements {
			break
		}
		if s.Type() != fastjson.TypeObject {
			continue
		}
		x := statement{deny: strings.EqualFold(record.Str(s, "Effect"), "Deny")}
		x.actions = append(record.Strings(s, "Action"), prefixed("!", record.Strings(s, "NotAction"))...)
		x.resources = append(record.Strings(s, "Resource"), prefixed("!", record.Strings(s, "NotResource"))...)
		x.principals = append(principals(s.Get("Principal")), prefixed("!", principals(s.Get("NotPrincipal")))...)
		x.conditional = s.Get("Condition") != nil
		out = append(out, x)
	}
	return out
}

func prefixed(p string, ss []string) []string {
	for i := range ss {
		ss[i] = p + ss[i]
	}
	return ss
}

// principals returns canonical ids of a policy's Principal element: "*" stays "*", AWS
// accounts and ARNs become identity ids (an account is its root), services become
// aws:service:<host>, federated providers aws:federated:<provider>, canonical users
// aws:canonical-user:<id>.
func principals(v *fastjson.Value) []string {
	if v == nil {
		return nil
	}
	if v.Type() == fastjson.TypeString {
		b, _ := v.StringBytes()
		if string(b) == "*" {
			return []string{"*"}
		}
		return []string{awsPrincipal(string(b))}
	}
	if v.Type() != fastjson.TypeObject {
		return nil
	}
	var out []string
	for _, kind := range []string{"AWS", "Service", "Federated", "CanonicalUser"} {
		for _, s := range record.Strings(v, kind) {
			switch {
			case s == "*":
				out = append(out, "*")
			case kind == "AWS":
				out = append(out, awsPrincipal(s))
			case kind == "Service":
				out = append(out, "aws:service:"+s)
			case kind == "Federated":
				out = append(out, "aws:federated:"+s)
			default:
				out = append(out, "aws:canonical-user:"+s)
			}
		}
	}
	return out
}

// awsPrincipal turns an AWS principal (an account id or an ARN) into a canonical identity id.
func awsPrincipal(s string) string {
	if isAccountID(s) {
		return events.AWSIdentityID("arn:aws:iam::" + s + ":root")
	}
	if strings.HasPrefix(s, "arn:") {
		return events.AWSIdentityID(CanonicalARN(s))
	}
	// A unique id (AROA…, AIDA…) left after the principal was deleted.
	return "aws:principal:" + s
}

func isAccountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// grantBase holds what every grant change of one policy document shares.
type grantBase struct {
	op                        events.GrantOp
	grantee, grant, mechanism string
}

func (b grantBase) change() *events.GrantChange {
	return &events.GrantChange{Op: b.op, Grantee: b.grantee, Grant: b.grant, Mechanism: b.mechanism}
}

// grantsFromPolicy turns a policy document into grant changes, one per statement.
func grantsFromPolicy(base grantBase, stmts []statement) []*events.GrantChange {
	if len(stmts) == 0 {
		return []*events.GrantChange{base.change()}
	}
	out := make([]*events.GrantChange, 0, len(stmts))
	for _, s := range stmts {
		g := base.change()
		g.Deny = s.deny
		g.Permissions = s.actions
		g.Scope = strings.Join(s.resources, ",")
		if len(s.principals) > 0 {
			g.Principals = s.principals
		}
		out = append(out, g)
	}
	return out
}

// trustGrants turns a trust policy into grant changes on a role: the principals each
// statement allows (or denies) to assume it.
func trustGrants(base grantBase, stmts []statement) []*events.GrantChange {
	var out []*events.GrantChange
	for _, s := range stmts {
		g := base.change()
		g.Deny = s.deny
		g.Permissions = s.actions
		g.Principals = uniqueSorted(s.principals)
		out = append(out, g)
	}
	if len(out) == 0 {
		out = append(out, base.change())
	}
	return out
}

func uniqueSorted(ss []string) []string {
	if len(ss) < 2 {
		return ss
	}
	sort.Strings(ss)
	out := ss[:1]
	for _, s := range ss[1:] {
		if s != out[len(out)-1] {
			out = append(out, s)
		}
	}
	return out
}
