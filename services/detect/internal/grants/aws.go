package grants

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// PolicyDocument is an AWS IAM policy document.
type PolicyDocument struct {
	Version    string      `json:"Version,omitempty"`
	Statements []Statement `json:"Statement"`
}

// Statement is one statement of a policy document, with single values widened to lists.
type Statement struct {
	Sid          string   `json:"Sid,omitempty"`
	Effect       string   `json:"Effect"`
	Actions      []string `json:"Action,omitempty"`
	NotActions   []string `json:"NotAction,omitempty"`
	Resources    []string `json:"Resource,omitempty"`
	NotResources []string `json:"NotResource,omitempty"`
	// Conditional is set when the statement has a Condition block. Conditions depend on
	// request context nhiwatch does not evaluate, so a conditional Allow counts as granted
	// and a conditional Deny as not denying (the generous reading for "may it do this?").
	Conditional bool `json:"Conditional,omitempty"`
}

// Deny reports whether the statement denies.
func (s Statement) Deny() bool { return strings.EqualFold(s.Effect, "Deny") }

// ErrPolicyDocument marks a policy document that cannot be read.
var ErrPolicyDocument = errors.New("invalid policy document")

// ParsePolicyDocument reads a policy document as the IAM API returns it (a URL-encoded JSON
// string) or as the AWS CLI prints it (the decoded JSON object), or a plain JSON string.
func ParsePolicyDocument(raw json.RawMessage) (PolicyDocument, error) {
	raw = json.RawMessage(strings.TrimSpace(string(raw)))
	if len(raw) == 0 || string(raw) == "null" {
		return PolicyDocument{}, fmt.Errorf("%w: empty", ErrPolicyDocument)
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return PolicyDocument{}, fmt.Errorf("%w: %v", ErrPolicyDocument, err)
		}
		s = strings.TrimSpace(s)
		if !strings.HasPrefix(s, "{") {
			dec, err := url.QueryUnescape(s)
			if err != nil {
				return PolicyDocument{}, fmt.Errorf("%w: not URL-encoded JSON: %v", ErrPolicyDocument, err)
			}
			s = dec
		}
		raw = json.RawMessage(s)
	}
	var doc struct {
		Version   string          `json:"Version"`
		Statement json.RawMessage `json:"Statement"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return PolicyDocument{}, fmt.Errorf("%w: %v", ErrPolicyDocument, err)
	}
	var raws []json.RawMessage
	st := strings.TrimSpace(string(doc.Statement))
	switch {
	case st == "" || st == "null":
	case st[0] == '[':
		if err := json.Unmarshal(doc.Statement, &raws); err != nil {
			return PolicyDocument{}, fmt.Errorf("%w: Statement: %v", ErrPolicyDocument, err)
		}
	default:
		raws = []json.RawMessage{doc.Statement}
	}
	out := PolicyDocument{Version: doc.Version}
	for i, r := range raws {
		s, err := parseStatement(r)
		if err != nil {
			return PolicyDocument{}, fmt.Errorf("%w: Statement[%d]: %v", ErrPolicyDocument, i, err)
		}
		out.Statements = append(out.Statements, s)
	}
	return out, nil
}

func parseStatement(raw json.RawMessage) (Statement, error) {
	var s struct {
		Sid          string          `json:"Sid"`
		Effect       string          `json:"Effect"`
		Action       json.RawMessage `json:"Action"`
		NotAction    json.RawMessage `json:"NotAction"`
		Resource     json.RawMessage `json:"Resource"`
		NotResource  json.RawMessage `json:"NotResource"`
		Condition    json.RawMessage `json:"Condition"`
		Principal    json.RawMessage `json:"Principal"`
		NotPrincipal json.RawMessage `json:"NotPrincipal"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return Statement{}, err
	}
	if !strings.EqualFold(s.Effect, "Allow") && !strings.EqualFold(s.Effect, "Deny") {
		return Statement{}, fmt.Errorf("Effect %.20q is neither Allow nor Deny", s.Effect)
	}
	out := Statement{Sid: s.Sid, Effect: canonicalEffect(s.Effect)}
	var err error
	if out.Actions, err = stringOrList(s.Action); err != nil {
		return Statement{}, fmt.Errorf("Action: %w", err)
	}
	if out.NotActions, err = stringOrList(s.NotAction); err != nil {
		return Statement{}, fmt.Errorf("NotAction: %w", err)
	}
	if out.Resources, err = stringOrList(s.Resource); err != nil {
		return Statement{}, fmt.Errorf("Resource: %w", err)
	}
	if out.NotResources, err = stringOrList(s.NotResource); err != nil {
		return Statement{}, fmt.Errorf("NotResource: %w", err)
	}
	if len(out.Actions) == 0 && len(out.NotActions) == 0 {
		return Statement{}, errors.New("neither Action nor NotAction")
	}
	c := strings.TrimSpace(string(s.Condition))
	out.Conditional = c != "" && c != "null" && c != "{}"
	return out, nil
}

func canonicalEffect(e string) string {
	if strings.EqualFold(e, "Deny") {
		return "Deny"
	}
	return "Allow"
}

func stringOrList(raw json.RawMessage) ([]string, error) {
	r := strings.TrimSpace(string(raw))
	if r == "" || r == "null" {
		return nil, nil
	}
	if r[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		return []string{s}, nil
	}
	var l []string
	if err := json.Unmarshal(raw, &l); err != nil {
		return nil, errors.New("want a string or a list of strings")
	}
	return l, nil
}

// awsActionMatch reports whether an action pattern list matches the action (IAM actions
// are case-insensitive).
func awsActionMatch(patterns []string, action string) bool {
	for _, p := range patterns {
		if Glob(p, action, true) {
			return true
		}
	}
	return false
}

// awsResourceMatch reports whether any of the request's ARNs matches any pattern. A request
// whose resources are unknown (no ARN) matches: most CloudTrail records name no resource
// ARN, and counting them as unmatched would report every such call as ungranted.
func awsResourceMatch(patterns []string, r *Request) bool {
	arns := 0
	for _, res := range r.Resources {
		if !strings.HasPrefix(res, "arn:") {
			continue
		}
		arns++
		for _, p := range patterns {
			if Glob(substituteVariables(p, r), res, false) {
				return true
			}
		}
	}
	return arns == 0
}

// substituteVariables replaces IAM policy variables: ${aws:username} with the caller's
// user name, the escapes ${*} ${?} ${$} with their characters, and any other variable
// with `*` (it depends on request context that is not known here).
func substituteVariables(p string, r *Request) string {
	if !strings.Contains(p, "${") {
		return p
	}
	var b strings.Builder
	for {
		i := strings.Index(p, "${")
		if i < 0 {
			b.WriteString(p)
			return b.String()
		}
		j := strings.IndexByte(p[i:], '}')
		if j < 0 {
			b.WriteString(p)
			return b.String()
		}
		b.WriteString(p[:i])
		name := p[i+2 : i+j]
		if k := strings.IndexByte(name, ','); k >= 0 { // ${aws:username, 'default'}
			name = strings.TrimSpace(name[:k])
		}
		switch strings.ToLower(name) {
		case "*", "?", "$":
			b.WriteString(name)
		case "aws:username":
			if r.UserName != "" {
				b.WriteString(r.UserName)
			} else {
				b.WriteByte('*')
			}
		default:
			b.WriteByte('*')
		}
		p = p[i+j+1:]
	}
}

// statementMatches reports whether a statement applies to the request.
func statementMatches(s *Statement, r *Request) bool {
	if len(s.Actions) > 0 && !awsActionMatch(s.Actions, r.Permission) {
		return false
	}
	if len(s.NotActions) > 0 && awsActionMatch(s.NotActions, r.Permission) {
		return false
	}
	if len(s.Resources) > 0 && !awsResourceMatch(s.Resources, r) {
		return false
	}
	if len(s.NotResources) > 0 {
		arns := 0
		for _, res := range r.Resources {
			if strings.HasPrefix(res, "arn:") {
				arns++
			}
		}
		if arns > 0 && awsResourceMatch(s.NotResources, r) {
			return false
		}
	}
	return true
}

// awsScope renders a statement's resources for display and storage.
func awsScope(s *Statement) string {
	switch {
	case len(s.NotResources) > 0:
		return "NotResource(" + strings.Join(s.NotResources, ",") + ")"
	case len(s.Resources) == 0:
		return "*"
	}
	return strings.Join(s.Resources, ",")
}

// AWSPolicyFromPermissions builds a one-statement policy from the actions a grant change
// carried, for inline policies whose document only the event showed.
func AWSPolicyFromPermissions(actions []string, resource string, deny bool) PolicyDocument {
	st := Statement{Effect: "Allow", Actions: append([]string(nil), actions...)}
	if deny {
		st.Effect = "Deny"
	}
	if resource != "" {
		st.Resources = []string{resource}
	} else {
		st.Resources = []string{"*"}
	}
	return PolicyDocument{Version: "2012-10-17", Statements: []Statement{st}}
}
