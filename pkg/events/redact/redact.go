// Package redact removes secret values from audit records and from any string nhiwatch keeps,
// so that only metadata reaches a stream, a table, a log line or an alert.
//
// Three layers, applied in order by Value:
//   - whole objects whose content is secret: the request and response bodies of Kubernetes
//     Secrets, ConfigMaps, TokenReviews and service-account token requests, and the data of
//     any object of kind Secret;
//   - fields whose name says they hold a secret (sessionToken, secretAccessKey, password,
//     privateKeyData, token, …), whatever their value;
//   - strings that look like a secret wherever they are: PEM private keys, JWTs, Slack and
//     GitHub tokens, Google API keys, bearer and basic credentials, AWS secret keys.
//
// Access key ids (AKIA…, ASIA…) and key names are not secrets: they are how nhiwatch names
// credentials, and they are kept.
package redact

import (
	"regexp"
	"strings"
	"unsafe"

	"github.com/valyala/fastjson"
)

// Marker replaces a redacted value. Pattern matches become "[REDACTED:<kind>]".
const Marker = "[REDACTED]"

// secretKeys are field names (lower case, without "_" and "-") whose values are secrets.
var secretKeys = map[string]bool{
	"password":             true,
	"passwd":               true,
	"newpassword":          true,
	"oldpassword":          true,
	"secret":               true,
	"secretkey":            true,
	"secretaccesskey":      true,
	"awssecretaccesskey":   true,
	"sessiontoken":         true,
	"awssessiontoken":      true,
	"token":                true,
	"accesstoken":          true,
	"refreshtoken":         true,
	"idtoken":              true,
	"bearertoken":          true,
	"clientsecret":         true,
	"apikey":               true,
	"privatekey":           true,
	"privatekeydata":       true,
	"privatekeypem":        true,
	"authorization":        true,
	"proxyauthorization":   true,
	"cookie":               true,
	"setcookie":            true,
	"credential":           false, // names a credential; its parts are checked one by one
	"secretstring":         true,  // Secrets Manager
	"secretbinary":         true,
	"plaintext":            true, // KMS Decrypt
	"certificatepem":       false,
	"samlassertion":        true,
	"webidentitytoken":     true,
	"serviceaccountkey":    true,
	"signedblob":           true,
	"signedjwt":            true,
	"keyfile":              true,
	"masterpassword":       true,
	"masteruserpassword":   true,
	"dbpassword":           true,
	"connectionstring":     true,
	"kubeconfig":           true,
	"clientkeydata":        true,
	"clientcertificatekey": true,
}

// IsSecretKey reports whether a field of that name holds a secret.
func IsSecretKey(name string) bool {
	if len(name) > 40 {
		return false
	}
	var b [40]byte
	n := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_' || c == '-' || c == '.':
			continue
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		}
		b[n] = c
		n++
	}
	return secretKeys[string(b[:n])]
}

// secretKinds are Kubernetes object kinds whose bodies are secret.
var secretKinds = map[string]bool{
	"Secret": true, "SecretList": true, "ConfigMap": true, "ConfigMapList": true,
	"TokenReview": true, "TokenRequest": true,
}

// secretResources are Kubernetes resources (resource or resource/subresource) whose request
// and response bodies are dropped.
var secretResources = map[string]bool{
	"secrets": true, "configmaps": true, "tokenreviews": true, "serviceaccounts/token": true,
	"tokenrequests": true, "certificatesigningrequests": false,
}

// Value redacts a parsed JSON record in place. It allocates replacement values from a
// (which may be nil) and reports whether anything changed.
func Value(v *fastjson.Value, a *fastjson.Arena) bool {
	if a == nil {
		a = &fastjson.Arena{}
	}
	r := redactor{arena: a}
	r.k8sBodies(v)
	r.walk(v, 0)
	return r.changed
}

type redactor struct {
	arena   *fastjson.Arena
	changed bool
}

// k8sBodies drops the request and response objects of a Kubernetes audit event about a
// secret-bearing resource.
func (r *redactor) k8sBodies(v *fastjson.Value) {
	ref := v.Get("objectRef")
	if ref == nil || ref.Type() != fastjson.TypeObject {
		return
	}
	res := string(ref.GetStringBytes("resource"))
	if sub := ref.GetStringBytes("subresource"); len(sub) > 0 {
		res += "/" + string(sub)
	}
	if !secretResources[res] {
		return
	}
	for _, k := range []string{"requestObject", "responseObject"} {
		if v.Exists(k) {
			v.Del(k)
			r.changed = true
		}
	}
}

// maxDepth bounds the walk; anything nested deeper is replaced as a whole.
const maxDepth = 128

func (r *redactor) walk(v *fastjson.Value, depth int) {
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		if secretKinds[string(v.GetStringBytes("kind"))] {
			for _, k := range []string{"data", "stringData", "binaryData", "spec", "status"} {
				if o.Get(k) != nil {
					o.Del(k)
					r.changed = true
				}
			}
		}
		// fastjson replaces a value only through its parent, and not while visiting it.
		type replacement struct{ key, value string }
		var repl []replacement
		o.Visit(func(key []byte, child *fastjson.Value) {
			if out, ok := r.replace(key, child, depth); ok {
				repl = append(repl, replacement{string(key), out})
			}
		})
		for _, x := range repl {
			o.Set(x.key, r.arena.NewString(x.value))
			r.changed = true
		}
	case fastjson.TypeArray:
		items, _ := v.Array()
		for i, item := range items {
			if out, ok := r.replace(nil, item, depth); ok {
				v.SetArrayItem(i, r.arena.NewString(out))
				r.changed = true
			}
		}
	}
}

// replace decides what becomes of child, the value of key (nil in an array): it returns the
// replacement string and true, or walks into child and returns false.
func (r *redactor) replace(key []byte, child *fastjson.Value, depth int) (string, bool) {
	t := child.Type()
	if key != nil && IsSecretKey(string(key)) && t != fastjson.TypeNull {
		if s, err := child.StringBytes(); err == nil && (len(s) == 0 || string(s) == Marker) {
			return "", false
		}
		return Marker, true
	}
	switch t {
	case fastjson.TypeString:
		s, _ := child.StringBytes()
		return stringBytes(s)
	case fastjson.TypeObject, fastjson.TypeArray:
		if depth >= maxDepth {
			return "[REDACTED:too_deep]", true
		}
		r.walk(child, depth+1)
	}
	return "", false
}

// pattern is one kind of secret recognisable by its shape. Before its regular expression
// runs, a string must contain the bytes of need, its hint (case-sensitive) and its fold
// keyword (ASCII case-insensitive): ordinary strings cost one pass over their bytes.
type pattern struct {
	kind string
	need byteClass
	hint string
	fold string
	// fold2 is a second keyword the string must contain, ignoring case.
	fold2 string
	// pre is a further cheap test the string must pass, when hint and fold do not suffice.
	pre func(string) bool
	re  *regexp.Regexp
	// keepGroup keeps the first submatch group (e.g. "Bearer ") before the marker.
	keepGroup bool
}

// byteClass is a set of bytes and short sequences a string contains, computed in one pass.
type byteClass uint32

const (
	hasDash byteClass = 1 << iota
	hasUnderscore
	hasEquals
	hasAt
	hasSpace
	hasDot
	// hasSe: "se" in any case, which "secret" needs.
	hasSe
	// Three-byte sequences the case-sensitive hints begin or end with.
	hasDashDash // "--" of -----BEGIN
	hasSkDash   // "sk-"
	hasAtDash   // "at-" of glpat-
	hasEyJ      // "eyJ"
	hasXox      // "xox"
	hasIza      // "Iza" of AIza
	hasDotCom   // "k.c" of hooks.slack.com, "y.c" of events.pagerduty.com
	hasScheme   // "://"
	hasVeUnder  // "ve_" of _live_
	// special marks, in classOf, the bytes sequences looks around.
	special
)

var classOf = func() (t [256]byteClass) {
	t['-'], t['_'], t['='], t['@'], t['.'] = hasDash, hasUnderscore, hasEquals, hasAt, hasDot
	for _, b := range []byte("-Jxz.:_eE") {
		t[b] |= special
	}
	t[' '], t['\t'], t['\n'], t['\r'], t['\f'], t['\v'] = hasSpace, hasSpace, hasSpace, hasSpace, hasSpace, hasSpace
	return t
}()

func classes(s string) byteClass {
	var c byteClass
	for i := 0; i < len(s); i++ {
		k := classOf[s[i]]
		c |= k
		if k&special != 0 {
			c |= sequences(s, i)
		}
	}
	return c &^ special
}

// sequences returns the short sequences around s[i], a byte that may start or end one.
func sequences(s string, i int) byteClass {
	at := func(j int) byte {
		if j < 0 || j >= len(s) {
			return 0
		}
		return s[j]
	}
	switch s[i] {
	case '-':
		switch p1, p2 := at(i-1), at(i-2); {
		case p1 == '-':
			return hasDashDash
		case p1 == 'k' && p2 == 's':
			return hasSkDash
		case p1 == 't' && p2 == 'a':
			return hasAtDash
		}
	case 'J':
		if at(i-1) == 'y' && at(i-2) == 'e' {
			return hasEyJ
		}
	case 'x':
		if at(i-1) == 'o' && at(i-2) == 'x' {
			return hasXox
		}
	case 'z':
		if at(i-1) == 'I' && at(i+1) == 'a' {
			return hasIza
		}
	case '.':
		if at(i+1) == 'c' && (at(i-1) == 'k' || at(i-1) == 'y') {
			return hasDotCom
		}
	case ':':
		if at(i+1) == '/' && at(i+2) == '/' {
			return hasScheme
		}
	case '_':
		if at(i-1) == 'e' && at(i-2) == 'v' {
			return hasVeUnder
		}
	case 'e', 'E':
		if at(i-1)|0x20 == 's' {
			return hasSe
		}
	}
	return 0
}

var patterns = []pattern{
	{kind: "private_key", need: hasDashDash, hint: "-----BEGIN", re: regexp.MustCompile(`-----BEGIN[ A-Z0-9]*PRIVATE KEY-----[\s\S]*?(-----END[ A-Z0-9]*PRIVATE KEY-----|$)`)},
	{kind: "jwt", need: hasEyJ | hasDot, hint: "eyJ", re: regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*`)},
	{kind: "slack_token", need: hasXox | hasDash, hint: "xox", re: regexp.MustCompile(`xox[abposre]-[A-Za-z0-9-]{10,}`)},
	{kind: "slack_webhook", need: hasDotCom, hint: "hooks.slack.com", re: regexp.MustCompile(`hooks\.slack\.com/(services|workflows|triggers)/[A-Za-z0-9/_-]+`)},
	{kind: "github_token", need: hasUnderscore, pre: githubPrefix, re: regexp.MustCompile(`\b(gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})`)},
	{kind: "gitlab_token", need: hasAtDash, hint: "glpat-", re: regexp.MustCompile(`glpat-[A-Za-z0-9_-]{20,}`)},
	{kind: "google_api_key", need: hasIza, hint: "AIza", re: regexp.MustCompile(`AIza[0-9A-Za-z_-]{35}`)},
	{kind: "openai_key", need: hasSkDash, hint: "sk-", re: regexp.MustCompile(`\bsk-(proj-|ant-)?[A-Za-z0-9_-]{20,}`)},
	{kind: "stripe_key", need: hasVeUnder, hint: "_live_", re: regexp.MustCompile(`\b[rs]k_live_[A-Za-z0-9]{16,}`)},
	{kind: "pagerduty_key", need: hasDotCom, hint: "events.pagerduty.com", re: regexp.MustCompile(`events\.pagerduty\.com/[^\s"']*`)},
	{kind: "bearer", need: hasSpace, fold: "bearer", re: regexp.MustCompile(`(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}`), keepGroup: true},
	{kind: "basic_auth", need: hasSpace, fold: "basic", re: regexp.MustCompile(`(?i)(basic\s+)[A-Za-z0-9+/=]{8,}`), keepGroup: true},
	{kind: "url_credentials", need: hasScheme | hasAt, hint: "://", re: regexp.MustCompile(`(://[^/\s:@"']+:)[^@\s"'/]+@`), keepGroup: true},
	{kind: "aws_secret_key", need: hasSe, fold: "secret", fold2: "access", re: regexp.MustCompile(`(?i)(aws_?secret_?access_?key["']?\s*[:=]\s*["']?)[A-Za-z0-9/+=]{40}`), keepGroup: true},
	{kind: "assignment", need: hasEquals, pre: assignmentKeyword, re: regexp.MustCompile(`(?i)\b((?:password|passwd|pwd|secret|token|api_?key|access_?token|client_?secret|private_?key)\s*=\s*)[^\s&;,"']{4,}`), keepGroup: true},
}

// githubPrefix reports whether s has a GitHub token prefix: gh[pousr]_ or github_pat_.
func githubPrefix(s string) bool {
	for i := 3; i < len(s); i++ {
		if s[i] != '_' {
			continue
		}
		if s[i-3] == 'g' && s[i-2] == 'h' && strings.IndexByte("pousr", s[i-1]) >= 0 {
			return true
		}
		if i >= 6 && s[i-6:i] == "github" {
			return true
		}
	}
	return false
}

// assignmentKeyword reports whether s names, in any case, a key the assignment pattern knows.
func assignmentKeyword(s string) bool {
	return containsFold(s, "pass") || containsFold(s, "pwd") || containsFold(s, "secret") ||
		containsFold(s, "token") || containsFold(s, "key")
}

// containsFold reports whether s contains the lower-case ASCII word, ignoring ASCII case.
func containsFold(s, word string) bool {
	first := word[0]
	for i := 0; i+len(word) <= len(s); i++ {
		if s[i]|0x20 != first {
			continue
		}
		j := 1
		for j < len(word) && s[i+j]|0x20 == word[j] {
			j++
		}
		if j == len(word) {
			return true
		}
	}
	return false
}

// String returns s with every secret-looking part replaced by a marker.
func String(s string) string {
	out, ok := redactString(s)
	if !ok {
		return s
	}
	return out
}

// stringBytes redacts s and reports whether anything matched. It reads s in place and
// allocates only for a string it changes.
func stringBytes(s []byte) (string, bool) {
	if len(s) < 8 {
		return "", false
	}
	// The view is read only and never returned: a changed string is a new one.
	out, ok := redactString(unsafe.String(&s[0], len(s)))
	if !ok {
		return "", false
	}
	return out, true
}

// redactString redacts str and reports whether anything matched; unchanged, it returns str.
func redactString(str string) (string, bool) {
	if len(str) < 8 {
		return str, false
	}
	have := classes(str)
	changed := false
	for i := range patterns {
		p := &patterns[i]
		if have&p.need != p.need ||
			p.hint != "" && !strings.Contains(str, p.hint) ||
			p.fold != "" && !containsFold(str, p.fold) ||
			p.fold2 != "" && !containsFold(str, p.fold2) ||
			p.pre != nil && !p.pre(str) {
			continue
		}
		if !p.re.MatchString(str) {
			continue
		}
		marker := "[REDACTED:" + p.kind + "]"
		if p.keepGroup {
			str = p.re.ReplaceAllString(str, "${1}"+marker)
		} else {
			str = p.re.ReplaceAllLiteralString(str, marker)
		}
		changed = true
	}
	return str, changed
}

// quotedSecretField matches "secretField": "value" in text that is not valid JSON.
var quotedSecretField = regexp.MustCompile(`(?i)("(?:password|passwd|secret[a-z_]*|sessiontoken|session_token|secretaccesskey|token|access_?token|refresh_?token|id_?token|private_?key(?:data)?|client_?secret|api_?key|authorization|data|stringdata)"\s*:\s*)("(?:[^"\\]|\\.)*"|\{[^{}]*\}|\[[^\[\]]*\])`)

// Text redacts bytes that could not be parsed as JSON (a malformed record on its way to the
// dead-letter stream): secret-named fields and secret-looking strings are masked as text.
func Text(b []byte) []byte {
	out := quotedSecretField.ReplaceAll(b, []byte(`${1}"`+Marker+`"`))
	s, ok := stringBytes(out)
	if ok {
		return []byte(s)
	}
	return out
}
