package slack_test

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

	"github.com/nhiwatch/nhiwatch/services/notify/internal/dest"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/safehttp"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/secret"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/slack"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/slack/slacktest"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/testfixture"
)

var update = flag.Bool("update", false, "rewrite the golden files")

const token = "xoxb-000000000000-000000000000-testtokenvalue0000"

var policy = safehttp.Config{Timeout: time.Second, AllowInsecureHTTP: true, AllowPrivateNetworks: true}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", name, diff)
	}
}

func notice() dest.Notice {
	f := testfixture.Finding()
	return dest.Notice{Kind: dest.New, Finding: f, Status: dest.Status{Status: "open"}, Seen: 1, Link: "https://nhiwatch.example.com/findings/" + f.Id}
}

func TestRenderGolden(t *testing.T) {
	resolved := notice()
	resolved.Kind = dest.StatusChange
	resolved.Status = dest.Status{Status: "resolved", By: "alice", Reason: "policy detached, role rotated", At: testfixture.T0.Add(time.Hour)}
	resolved.Seen, resolved.LastSeen = 3, testfixture.T0.Add(20*time.Minute)
	k8s := dest.Notice{Kind: dest.New, Finding: testfixture.K8sFinding()}
	for name, n := range map[string]dest.Notice{"new": notice(), "resolved": resolved, "k8s": k8s} {
		t.Run(name, func(t *testing.T) {
			msg := slack.Render(n)
			var js strings.Builder
			enc := json.NewEncoder(&js)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			if err := enc.Encode(msg); err != nil {
				t.Fatal(err)
			}
			golden(t, "message_"+name+".json", js.String())
			golden(t, "message_"+name+".txt", slack.Preview(msg))
		})
	}
}

func TestRenderEscapesLogContent(t *testing.T) {
	n := notice()
	n.Finding.Summary = "hello <!channel> see <https://evil.example|docs> & more"
	n.Finding.Identity.Id = "aws:arn:aws:iam::1:role/`<!here>`"
	n.Finding.Evidence[0].UserAgent = "<@U123> ua"
	js, _ := json.Marshal(slack.Render(n))
	for _, bad := range []string{"<!channel>", "<!here>", "<https://evil.example", "<@U123>"} {
		if strings.Contains(string(js), bad) {
			t.Errorf("message carries %q unescaped", bad)
		}
	}
}

func newDest(t *testing.T, srv *slacktest.Server, channel string, webhook bool) *slack.Destination {
	t.Helper()
	dir := t.TempDir()
	var cfg slack.Config
	if webhook {
		p := filepath.Join(dir, "url")
		os.WriteFile(p, []byte(srv.WebhookURL()), 0o600)
		cfg = slack.Config{WebhookURL: secret.Ref{File: p}}
	} else {
		p := filepath.Join(dir, "token")
		os.WriteFile(p, []byte(token), 0o600)
		cfg = slack.Config{Token: secret.Ref{File: p}, Channel: channel, APIURL: srv.APIURL()}
	}
	d, err := slack.New("soc", cfg, safehttp.NewClient(policy), policy, slack.NewLimiters(1))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestPostThenUpdate(t *testing.T) {
	srv := slacktest.New(token, "C0SOC")
	defer srv.Close()
	d := newDest(t, srv, "C0SOC", false)
	ctx := context.Background()
	rc, err := d.Deliver(ctx, notice())
	if err != nil {
		t.Fatal(err)
	}
	if rc.Channel != "C0SOC" || rc.TS == "" {
		t.Fatalf("receipt = %+v", rc)
	}
	n := notice()
	n.Kind, n.Receipt = dest.StatusChange, rc
	n.Status = dest.Status{Status: "resolved", By: "alice", Reason: "fixed"}
	if _, err := d.Deliver(ctx, n); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 || msgs[0].Edits != 1 || !strings.HasPrefix(msgs[0].Text, "[RESOLVED]") {
		t.Fatalf("messages = %+v, want one message edited once to resolved", msgs)
	}
}

func TestWebhook(t *testing.T) {
	srv := slacktest.New(token)
	defer srv.Close()
	d := newDest(t, srv, "", true)
	if _, err := d.Deliver(context.Background(), notice()); err != nil {
		t.Fatal(err)
	}
	n := notice()
	n.Kind, n.Status = dest.StatusChange, dest.Status{Status: "acknowledged", By: "bob"}
	if _, err := d.Deliver(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 2 || !strings.Contains(msgs[1].Blocks[0]["text"].(map[string]any)["text"].(string), "Acknowledged by bob") {
		t.Fatalf("messages = %+v", msgs)
	}
}

func TestFailuresAreClassified(t *testing.T) {
	tests := []struct {
		name      string
		fault     *slacktest.Fault
		channel   string
		webhook   bool
		permanent bool
		wait      time.Duration
	}{
		{name: "channel_not_found", channel: "C0GONE", permanent: true},
		{name: "invalid_auth", fault: &slacktest.Fault{OKFalse: "invalid_auth"}, channel: "C0SOC", permanent: true},
		{name: "ok false ratelimited", fault: &slacktest.Fault{OKFalse: "ratelimited", RetryAfter: "3"}, channel: "C0SOC", wait: 3 * time.Second},
		{name: "429 Retry-After", fault: &slacktest.Fault{Status: 429, RetryAfter: "2"}, channel: "C0SOC", wait: 2 * time.Second},
		{name: "500", fault: &slacktest.Fault{Status: 500}, channel: "C0SOC"},
		{name: "503", fault: &slacktest.Fault{Status: 503}, channel: "C0SOC"},
		{name: "timeout", fault: &slacktest.Fault{Delay: 3 * time.Second}, channel: "C0SOC"},
		{name: "internal_error", fault: &slacktest.Fault{OKFalse: "internal_error"}, channel: "C0SOC"},
		{name: "webhook 400", fault: &slacktest.Fault{Status: 400}, webhook: true, permanent: true},
		{name: "webhook 429", fault: &slacktest.Fault{Status: 429, RetryAfter: "4"}, webhook: true, wait: 4 * time.Second},
		{name: "webhook 500", fault: &slacktest.Fault{Status: 500}, webhook: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := slacktest.New(token, "C0SOC")
			defer srv.Close()
			if tt.fault != nil {
				srv.Fail(*tt.fault)
			}
			d := newDest(t, srv, tt.channel, tt.webhook)
			_, err := d.Deliver(context.Background(), notice())
			if err == nil {
				t.Fatal("delivery succeeded")
			}
			if dest.IsPermanent(err) != tt.permanent || dest.RetryAfter(err) != tt.wait {
				t.Errorf("err = %v: permanent=%v retry-after=%s, want %v %s", err, dest.IsPermanent(err), dest.RetryAfter(err), tt.permanent, tt.wait)
			}
			if strings.Contains(err.Error(), token) || strings.Contains(err.Error(), srv.WebhookPath) {
				t.Errorf("error reveals a secret: %v", err)
			}
		})
	}
}

func TestPacesOneMessagePerSecondPerChannel(t *testing.T) {
	srv := slacktest.New(token, "C0SOC")
	srv.EnforceRate = true
	defer srv.Close()
	d := newDest(t, srv, "C0SOC", false)
	for i := 0; i < 3; i++ {
		if _, err := d.Deliver(context.Background(), notice()); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if _, limited := srv.Requests(); limited != 0 {
		t.Errorf("Slack rate-limited %d messages", limited)
	}
}

func TestRateLimitPausesTheChannel(t *testing.T) {
	lim := slack.NewLimiters(1000)
	lim.Pause("channel:C1", 300*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := lim.Wait(ctx, "channel:C1"); err == nil {
		t.Error("a paused channel let a message through")
	}
	if err := lim.Wait(context.Background(), "channel:C2"); err != nil {
		t.Errorf("another channel was paused: %v", err)
	}
}

func BenchmarkRender(b *testing.B) {
	n := notice()
	for b.Loop() {
		if _, err := json.Marshal(slack.Render(n)); err != nil {
			b.Fatal(err)
		}
	}
}
