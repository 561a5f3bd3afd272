package state

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// encodingVersion is the first byte of an encoded state. A new layout takes a new version
// and Decode keeps reading the old ones.
const encodingVersion = 1

// ErrCorrupt marks bytes that are not an encoded state.
var ErrCorrupt = errors.New("corrupt detector state")

// Encode appends the binary encoding of s to dst: a version byte, then unsigned varints.
func (s *Identity) Encode(dst []byte) []byte {
	dst = append(dst, encodingVersion)
	dst = binary.AppendUvarint(dst, s.Seq)
	dst = binary.AppendUvarint(dst, uint64(s.Created))
	dst = binary.AppendUvarint(dst, uint64(s.Events))
	dst = append(dst, s.Kind, s.Sat)
	dst = appendActivity(dst, &s.Activity)
	dst = binary.AppendUvarint(dst, uint64(len(s.Nets)))
	for _, v := range s.Nets {
		dst = binary.AppendUvarint(dst, v)
	}
	for _, set := range [][]uint32{s.Regions, s.Agents, s.Clusters} {
		dst = binary.AppendUvarint(dst, uint64(len(set)))
		for _, v := range set {
			dst = binary.LittleEndian.AppendUint32(dst, v)
		}
	}
	dst = binary.AppendUvarint(dst, uint64(len(s.Grants)))
	for _, g := range s.Grants {
		dst = binary.LittleEndian.AppendUint64(dst, g.Hash)
		dst = append(dst, g.Power)
	}
	dst = binary.AppendUvarint(dst, uint64(len(s.Creds)))
	for i := range s.Creds {
		c := &s.Creds[i]
		dst = binary.LittleEndian.AppendUint64(dst, c.Hash)
		dst = binary.AppendUvarint(dst, uint64(c.Created))
		dst = appendActivity(dst, &c.Activity)
	}
	dst = binary.AppendUvarint(dst, uint64(len(s.Fired)))
	for _, v := range s.Fired {
		dst = binary.LittleEndian.AppendUint64(dst, v)
	}
	return dst
}

func appendActivity(dst []byte, a *Activity) []byte {
	dst = append(dst, a.N)
	for i := 0; i < int(a.N); i++ {
		dst = binary.AppendUvarint(dst, uint64(a.Spans[i].From))
		dst = binary.AppendUvarint(dst, uint64(a.Spans[i].To-a.Spans[i].From))
	}
	return dst
}

// Decode reads an encoded state.
func Decode(b []byte) (*Identity, error) {
	r := reader{b: b}
	if v := r.byte(); v != encodingVersion {
		return nil, fmt.Errorf("%w: version %d", ErrCorrupt, v)
	}
	s := &Identity{Rule: -1}
	s.Seq = r.uvarint()
	s.Created = r.u32v()
	s.Events = r.u32v()
	s.Kind = r.byte()
	s.Sat = r.byte()
	r.activity(&s.Activity)
	if n := r.count(MaxNets); n > 0 {
		s.Nets = make([]uint64, n)
		for i := range s.Nets {
			s.Nets[i] = r.uvarint()
		}
	}
	for _, dst := range []*[]uint32{&s.Regions, &s.Agents, &s.Clusters} {
		if n := r.count(MaxRegions); n > 0 {
			set := make([]uint32, n)
			for i := range set {
				set[i] = r.u32()
			}
			*dst = set
		}
	}
	if n := r.count(MaxGrants); n > 0 {
		s.Grants = make([]Grant, n)
		for i := range s.Grants {
			s.Grants[i] = Grant{Hash: r.u64(), Power: r.byte()}
		}
	}
	if n := r.count(MaxCreds); n > 0 {
		s.Creds = make([]Cred, n)
		for i := range s.Creds {
			c := &s.Creds[i]
			c.Hash = r.u64()
			c.Created = r.u32v()
			r.activity(&c.Activity)
		}
	}
	if n := r.count(MaxFired); n > 0 {
		s.Fired = make([]uint64, n)
		for i := range s.Fired {
			s.Fired[i] = r.u64()
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if r.off != len(b) {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(b)-r.off)
	}
	return s, nil
}

type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = fmt.Errorf("%w: truncated at byte %d", ErrCorrupt, r.off)
	}
	r.off = len(r.b)
}

func (r *reader) byte() uint8 {
	if r.off >= len(r.b) {
		r.fail()
		return 0
	}
	v := r.b[r.off]
	r.off++
	return v
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		r.fail()
		return 0
	}
	r.off += n
	return v
}

func (r *reader) u32v() uint32 {
	v := r.uvarint()
	if v > 1<<32-1 {
		r.fail()
		return 0
	}
	return uint32(v)
}

func (r *reader) u32() uint32 {
	if r.off+4 > len(r.b) {
		r.fail()
		return 0
	}
	v := binary.LittleEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v
}

func (r *reader) u64() uint64 {
	if r.off+8 > len(r.b) {
		r.fail()
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b[r.off:])
	r.off += 8
	return v
}

// count reads a length and refuses one above limit (a corrupt length must not allocate).
func (r *reader) count(limit int) int {
	n := r.uvarint()
	if n > uint64(limit) {
		r.fail()
		return 0
	}
	return int(n)
}

func (r *reader) activity(a *Activity) {
	n := r.byte()
	if n > MaxSpans {
		r.fail()
		return
	}
	a.N = n
	for i := 0; i < int(n); i++ {
		from := r.u32v()
		span := r.u32v()
		a.Spans[i] = Span{from, from + span}
	}
}
