package record

import (
	"strconv"
	"strings"
)

// tokenStarts are the shapes of the identifiers an error may name: versions, API versions,
// payload types and kinds, as the providers define them.
var tokenStarts = []string{"audit.k8s.io/", "type.googleapis.com/"}

// Token returns a record's version or type identifier for an error message when it has the
// shape of one (a version number, audit.k8s.io/…, type.googleapis.com/…, at most 100 bytes of
// letters, digits and ./_-), and otherwise only its length: errors never quote record content.
func Token(s string) string {
	ok := len(s) > 0 && len(s) <= 100
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '/' || c == '_' || c == '-'
	}
	if ok && strings.Trim(s, "0123456789.") == "" && len(s) <= 16 {
		return strconv.Quote(s) // a version number
	}
	if ok {
		for _, p := range tokenStarts {
			if strings.HasPrefix(s, p) {
				return strconv.Quote(s)
			}
		}
	}
	return "(a value of " + strconv.Itoa(len(s)) + " bytes)"
}
