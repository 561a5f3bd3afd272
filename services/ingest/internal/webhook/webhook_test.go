package webhook

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/ingesttest"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/sink"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/split"
)

const testdata = "../../../../testdata"

// pki is a CA and the certificates a test needs, written as PEM files.
type pki struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caFile string
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &pki{dir: t.TempDir(), ca: ca, caKey: key}
	p.caFile = p.write(t, name+"-ca.pem", "CERTIFICATE", der)
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue returns a certificate and key signed by the CA, as files and as a tls.Certificate.
func (p *pki) issue(t *testing.T, cn string, server bool) (certFile, keyFile string, pair tls.Certificate) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certFile = p.write(t, cn+".pem", "CERTIFICATE", der)
	keyFile = p.write(t, cn+"-key.pem", "EC PRIVATE KEY", keyDER)
	pair, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pair
}

type env struct {
	h      *ingesttest.Harness
	pki    *pki
	cfg    Config
	token  string
	client map[string]*http.Client // by client identity ("" = no certificate)
}

func newEnv(t *testing.T) *env {
	h := ingesttest.New(t)
	p := newPKI(t, "test")
	certFile, keyFile, _ := p.issue(t, "nhiwatch-webhook", true)
	e := &env{h: h, pki: p, token: "s3cr3t-token-for-staging", client: map[string]*http.Client{}}
	tokenFile := filepath.Join(p.dir, "staging.token")
	os.WriteFile(tokenFile, []byte("old-token-being-rotated\n"+e.token+"\n"), 0o600)
	e.cfg = Config{
		Listen: "127.0.0.1:0", TLSCertFile: certFile, TLSKeyFile: keyFile, ClientCAFile: p.caFile,
		Clusters: []Cluster{
			{Name: "prod-eu", ClientNames: []string{"kube-apiserver-prod-eu"}},
			{Name: "staging", TokenFile: tokenFile},
			{Name: "both", TokenFile: tokenFile, ClientNames: []string{"kube-apiserver-both"}},
		},
		PublishTimeout: 2 * time.Second, RetryAfter: time.Second,
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.ca)
	mk := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}
	}
	e.client[""] = mk()
	for _, cn := range []string{"kube-apiserver-prod-eu", "kube-apiserver-dev", "kube-apiserver-both"} {
		_, _, pair := p.issue(t, cn, false)
		e.client[cn] = mk(pair)
	}
	// A certificate with the right name from a CA the webhook does not trust.
	rogue := newPKI(t, "rogue")
	_, _, pair := rogue.issue(t, "kube-apiserver-prod-eu", false)
	e.client["rogue"] = mk(pair)
	return e
}

func (e *env) start(t *testing.T, cfg Config) (src *Source, stop func()) {
	t.Helper()
	newSink := func(cluster string) *sink.Sink {
		return e.h.Sink("k8s-webhook", events.Provider_PROVIDER_K8S, "k8s", cluster)
	}
	src, err := New(cfg, "k8s-webhook", newSink, split.DefaultLimits(), e.h.Provider.Meter("test"), e.h.Log)
	if err != nil {
		t.Fatal(err)
	}
	r := ingesttest.Start(t, src.Run)
	select {
	case <-src.Ready():
	case <-r.Done():
		t.Fatal(r.Wait())
	}
	return src, r.Stop
}

// auditEvents returns the audit2rbac demo log's events.
func auditEvents(t *testing.T) []string {
	return ingesttest.Lines(t, filepath.Join(testdata, "k8s/audit-log/audit2rbac-demo.log"))
}

func eventList(evs []string) []byte {
	return []byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` + strings.Join(evs, ",") + `]}`)
}

func ids(t *testing.T, cluster string, evs []string) []string {
	var out []string
	for _, ev := range evs {
		var p struct{ AuditID, Stage string }
		if err := jsonUnmarshal(ev, &p); err != nil {
			t.Fatal(err)
		}
		out = append(out, events.RecordID("k8s-webhook", cluster+"/"+p.AuditID+"/"+p.Stage))
	}
	return out
}

type request struct {
	client, cluster, token string
	body                   []byte
	gzip                   bool
}

func (e *env) post(t *testing.T, src *Source, r request) (int, http.Header) {
	t.Helper()
	body := r.body
	if r.gzip {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(body)
		zw.Close()
		body = buf.Bytes()
	}
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("https://%s/clusters/%s/audit", src.Addr(), r.cluster), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if r.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := e.client[r.client].Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

func TestAuthenticationAndClusters(t *testing.T) {
	e := newEnv(t)
	src, _ := e.start(t, e.cfg)
	evs := auditEvents(t)
	tests := []struct {
		name string
		req  request
		want int
	}{
		{"client cert of the cluster", request{client: "kube-apiserver-prod-eu", cluster: "prod-eu", body: eventList(evs[:5])}, 200},
		{"token of the cluster, gzip", request{client: "", cluster: "staging", token: "s3cr3t-token-for-staging", body: eventList(evs[5:10]), gzip: true}, 200},
		{"token and client cert", request{client: "kube-apiserver-both", cluster: "both", token: "s3cr3t-token-for-staging", body: eventList(evs[10:12])}, 200},
		{"no credentials", request{client: "", cluster: "prod-eu", body: eventList(evs[:1])}, 401},
		{"no token", request{client: "", cluster: "staging", body: eventList(evs[:1])}, 401},
		{"wrong token", request{client: "", cluster: "staging", token: "s3cr3t-token-for-stagina", body: eventList(evs[:1])}, 401},
		{"certificate of another cluster", request{client: "kube-apiserver-dev", cluster: "prod-eu", body: eventList(evs[:1])}, 403},
		{"certificate from an untrusted CA", request{client: "rogue", cluster: "prod-eu", body: eventList(evs[:1])}, 401},
		{"token but no certificate where both are needed", request{client: "", cluster: "both", token: "s3cr3t-token-for-staging", body: eventList(evs[:1])}, 401},
		{"unknown cluster", request{client: "kube-apiserver-prod-eu", cluster: "nope", body: eventList(evs[:1])}, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, _ := e.post(t, src, tt.req); got != tt.want {
				t.Errorf("status %d, want %d", got, tt.want)
			}
		})
	}
	want := append(append(ids(t, "prod-eu", evs[:5]), ids(t, "staging", evs[5:10])...), ids(t, "both", evs[10:12])...)
	ingesttest.CheckOnce(t, e.h.Records(t), want)
	if n := e.h.Sum(t, "nhiwatch_ingest_webhook_auth_failures", attribute.String("source", "k8s-webhook")); n != 6 {
		t.Errorf("counted %d authentication failures, want 6", n)
	}
	for _, b := range e.h.Raw(t) {
		if b.Batch.Cluster == "" || !strings.Contains(b.Batch.Records[0].Id, ":"+b.Batch.Cluster+"/") {
			t.Errorf("batch %s carries cluster %q", b.MsgID, b.Batch.Cluster)
		}
	}
}

func TestLimitsAndBadBodies(t *testing.T) {
	e := newEnv(t)
	cfg := e.cfg
	cfg.MaxBodyBytes = 4 << 10
	cfg.MaxDecompressedBytes = 64 << 10
	src, _ := e.start(t, cfg)
	big := eventList([]string{`{"kind":"Event","auditID":"x","stage":"ResponseComplete","requestURI":"` + strings.Repeat("a", 8<<10) + `"}`})
	bomb := eventList([]string{`{"kind":"Event","auditID":"y","stage":"ResponseComplete","requestURI":"` + strings.Repeat("a", 100<<10) + `"}`})
	tests := []struct {
		name string
		req  request
		want int
	}{
		{"body too large", request{client: "kube-apiserver-prod-eu", cluster: "prod-eu", body: big}, 413},
		{"decompressed too large", request{client: "kube-apiserver-prod-eu", cluster: "prod-eu", body: bomb, gzip: true}, 413},
		{"not json", request{client: "kube-apiserver-prod-eu", cluster: "prod-eu", body: []byte("Authorization: Bearer abc.def.ghi\nnot\njson\n")}, 400},
		{"empty list", request{client: "kube-apiserver-prod-eu", cluster: "prod-eu", body: eventList(nil)}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, _ := e.post(t, src, tt.req); got != tt.want {
				t.Errorf("status %d, want %d", got, tt.want)
			}
		})
	}
	if n := len(e.h.Records(t)); n != 0 {
		t.Errorf("%d records stored from refused bodies", n)
	}
	dlq := e.h.DLQ(t)
	if len(dlq) != 1 || !strings.Contains(dlq[0].Error, "not JSON") || bytes.Contains(dlq[0].Data, []byte("abc.def.ghi")) {
		t.Errorf("dead letters %+v, want the non-JSON body, redacted", dlq)
	}
}

// TestBackpressureAndRestart fills NHI_RAW so JetStream refuses new messages: the webhook
// answers 503 with Retry-After and stores nothing; once there is room, and across a restart
// of the webhook, the API server's retries store every event exactly once.
func TestBackpressureAndRestart(t *testing.T) {
	e := newEnv(t)
	cfg := e.cfg
	cfg.PublishTimeout = 500 * time.Millisecond
	src, stop := e.start(t, cfg)
	evs := auditEvents(t)
	batches := [][]string{evs[:10], evs[10:20], evs[20:30], evs[30:]}
	send := func(src *Source, b []string) (int, http.Header) {
		return e.post(t, src, request{client: "kube-apiserver-prod-eu", cluster: "prod-eu", body: eventList(b), gzip: true})
	}
	if code, _ := send(src, batches[0]); code != 200 {
		t.Fatalf("first batch: %d", code)
	}

	ctx := context.Background()
	st, err := e.h.Server.JS.Stream(ctx, events.StreamRaw)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := st.Info(ctx)
	full := info.Config
	full.MaxMsgs = int64(info.State.Msgs)
	full.Discard = jetstream.DiscardNew
	if _, err := e.h.Server.JS.UpdateStream(ctx, full); err != nil {
		t.Fatal(err)
	}
	code, h := send(src, batches[1])
	if code != 503 || h.Get("Retry-After") != "1" {
		t.Fatalf("batch into a full stream: %d (Retry-After %q), want 503 with Retry-After", code, h.Get("Retry-After"))
	}
	if n := len(e.h.Records(t)); n != 10 {
		t.Fatalf("%d records stored, want 10", n)
	}
	full.MaxMsgs = -1
	if _, err := e.h.Server.JS.UpdateStream(ctx, full); err != nil {
		t.Fatal(err)
	}
	if code, _ := send(src, batches[1]); code != 200 {
		t.Fatalf("retried batch: %d", code)
	}
	if code, _ := send(src, batches[2]); code != 200 {
		t.Fatalf("third batch: %d", code)
	}
	// The webhook restarts; the API server did not see the answer to batch 3 and sends it
	// again, then the rest.
	stop()
	cfg.Listen = src.Addr().String()
	src, _ = e.start(t, cfg)
	for _, b := range batches[2:] {
		if code, _ := send(src, b); code != 200 {
			t.Fatalf("after restart: %d", code)
		}
	}
	ingesttest.CheckOnce(t, e.h.Records(t), ids(t, "prod-eu", evs))
	if n := e.h.Sum(t, "nhiwatch_ingest_webhook_requests", attribute.Int("code", 503)); n != 1 {
		t.Errorf("counted %d 503 answers, want 1", n)
	}
}

func TestTokenRotation(t *testing.T) {
	e := newEnv(t)
	src, _ := e.start(t, e.cfg)
	evs := auditEvents(t)
	if code, _ := e.post(t, src, request{cluster: "staging", token: "old-token-being-rotated", body: eventList(evs[:1])}); code != 200 {
		t.Fatalf("old token: %d", code)
	}
	os.WriteFile(e.cfg.Clusters[1].TokenFile, []byte("brand-new-token\n"), 0o600)
	future := time.Now().Add(2 * time.Second)
	os.Chtimes(e.cfg.Clusters[1].TokenFile, future, future)
	ingesttest.Eventually(t, 5*time.Second, "the new token file to be read", func() bool {
		code, _ := e.post(t, src, request{cluster: "staging", token: "brand-new-token", body: eventList(evs[1:2])})
		return code == 200
	})
	if code, _ := e.post(t, src, request{cluster: "staging", token: "old-token-being-rotated", body: eventList(evs[:1])}); code != 401 {
		t.Errorf("removed token: %d, want 401", code)
	}
}

func TestConfigValidate(t *testing.T) {
	base := Config{TLSCertFile: "c", TLSKeyFile: "k", ClientCAFile: "ca", Clusters: []Cluster{{Name: "prod", TokenFile: "t"}}}
	mod := func(f func(*Config)) Config {
		c := base
		c.Clusters = append([]Cluster(nil), base.Clusters...)
		f(&c)
		return c
	}
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"ok", base, true},
		{"no tls", mod(func(c *Config) { c.TLSCertFile = "" }), false},
		{"plain http with tokens", Config{AllowPlainHTTP: true, Clusters: []Cluster{{Name: "prod", TokenFile: "t"}}}, true},
		{"no clusters", mod(func(c *Config) { c.Clusters = nil }), false},
		{"bad name", mod(func(c *Config) { c.Clusters[0].Name = "Prod/EU" }), false},
		{"no credentials", mod(func(c *Config) { c.Clusters[0].TokenFile = "" }), false},
		{"client names without CA", mod(func(c *Config) { c.ClientCAFile = ""; c.Clusters[0].ClientNames = []string{"x"} }), false},
		{"duplicate", mod(func(c *Config) { c.Clusters = append(c.Clusters, c.Clusters[0]) }), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.WithDefaults().Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// TestServerCertificateRenewal replaces the server certificate files (as cert-manager does)
// and checks that new connections get the new certificate without a restart.
func TestServerCertificateRenewal(t *testing.T) {
	e := newEnv(t)
	src, _ := e.start(t, e.cfg)
	serial := func() string {
		conn, err := tls.Dial("tcp", src.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	certFile, keyFile, _ := e.pki.issue(t, "nhiwatch-webhook-renewed", true)
	for _, f := range [][2]string{{certFile, e.cfg.TLSCertFile}, {keyFile, e.cfg.TLSKeyFile}} {
		data, _ := os.ReadFile(f[0])
		if err := os.WriteFile(f[1], data, 0o600); err != nil {
			t.Fatal(err)
		}
		future := time.Now().Add(2 * time.Second)
		os.Chtimes(f[1], future, future)
	}
	ingesttest.Eventually(t, 5*time.Second, "the renewed certificate", func() bool { return serial() != before })
	if code, _ := e.post(t, src, request{client: "kube-apiserver-prod-eu", cluster: "prod-eu", body: eventList(auditEvents(t)[:1])}); code != 200 {
		t.Errorf("after the renewal: %d", code)
	}
}
