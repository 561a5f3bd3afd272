// Package ledger is notify's alert ledger in the NATS KV bucket NHI_ALERTS: one entry per
// finding and destination that records what was delivered (the Slack message, the PagerDuty
// dedup key), up to which NHI_FINDINGS sequence and status revision, and how often the
// finding was seen. It is what makes an alert happen once: an entry is written before the
// finding is acknowledged on JetStream, and a redelivered finding whose sequence the entry
// already covers is skipped.
package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/dest"
)

// States of an entry.
const (
	// Sending: a delivery started and has not been confirmed. A redelivery sends again.
	Sending = "sending"
	// Sent: the destination has the finding.
	Sent = "sent"
	// DeadLettered: the destination refused it for good; it is in NHI_DLQ.
	DeadLettered = "dead_lettered"
)

// Entry is what one destination received of one finding.
type Entry struct {
	FindingID   string       `json:"finding_id"`
	Destination string       `json:"destination"`
	State       string       `json:"state"`
	Receipt     dest.Receipt `json:"receipt,omitzero"`
	// Seq is the highest NHI_FINDINGS stream sequence handled; Handled the most recent
	// sequences handled (several workers may handle versions of a finding out of order).
	Seq     uint64   `json:"seq"`
	Handled []uint64 `json:"handled,omitempty"`
	// StatusRev is the highest triage status revision delivered, Status its label.
	StatusRev uint64 `json:"status_rev,omitempty"`
	Status    string `json:"status,omitempty"`
	// Seen counts the arrivals of the finding; Pending marks repeats not shown yet.
	Seen       int       `json:"seen"`
	Pending    bool      `json:"pending,omitempty"`
	FirstSent  time.Time `json:"first_sent,omitzero"`
	LastUpdate time.Time `json:"last_update,omitzero"`
	LastSeen   time.Time `json:"last_seen,omitzero"`
	// Finding is the latest version (protobuf), to render updates after a restart.
	Finding []byte `json:"finding,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Revision is the entry's KV revision, for compare-and-set; 0 for a new entry.
	Revision uint64 `json:"-"`
}

// maxHandled bounds Entry.Handled.
const maxHandled = 32

// Covers reports whether the message with stream sequence seq was handled.
func (e *Entry) Covers(seq uint64) bool {
	for _, s := range e.Handled {
		if s == seq {
			return true
		}
	}
	return false
}

// MarkHandled records seq as handled.
func (e *Entry) MarkHandled(seq uint64) {
	if e.Covers(seq) {
		return
	}
	e.Handled = append(e.Handled, seq)
	if len(e.Handled) > maxHandled {
		e.Handled = e.Handled[len(e.Handled)-maxHandled:]
	}
	if seq > e.Seq {
		e.Seq = seq
	}
}

// Ledger reads and writes entries. It is safe for concurrent use.
type Ledger struct {
	kv jetstream.KeyValue
}

// DestinationName restricts destination names to what a KV key token allows.
var DestinationName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ErrConflict is returned when another writer changed the entry first.
var ErrConflict = errors.New("alert ledger entry changed concurrently")

// Open creates the bucket when missing. Entries expire after ttl (at least the findings
// stream's retention, so a redelivered finding always finds its entry).
func Open(ctx context.Context, js jetstream.JetStream, sc streams.Config, ttl time.Duration) (*Ledger, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      events.BucketAlerts,
		Description: "notify alert ledger: what each destination received of each finding",
		History:     1,
		TTL:         ttl,
		Storage:     jetstream.FileStorage,
		Replicas:    sc.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure bucket %s: %w", events.BucketAlerts, err)
	}
	return &Ledger{kv: kv}, nil
}

// Key is the entry's KV key.
func Key(findingID, destination string) string { return "a." + findingID + "." + destination }

// Get returns the entry, and whether it exists.
func (l *Ledger) Get(ctx context.Context, findingID, destination string) (Entry, bool, error) {
	e, err := l.kv.Get(ctx, Key(findingID, destination))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Entry{FindingID: findingID, Destination: destination}, false, nil
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("alert ledger: read: %w", err)
	}
	var out Entry
	if err := json.Unmarshal(e.Value(), &out); err != nil {
		// A corrupt entry is replaced rather than blocking the finding forever.
		return Entry{FindingID: findingID, Destination: destination, Revision: e.Revision()}, false, nil
	}
	out.Revision = e.Revision()
	return out, true, nil
}

// Put writes e if nobody changed it since it was read, and updates e.Revision.
func (l *Ledger) Put(ctx context.Context, e *Entry) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	key := Key(e.FindingID, e.Destination)
	var rev uint64
	if e.Revision == 0 {
		rev, err = l.kv.Create(ctx, key, data)
	} else {
		rev, err = l.kv.Update(ctx, key, data, e.Revision)
	}
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.Is(err, jetstream.ErrKeyExists) || errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			return ErrConflict
		}
		return fmt.Errorf("alert ledger: write: %w", err)
	}
	e.Revision = rev
	return nil
}

// ForFinding returns the entries of every destination that has the finding.
func (l *Ledger) ForFinding(ctx context.Context, findingID string) ([]Entry, error) {
	lister, err := l.kv.ListKeysFiltered(ctx, "a."+findingID+".*")
	if err != nil {
		return nil, fmt.Errorf("alert ledger: list: %w", err)
	}
	var out []Entry
	for key := range lister.Keys() {
		name := strings.TrimPrefix(key, "a."+findingID+".")
		e, ok, err := l.Get(ctx, findingID, name)
		if err != nil {
			_ = lister.Stop()
			return nil, err
		}
		if ok {
			out = append(out, e)
		}
	}
	return out, nil
}
