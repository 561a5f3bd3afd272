package events

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
)

// ErrMalformed marks a message whose payload cannot be decoded: retrying cannot help, so it
// is dead-lettered.
var ErrMalformed = errors.New("malformed message")

// MaxMessageBytes bounds a batch message. JetStream's default max payload is 1 MiB; batches
// are cut below it.
const MaxMessageBytes = 900 << 10

// Marshal encodes a RawBatch, EventBatch or Finding for the wire.
func Marshal(m proto.Message) ([]byte, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", m, err)
	}
	return b, nil
}

// UnmarshalRawBatch decodes an NHI_RAW payload.
func UnmarshalRawBatch(data []byte) (*RawBatch, error) {
	b := &RawBatch{}
	if err := proto.Unmarshal(data, b); err != nil {
		return nil, fmt.Errorf("%w: raw batch: %v", ErrMalformed, err)
	}
	return b, nil
}

// UnmarshalEventBatch decodes an NHI_EVENTS payload.
func UnmarshalEventBatch(data []byte) (*EventBatch, error) {
	b := &EventBatch{}
	if err := proto.Unmarshal(data, b); err != nil {
		return nil, fmt.Errorf("%w: event batch: %v", ErrMalformed, err)
	}
	return b, nil
}

// UnmarshalFinding decodes an NHI_FINDINGS payload.
func UnmarshalFinding(data []byte) (*Finding, error) {
	f := &Finding{}
	if err := proto.Unmarshal(data, f); err != nil {
		return nil, fmt.Errorf("%w: finding: %v", ErrMalformed, err)
	}
	return f, nil
}
