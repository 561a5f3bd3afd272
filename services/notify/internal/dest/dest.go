// Package dest defines what every notify destination implements (Slack, PagerDuty, Kafka,
// webhooks, the terminal), the notices they deliver, and how their failures are classified:
// permanent (dead-letter at once), rate-limited (wait as long as the receiver asked) or
// transient (retry with back-off).
package dest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

// Kind is the type of a destination.
type Kind string

// Destination kinds.
const (
	Slack     Kind = "slack"
	PagerDuty Kind = "pagerduty"
	Kafka     Kind = "kafka"
	Webhook   Kind = "webhook"
	Terminal  Kind = "terminal"
)

// Alerting reports whether the kind raises alerts for people: those are folded (one alert per
// finding, repeats become updates) and silenced by suppressions. The others forward every
// finding and every status change to another system.
func (k Kind) Alerting() bool { return k == Slack || k == PagerDuty || k == Terminal }

// NoticeKind says why a destination is called.
type NoticeKind int

// Notice kinds.
const (
	// New is the first delivery of a finding to the destination.
	New NoticeKind = iota + 1
	// Repeat is a finding seen again: an update of the alert already raised.
	Repeat
	// StatusChange follows a triage change (acknowledged, resolved, suppressed, reopened).
	StatusChange
)

func (k NoticeKind) String() string {
	switch k {
	case New:
		return "new"
	case Repeat:
		return "repeat"
	case StatusChange:
		return "status"
	}
	return "unknown"
}

// Status is the triage state shown with a finding.
type Status struct {
	// Status is open, acknowledged, resolved or suppressed.
	Status string
	By     string
	Reason string
	At     time.Time
	// Until is when a suppression ends.
	Until time.Time
}

// Label is the status, "open" when unset.
func (s Status) Label() string {
	if s.Status == "" {
		return "open"
	}
	return s.Status
}

// Receipt identifies an alert a destination raised, so that a later update reaches it. It is
// kept in the alert ledger.
type Receipt struct {
	// Channel and TS identify a Slack message posted with chat.postMessage.
	Channel string `json:"channel,omitempty"`
	TS      string `json:"ts,omitempty"`
	// DedupKey is the PagerDuty alert's key (the finding id).
	DedupKey string `json:"dedup_key,omitempty"`
}

// Notice is one delivery to one destination.
type Notice struct {
	Kind    NoticeKind
	Finding *events.Finding
	Status  Status
	// Receipt of the alert raised before (Repeat and StatusChange).
	Receipt Receipt
	// Seen is how often the finding arrived; LastSeen when it last did.
	Seen     int
	LastSeen time.Time
	// Revision is unique per delivery of the same finding (a stream or KV sequence):
	// idempotency keys and OCSF metadata.uid carry it.
	Revision uint64
	// Link is the finding's URL in nhiwatch, when configured.
	Link string
}

// Destination delivers notices. Deliver is called by one worker at a time per destination;
// it must honour ctx and classify its failures with Permanent and RateLimited.
type Destination interface {
	Name() string
	Kind() Kind
	// Deliver sends n and returns the receipt of the alert (the one given for updates).
	Deliver(ctx context.Context, n Notice) (Receipt, error)
	// Close releases connections.
	Close() error
}

// Error classifies a delivery failure.
type Error struct {
	Err       error
	permanent bool
	// RetryAfter is how long the receiver asked to wait (HTTP 429 Retry-After).
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Permanent marks a failure no retry can fix: a 400, an invalid token, an unknown channel.
func Permanent(err error) error { return &Error{Err: err, permanent: true} }

// RateLimited marks a failure the receiver wants retried after d.
func RateLimited(err error, d time.Duration) error { return &Error{Err: err, RetryAfter: d} }

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.permanent
}

// RetryAfter returns the wait a receiver asked for, or 0.
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// ParseRetryAfter reads a Retry-After header: delay seconds or an HTTP date. It returns
// fallback when the header is missing or unreadable, and caps the wait at 15 minutes.
func ParseRetryAfter(h string, now time.Time, fallback time.Duration) time.Duration {
	d := fallback
	if h != "" {
		if secs, err := strconv.Atoi(h); err == nil && secs >= 0 {
			d = time.Duration(secs) * time.Second
		} else if t, err := http.ParseTime(h); err == nil {
			d = t.Sub(now)
		}
	}
	if d < 0 {
		d = 0
	}
	if d > 15*time.Minute {
		d = 15 * time.Minute
	}
	return d
}

// HTTPStatus classifies an HTTP answer by its status code as receivers document it: 2xx is
// success (nil); 429 is rate-limited (Retry-After honoured); 408, 425 and 5xx are transient;
// every other 4xx is permanent. what names the request ("slack chat.postMessage").
func HTTPStatus(what string, resp *http.Response, now time.Time) error {
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusTooManyRequests:
		return RateLimited(fmt.Errorf("%s: HTTP 429 rate limited", what), ParseRetryAfter(resp.Header.Get("Retry-After"), now, 5*time.Second))
	case code == http.StatusRequestTimeout || code == http.StatusTooEarly || code >= 500:
		return fmt.Errorf("%s: HTTP %d", what, code)
	}
	return Permanent(fmt.Errorf("%s: HTTP %d", what, code))
}

// Truncate cuts s to at most n bytes on a rune boundary, marking the cut with an ellipsis:
// receivers refuse fields over their limits (Slack blocks, PagerDuty summaries).
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
