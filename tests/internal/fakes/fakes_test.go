package fakes

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func post(t *testing.T, url, auth, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

func TestSlackAnswersAndCounts(t *testing.T) {
	s := NewSlack("xoxb-1-abc", "C1")
	defer s.Close()
	msg := `{"channel":"C1","text":"x","blocks":[{"type":"context","elements":[{"type":"mrkdwn","text":"finding ` + "`f1`" + ` · nhiwatch"}]}]}`
	for _, tc := range []struct {
		name, method, auth, body, wantErr string
	}{
		{"no token", "chat.postMessage", "", msg, "invalid_auth"},
		{"wrong channel", "chat.postMessage", "Bearer xoxb-1-abc", `{"channel":"C9","text":"x"}`, "channel_not_found"},
		{"posted", "chat.postMessage", "Bearer xoxb-1-abc", msg, ""},
		{"posted again", "chat.postMessage", "Bearer xoxb-1-abc", msg, ""},
		{"updated", "chat.update", "Bearer xoxb-1-abc", `{"channel":"C0FAULTS","ts":"1.1","text":"y"}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out := post(t, s.APIURL()+"/"+tc.method, tc.auth, tc.body)
			if status != http.StatusOK {
				t.Errorf("status %d, want 200 (the Web API answers errors in the body)", status)
			}
			if ok, _ := out["ok"].(bool); ok != (tc.wantErr == "") || out["error"] != nil && out["error"] != tc.wantErr {
				t.Errorf("answer %v, want error %q", out, tc.wantErr)
			}
		})
	}
	if diff := cmp.Diff(map[string]int{"f1": 2}, s.Posts()); diff != "" {
		t.Errorf("posts per finding (-want +got):\n%s", diff)
	}
	if n := len(s.Bodies()); n != 5 {
		t.Errorf("%d bodies kept, want 5", n)
	}
}

func TestPagerDutyAnswersAndCounts(t *testing.T) {
	p := NewPagerDuty("key1")
	defer p.Close()
	trigger := `{"routing_key":"key1","event_action":"trigger","dedup_key":"f1","payload":{"summary":"s","source":"nhiwatch","severity":"critical"}}`
	for _, tc := range []struct {
		name, body string
		want       int
	}{
		{"wrong routing key", strings.Replace(trigger, "key1", "key2", 1), http.StatusBadRequest},
		{"no severity", strings.Replace(trigger, `"critical"`, `"fatal"`, 1), http.StatusBadRequest},
		{"triggered", trigger, http.StatusAccepted},
		{"triggered again", trigger, http.StatusAccepted},
		{"resolved", `{"routing_key":"key1","event_action":"resolve","dedup_key":"f1"}`, http.StatusAccepted},
		{"resolve without a key", `{"routing_key":"key1","event_action":"resolve"}`, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out := post(t, p.EnqueueURL(), "", tc.body)
			if status != tc.want {
				t.Errorf("status %d (%v), want %d", status, out, tc.want)
			}
		})
	}
	if diff := cmp.Diff(map[string]int{"f1": 2}, p.Triggers()); diff != "" {
		t.Errorf("triggers per dedup key (-want +got):\n%s", diff)
	}
}
