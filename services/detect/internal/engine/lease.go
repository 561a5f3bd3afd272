package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Leases: which worker owns which partition, in the NHI_LEASES KV bucket. A lease is the
// key detect.p<NNN> holding the owner's id and an expiry; a worker renews its leases every
// third of the TTL with a compare-and-set on the key's revision, so two workers never both
// believe they hold one. A worker that stops releases its leases; one that dies loses them
// when they expire, and the others take its partitions over. Each worker also keeps a
// heartbeat key detect.w.<id>, so the workers know how many are alive and share the
// partitions evenly: each claims up to ceil(P / alive).
//
// Expiry is judged on the clocks of the workers: keep them in sync (NTP); a skew shortens
// or lengthens a takeover by as much.

func leaseKey(p uint32) string   { return fmt.Sprintf("detect.p%03d", p) }
func workerKey(id string) string { return "detect.w." + id }
func workerPrefix() string       { return "detect.w.>" }
func encodeLease(owner string, expiry time.Time) []byte {
	b := binary.AppendVarint(nil, expiry.UnixMilli())
	return append(b, owner...)
}

func decodeLease(b []byte) (owner string, expiry time.Time, ok bool) {
	ms, n := binary.Varint(b)
	if n <= 0 {
		return "", time.Time{}, false
	}
	return string(b[n:]), time.UnixMilli(ms), true
}

// lease is one partition lease as read from the bucket.
type lease struct {
	owner    string
	expiry   time.Time
	revision uint64
	exists   bool
}

func readLease(ctx context.Context, kv jetstream.KeyValue, p uint32) (lease, error) {
	e, err := kv.Get(ctx, leaseKey(p))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return lease{}, nil
	case err != nil:
		return lease{}, fmt.Errorf("read lease of partition %d: %w", p, err)
	}
	l := lease{revision: e.Revision(), exists: true}
	if e.Operation() != jetstream.KeyValuePut {
		return l, nil
	}
	l.owner, l.expiry, _ = decodeLease(e.Value())
	return l, nil
}

// claim takes or renews a lease; it fails when another worker changed the key first.
func claim(ctx context.Context, kv jetstream.KeyValue, p uint32, prev lease, owner string, expiry time.Time) (uint64, error) {
	v := encodeLease(owner, expiry)
	if !prev.exists {
		return kv.Create(ctx, leaseKey(p), v)
	}
	return kv.Update(ctx, leaseKey(p), v, prev.revision)
}

// aliveWorkers counts the workers whose heartbeat has not expired.
func aliveWorkers(ctx context.Context, kv jetstream.KeyValue, now time.Time) (int, error) {
	lister, err := kv.ListKeysFiltered(ctx, workerPrefix())
	if err != nil {
		return 0, fmt.Errorf("list detect workers: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	alive := 0
	for _, k := range keys {
		if !strings.HasPrefix(k, "detect.w.") {
			continue
		}
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		if _, exp, ok := decodeLease(e.Value()); ok && exp.After(now) {
			alive++
		}
	}
	return alive, nil
}
