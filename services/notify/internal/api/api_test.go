package api_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/eventstest"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/api"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/testfixture"
	"github.com/nhiwatch/nhiwatch/services/notify/triage"
)

const aliceToken = "alice-token-0123456789abcdef"

// setup stores one finding in NHI_FINDINGS and serves the API over a real store.
func setup(t *testing.T, cfg api.Config) (*api.Server, *triage.Store, *bytes.Buffer, *events.Finding) {
	t.Helper()
	srv := eventstest.Start(t)
	f := testfixture.Finding()
	data, _ := events.Marshal(f)
	m := nats.NewMsg(events.FindingSubject(f.Severity, f.Detector))
	m.Header.Set(events.HeaderMsgID, f.Id)
	m.Data = data
	if _, err := srv.JS.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	store, err := triage.Open(context.Background(), srv.JS, srv.Streams, nil)
	if err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(tokens, []byte("# analysts\nalice:"+aliceToken+"\nbob : bob-token-0123456789abcdefgh\n"), 0o600)
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.TokensFile == "" {
		cfg.TokensFile = tokens
	}
	var logs bytes.Buffer
	s, err := api.New(cfg, store, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return s, store, &logs, f
}

func call(t *testing.T, c *http.Client, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestAuthenticationIsRequired(t *testing.T) {
	s, _, logs, f := setup(t, api.Config{})
	var failures []string
	s.OnAuthFailure = func(r string) { failures = append(failures, r) }
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	c := ts.Client()
	tests := []struct {
		name, method, path, token, body string
		want                            int
	}{
		{"no token", "GET", "/v1/findings", "", "", 401},
		{"wrong token", "GET", "/v1/findings", "alice-token-0123456789abcdeX", "", 401},
		{"prefix of a token", "GET", "/v1/findings", "alice-token", "", 401},
		{"no token on a change", "POST", "/v1/findings/" + f.Id + "/resolve", "", `{"reason":"x"}`, 401},
		{"list", "GET", "/v1/findings", aliceToken, "", 200},
		{"show", "GET", "/v1/findings/" + f.Id, aliceToken, "", 200},
		{"unknown finding", "GET", "/v1/findings/0000", aliceToken, "", 404},
		{"no reason", "POST", "/v1/findings/" + f.Id + "/ack", aliceToken, `{}`, 400},
		{"unknown field", "POST", "/v1/findings/" + f.Id + "/ack", aliceToken, `{"reason":"x","by":"mallory"}`, 400},
		{"suppress without expiry", "POST", "/v1/findings/" + f.Id + "/suppress", aliceToken, `{"reason":"x"}`, 400},
		{"unknown action", "POST", "/v1/findings/" + f.Id + "/delete", aliceToken, `{"reason":"x"}`, 404},
		{"bad id", "GET", "/v1/findings/a.b", aliceToken, "", 400},
		{"ack", "POST", "/v1/findings/" + f.Id + "/ack", aliceToken, `{"reason":"on it"}`, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, c, tt.method, ts.URL+tt.path, tt.token, tt.body)
			if code != tt.want {
				t.Errorf("%s %s = %d %v, want %d", tt.method, tt.path, code, body, tt.want)
			}
		})
	}
	if len(failures) != 4 {
		t.Errorf("auth failures counted: %v, want 4", failures)
	}
	code, body := call(t, c, "GET", ts.URL+"/v1/findings/"+f.Id, "bob-token-0123456789abcdefgh", "")
	st := body["status"].(map[string]any)
	if code != 200 || st["status"] != "acknowledged" || st["by"] != "alice" || st["via"] != "api-token" || st["reason"] != "on it" {
		t.Errorf("status after ack = %d %v", code, st)
	}
	if strings.Contains(logs.String(), aliceToken) {
		t.Error("a token appears in the logs")
	}
}

func TestSuppressAndList(t *testing.T) {
	s, store, _, f := setup(t, api.Config{})
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	code, body := call(t, ts.Client(), "POST", ts.URL+"/v1/findings/"+f.Id+"/suppress", aliceToken, `{"reason":"approved change CHG-1","for":"7d"}`)
	if code != 200 || body["status"] != "suppressed" {
		t.Fatalf("suppress = %d %v", code, body)
	}
	if _, on, _ := store.Suppressed(context.Background(), f.Identity.Id, f.Cause); !on {
		t.Error("no suppression for the identity and cause")
	}
	for status, want := range map[string]int{"suppressed": 1, "open": 0, "": 1} {
		code, body := call(t, ts.Client(), "GET", ts.URL+"/v1/findings?status="+status, aliceToken, "")
		if got := len(body["findings"].([]any)); code != 200 || got != want {
			t.Errorf("list status=%q: %d findings, want %d", status, got, want)
		}
	}
}

func TestClientCertificates(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCA(t)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.Raw)
	srvCert := issue(t, ca, caKey, "localhost", true)
	other, otherKey := newCA(t)
	s, _, _, f := setup(t, api.Config{ClientCAFile: filepath.Join(dir, "ca.pem"), TLSCertFile: "unused", TLSKeyFile: "unused"})
	tc, err := s.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	tc.Certificates = []tls.Certificate{srvCert}
	ts := httptest.NewUnstartedServer(s.Handler())
	ts.TLS = tc
	ts.StartTLS()
	defer ts.Close()
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	client := func(cert *tls.Certificate) *http.Client {
		cfg := &tls.Config{RootCAs: roots, ServerName: "localhost"}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	good := issue(t, ca, caKey, "carol", false)
	forged := issue(t, other, otherKey, "mallory", false)
	if code, _ := call(t, client(nil), "GET", ts.URL+"/v1/findings", "", ""); code != 401 {
		t.Errorf("no certificate: %d, want 401", code)
	}
	if _, err := client(&forged).Get(ts.URL + "/v1/findings"); err == nil {
		t.Error("a certificate from another CA was accepted")
	}
	code, body := call(t, client(&good), "POST", ts.URL+"/v1/findings/"+f.Id+"/resolve", "", `{"reason":"rotated"}`)
	if code != 200 || body["by"] != "carol" || body["via"] != "api-certificate" {
		t.Errorf("resolve with a certificate = %d %v", code, body)
	}
}

func TestParseTokens(t *testing.T) {
	for _, bad := range []string{"alice", ":" + aliceToken, "alice:short"} {
		if _, err := api.ParseTokens([]byte(bad)); err == nil {
			t.Errorf("ParseTokens(%q) accepted", bad)
		} else if strings.Contains(err.Error(), "short") && bad == "alice:short" && strings.Contains(err.Error(), ":short") {
			t.Errorf("error quotes the token: %v", err)
		}
	}
}

func FuzzParseTokens(f *testing.F) {
	f.Add([]byte("# c\nalice:" + aliceToken + "\n\nbob:bob-token-0123456789abcdefgh\n"))
	f.Add([]byte("x:y:z"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := api.ParseTokens(data)
		if err == nil && len(entries) > len(bytes.Split(data, []byte("\n"))) {
			t.Error("more tokens than lines")
		}
	})
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []api.Config{
		{Listen: "127.0.0.1:8443"},
		{Listen: "0.0.0.0:8443", TokensFile: "t"},
		{Listen: "127.0.0.1:8443", ClientCAFile: "ca"},
		{Listen: "127.0.0.1:8443", TokensFile: "t", TLSCertFile: "c"},
		{Listen: "nonsense", TokensFile: "t"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) accepted", c)
		}
	}
	for _, c := range []api.Config{
		{},
		{Listen: "127.0.0.1:8443", TokensFile: "t"},
		{Listen: "[::1]:8443", TokensFile: "t"},
		{Listen: ":8443", TokensFile: "t", TLSCertFile: "c", TLSKeyFile: "k"},
		{Listen: ":8443", TokensFile: "t", AllowInsecure: true},
	} {
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", c, err)
		}
	}
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, server bool) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = nil
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
