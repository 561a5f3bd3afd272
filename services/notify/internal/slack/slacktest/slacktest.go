// Package slacktest is a local Slack for tests: chat.postMessage, chat.update and incoming
// webhooks, answering as Slack documents it — HTTP 200 with "ok": false and an error code
// for Web API failures (invalid_auth, channel_not_found, message_not_found, ratelimited),
// plain-text codes with 4xx statuses for webhooks, and HTTP 429 with Retry-After when a
// channel gets more than one message per second.
package slacktest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Message is a message as the server holds it.
type Message struct {
	Channel string
	TS      string
	Text    string
	Blocks  []map[string]any
	// Edits counts chat.update calls on it.
	Edits int
}

// Fault is an answer the server gives instead of handling the next request.
type Fault struct {
	// Status is the HTTP status (429, 500, …); 0 with OKFalse answers 200.
	Status     int
	RetryAfter string
	// OKFalse is the Web API error code of an "ok": false answer.
	OKFalse string
	// Delay holds the answer back (to make the client time out).
	Delay time.Duration
}

// Server is the fake Slack.
type Server struct {
	*httptest.Server
	Token    string
	Channels map[string]bool
	// WebhookPath is the path of the one valid incoming webhook; it posts to WebhookChannel.
	WebhookPath    string
	WebhookChannel string
	// EnforceRate answers 429 (Retry-After: 1) to a message that follows another on the same
	// channel by less than half a second: a client that ignores the one-message-per-second
	// guidance is caught, network jitter on a paced client is not.
	EnforceRate bool

	mu       sync.Mutex
	faults   []Fault
	messages []*Message
	last     map[string]time.Time
	requests int
	limited  int
	seq      int
}

// New starts a server that knows token and the channels.
func New(token string, channels ...string) *Server {
	s := &Server{
		Token: token, Channels: map[string]bool{}, last: map[string]time.Time{},
		WebhookPath: "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX", WebhookChannel: "C0WEBHOOK",
	}
	for _, c := range channels {
		s.Channels[c] = true
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/chat.postMessage", s.postMessage)
	mux.HandleFunc("POST /api/chat.update", s.update)
	mux.HandleFunc("POST /services/", s.webhook)
	s.Server = httptest.NewServer(mux)
	return s
}

// APIURL is the Web API base URL.
func (s *Server) APIURL() string { return s.URL + "/api" }

// WebhookURL is the valid incoming webhook's URL.
func (s *Server) WebhookURL() string { return s.URL + s.WebhookPath }

// Fail queues faults for the next requests, in order.
func (s *Server) Fail(f ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f...)
}

// Messages returns copies of the messages posted, in order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.messages))
	for i, m := range s.messages {
		out[i] = *m
	}
	return out
}

// Requests is the number of requests received; Limited how many got a 429 for pace.
func (s *Server) Requests() (requests, limited int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests, s.limited
}

// fault pops the next fault and writes it; it reports whether it did.
func (s *Server) fault(w http.ResponseWriter, r *http.Request) bool {
	s.mu.Lock()
	s.requests++
	if len(s.faults) == 0 {
		s.mu.Unlock()
		return false
	}
	f := s.faults[0]
	s.faults = s.faults[1:]
	s.mu.Unlock()
	if f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
			return true
		}
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	if f.OKFalse != "" {
		writeJSON(w, map[string]any{"ok": false, "error": f.OKFalse})
		return true
	}
	if f.Status == 0 {
		f.Status = http.StatusInternalServerError
	}
	w.WriteHeader(f.Status)
	return true
}

type body struct {
	Channel string           `json:"channel"`
	TS      string           `json:"ts"`
	Text    string           `json:"text"`
	Blocks  []map[string]any `json:"blocks"`
}

// paced reports whether the channel may take a message now, or answers 429.
func (s *Server) paced(w http.ResponseWriter, channel string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.EnforceRate && now.Sub(s.last[channel]) < 500*time.Millisecond {
		s.limited++
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		return false
	}
	s.last[channel] = now
	return true
}

func (s *Server) auth(r *http.Request) bool {
	return r.Header.Get("Authorization") == "Bearer "+s.Token
}

func (s *Server) decode(w http.ResponseWriter, r *http.Request) (body, bool) {
	var b body
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_form_data"})
		return b, false
	}
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_json"})
		return b, false
	}
	if err := validBlocks(b.Blocks); err != nil {
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_blocks", "errors": []string{err.Error()}})
		return b, false
	}
	return b, true
}

func (s *Server) postMessage(w http.ResponseWriter, r *http.Request) {
	if s.fault(w, r) {
		return
	}
	if !s.auth(r) {
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_auth"})
		return
	}
	b, ok := s.decode(w, r)
	if !ok {
		return
	}
	if !s.Channels[b.Channel] {
		writeJSON(w, map[string]any{"ok": false, "error": "channel_not_found"})
		return
	}
	if !s.paced(w, b.Channel) {
		return
	}
	s.mu.Lock()
	s.seq++
	m := &Message{Channel: b.Channel, TS: fmt.Sprintf("1714644000.%06d", s.seq), Text: b.Text, Blocks: b.Blocks}
	s.messages = append(s.messages, m)
	s.mu.Unlock()
	writeJSON(w, map[string]any{"ok": true, "channel": m.Channel, "ts": m.TS, "message": map[string]any{"text": m.Text}})
}

func (s *Server) update(w http.ResponseWriter, r *http.Request) {
	if s.fault(w, r) {
		return
	}
	if !s.auth(r) {
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_auth"})
		return
	}
	b, ok := s.decode(w, r)
	if !ok {
		return
	}
	if !s.paced(w, b.Channel) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.messages {
		if m.Channel == b.Channel && m.TS == b.TS {
			m.Text, m.Blocks = b.Text, b.Blocks
			m.Edits++
			writeJSON(w, map[string]any{"ok": true, "channel": m.Channel, "ts": m.TS, "text": m.Text})
			return
		}
	}
	writeJSON(w, map[string]any{"ok": false, "error": "message_not_found"})
}

func (s *Server) webhook(w http.ResponseWriter, r *http.Request) {
	if s.fault(w, r) {
		return
	}
	if r.URL.Path != s.WebhookPath {
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte("invalid_token"))
		return
	}
	var b body
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil || b.Text == "" && len(b.Blocks) == 0 {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte("invalid_payload"))
		return
	}
	if err := validBlocks(b.Blocks); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte("invalid_blocks"))
		return
	}
	if !s.paced(w, s.WebhookChannel) {
		return
	}
	s.mu.Lock()
	s.seq++
	s.messages = append(s.messages, &Message{Channel: s.WebhookChannel, Text: b.Text, Blocks: b.Blocks})
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("ok"))
}

// validBlocks applies the Block Kit limits Slack enforces with invalid_blocks.
func validBlocks(blocks []map[string]any) error {
	if len(blocks) > 50 {
		return fmt.Errorf("more than 50 blocks")
	}
	for i, b := range blocks {
		typ, _ := b["type"].(string)
		switch typ {
		case "header", "section", "context", "actions", "divider":
		default:
			return fmt.Errorf("block %d: unknown type %q", i, typ)
		}
		if t, ok := b["text"].(map[string]any); ok {
			s, _ := t["text"].(string)
			limit := 3000
			if typ == "header" {
				limit = 150
				if t["type"] != "plain_text" {
					return fmt.Errorf("block %d: header must be plain_text", i)
				}
			}
			if s == "" || len(s) > limit {
				return fmt.Errorf("block %d: text length %d", i, len(s))
			}
		}
		if fields, ok := b["fields"].([]any); ok {
			if len(fields) > 10 {
				return fmt.Errorf("block %d: more than 10 fields", i)
			}
			for _, f := range fields {
				s, _ := f.(map[string]any)["text"].(string)
				if s == "" || len(s) > 2000 {
					return fmt.Errorf("block %d: field length %d", i, len(s))
				}
			}
		}
	}
	return nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(v)
}
