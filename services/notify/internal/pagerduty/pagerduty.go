// Package pagerduty raises, acknowledges and resolves PagerDuty alerts through the Events API
// v2. The dedup_key is the finding id, so every repeat of a finding lands on the same alert
// and resolving the finding resolves it.
//
// Answers are handled as PagerDuty documents them: 202 accepted; 400 invalid event (never
// retried: dead-lettered); 429 too many requests (back off, then retry); 5xx (retry with
// back-off).
package pagerduty

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/dest"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/refs"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/safehttp"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/secret"
)

// DefaultURL is the Events API v2 endpoint.
const DefaultURL = "https://events.pagerduty.com/v2/enqueue"

// Config configures one PagerDuty service (its Events API v2 integration).
type Config struct {
	// RoutingKey is the integration key of the service. It is a secret.
	RoutingKey secret.Ref `yaml:"routing_key"`
	// URL is the Events API endpoint (tests point it at a local server).
	URL string `yaml:"url"`
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error { return c.RoutingKey.Validate("pagerduty routing_key") }

// Destination is a PagerDuty service.
type Destination struct {
	name   string
	client *http.Client
	key    secret.Value
	url    string
	now    func() time.Time
}

var _ dest.Destination = (*Destination)(nil)

// New loads the routing key and checks the URL against the HTTP policy.
func New(name string, c Config, client *http.Client, policy safehttp.Config) (*Destination, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	key, err := c.RoutingKey.Load("pagerduty routing_key")
	if err != nil {
		return nil, err
	}
	d := &Destination{name: name, client: client, key: key, url: c.URL, now: time.Now}
	if d.url == "" {
		d.url = DefaultURL
	}
	if err := safehttp.CheckURL(policy, d.url); err != nil {
		return nil, fmt.Errorf("pagerduty %s url: %w", name, err)
	}
	return d, nil
}

func (d *Destination) Name() string    { return d.name }
func (d *Destination) Kind() dest.Kind { return dest.PagerDuty }
func (d *Destination) Close() error    { d.client.CloseIdleConnections(); return nil }

// Event is an Events API v2 event.
type Event struct {
	RoutingKey  string   `json:"routing_key"`
	EventAction string   `json:"event_action"`
	DedupKey    string   `json:"dedup_key"`
	Payload     *Payload `json:"payload,omitempty"`
	Client      string   `json:"client,omitempty"`
	ClientURL   string   `json:"client_url,omitempty"`
	Links       []Link   `json:"links,omitempty"`
}

// Payload describes the alert of a trigger event.
type Payload struct {
	Summary       string         `json:"summary"`
	Source        string         `json:"source"`
	Severity      string         `json:"severity"`
	Timestamp     string         `json:"timestamp,omitempty"`
	Component     string         `json:"component,omitempty"`
	Group         string         `json:"group,omitempty"`
	Class         string         `json:"class,omitempty"`
	CustomDetails map[string]any `json:"custom_details,omitempty"`
}

// Link is a link shown on the alert.
type Link struct {
	Href string `json:"href"`
	Text string `json:"text"`
}

// Severity maps an nhiwatch severity to PagerDuty's four.
func Severity(s events.Severity) string {
	switch s {
	case events.Severity_SEVERITY_CRITICAL:
		return "critical"
	case events.Severity_SEVERITY_HIGH:
		return "error"
	case events.Severity_SEVERITY_MEDIUM:
		return "warning"
	}
	return "info"
}

// Action is the event action a notice calls for: a new finding or a repeat triggers (a
// repeat lands on the same alert through dedup_key), an acknowledgement acknowledges,
// resolving or suppressing resolves, reopening triggers again.
func Action(n dest.Notice) string {
	if n.Kind == dest.StatusChange {
		switch n.Status.Label() {
		case "acknowledged":
			return "acknowledge"
		case "resolved", "suppressed":
			return "resolve"
		}
	}
	return "trigger"
}

// Build returns the event for a notice, without the routing key.
func Build(n dest.Notice) Event {
	f := n.Finding
	ev := Event{EventAction: Action(n), DedupKey: f.Id}
	if ev.EventAction != "trigger" {
		return ev
	}
	title := f.Title
	if title == "" {
		title = f.Detector
	}
	source := f.GetIdentity().GetId()
	if source == "" {
		source = "nhiwatch"
	}
	p := &Payload{
		Summary:       dest.Truncate(fmt.Sprintf("[%s] %s: %s", f.Severity.Label(), f.Detector, title), 1024),
		Source:        dest.Truncate(source, 255),
		Severity:      Severity(f.Severity),
		Component:     f.GetIdentity().GetName(),
		Group:         f.Account,
		Class:         f.Detector,
		CustomDetails: details(n),
	}
	if f.TimeUnixNano > 0 {
		p.Timestamp = time.Unix(0, f.TimeUnixNano).UTC().Format(time.RFC3339Nano)
	}
	ev.Payload = p
	ev.Client = "nhiwatch"
	if n.Link != "" {
		ev.ClientURL = n.Link
		ev.Links = append(ev.Links, Link{Href: n.Link, Text: "nhiwatch finding " + f.Id})
	}
	for _, id := range f.OwaspNhi {
		ev.Links = append(ev.Links, Link{Href: refs.OWASPURL(id), Text: "OWASP " + refs.Label(id)})
	}
	for _, id := range f.MitreAttack {
		ev.Links = append(ev.Links, Link{Href: refs.MITREURL(id), Text: "MITRE ATT&CK " + refs.Label(id)})
	}
	return ev
}

func details(n dest.Notice) map[string]any {
	f := n.Finding
	d := map[string]any{
		"finding_id": f.Id,
		"detector":   f.Detector,
		"severity":   f.Severity.Label(),
		"identity":   f.GetIdentity().GetId(),
		"status":     n.Status.Label(),
	}
	put := func(k, v string) {
		if v != "" {
			d[k] = v
		}
	}
	put("identity_kind", f.GetIdentity().GetKind().Label())
	put("credential", f.GetCredential().GetId())
	put("owner", f.Owner)
	put("team", f.Team)
	put("provider", f.Provider.Label())
	put("account", f.Account)
	put("region", f.Region)
	put("cause", f.Cause)
	put("grantee", f.Grantee)
	put("summary", f.Summary)
	put("recommendation", f.Recommendation)
	if f.Owner == "" {
		d["owner"] = "none (an NHI without an owner)"
	}
	if len(f.PermissionsAdded) > 0 {
		d["permissions_added"] = f.PermissionsAdded
	}
	if len(f.OwaspNhi) > 0 {
		d["owasp_nhi"] = f.OwaspNhi
	}
	if len(f.MitreAttack) > 0 {
		d["mitre_attack"] = f.MitreAttack
	}
	if n.Seen > 1 {
		d["times_seen"] = n.Seen
	}
	var evidence []string
	for i, e := range f.Evidence {
		if i == 10 {
			evidence = append(evidence, fmt.Sprintf("… and %d more", len(f.Evidence)-10))
			break
		}
		evidence = append(evidence, evidenceLine(e))
	}
	if len(evidence) > 0 {
		d["evidence"] = evidence
	}
	return d
}

func evidenceLine(e *events.Evidence) string {
	var parts []string
	if e.TimeUnixNano > 0 {
		parts = append(parts, time.Unix(0, e.TimeUnixNano).UTC().Format(time.RFC3339))
	}
	for _, s := range []string{e.Action, e.Permission, e.Ip, e.Region, e.UserAgent, e.EventId} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	keys := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, k+"="+e.Fields[k])
	}
	return dest.Truncate(strings.Join(parts, " "), 1024)
}

// response is the Events API answer.
type response struct {
	Status   string   `json:"status"`
	Message  string   `json:"message"`
	DedupKey string   `json:"dedup_key"`
	Errors   []string `json:"errors"`
}

// Deliver sends the event the notice calls for.
func (d *Destination) Deliver(ctx context.Context, n dest.Notice) (dest.Receipt, error) {
	ev := Build(n)
	ev.RoutingKey = d.key.Reveal()
	body, err := json.Marshal(ev)
	if err != nil {
		return dest.Receipt{}, dest.Permanent(fmt.Errorf("pagerduty: encode event: %w", err))
	}
	req, err := http.NewRequest(http.MethodPost, d.url, bytes.NewReader(body))
	if err != nil {
		return dest.Receipt{}, dest.Permanent(errors.New("pagerduty: bad url"))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := safehttp.Do(ctx, d.client, req)
	if err != nil {
		return dest.Receipt{}, fmt.Errorf("pagerduty %s: %w", ev.EventAction, err)
	}
	defer resp.Body.Close()
	var r response
	_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&r)
	what := "pagerduty " + ev.EventAction
	if err := dest.HTTPStatus(what, resp, d.now()); err != nil {
		if resp.StatusCode == http.StatusBadRequest {
			return dest.Receipt{}, dest.Permanent(fmt.Errorf("%s: HTTP 400 %s", what, d.scrub(r.Message, r.Errors)))
		}
		return dest.Receipt{}, err
	}
	key := r.DedupKey
	if key == "" {
		key = ev.DedupKey
	}
	return dest.Receipt{DedupKey: key}, nil
}

// scrub renders PagerDuty's explanation of a 400 without the routing key, should the answer
// quote it, and bounded in length.
func (d *Destination) scrub(msg string, errs []string) string {
	s := strings.TrimSpace(msg + ": " + strings.Join(errs, "; "))
	s = strings.ReplaceAll(s, d.key.Reveal(), secret.Redacted)
	return dest.Truncate(s, 300)
}
