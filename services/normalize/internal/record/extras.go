package record

import (
	"strconv"

	"github.com/valyala/fastjson"

	"github.com/nhiwatch/nhiwatch/pkg/events/jsonenc"
	"github.com/nhiwatch/nhiwatch/pkg/events/redact"
)

// MaxExtrasBytes bounds Event.extras. A member that does not fit is replaced by
// {"truncated":true,"bytes":N}, so the result is always valid JSON and the same record
// always yields the same extras.
const MaxExtrasBytes = 4096

// truncatedReserve is room kept for the truncation notes of later members.
const truncatedReserve = 48

// Extras builds the provider-specific details of an event as one compact JSON object, with
// every value redacted and the whole bounded by MaxExtrasBytes. The zero value is ready; Reset
// it before reuse.
type Extras struct {
	buf     []byte
	scratch []byte
	arena   fastjson.Arena
}

// Reset empties the builder, keeping its buffers.
func (x *Extras) Reset() {
	x.buf = x.buf[:0]
	x.arena.Reset()
}

// Add appends key with v, redacted in place (v is changed). Absent and null values are skipped.
func (x *Extras) Add(key string, v *fastjson.Value) {
	if v == nil || v.Type() == fastjson.TypeNull {
		return
	}
	if redact.IsSecretKey(key) {
		return
	}
	redact.Value(v, &x.arena)
	x.scratch = jsonenc.Append(x.scratch[:0], v)
	x.member(key, x.scratch)
}

// AddString appends key with the string s, redacted. Empty strings are skipped.
func (x *Extras) AddString(key, s string) {
	if s == "" || redact.IsSecretKey(key) {
		return
	}
	x.scratch = jsonenc.AppendString(x.scratch[:0], []byte(redact.String(s)))
	x.member(key, x.scratch)
}

// AddStrings appends key with a list of strings, each redacted. Empty lists are skipped.
func (x *Extras) AddStrings(key string, ss []string) {
	if len(ss) == 0 || redact.IsSecretKey(key) {
		return
	}
	x.scratch = append(x.scratch[:0], '[')
	for i, s := range ss {
		if i > 0 {
			x.scratch = append(x.scratch, ',')
		}
		x.scratch = jsonenc.AppendString(x.scratch, []byte(redact.String(s)))
	}
	x.scratch = append(x.scratch, ']')
	x.member(key, x.scratch)
}

// AddInt appends key with an integer.
func (x *Extras) AddInt(key string, n int64) {
	x.scratch = strconv.AppendInt(x.scratch[:0], n, 10)
	x.member(key, x.scratch)
}

func (x *Extras) member(key string, value []byte) {
	start := len(x.buf)
	if start == 0 {
		x.buf = append(x.buf, '{')
	} else {
		x.buf = append(x.buf, ',')
	}
	x.buf = jsonenc.AppendString(x.buf, []byte(key))
	x.buf = append(x.buf, ':')
	// +1 for the closing brace.
	if len(x.buf)+len(value)+1+truncatedReserve <= MaxExtrasBytes {
		x.buf = append(x.buf, value...)
		return
	}
	note := append([]byte(`{"truncated":true,"bytes":`), strconv.Itoa(len(value))...)
	note = append(note, '}')
	if len(x.buf)+len(note)+1 > MaxExtrasBytes {
		// Not even the note fits: leave the member out.
		x.buf = x.buf[:start]
		return
	}
	x.buf = append(x.buf, note...)
}

// Bytes returns a copy of the JSON object built so far, or nil when it is empty.
func (x *Extras) Bytes() []byte {
	if len(x.buf) == 0 {
		return nil
	}
	out := make([]byte, len(x.buf)+1)
	copy(out, x.buf)
	out[len(x.buf)] = '}'
	return out
}
