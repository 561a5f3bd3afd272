package pagerduty_test

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nhiwatch/nhiwatch/pkg/events"

	"github.com/nhiwatch/nhiwatch/services/notify/internal/dest"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/pagerduty"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/pagerduty/pdtest"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/safehttp"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/secret"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/testfixture"
)

var update = flag.Bool("update", false, "rewrite the golden files")

const routingKey = "R0UT1NGKEY0123456789abcdefABCDEF"

var policy = safehttp.Config{Timeout: time.Second, AllowInsecureHTTP: true, AllowPrivateNetworks: true}

func newDest(t *testing.T, url, key string) *pagerduty.Destination {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := pagerduty.New("oncall", pagerduty.Config{RoutingKey: secret.Ref{File: p}, URL: url}, safehttp.NewClient(policy), policy)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func notice(kind dest.NoticeKind, status string) dest.Notice {
	f := testfixture.Finding()
	return dest.Notice{Kind: kind, Finding: f, Status: dest.Status{Status: status}, Seen: 1, Link: "https://nhiwatch.example.com/findings/" + f.Id}
}

func TestTriggerGolden(t *testing.T) {
	ev := pagerduty.Build(notice(dest.New, "open"))
	ev.RoutingKey = "<routing key from routing_key.file>"
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(ev); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "trigger.json")
	if *update {
		os.MkdirAll("testdata", 0o755)
		os.WriteFile(path, []byte(b.String()), 0o644)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), b.String()); diff != "" {
		t.Errorf("trigger (-want +got):\n%s", diff)
	}
}

func TestLifecycle(t *testing.T) {
	srv := pdtest.New(routingKey)
	defer srv.Close()
	d := newDest(t, srv.EnqueueURL(), routingKey)
	ctx := context.Background()
	id := testfixture.Finding().Id
	steps := []struct {
		n     dest.Notice
		state string
	}{
		{notice(dest.New, "open"), "triggered"},
		{notice(dest.Repeat, "open"), "triggered"},
		{notice(dest.StatusChange, "acknowledged"), "acknowledged"},
		{notice(dest.StatusChange, "resolved"), "resolved"},
	}
	for i, s := range steps {
		rc, err := d.Deliver(ctx, s.n)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if rc.DedupKey != id {
			t.Errorf("step %d: dedup key %q, want the finding id", i, rc.DedupKey)
		}
		a, _ := srv.Alert(id)
		if a.State != s.state {
			t.Errorf("step %d: alert %s, want %s", i, a.State, s.state)
		}
	}
	if alerts, _ := srv.Alerts(); alerts != 1 {
		t.Errorf("%d alerts, want 1", alerts)
	}
}

func TestSeverityMapping(t *testing.T) {
	got := map[string]string{}
	for _, s := range []string{"info", "low", "medium", "high", "critical"} {
		n := notice(dest.New, "open")
		sev, _ := events.ParseSeverity(s)
		n.Finding.Severity = sev
		got[s] = pagerduty.Build(n).Payload.Severity
	}
	want := map[string]string{"info": "info", "low": "info", "medium": "warning", "high": "error", "critical": "critical"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("severity (-want +got):\n%s", diff)
	}
}

func TestFailuresAreClassified(t *testing.T) {
	tests := []struct {
		name      string
		key       string
		fault     *pdtest.Fault
		permanent bool
		wait      time.Duration
	}{
		{name: "400 invalid routing key", key: "wrongkey0123456789abcdefABCDEF00", permanent: true},
		{name: "429", key: routingKey, fault: &pdtest.Fault{Status: 429}, wait: 5 * time.Second},
		{name: "429 Retry-After", key: routingKey, fault: &pdtest.Fault{Status: 429, RetryAfter: "12"}, wait: 12 * time.Second},
		{name: "500", key: routingKey, fault: &pdtest.Fault{Status: 500}},
		{name: "502", key: routingKey, fault: &pdtest.Fault{Status: 502}},
		{name: "timeout", key: routingKey, fault: &pdtest.Fault{Delay: 3 * time.Second}},
		{name: "403", key: routingKey, fault: &pdtest.Fault{Status: 403}, permanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := pdtest.New(routingKey)
			defer srv.Close()
			if tt.fault != nil {
				srv.Fail(*tt.fault)
			}
			d := newDest(t, srv.EnqueueURL(), tt.key)
			_, err := d.Deliver(context.Background(), notice(dest.New, "open"))
			if err == nil {
				t.Fatal("delivery succeeded")
			}
			if dest.IsPermanent(err) != tt.permanent || dest.RetryAfter(err) != tt.wait {
				t.Errorf("err = %v: permanent=%v wait=%s, want %v %s", err, dest.IsPermanent(err), dest.RetryAfter(err), tt.permanent, tt.wait)
			}
			if strings.Contains(err.Error(), tt.key) {
				t.Errorf("error reveals the routing key: %v", err)
			}
		})
	}
}

func TestRefusesPlainHTTPByDefault(t *testing.T) {
	p := filepath.Join(t.TempDir(), "key")
	os.WriteFile(p, []byte(routingKey), 0o600)
	_, err := pagerduty.New("x", pagerduty.Config{RoutingKey: secret.Ref{File: p}, URL: "http://events.pagerduty.com/v2/enqueue"}, safehttp.NewClient(safehttp.DefaultConfig()), safehttp.DefaultConfig())
	if err == nil {
		t.Fatal("http URL accepted without allow_insecure_http")
	}
}
