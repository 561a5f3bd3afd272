// Package cursor keeps each source's durable position in the NHI_CURSORS KV bucket. A source
// saves its cursor only after JetStream acknowledged everything before it, so after a restart
// it re-reads at most what was in flight, and re-publishes it with the same message ids.
package cursor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Store reads and writes cursors of one source.
type Store struct {
	kv     jetstream.KeyValue
	source string
}

// New returns the cursor store of a source.
func New(kv jetstream.KeyValue, source string) *Store { return &Store{kv: kv, source: source} }

// key maps a source-specific name (a file path, a partition) to a valid KV key.
func (s *Store) key(name string) string {
	sum := sha256.Sum256([]byte(name))
	return sanitize(s.source) + "." + hex.EncodeToString(sum[:12])
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		ok := c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !ok {
			b[i] = '_'
		}
	}
	return string(b)
}

// Load reads the cursor stored under name into v. It reports false when there is none.
func (s *Store) Load(ctx context.Context, name string, v any) (bool, error) {
	e, err := s.kv.Get(ctx, s.key(name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("load cursor %s/%s: %w", s.source, name, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return false, fmt.Errorf("decode cursor %s/%s: %w", s.source, name, err)
	}
	return true, nil
}

// Save stores v as the cursor under name.
func (s *Store) Save(ctx context.Context, name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, s.key(name), data); err != nil {
		return fmt.Errorf("save cursor %s/%s: %w", s.source, name, err)
	}
	return nil
}

// Delete removes the cursor stored under name; a missing one is not an error.
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := s.kv.Delete(ctx, s.key(name)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete cursor %s/%s: %w", s.source, name, err)
	}
	return nil
}
