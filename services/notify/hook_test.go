package notify

import (
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/nhiwatch/nhiwatch/services/notify/internal/webhook"
)

func newHookServer(r *hookReceiver) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if req.URL.Path != "/in/s3cr3t-path" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		if err := webhook.Verify([]byte(hmacKey), req.Header.Get(webhook.HeaderTimestamp), req.Header.Get(webhook.HeaderSignature), body, time.Now(), 5*time.Minute); err != nil {
			r.bad++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		r.bodies = append(r.bodies, body)
		w.WriteHeader(http.StatusAccepted)
	}))
}

func (r *hookReceiver) count() (ok, bad int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bodies), r.bad
}
