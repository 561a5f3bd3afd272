// Package record holds what every provider parser shares: the input record, the errors a
// caller branches on, and small helpers for reading fastjson values safely.
package record

import (
	"errors"
	"time"

	"github.com/valyala/fastjson"

	"github.com/nhiwatch/nhiwatch/pkg/events/redact"
)

// Errors a caller branches on. Messages never quote record content.
var (
	// ErrMalformed: not JSON, not UTF-8, too deep, or a required field of the wrong type.
	ErrMalformed = errors.New("malformed record")
	// ErrMissingField: a field the provider always sets is absent.
	ErrMissingField = errors.New("missing field")
	// ErrUnsupported: a known provider but a version or kind nhiwatch does not read.
	ErrUnsupported = errors.New("unsupported record")
	// ErrSkipped: a valid record that is deliberately not turned into an event (a
	// Kubernetes audit stage other than ResponseComplete or Panic). Not dead-lettered.
	ErrSkipped = errors.New("skipped")
)

// Input is one raw record and what its source said about it.
type Input struct {
	Data []byte
	// Format is "cloudtrail", "gcp", "k8s" or "auto".
	Format string
	// Cluster is the Kubernetes cluster name from the source's configuration.
	Cluster string
	// Source is the configured source name; RecordID the record's source position id.
	Source   string
	RecordID string
	Position string
	// ReceivedAt is when ingest received the record.
	ReceivedAt time.Time
}

// Str returns the string at keys, or "" when it is absent or not a string.
func Str(v *fastjson.Value, keys ...string) string {
	x := v.Get(keys...)
	if x == nil || x.Type() != fastjson.TypeString {
		return ""
	}
	b, _ := x.StringBytes()
	return string(b)
}

// Clean returns Str with secret-looking content redacted: for free text that is kept
// (error messages, user agents, resource names).
func Clean(v *fastjson.Value, keys ...string) string {
	return redact.String(Str(v, keys...))
}

// Bool returns the boolean at keys; a string "true" also counts.
func Bool(v *fastjson.Value, keys ...string) bool {
	x := v.Get(keys...)
	if x == nil {
		return false
	}
	switch x.Type() {
	case fastjson.TypeTrue:
		return true
	case fastjson.TypeString:
		b, _ := x.StringBytes()
		return string(b) == "true"
	}
	return false
}

// Time parses an RFC 3339 timestamp at keys. It reports false when absent or unparseable.
func Time(v *fastjson.Value, keys ...string) (time.Time, bool) {
	s := Str(v, keys...)
	if s == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}
