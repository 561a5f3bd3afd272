package state

import (
	"fmt"
	"strconv"
	"strings"
)

// Partition is the state of one NHI_EVENTS partition: the identities whose events land on
// it, keyed by the 64-bit FNV-1a hash of their id. It is owned by one goroutine.
type Partition struct {
	ID         uint32
	Identities map[uint64]*Identity
	dirty      map[uint64]struct{}
}

// NewPartition returns an empty partition state.
func NewPartition(id uint32) *Partition {
	return &Partition{ID: id, Identities: map[uint64]*Identity{}, dirty: map[uint64]struct{}{}}
}

// Get returns the state of an identity, creating an empty one.
func (p *Partition) Get(key uint64) *Identity {
	s, ok := p.Identities[key]
	if !ok {
		s = &Identity{Rule: -1}
		p.Identities[key] = s
	}
	return s
}

// Put installs a loaded state.
func (p *Partition) Put(key uint64, s *Identity) { p.Identities[key] = s }

// MarkDirty records that an identity's state changed since the last checkpoint.
func (p *Partition) MarkDirty(key uint64) { p.dirty[key] = struct{}{} }

// Dirty returns the identities changed since the last checkpoint and forgets them.
func (p *Partition) Dirty() []uint64 {
	out := make([]uint64, 0, len(p.dirty))
	for k := range p.dirty {
		out = append(out, k)
	}
	clear(p.dirty)
	return out
}

// DirtyCount is the number of identities changed since the last checkpoint.
func (p *Partition) DirtyCount() int { return len(p.dirty) }

// Key is the KV key of an identity's state: p<partition>.i.<hash as hex>.
func Key(partition uint32, key uint64) string {
	return fmt.Sprintf("p%03d.i.%016x", partition, key)
}

// KeyPrefix is the KV key filter of all identity states of a partition.
func KeyPrefix(partition uint32) string { return fmt.Sprintf("p%03d.i.>", partition) }

// CheckpointKey is the KV key of a partition's checkpoint.
func CheckpointKey(partition uint32) string { return fmt.Sprintf("p%03d.ckpt", partition) }

// ParseKey returns the identity hash of a state key.
func ParseKey(k string) (uint64, bool) {
	i := strings.LastIndexByte(k, '.')
	if i < 0 {
		return 0, false
	}
	v, err := strconv.ParseUint(k[i+1:], 16, 64)
	return v, err == nil
}

// Apply reports whether the events of NHI_EVENTS message seq should be applied to s, and
// marks s as at seq. A state already at or past seq (persisted before a crash, the message
// redelivered) is skipped, except for further events of the message being applied now.
// seq 0 (no stream) always applies.
func (s *Identity) Apply(seq uint64) bool {
	if seq == 0 {
		return true
	}
	if s.Seq >= seq && s.applying != seq {
		return false
	}
	s.Seq = seq
	s.applying = seq
	return true
}
