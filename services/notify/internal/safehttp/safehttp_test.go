package safehttp

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestIsPublic(t *testing.T) {
	tests := []struct {
		ip   string
		want bool
	}{
		{"8.8.8.8", true},
		{"2606:4700:4700::1111", true},
		{"127.0.0.1", false},
		{"::1", false},
		{"10.1.2.3", false},
		{"172.16.0.1", false},
		{"192.168.1.1", false},
		{"169.254.169.254", false}, // cloud instance metadata
		{"fe80::1", false},
		{"fc00::1", false},
		{"100.64.0.1", false},
		{"0.0.0.0", false},
		{"::", false},
		{"224.0.0.1", false},
		{"255.255.255.255", false},
		{"::ffff:127.0.0.1", false},
		{"::ffff:169.254.169.254", false},
		{"::ffff:8.8.8.8", true},
		{"2001:db8::1", false},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			if got := IsPublic(netip.MustParseAddr(tt.ip)); got != tt.want {
				t.Errorf("IsPublic(%s) = %v, want %v", tt.ip, got, tt.want)
			}
		})
	}
}

func TestCheckURL(t *testing.T) {
	strict := DefaultConfig()
	lax := Config{Timeout: time.Second, AllowInsecureHTTP: true}
	tests := []struct {
		name string
		cfg  Config
		url  string
		ok   bool
	}{
		{"https", strict, "https://hooks.slack.com/services/T/B/secret", true},
		{"http refused", strict, "http://hooks.slack.com/services/T/B/secret", false},
		{"http allowed", lax, "http://127.0.0.1:8080/hook", true},
		{"ftp", lax, "ftp://example.com/x", false},
		{"no host", strict, "https:///path", false},
		{"userinfo", strict, "https://user:pass@example.com/", false},
		{"garbage", strict, "https://exa mple.com/%zz", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckURL(tt.cfg, tt.url)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckURL(%q) = %v, want ok=%v", tt.url, err, tt.ok)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("error quotes the URL: %v", err)
			}
		})
	}
}

func TestClientRefusesLoopbackAfterResolution(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer srv.Close()
	// "localhost" passes any check on the host name; the socket check sees 127.0.0.1.
	u := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1) + "/hook/secret-path"
	req, _ := http.NewRequest(http.MethodPost, u, nil)
	_, err := Do(context.Background(), NewClient(Config{Timeout: 2 * time.Second, AllowInsecureHTTP: true}), req)
	if !errors.Is(err, ErrRefusedAddress) {
		t.Fatalf("request to loopback: %v, want ErrRefusedAddress", err)
	}
	if strings.Contains(err.Error(), "secret-path") {
		t.Errorf("error quotes the URL: %v", err)
	}
	allowed := NewClient(Config{Timeout: 2 * time.Second, AllowInsecureHTTP: true, AllowPrivateNetworks: true})
	resp, err := Do(context.Background(), allowed, req)
	if err != nil {
		t.Fatalf("allowed client: %v", err)
	}
	resp.Body.Close()
}

func TestClientFollowsNoRedirect(t *testing.T) {
	var hits int
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits++ }))
	defer target.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/internal", http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	c := NewClient(Config{Timeout: 2 * time.Second, AllowInsecureHTTP: true, AllowPrivateNetworks: true})
	req, _ := http.NewRequest(http.MethodPost, redirector.URL, nil)
	if _, err := Do(context.Background(), c, req); !errors.Is(err, ErrRedirect) {
		t.Fatalf("redirect: %v, want ErrRedirect", err)
	}
	if hits != 0 {
		t.Errorf("redirect target was requested %d times", hits)
	}
}

func TestClientTimesOut(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)
	c := NewClient(Config{Timeout: 200 * time.Millisecond, AllowInsecureHTTP: true, AllowPrivateNetworks: true})
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	if _, err := Do(context.Background(), c, req); err == nil {
		t.Fatal("request to a server that never answers succeeded")
	}
}
