// Package netclass classifies where a request came from: the network prefix of its address
// (/24 for IPv4, /48 for IPv6), whether the address is private or public, whether it
// belongs to a cloud provider's published ranges, and the family of its user agent.
package netclass

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"
)

// Network is what the detectors need to know about a source address.
type Network struct {
	Addr netip.Addr
	// Prefix is the /24 (IPv4) or /48 (IPv6) the address lies in.
	Prefix netip.Prefix
	// Private is true for RFC 1918, unique-local, loopback, link-local and CGNAT space.
	Private bool
}

// cgnat is 100.64.0.0/10, shared address space used inside clouds and carriers.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// Parse classifies an address as logged. ok is false for an empty or unparseable address
// (service principals, anonymised logs with leading zeros).
func Parse(ip string) (Network, bool) {
	a, err := netip.ParseAddr(strings.TrimSpace(ip))
	if err != nil {
		return Network{}, false
	}
	a = a.Unmap()
	bits := 24
	if a.Is6() {
		bits = 48
	}
	p, _ := a.Prefix(bits)
	return Network{
		Addr:    a,
		Prefix:  p,
		Private: a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || cgnat.Contains(a),
	}, true
}

// PrefixKey is the network prefix as one number, for compact per-identity sets: a tag byte
// (4 or 6) and the prefix's leading bytes, so distinct prefixes never collide.
func (n Network) PrefixKey() uint64 {
	b := n.Addr.AsSlice()
	if n.Addr.Is4() {
		return 4<<56 | uint64(b[0])<<16 | uint64(b[1])<<8 | uint64(b[2])
	}
	return 6<<56 | uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
}

// Ranges is a set of published cloud address ranges (AWS ip-ranges.json).
type Ranges struct {
	prefixes []netip.Prefix
}

// LoadAWSRanges reads AWS's ip-ranges.json (https://ip-ranges.amazonaws.com/ip-ranges.json,
// documented in the AWS General Reference, "AWS IP address ranges").
func LoadAWSRanges(path string) (*Ranges, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read AWS ip ranges: %w", err)
	}
	var doc struct {
		Prefixes []struct {
			IPPrefix string `json:"ip_prefix"`
		} `json:"prefixes"`
		IPv6Prefixes []struct {
			IPv6Prefix string `json:"ipv6_prefix"`
		} `json:"ipv6_prefixes"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("read AWS ip ranges %s: not the ip-ranges.json format: %w", path, err)
	}
	r := &Ranges{}
	add := func(s string) error {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("read AWS ip ranges %s: bad prefix %q", path, s)
		}
		r.prefixes = append(r.prefixes, p.Masked())
		return nil
	}
	for _, p := range doc.Prefixes {
		if err := add(p.IPPrefix); err != nil {
			return nil, err
		}
	}
	for _, p := range doc.IPv6Prefixes {
		if err := add(p.IPv6Prefix); err != nil {
			return nil, err
		}
	}
	if len(r.prefixes) == 0 {
		return nil, fmt.Errorf("read AWS ip ranges %s: no prefixes", path)
	}
	return NewRanges(r.prefixes), nil
}

// NewRanges returns a set of address ranges.
func NewRanges(prefixes []netip.Prefix) *Ranges {
	r := &Ranges{prefixes: make([]netip.Prefix, 0, len(prefixes))}
	for _, p := range prefixes {
		r.prefixes = append(r.prefixes, p.Masked())
	}
	sort.Slice(r.prefixes, func(i, j int) bool { return r.prefixes[i].Addr().Less(r.prefixes[j].Addr()) })
	return r
}

// Contains reports whether a lies in one of the ranges. A nil Ranges contains nothing.
func (r *Ranges) Contains(a netip.Addr) bool {
	if r == nil {
		return false
	}
	// Prefixes overlap (a /10 and /24s inside it), so scan those starting at or before a.
	i := sort.Search(len(r.prefixes), func(i int) bool { return a.Less(r.prefixes[i].Addr()) })
	for j := i - 1; j >= 0; j-- {
		if r.prefixes[j].Contains(a) {
			return true
		}
		if i-j > 64 {
			break
		}
	}
	return false
}

// Len is the number of prefixes.
func (r *Ranges) Len() int {
	if r == nil {
		return 0
	}
	return len(r.prefixes)
}
