// Package webhook forwards findings to any HTTPS receiver (a SOAR, a SIEM collector, a
// ticketing bridge) as OCSF Detection Finding JSON, signed so the receiver can tell the
// request came from nhiwatch and was not replayed.
//
// Every request carries:
//
//	X-Nhiwatch-Timestamp: Unix seconds when it was signed
//	X-Nhiwatch-Signature: v1=hex(HMAC-SHA256(secret, timestamp + "." + body))
//	X-Nhiwatch-Delivery:  <finding id>:<destination>:<revision>, the same on every retry
//
// A receiver recomputes the signature over the raw body, compares it in constant time, and
// refuses timestamps more than a few minutes old (Verify does all three).
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nhiwatch/nhiwatch/services/notify/internal/dest"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/ocsf"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/safehttp"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/secret"
)

// Header names.
const (
	HeaderTimestamp = "X-Nhiwatch-Timestamp"
	HeaderSignature = "X-Nhiwatch-Signature"
	HeaderDelivery  = "X-Nhiwatch-Delivery"
	HeaderEvent     = "X-Nhiwatch-Event"
)

// Config configures a webhook receiver.
type Config struct {
	// URL of the receiver; a secret, since receivers often put a token in it.
	URL secret.Ref `yaml:"url"`
	// Secret is the HMAC-SHA256 key shared with the receiver.
	Secret secret.Ref `yaml:"secret"`
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if err := c.URL.Validate("webhook url"); err != nil {
		return err
	}
	return c.Secret.Validate("webhook secret")
}

// Destination is a webhook receiver.
type Destination struct {
	name    string
	client  *http.Client
	url     secret.Value
	key     secret.Value
	product ocsf.Product
	now     func() time.Time
}

var _ dest.Destination = (*Destination)(nil)

// New loads the URL and the key and checks the URL against the HTTP policy.
func New(name string, c Config, client *http.Client, policy safehttp.Config, product ocsf.Product) (*Destination, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	d := &Destination{name: name, client: client, product: product, now: time.Now}
	var err error
	if d.url, err = c.URL.Load("webhook url"); err != nil {
		return nil, err
	}
	if d.key, err = c.Secret.Load("webhook secret"); err != nil {
		return nil, err
	}
	if len(d.key.Reveal()) < 16 {
		return nil, fmt.Errorf("webhook %s: the secret must be at least 16 bytes", name)
	}
	if err := safehttp.CheckURL(policy, d.url.Reveal()); err != nil {
		return nil, fmt.Errorf("webhook %s url: %w", name, err)
	}
	return d, nil
}

func (d *Destination) Name() string    { return d.name }
func (d *Destination) Kind() dest.Kind { return dest.Webhook }
func (d *Destination) Close() error    { d.client.CloseIdleConnections(); return nil }

// Sign returns the signature header value of body at ts.
func Sign(key []byte, ts int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// Errors of Verify.
var (
	ErrBadSignature = errors.New("webhook signature does not match")
	ErrStale        = errors.New("webhook timestamp outside the tolerance")
)

// Verify checks a request's timestamp and signature headers against body, for receivers.
func Verify(key []byte, timestamp, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return ErrStale
	}
	want := Sign(key, ts, body)
	if !hmac.Equal([]byte(want), []byte(strings.TrimSpace(signature))) {
		return ErrBadSignature
	}
	return nil
}

// Deliver posts the finding as OCSF JSON.
func (d *Destination) Deliver(ctx context.Context, n dest.Notice) (dest.Receipt, error) {
	now := d.now()
	body, err := ocsf.Notice(d.product, n, now)
	if err != nil {
		return dest.Receipt{}, dest.Permanent(err)
	}
	req, err := http.NewRequest(http.MethodPost, d.url.Reveal(), bytes.NewReader(body))
	if err != nil {
		return dest.Receipt{}, dest.Permanent(errors.New("webhook: bad url"))
	}
	ts := now.Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "nhiwatch-notify")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign([]byte(d.key.Reveal()), ts, body))
	req.Header.Set(HeaderDelivery, fmt.Sprintf("%s:%s:%d", n.Finding.GetId(), d.name, n.Revision))
	req.Header.Set(HeaderEvent, "finding."+n.Kind.String())
	resp, err := safehttp.Do(ctx, d.client, req)
	if err != nil {
		return dest.Receipt{}, fmt.Errorf("webhook: %w", err)
	}
	resp.Body.Close()
	return dest.Receipt{}, dest.HTTPStatus("webhook", resp, now)
}
