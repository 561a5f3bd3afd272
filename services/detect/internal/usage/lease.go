package usage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Lease is a named lease in a KV bucket: one worker holds it at a time and renews it; when
// the holder stops renewing (it stopped or died), another takes it once it expires. Every
// write is a compare-and-set on the key's revision, so two workers never both believe they
// hold it. Expiry is judged on the workers' clocks: keep them in sync (NTP).
//
// A Lease is used by one goroutine.
type Lease struct {
	kv         jetstream.KeyValue
	key, owner string
	ttl        time.Duration
	now        func() time.Time

	held     bool
	revision uint64
	expiry   time.Time
	renewAt  time.Time
}

type leaseValue struct {
	Owner   string    `json:"owner"`
	Expires time.Time `json:"expires"`
}

// NewLease returns the lease key in kv for owner.
func NewLease(kv jetstream.KeyValue, key, owner string, ttl time.Duration, now func() time.Time) (*Lease, error) {
	if kv == nil || key == "" || owner == "" || ttl < time.Second || now == nil {
		return nil, errors.New("usage: a lease needs a bucket, a key, an owner, a TTL of at least 1s and a clock")
	}
	return &Lease{kv: kv, key: key, owner: owner, ttl: ttl, now: now}, nil
}

// Hold takes the lease when it is free or expired, or renews it when this worker holds it,
// and reports whether this worker holds it now. It writes at most every third of the TTL;
// call it more often than that. After a failed renewal the lease counts as held until it
// expires, no longer.
func (l *Lease) Hold(ctx context.Context) (bool, error) {
	now := l.now()
	if l.held && now.Before(l.renewAt) {
		return true, nil
	}
	held, err := l.claim(ctx, now)
	if err != nil {
		l.held = l.held && now.Before(l.expiry)
		return l.held, err
	}
	l.held = held
	return held, nil
}

func (l *Lease) claim(ctx context.Context, now time.Time) (bool, error) {
	value, err := json.Marshal(leaseValue{Owner: l.owner, Expires: now.Add(l.ttl)})
	if err != nil {
		return false, err
	}
	e, err := l.kv.Get(ctx, l.key)
	var rev uint64
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		rev, err = l.kv.Create(ctx, l.key, value)
	case err != nil:
		return false, fmt.Errorf("read lease %s: %w", l.key, err)
	default:
		var cur leaseValue
		if e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &cur) == nil &&
			cur.Owner != l.owner && cur.Expires.After(now) {
			return false, nil // another worker holds it
		}
		rev, err = l.kv.Update(ctx, l.key, value, e.Revision())
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return false, nil // another worker took it first
	case err != nil:
		return false, fmt.Errorf("claim lease %s: %w", l.key, err)
	}
	l.revision, l.expiry, l.renewAt = rev, now.Add(l.ttl), now.Add(l.ttl/3)
	return true, nil
}

// Release gives the lease up, so another worker takes over at once rather than after the
// TTL. It is a no-op when this worker does not hold it.
func (l *Lease) Release(ctx context.Context) error {
	if !l.held {
		return nil
	}
	l.held = false
	if err := l.kv.Delete(ctx, l.key, jetstream.LastRevision(l.revision)); err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("release lease %s: %w", l.key, err)
	}
	return nil
}
