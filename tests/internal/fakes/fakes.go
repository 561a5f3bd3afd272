// Package fakes runs the receivers notify alerts, for the fault tests: a Slack Web API
// (chat.postMessage, chat.update) and a PagerDuty Events API v2, each a local HTTP server
// that answers as the real one documents and counts what it received per finding, so a test
// can demand one alert per finding however often notify was killed. Every request body is
// kept for the planted-secret scan.
package fakes

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync"
)

// Slack is a fake Slack Web API for one bot token and one channel.
type Slack struct {
	*httptest.Server
	token, channel string

	mu      sync.Mutex
	posts   map[string]int // finding id → chat.postMessage calls
	updates int
	bodies  [][]byte
	ts      int
}

// slackFinding finds the finding id in a message: its context block reads
// "finding `<id>` · nhiwatch".
var slackFinding = regexp.MustCompile("finding `([^`]+)`")

// NewSlack starts a Slack that accepts token and posts to channel.
func NewSlack(token, channel string) *Slack {
	s := &Slack{token: token, channel: channel, posts: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/chat.postMessage", func(w http.ResponseWriter, r *http.Request) { s.chat(w, r, true) })
	mux.HandleFunc("POST /api/chat.update", func(w http.ResponseWriter, r *http.Request) { s.chat(w, r, false) })
	s.Server = httptest.NewServer(mux)
	return s
}

// APIURL is the Web API base URL to configure.
func (s *Slack) APIURL() string { return s.URL + "/api" }

// chat answers chat.postMessage and chat.update: HTTP 200 whatever happens, with "ok" and
// an error code, as the Web API does.
func (s *Slack) chat(w http.ResponseWriter, r *http.Request, post bool) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.bodies = append(s.bodies, body)
	s.mu.Unlock()
	var m struct {
		Channel string `json:"channel"`
		TS      string `json:"ts"`
		Text    string `json:"text"`
	}
	switch {
	case r.Header.Get("Authorization") != "Bearer "+s.token:
		answer(w, http.StatusOK, map[string]any{"ok": false, "error": "invalid_auth"})
		return
	case json.Unmarshal(body, &m) != nil:
		answer(w, http.StatusOK, map[string]any{"ok": false, "error": "invalid_json"})
		return
	case m.Channel != s.channel && m.Channel != "C0FAULTS":
		answer(w, http.StatusOK, map[string]any{"ok": false, "error": "channel_not_found"})
		return
	case m.Text == "":
		answer(w, http.StatusOK, map[string]any{"ok": false, "error": "no_text"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !post {
		s.updates++
		answer(w, http.StatusOK, map[string]any{"ok": true, "channel": "C0FAULTS", "ts": m.TS})
		return
	}
	id := "?"
	if sm := slackFinding.FindSubmatch(body); sm != nil {
		id = string(sm[1])
	}
	s.posts[id]++
	s.ts++
	answer(w, http.StatusOK, map[string]any{"ok": true, "channel": "C0FAULTS", "ts": fmt.Sprintf("1700000000.%06d", s.ts)})
}

// Posts counts the messages posted per finding id ("?" for a message naming none).
func (s *Slack) Posts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return copyCounts(s.posts)
}

// Bodies returns every request body received.
func (s *Slack) Bodies() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.bodies...)
}

// PagerDuty is a fake PagerDuty Events API v2 for one routing key.
type PagerDuty struct {
	*httptest.Server
	routingKey string

	mu       sync.Mutex
	triggers map[string]int // dedup_key → trigger events
	bodies   [][]byte
}

// NewPagerDuty starts an Events API that accepts routingKey.
func NewPagerDuty(routingKey string) *PagerDuty {
	p := &PagerDuty{routingKey: routingKey, triggers: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v2/enqueue", p.enqueue)
	p.Server = httptest.NewServer(mux)
	return p
}

// EnqueueURL is the events endpoint to configure.
func (p *PagerDuty) EnqueueURL() string { return p.URL + "/v2/enqueue" }

var pdSeverities = map[string]bool{"critical": true, "error": true, "warning": true, "info": true}

// enqueue validates an event as the Events API does and answers 202 with its dedup_key, or
// 400 "invalid event" with the errors.
func (p *PagerDuty) enqueue(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	p.mu.Lock()
	p.bodies = append(p.bodies, body)
	p.mu.Unlock()
	var ev struct {
		RoutingKey  string `json:"routing_key"`
		EventAction string `json:"event_action"`
		DedupKey    string `json:"dedup_key"`
		Payload     *struct {
			Summary  string `json:"summary"`
			Source   string `json:"source"`
			Severity string `json:"severity"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		invalid(w, "Malformed JSON")
		return
	}
	var errs []string
	if ev.RoutingKey != p.routingKey {
		errs = append(errs, "'routing_key' is invalid")
	}
	switch ev.EventAction {
	case "trigger":
		switch {
		case ev.Payload == nil:
			errs = append(errs, "'payload' is missing or blank")
		case ev.Payload.Summary == "" || len(ev.Payload.Summary) > 1024:
			errs = append(errs, "'payload.summary' is missing or blank")
		case ev.Payload.Source == "":
			errs = append(errs, "'payload.source' is missing or blank")
		case !pdSeverities[ev.Payload.Severity]:
			errs = append(errs, "'payload.severity' is invalid")
		}
	case "acknowledge", "resolve":
		if ev.DedupKey == "" {
			errs = append(errs, "'dedup_key' is missing or blank")
		}
	default:
		errs = append(errs, "'event_action' is invalid")
	}
	if len(errs) > 0 {
		invalid(w, "Event object is invalid", errs...)
		return
	}
	p.mu.Lock()
	if ev.EventAction == "trigger" {
		p.triggers[ev.DedupKey]++
	}
	p.mu.Unlock()
	answer(w, http.StatusAccepted, map[string]any{"status": "success", "message": "Event processed", "dedup_key": ev.DedupKey})
}

// Triggers counts the trigger events per dedup_key.
func (p *PagerDuty) Triggers() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return copyCounts(p.triggers)
}

// Bodies returns every request body received.
func (p *PagerDuty) Bodies() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]byte(nil), p.bodies...)
}

func invalid(w http.ResponseWriter, msg string, errs ...string) {
	answer(w, http.StatusBadRequest, map[string]any{"status": "invalid event", "message": msg, "errors": errs})
}

func answer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func copyCounts(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
