package grants

import "strings"

// Glob reports whether s matches pattern, where `*` matches any run of characters (also
// none) and `?` exactly one. It is the wildcard of IAM policy actions and ARNs, of GCP
// permission patterns and of Kubernetes non-resource URLs. fold makes the match
// case-insensitive (IAM actions are; ARNs are not).
func Glob(pattern, s string, fold bool) bool {
	if fold && (!isASCII(pattern) || !isASCII(s)) {
		pattern, s = strings.ToLower(pattern), strings.ToLower(s)
		fold = false
	}
	// Iterative matcher with one backtrack point: linear in practice, no recursion, and no
	// allocation (it runs for every pattern of every grant an event is evaluated against).
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] != '*' && (pattern[p] == '?' || sameByte(pattern[p], s[i], fold)):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

func sameByte(a, b byte, fold bool) bool {
	if a == b {
		return true
	}
	return fold && lower(a) == lower(b)
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// Covers reports whether every string the pattern sub matches is also matched by pattern
// sup, for the patterns policies use in practice: sup must match sub read literally, with
// sub's wildcards standing for themselves (`s3:*` covers `s3:Get*`; `s3:Get*` does not
// cover `s3:*`). It is exact when sup's wildcards sit where sub's do or further left.
func Covers(sup, sub string, fold bool) bool {
	return Glob(sup, sub, fold)
}

// hasWildcard reports whether s contains `*` or `?`.
func hasWildcard(s string) bool { return strings.ContainsAny(s, "*?") }

// GlobRegexp turns a glob into an RE2 regular expression anchored at both ends, for
// ClickHouse's match(): the statistics queries match used permissions against grant
// patterns in SQL.
func GlobRegexp(pattern string, fold bool) string {
	var b strings.Builder
	if fold {
		b.WriteString("(?i)")
	}
	b.WriteByte('^')
	for _, r := range pattern {
		switch r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteByte('.')
		case '.', '+', '(', ')', '[', ']', '{', '}', '^', '$', '|', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('$')
	return b.String()
}
