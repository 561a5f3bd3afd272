package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestProbe(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ready\n")) })
	mux.HandleFunc("/unready", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "streams: unavailable: NHI_RAW", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	tests := []struct {
		path    string
		wantErr string
	}{
		{"/ok", ""},
		{"/unready", "503 Service Unavailable: streams: unavailable: NHI_RAW"},
		{"/slow", "context deadline exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			err := probe(ctx, srv.Client(), srv.URL+tt.path)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("probe: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("probe error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
	if err := probe(context.Background(), srv.Client(), "http://127.0.0.1:1/readyz"); err == nil {
		t.Error("probe of a closed port succeeded")
	}
}
