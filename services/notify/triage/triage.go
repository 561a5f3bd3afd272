// Package triage keeps the status of findings — open, acknowledged, resolved, suppressed —
// and who changed it, when and why. The status lives in the NATS KV bucket
// NHI_FINDING_STATUS (one key per finding, with history), which is the source of truth;
// notify copies every change to ClickHouse (finding_status, finding_status_log) and acts on
// it (PagerDuty resolve, Slack message update). A suppression also silences new findings of
// the same identity and cause until it expires.
//
// Store reads and changes it directly (nhiwatch findings with a configuration file, the
// notify HTTP API); Client does the same through the HTTP API.
package triage

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

// Statuses.
const (
	StatusOpen         = "open"
	StatusAcknowledged = "acknowledged"
	StatusResolved     = "resolved"
	StatusSuppressed   = "suppressed"
)

// Limits of a change.
const (
	MaxReasonLen    = 1000
	MaxSuppressSpan = 366 * 24 * time.Hour
)

// Errors callers branch on.
var (
	ErrNotFound = errors.New("finding not found")
	ErrInvalid  = errors.New("invalid change")
)

// Status is the triage state of one finding after a change.
type Status struct {
	FindingID string `json:"finding_id"`
	Status    string `json:"status"`
	Previous  string `json:"previous,omitempty"`
	Reason    string `json:"reason,omitempty"`
	// By is the user who made the change; Via how they authenticated (token, certificate,
	// cli).
	By  string    `json:"by,omitempty"`
	Via string    `json:"via,omitempty"`
	At  time.Time `json:"at,omitzero"`
	// Until is when a suppression ends.
	Until time.Time `json:"until,omitzero"`
	// IdentityID and Cause are the finding's, for suppressions.
	IdentityID string `json:"identity_id,omitempty"`
	Cause      string `json:"cause,omitempty"`
	// Revision is the KV revision of the change (0: never changed); it orders changes.
	Revision uint64 `json:"revision,omitempty"`
}

// Label returns the status, open when unset.
func (s Status) Label() string {
	if s.Status == "" {
		return StatusOpen
	}
	return s.Status
}

// Active reports whether a suppression is in force at now.
func (s Status) Active(now time.Time) bool {
	return s.Status == StatusSuppressed && now.Before(s.Until)
}

// Change is a request to change a finding's status.
type Change struct {
	FindingID string    `json:"-"`
	To        string    `json:"-"`
	Reason    string    `json:"reason"`
	Until     time.Time `json:"until,omitzero"`
	// For is the suppression's length, an alternative to Until ("7d", "12h").
	For string `json:"for,omitempty"`
	By  string `json:"-"`
	Via string `json:"-"`
}

var findingIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// ValidFindingID reports whether id can be a finding id (and a KV key token).
func ValidFindingID(id string) bool { return findingIDRE.MatchString(id) }

// Validate checks a change at now and fills Until from For.
func (c *Change) Validate(now time.Time) error {
	if !ValidFindingID(c.FindingID) {
		return fmt.Errorf("%w: finding id must be 1-128 letters, digits, - or _", ErrInvalid)
	}
	switch c.To {
	case StatusOpen, StatusAcknowledged, StatusResolved, StatusSuppressed:
	default:
		return fmt.Errorf("%w: unknown status %q", ErrInvalid, c.To)
	}
	c.Reason = strings.TrimSpace(c.Reason)
	switch {
	case c.Reason == "":
		return fmt.Errorf("%w: a reason is required", ErrInvalid)
	case len(c.Reason) > MaxReasonLen || !utf8.ValidString(c.Reason):
		return fmt.Errorf("%w: the reason must be valid UTF-8 of at most %d bytes", ErrInvalid, MaxReasonLen)
	case strings.TrimSpace(c.By) == "":
		return fmt.Errorf("%w: the change has no author", ErrInvalid)
	}
	if strings.ContainsAny(c.Reason, "\x00\r") {
		return fmt.Errorf("%w: the reason has control characters", ErrInvalid)
	}
	if c.To != StatusSuppressed {
		if !c.Until.IsZero() || c.For != "" {
			return fmt.Errorf("%w: only a suppression has an expiry", ErrInvalid)
		}
		return nil
	}
	if c.For != "" {
		if !c.Until.IsZero() {
			return fmt.Errorf("%w: give until or for, not both", ErrInvalid)
		}
		d, err := ParseDuration(c.For)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		c.Until = now.Add(d)
	}
	switch {
	case c.Until.IsZero():
		return fmt.Errorf("%w: a suppression needs an expiry (until or for)", ErrInvalid)
	case !c.Until.After(now):
		return fmt.Errorf("%w: the suppression's expiry is in the past", ErrInvalid)
	case c.Until.Sub(now) > MaxSuppressSpan:
		return fmt.Errorf("%w: a suppression lasts at most %d days", ErrInvalid, int(MaxSuppressSpan.Hours()/24))
	}
	c.Until = c.Until.UTC().Truncate(time.Second)
	return nil
}

// ParseDuration reads a Go duration or a number of days ("7d").
func ParseDuration(s string) (time.Duration, error) {
	if strings.HasSuffix(s, "d") {
		var days int
		if _, err := fmt.Sscanf(s, "%dd", &days); err == nil && fmt.Sprintf("%dd", days) == s && days > 0 {
			return time.Duration(days) * 24 * time.Hour, nil
		}
		return 0, fmt.Errorf("bad duration %q", s)
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("bad duration %q (use 12h, 7d, …)", s)
	}
	return d, nil
}

// Keys of the status bucket.
const (
	statusPrefix   = "finding."
	suppressPrefix = "suppress."
)

// StatusKey is the KV key of a finding's status.
func StatusKey(findingID string) string { return statusPrefix + findingID }

// FindingIDOfKey returns the finding id of a status key, or "".
func FindingIDOfKey(key string) string {
	if id, ok := strings.CutPrefix(key, statusPrefix); ok && ValidFindingID(id) {
		return id
	}
	return ""
}

// SuppressionKey is the KV key of the suppression of an identity and cause.
func SuppressionKey(identityID, cause string) string {
	h := sha256.New()
	h.Write([]byte(identityID))
	h.Write([]byte{0})
	h.Write([]byte(cause))
	return suppressPrefix + hex.EncodeToString(h.Sum(nil)[:16])
}

// StatusSubjects is the KV stream subject filter of status changes.
func StatusSubjects() string { return "$KV." + events.BucketFindingStatus + "." + statusPrefix + ">" }

// DecodeStatus parses a stored status.
func DecodeStatus(data []byte) (Status, error) {
	var s Status
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("%w: status: %v", events.ErrMalformed, err)
	}
	if !ValidFindingID(s.FindingID) {
		return s, fmt.Errorf("%w: status without a valid finding id", events.ErrMalformed)
	}
	return s, nil
}
