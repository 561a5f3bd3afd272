// Package record holds what every provider parser shares: the input record, the errors a
// caller branches on, and small helpers for reading fastjson values safely.
package record

import (
	"errors"
	"strconv"
	"time"

	"github.com/valyala/fastjson"
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

// ReceivedNano is ReceivedAt in Unix nanoseconds, 0 when unknown.
func (in Input) ReceivedNano() int64 {
	if in.ReceivedAt.IsZero() {
		return 0
	}
	return in.ReceivedAt.UnixNano()
}

// Str returns the string at keys, or "" when it is absent or not a string.
func Str(v *fastjson.Value, keys ...string) string {
	b := Bytes(v, keys...)
	if len(b) == 0 {
		return ""
	}
	return string(b)
}

// Bytes returns the string at keys without copying, or nil when it is absent or not a
// string. The bytes belong to the parser: copy them before the next parse.
func Bytes(v *fastjson.Value, keys ...string) []byte {
	if v == nil {
		return nil
	}
	x := v.Get(keys...)
	if x == nil || x.Type() != fastjson.TypeString {
		return nil
	}
	b, _ := x.StringBytes()
	return b
}

// Scalar returns the string at keys, or a number or boolean there written as text (records
// written by hand put numbers where strings belong); "" otherwise.
func Scalar(v *fastjson.Value, keys ...string) string {
	if v == nil {
		return ""
	}
	x := v.Get(keys...)
	if x == nil {
		return ""
	}
	switch x.Type() {
	case fastjson.TypeString:
		b, _ := x.StringBytes()
		return string(b)
	case fastjson.TypeNumber, fastjson.TypeTrue, fastjson.TypeFalse:
		return string(x.MarshalTo(nil))
	}
	return ""
}

// Bool returns the boolean at keys; a string "true" also counts.
func Bool(v *fastjson.Value, keys ...string) bool {
	if v == nil {
		return false
	}
	x := v.Get(keys...)
	if x == nil {
		return false
	}
	switch x.Type() {
	case fastjson.TypeTrue:
		return true
	case fastjson.TypeString:
		b, _ := x.StringBytes()
		return string(b) == "true" || string(b) == "True" || string(b) == "TRUE"
	}
	return false
}

// Int returns the integer at keys (a number, or a string holding one) and whether there was one.
func Int(v *fastjson.Value, keys ...string) (int64, bool) {
	if v == nil {
		return 0, false
	}
	x := v.Get(keys...)
	if x == nil {
		return 0, false
	}
	switch x.Type() {
	case fastjson.TypeNumber:
		f, err := x.Float64()
		if err != nil || f != f || f > 1<<62 || f < -(1<<62) {
			return 0, false
		}
		return int64(f), true
	case fastjson.TypeString:
		b, _ := x.StringBytes()
		n, err := strconv.ParseInt(string(b), 10, 64)
		return n, err == nil
	}
	return 0, false
}

// Object returns the object at keys, or nil when it is absent or not an object.
func Object(v *fastjson.Value, keys ...string) *fastjson.Value {
	if v == nil {
		return nil
	}
	x := v.Get(keys...)
	if x == nil || x.Type() != fastjson.TypeObject {
		return nil
	}
	return x
}

// Array returns the items of the array at keys, or nil when it is absent or not an array.
func Array(v *fastjson.Value, keys ...string) []*fastjson.Value {
	if v == nil {
		return nil
	}
	x := v.Get(keys...)
	if x == nil || x.Type() != fastjson.TypeArray {
		return nil
	}
	items, _ := x.Array()
	return items
}

// Strings returns the strings of the array at keys; a single string counts as a list of one
// (policy documents allow both).
func Strings(v *fastjson.Value, keys ...string) []string {
	if v == nil {
		return nil
	}
	x := v.Get(keys...)
	if x == nil {
		return nil
	}
	return StringsOf(x)
}

// StringsOf returns the strings of x: x itself when it is a string, its string items when it
// is an array.
func StringsOf(x *fastjson.Value) []string {
	switch x.Type() {
	case fastjson.TypeString:
		b, _ := x.StringBytes()
		return []string{string(b)}
	case fastjson.TypeArray:
		items, _ := x.Array()
		out := make([]string, 0, len(items))
		for _, it := range items {
			if it.Type() == fastjson.TypeString {
				b, _ := it.StringBytes()
				out = append(out, string(b))
			}
		}
		return out
	}
	return nil
}

// timeLayouts are the timestamp forms audit records use: RFC 3339 (every provider), and the
// "2006-01-02 15:04:05.999" form without a zone that Panther writes (read as UTC).
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
}

// Time parses a timestamp at keys. It reports false when absent or unparseable.
func Time(v *fastjson.Value, keys ...string) (time.Time, bool) {
	b := Bytes(v, keys...)
	if len(b) == 0 || len(b) > 64 {
		return time.Time{}, false
	}
	s := string(b)
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}
