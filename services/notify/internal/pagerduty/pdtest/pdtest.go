// Package pdtest is a local PagerDuty Events API v2 for tests. It validates events as the
// API does (routing key, event_action, payload with summary, source and a known severity for
// a trigger) and answers 202 with the dedup_key, 400 "invalid event" with the errors, and
// the queued faults (429, 5xx, slow answers).
package pdtest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"
)

// Alert is the state of one dedup_key.
type Alert struct {
	DedupKey string
	// State is triggered, acknowledged or resolved.
	State    string
	Triggers int
	Events   []map[string]any
}

// Fault is an answer given instead of handling the next request.
type Fault struct {
	Status     int
	RetryAfter string
	Delay      time.Duration
}

// Server is the fake Events API.
type Server struct {
	*httptest.Server
	RoutingKey string

	mu       sync.Mutex
	faults   []Fault
	alerts   map[string]*Alert
	requests int
}

// New starts a server that accepts routingKey.
func New(routingKey string) *Server {
	s := &Server{RoutingKey: routingKey, alerts: map[string]*Alert{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v2/enqueue", s.enqueue)
	s.Server = httptest.NewServer(mux)
	return s
}

// EnqueueURL is the events endpoint.
func (s *Server) EnqueueURL() string { return s.URL + "/v2/enqueue" }

// Fail queues faults for the next requests.
func (s *Server) Fail(f ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f...)
}

// Alert returns a copy of the alert with dedupKey.
func (s *Server) Alert(dedupKey string) (Alert, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.alerts[dedupKey]
	if !ok {
		return Alert{}, false
	}
	return *a, true
}

// Alerts is the number of distinct alerts; Requests the number of requests.
func (s *Server) Alerts() (alerts, requests int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.alerts), s.requests
}

var severities = map[string]bool{"critical": true, "error": true, "warning": true, "info": true}

func (s *Server) enqueue(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	var f *Fault
	if len(s.faults) > 0 {
		f = &s.faults[0]
		s.faults = s.faults[1:]
	}
	s.mu.Unlock()
	if f != nil {
		if f.Delay > 0 {
			select {
			case <-time.After(f.Delay):
			case <-r.Context().Done():
				return
			}
		}
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		if f.Status == 0 {
			f.Status = http.StatusInternalServerError
		}
		w.WriteHeader(f.Status)
		return
	}
	var ev map[string]any
	if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
		invalid(w, "Malformed JSON")
		return
	}
	var errs []string
	if ev["routing_key"] != s.RoutingKey {
		errs = append(errs, "'routing_key' is invalid")
	}
	action, _ := ev["event_action"].(string)
	key, _ := ev["dedup_key"].(string)
	switch action {
	case "trigger":
		p, _ := ev["payload"].(map[string]any)
		if p == nil {
			errs = append(errs, "'payload' is missing or blank")
			break
		}
		if sum, _ := p["summary"].(string); sum == "" || len(sum) > 1024 {
			errs = append(errs, "'payload.summary' is missing or blank")
		}
		if src, _ := p["source"].(string); src == "" {
			errs = append(errs, "'payload.source' is missing or blank")
		}
		if sev, _ := p["severity"].(string); !severities[sev] {
			errs = append(errs, "'payload.severity' is invalid (must be one of the following: 'critical', 'warning', 'error' or 'info')")
		}
	case "acknowledge", "resolve":
		if key == "" {
			errs = append(errs, "'dedup_key' is missing or blank")
		}
	default:
		errs = append(errs, "'event_action' is invalid (must be one of the following: 'trigger', 'acknowledge' or 'resolve')")
	}
	if len(key) > 255 {
		errs = append(errs, "'dedup_key' must be 255 characters or fewer")
	}
	if len(errs) > 0 {
		invalid(w, "Event object is invalid", errs...)
		return
	}
	s.mu.Lock()
	a, ok := s.alerts[key]
	if !ok {
		a = &Alert{DedupKey: key}
		if action == "trigger" {
			s.alerts[key] = a
		}
	}
	switch action {
	case "trigger":
		a.State = "triggered"
		a.Triggers++
	case "acknowledge":
		if ok && a.State == "triggered" {
			a.State = "acknowledged"
		}
	case "resolve":
		if ok {
			a.State = "resolved"
		}
	}
	a.Events = append(a.Events, ev)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "message": "Event processed", "dedup_key": key})
}

func invalid(w http.ResponseWriter, msg string, errs ...string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "invalid event", "message": msg, "errors": errs})
}
