package webhook_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nhiwatch/nhiwatch/services/notify/internal/dest"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/ocsf"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/ocsf/ocsftest"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/safehttp"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/secret"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/testfixture"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/webhook"
)

const key = "whsec-0123456789abcdef0123456789"

var policy = safehttp.Config{Timeout: time.Second, AllowInsecureHTTP: true, AllowPrivateNetworks: true}

// receiver verifies like a real receiver would and answers with the queued statuses.
type receiver struct {
	mu       sync.Mutex
	statuses []int
	bodies   [][]byte
	headers  []http.Header
	verified []error
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bodies = append(r.bodies, body)
	r.headers = append(r.headers, req.Header.Clone())
	r.verified = append(r.verified, webhook.Verify([]byte(key), req.Header.Get(webhook.HeaderTimestamp), req.Header.Get(webhook.HeaderSignature), body, time.Now(), 5*time.Minute))
	status := http.StatusNoContent
	if len(r.statuses) > 0 {
		status, r.statuses = r.statuses[0], r.statuses[1:]
	}
	if status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "9")
	}
	w.WriteHeader(status)
}

func newDest(t *testing.T, url string) *webhook.Destination {
	dir := t.TempDir()
	u, k := filepath.Join(dir, "url"), filepath.Join(dir, "key")
	os.WriteFile(u, []byte(url), 0o600)
	os.WriteFile(k, []byte(key), 0o600)
	d, err := webhook.New("soar", webhook.Config{URL: secret.Ref{File: u}, Secret: secret.Ref{File: k}}, safehttp.NewClient(policy), policy, ocsf.Product{Name: "nhiwatch", Vendor: "nhiwatch", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDeliverSignsOCSF(t *testing.T) {
	rcv := &receiver{statuses: []int{204, 429, 500, 400}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	d := newDest(t, srv.URL+"/hook?token=url-secret")
	f := testfixture.Finding()
	n := dest.Notice{Kind: dest.New, Finding: f, Revision: 42}
	if _, err := d.Deliver(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	if err := rcv.verified[0]; err != nil {
		t.Fatalf("receiver could not verify: %v", err)
	}
	if got := rcv.headers[0].Get(webhook.HeaderDelivery); got != f.Id+":soar:42" {
		t.Errorf("delivery id %q", got)
	}
	if err := ocsftest.New(t).Validate(rcv.bodies[0]); err != nil {
		t.Errorf("body is not valid OCSF: %v", err)
	}
	for _, want := range []struct {
		permanent bool
		wait      time.Duration
	}{{false, 9 * time.Second}, {false, 0}, {true, 0}} {
		_, err := d.Deliver(context.Background(), n)
		if err == nil || dest.IsPermanent(err) != want.permanent || dest.RetryAfter(err) != want.wait {
			t.Errorf("err = %v, want permanent=%v wait=%s", err, want.permanent, want.wait)
		}
		if err != nil && strings.Contains(err.Error(), "url-secret") {
			t.Errorf("error reveals the URL: %v", err)
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	body := []byte(`{"a":1}`)
	now := time.Unix(1714644000, 0)
	good := webhook.Sign([]byte(key), now.Unix(), body)
	ts := "1714644000"
	tests := []struct {
		name, ts, sig string
		body          []byte
		ok            bool
	}{
		{"good", ts, good, body, true},
		{"tampered body", ts, good, []byte(`{"a":2}`), false},
		{"other key", ts, webhook.Sign([]byte("another-key-0000000"), now.Unix(), body), body, false},
		{"stale", "1714640000", webhook.Sign([]byte(key), 1714640000, body), body, false},
		{"garbage ts", "x", good, body, false},
	}
	for _, tt := range tests {
		if err := webhook.Verify([]byte(key), tt.ts, tt.sig, tt.body, now, 5*time.Minute); (err == nil) != tt.ok {
			t.Errorf("%s: Verify = %v", tt.name, err)
		}
	}
}
