// Package secret holds credentials (webhook URLs, bot tokens, routing keys, HMAC keys) so
// that printing, logging or encoding one never reveals it. Values come from a file or an
// environment variable named in the configuration, never from the configuration itself.
package secret

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// Redacted is what a Value prints as.
const Redacted = "[redacted]"

// Value is a secret string. Its String, GoString, LogValue, Format and MarshalJSON/Text
// methods print Redacted; only Reveal returns the value.
type Value struct{ v string }

// New wraps s.
func New(s string) Value { return Value{v: s} }

// Reveal returns the secret. Call it only where the value is put on the wire.
func (v Value) Reveal() string { return v.v }

// IsZero reports whether the secret is empty.
func (v Value) IsZero() bool { return v.v == "" }

func (v Value) String() string   { return Redacted }
func (v Value) GoString() string { return Redacted }

// Format redacts every verb, including %#v and %+v on structs that hold a Value.
func (v Value) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(Redacted)) }

// LogValue keeps the secret out of slog output.
func (v Value) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalText keeps the secret out of JSON, YAML and text encodings.
func (v Value) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// Ref says where a secret comes from: a file (preferred: it keeps the value out of the
// environment of child processes) or an environment variable.
type Ref struct {
	File string `yaml:"file"`
	Env  string `yaml:"env"`
}

// IsSet reports whether a source is named.
func (r Ref) IsSet() bool { return r.File != "" || r.Env != "" }

// Validate reports a reference naming both or neither source.
func (r Ref) Validate(what string) error {
	switch {
	case r.File != "" && r.Env != "":
		return fmt.Errorf("%s: set file or env, not both", what)
	case !r.IsSet():
		return fmt.Errorf("%s: a file or env is required", what)
	}
	return nil
}

// ErrEmpty is returned for a secret source that holds nothing.
var ErrEmpty = errors.New("secret is empty")

// Load reads the secret. The error names the source, never the value.
func (r Ref) Load(what string) (Value, error) {
	if err := r.Validate(what); err != nil {
		return Value{}, err
	}
	var s string
	if r.File != "" {
		b, err := os.ReadFile(r.File)
		if err != nil {
			return Value{}, fmt.Errorf("%s: read secret file: %w", what, err)
		}
		s = string(b)
	} else {
		var ok bool
		if s, ok = os.LookupEnv(r.Env); !ok {
			return Value{}, fmt.Errorf("%s: environment variable %s is not set", what, r.Env)
		}
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return Value{}, fmt.Errorf("%s: %w", what, ErrEmpty)
	}
	return New(s), nil
}
