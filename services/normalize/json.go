package normalize

import (
	"bytes"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

// EventJSON renders ev as one line of compact JSON for people and golden files: protobuf
// field names, enums by name, and extras inlined as the JSON object they hold (not base64).
// The output is stable for the same event. It briefly clears ev.Extras, so ev must not be
// read concurrently.
func EventJSON(ev *events.Event) ([]byte, error) {
	extras := ev.Extras
	ev.Extras = nil
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(ev)
	ev.Extras = extras
	if err != nil {
		return nil, fmt.Errorf("render event: %w", err)
	}
	// protojson varies its whitespace on purpose; compact it for a stable form.
	var out bytes.Buffer
	out.Grow(len(b) + len(extras) + 16)
	if err := json.Compact(&out, b); err != nil {
		return nil, fmt.Errorf("render event: %w", err)
	}
	if len(extras) > 0 && json.Valid(extras) {
		out.Truncate(out.Len() - 1)
		out.WriteString(`,"extras":`)
		out.Write(extras)
		out.WriteByte('}')
	}
	return out.Bytes(), nil
}
