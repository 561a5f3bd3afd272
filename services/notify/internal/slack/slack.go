// Package slack posts findings to Slack as Block Kit messages an analyst can act on, through
// an incoming webhook or a bot token (chat.postMessage), and keeps them current: a repeat or
// a triage change edits the message (chat.update) instead of posting another.
//
// It follows Slack's documented behaviour: about one message per second per channel (a
// token-bucket per channel, shared by every destination posting there), HTTP 429 with
// Retry-After honoured and the channel paused for that long, and Web API answers that are
// HTTP 200 with "ok": false classified by their error code.
package slack

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/nhiwatch/nhiwatch/services/notify/internal/dest"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/safehttp"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/secret"
)

// DefaultAPIURL is Slack's Web API.
const DefaultAPIURL = "https://slack.com/api"

// Config configures one Slack destination: a webhook, or a bot token and a channel.
type Config struct {
	// WebhookURL is an incoming webhook (it names its channel). Its URL is a secret.
	WebhookURL secret.Ref `yaml:"webhook_url"`
	// Token is a bot token (xoxb-…) with chat:write, used with Channel.
	Token   secret.Ref `yaml:"token"`
	Channel string     `yaml:"channel"`
	// APIURL is the Web API base URL (tests point it at a local server).
	APIURL string `yaml:"api_url"`
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	switch {
	case c.WebhookURL.IsSet() && c.Token.IsSet():
		return errors.New("slack: set webhook_url or token, not both")
	case c.WebhookURL.IsSet():
		return c.WebhookURL.Validate("slack webhook_url")
	case c.Token.IsSet():
		if c.Channel == "" {
			return errors.New("slack: token needs a channel")
		}
		return c.Token.Validate("slack token")
	}
	return errors.New("slack: webhook_url or token is required")
}

// Limiters paces messages per channel and pauses a channel that Slack rate-limited. One
// value is shared by every Slack destination of a process. It is safe for concurrent use.
type Limiters struct {
	perSecond float64
	mu        sync.Mutex
	channels  map[string]*channelLimit
}

type channelLimit struct {
	lim    *rate.Limiter
	paused time.Time
}

// NewLimiters allows perSecond messages per channel, with bursts of one.
func NewLimiters(perSecond float64) *Limiters {
	if perSecond <= 0 {
		perSecond = 1
	}
	return &Limiters{perSecond: perSecond, channels: map[string]*channelLimit{}}
}

func (l *Limiters) get(key string) *channelLimit {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.channels[key]
	if !ok {
		c = &channelLimit{lim: rate.NewLimiter(rate.Limit(l.perSecond), 1)}
		l.channels[key] = c
	}
	return c
}

// Wait blocks until a message may go to the channel.
func (l *Limiters) Wait(ctx context.Context, key string) error {
	c := l.get(key)
	l.mu.Lock()
	pause := time.Until(c.paused)
	l.mu.Unlock()
	if pause > 0 {
		t := time.NewTimer(pause)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return c.lim.Wait(ctx)
}

// Pause holds the channel for d, as a 429's Retry-After asks.
func (l *Limiters) Pause(key string, d time.Duration) {
	c := l.get(key)
	l.mu.Lock()
	defer l.mu.Unlock()
	if until := time.Now().Add(d); until.After(c.paused) {
		c.paused = until
	}
}

// Destination is a Slack channel.
type Destination struct {
	name     string
	client   *http.Client
	limiters *Limiters
	webhook  secret.Value
	token    secret.Value
	channel  string
	apiURL   string
	// key identifies the channel to the limiters without revealing the webhook URL.
	key string
	now func() time.Time
}

var _ dest.Destination = (*Destination)(nil)

// New loads the secrets and checks the URLs against the HTTP policy.
func New(name string, c Config, client *http.Client, policy safehttp.Config, limiters *Limiters) (*Destination, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	d := &Destination{name: name, client: client, limiters: limiters, channel: c.Channel, apiURL: c.APIURL, now: time.Now}
	if d.apiURL == "" {
		d.apiURL = DefaultAPIURL
	}
	var err error
	if c.WebhookURL.IsSet() {
		if d.webhook, err = c.WebhookURL.Load("slack webhook_url"); err != nil {
			return nil, err
		}
		if err := safehttp.CheckURL(policy, d.webhook.Reveal()); err != nil {
			return nil, fmt.Errorf("slack %s webhook_url: %w", name, err)
		}
		sum := sha256.Sum256([]byte(d.webhook.Reveal()))
		d.key = "webhook:" + hex.EncodeToString(sum[:8])
	} else {
		if d.token, err = c.Token.Load("slack token"); err != nil {
			return nil, err
		}
		if err := safehttp.CheckURL(policy, d.apiURL); err != nil {
			return nil, fmt.Errorf("slack %s api_url: %w", name, err)
		}
		d.key = "channel:" + c.Channel
	}
	return d, nil
}

func (d *Destination) Name() string    { return d.name }
func (d *Destination) Kind() dest.Kind { return dest.Slack }
func (d *Destination) Close() error    { d.client.CloseIdleConnections(); return nil }

// Deliver posts a new message, or edits the one posted before. With a webhook, which cannot
// edit, an update is a short follow-up message.
func (d *Destination) Deliver(ctx context.Context, n dest.Notice) (dest.Receipt, error) {
	msg := Render(n)
	if !d.webhook.IsZero() {
		if n.Kind != dest.New {
			msg = followUp(n, msg)
		}
		return dest.Receipt{}, d.postWebhook(ctx, msg)
	}
	if n.Kind != dest.New && n.Receipt.TS != "" {
		return n.Receipt, d.update(ctx, n.Receipt, msg)
	}
	return d.postMessage(ctx, msg)
}

// followUp is the message a webhook posts for an update: the status line and the count.
func followUp(n dest.Notice, full Message) Message {
	f := n.Finding
	line := fmt.Sprintf("Update on finding `%s` (%s): %s", esc(f.Id), esc(f.Title), statusText(n.Status))
	if n.Kind == dest.Repeat && n.Seen > 1 {
		line += fmt.Sprintf(" · seen %d times, last %s", n.Seen, slackDate(n.LastSeen))
	}
	return Message{Text: full.Text, Blocks: []Block{section(dest.Truncate(line, maxSection))}}
}

func (d *Destination) postWebhook(ctx context.Context, msg Message) error {
	body, err := json.Marshal(msg)
	if err != nil {
		return dest.Permanent(fmt.Errorf("slack: encode message: %w", err))
	}
	if err := d.limiters.Wait(ctx, d.key); err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, d.webhook.Reveal(), bytes.NewReader(body))
	if err != nil {
		return dest.Permanent(errors.New("slack webhook: bad URL"))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := safehttp.Do(ctx, d.client, req)
	if err != nil {
		return fmt.Errorf("slack webhook: %w", err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if err := dest.HTTPStatus("slack webhook", resp, d.now()); err != nil {
		if wait := dest.RetryAfter(err); wait > 0 {
			d.limiters.Pause(d.key, wait)
		}
		// Slack answers webhook errors with a short code: invalid_payload, channel_not_found, …
		return fmt.Errorf("%w (%s)", err, errorCode(string(text)))
	}
	return nil
}

// apiResponse is the envelope of every Web API answer.
type apiResponse struct {
	OK      bool   `json:"ok"`
	Error   string `json:"error"`
	Channel string `json:"channel"`
	TS      string `json:"ts"`
}

type postMessage struct {
	Channel     string  `json:"channel"`
	TS          string  `json:"ts,omitempty"`
	Text        string  `json:"text"`
	Blocks      []Block `json:"blocks"`
	UnfurlLinks bool    `json:"unfurl_links"`
	UnfurlMedia bool    `json:"unfurl_media"`
}

func (d *Destination) postMessage(ctx context.Context, msg Message) (dest.Receipt, error) {
	r, err := d.call(ctx, "chat.postMessage", postMessage{Channel: d.channel, Text: msg.Text, Blocks: msg.Blocks})
	if err != nil {
		return dest.Receipt{}, err
	}
	if r.TS == "" {
		return dest.Receipt{}, errors.New("slack chat.postMessage: answer has no ts")
	}
	ch := r.Channel
	if ch == "" {
		ch = d.channel
	}
	return dest.Receipt{Channel: ch, TS: r.TS}, nil
}

func (d *Destination) update(ctx context.Context, rc dest.Receipt, msg Message) error {
	ch := rc.Channel
	if ch == "" {
		ch = d.channel
	}
	_, err := d.call(ctx, "chat.update", postMessage{Channel: ch, TS: rc.TS, Text: msg.Text, Blocks: msg.Blocks})
	return err
}

// call invokes a Web API method with a JSON body and classifies the answer.
func (d *Destination) call(ctx context.Context, method string, payload any) (apiResponse, error) {
	var r apiResponse
	body, err := json.Marshal(payload)
	if err != nil {
		return r, dest.Permanent(fmt.Errorf("slack %s: encode: %w", method, err))
	}
	if err := d.limiters.Wait(ctx, d.key); err != nil {
		return r, err
	}
	req, err := http.NewRequest(http.MethodPost, d.apiURL+"/"+method, bytes.NewReader(body))
	if err != nil {
		return r, dest.Permanent(fmt.Errorf("slack %s: bad api_url", method))
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Authorization", "Bearer "+d.token.Reveal())
	resp, err := safehttp.Do(ctx, d.client, req)
	if err != nil {
		return r, fmt.Errorf("slack %s: %w", method, err)
	}
	defer resp.Body.Close()
	if err := dest.HTTPStatus("slack "+method, resp, d.now()); err != nil {
		if wait := dest.RetryAfter(err); wait > 0 {
			d.limiters.Pause(d.key, wait)
		}
		return r, err
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&r); err != nil {
		return r, fmt.Errorf("slack %s: unreadable answer: %w", method, err)
	}
	if !r.OK {
		return r, classify(method, r.Error, resp.Header.Get("Retry-After"), d)
	}
	return r, nil
}

// transientErrors are Web API error codes worth retrying; every other code (invalid_auth,
// channel_not_found, not_in_channel, is_archived, invalid_blocks, msg_too_long,
// message_not_found, cant_update_message, token_revoked, missing_scope, …) needs a person
// to fix something and is dead-lettered at once.
var transientErrors = map[string]bool{
	"internal_error":      true,
	"fatal_error":         true,
	"service_unavailable": true,
	"request_timeout":     true,
	"ratelimited":         true,
	"rate_limited":        true,
}

func classify(method, code, retryAfter string, d *Destination) error {
	code = errorCode(code)
	err := fmt.Errorf("slack %s: %s", method, code)
	switch {
	case code == "ratelimited" || code == "rate_limited":
		wait := dest.ParseRetryAfter(retryAfter, d.now(), 5*time.Second)
		d.limiters.Pause(d.key, wait)
		return dest.RateLimited(err, wait)
	case transientErrors[code]:
		return err
	}
	return dest.Permanent(err)
}

// errorCode keeps an error code printable and short: it goes into logs and dead-letter
// headers.
func errorCode(s string) string {
	var b []byte
	for i := 0; i < len(s) && len(b) < 64; i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' {
			b = append(b, c)
		}
	}
	if len(b) == 0 {
		return "unknown_error"
	}
	return string(b)
}
