// Package webhook receives Kubernetes audit events from API servers' webhook backend
// (--audit-webhook-config-file): POSTs of audit.k8s.io/v1 EventList batches, optionally
// gzip-encoded, at /clusters/<name>/audit.
//
// A request gets 200 only once every event in it is acknowledged by JetStream; under
// backpressure (too many requests in flight, or JetStream slow or full) it gets 503 with
// Retry-After and the API server sends the batch again, with the same record ids. Each
// cluster authenticates with a bearer token (compared in constant time) and/or a client
// certificate; a request without credentials or with wrong ones gets 401 or 403, is counted,
// and publishes nothing.
package webhook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fastjson"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/nhiwatch/nhiwatch/pkg/events/redact"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/sink"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/split"
)

// Source serves the webhook.
type Source struct {
	cfg      Config
	sinks    map[string]*sink.Sink
	clusters map[string]*cluster
	limits   split.Limits
	log      *slog.Logger
	certs    *certLoader
	caPool   *watchedFile
	slots    chan struct{}
	addr     atomic.Pointer[net.Addr]
	ready    chan struct{}
	authFail metric.Int64Counter
	requests metric.Int64Counter
	source   string
}

type cluster struct {
	name   string
	tokens *watchedFile
	names  []string
}

// NewSink returns the sink of one cluster (its records carry the cluster's name).
type NewSink func(cluster string) *sink.Sink

// New returns a webhook source; it reads the certificate, CA and token files now, so a
// missing file is reported at start.
func New(cfg Config, source string, newSink NewSink, limits split.Limits, meter metric.Meter, log *slog.Logger) (*Source, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Source{
		cfg: cfg, sinks: map[string]*sink.Sink{}, clusters: map[string]*cluster{}, limits: limits, log: log,
		slots: make(chan struct{}, cfg.MaxInflight), ready: make(chan struct{}), source: source,
	}
	var err error
	if !cfg.AllowPlainHTTP {
		if s.certs, err = newCertLoader(cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
			return nil, fmt.Errorf("webhook: %w", err)
		}
	}
	if cfg.ClientCAFile != "" {
		if s.caPool, err = newWatchedFile(cfg.ClientCAFile, parseCertPool); err != nil {
			return nil, fmt.Errorf("webhook: client_ca_file: %w", err)
		}
	}
	for _, c := range cfg.Clusters {
		cl := &cluster{name: c.Name, names: c.ClientNames}
		if c.TokenFile != "" {
			if cl.tokens, err = newWatchedFile(c.TokenFile, parseTokens); err != nil {
				return nil, fmt.Errorf("webhook: cluster %s: token_file: %w", c.Name, err)
			}
		}
		s.clusters[c.Name] = cl
		s.sinks[c.Name] = newSink(c.Name)
	}
	if s.authFail, err = meter.Int64Counter("nhiwatch_ingest_webhook_auth_failures", metric.WithDescription("webhook requests refused for missing or wrong credentials")); err != nil {
		return nil, err
	}
	if s.requests, err = meter.Int64Counter("nhiwatch_ingest_webhook_requests", metric.WithDescription("webhook requests by status code")); err != nil {
		return nil, err
	}
	return s, nil
}

// Ready is closed once the server listens; Addr is then its address.
func (s *Source) Ready() <-chan struct{} { return s.ready }

// Addr is the address the server listens on (nil before Ready).
func (s *Source) Addr() net.Addr {
	if a := s.addr.Load(); a != nil {
		return *a
	}
	return nil
}

// Run serves until ctx ends, then stops accepting and waits (bounded) for requests in flight.
func (s *Source) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if s.certs != nil {
		srv.TLSConfig = &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: s.certs.get,
			// Certificates are verified in the handler, so a wrong one gets a counted 401
			// instead of a silent handshake failure.
			ClientAuth: tls.RequestClientCert,
		}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	a := ln.Addr()
	s.addr.Store(&a)
	close(s.ready)
	s.log.Info("webhook listening", "addr", a.String(), "tls", s.certs != nil)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("webhook: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), s.cfg.PublishTimeout+5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		srv.Close()
	}
	return nil
}

// ServeHTTP handles POST /clusters/<name>/audit.
func (s *Source) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	code, msg := s.serve(w, r)
	s.requests.Add(r.Context(), 1, metric.WithAttributes(attribute.String("source", s.source), attribute.Int("code", code)))
	if code == http.StatusOK {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		io.WriteString(w, "{}\n")
		return
	}
	http.Error(w, msg, code)
}

func (s *Source) serve(w http.ResponseWriter, r *http.Request) (int, string) {
	name, ok := strings.CutPrefix(r.URL.Path, "/clusters/")
	name, ok2 := strings.CutSuffix(name, "/audit")
	cl := s.clusters[name]
	if !ok || !ok2 || cl == nil {
		return http.StatusNotFound, "not found: POST audit events to /clusters/<name>/audit"
	}
	if code, reason := s.authenticate(r, cl); code != 0 {
		s.authFail.Add(r.Context(), 1, metric.WithAttributes(attribute.String("source", s.source), attribute.String("cluster", name), attribute.String("reason", reason)))
		s.log.Warn("webhook request refused", "cluster", name, "reason", reason, "remote", r.RemoteAddr)
		if code == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="nhiwatch"`)
		}
		return code, http.StatusText(code)
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return http.StatusMethodNotAllowed, "POST only"
	}
	// Backpressure: past max_inflight the API server is told to come back later.
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		w.Header().Set("Retry-After", strconv.Itoa(int(s.cfg.RetryAfter.Seconds())))
		return http.StatusServiceUnavailable, "busy, retry later"
	}
	body, code, err := s.readBody(w, r)
	if err != nil {
		if code == http.StatusBadRequest {
			s.reject(r.Context(), cl.name, body, err)
		}
		return code, err.Error()
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.PublishTimeout)
	defer cancel()
	if err := s.publish(ctx, cl.name, body); err != nil {
		var bad badRequest
		if errors.As(err, &bad) {
			s.reject(r.Context(), cl.name, body, bad.err)
			return http.StatusBadRequest, bad.Error()
		}
		s.log.Warn("webhook publish failed, asking the API server to retry", "cluster", cl.name, "error", err)
		w.Header().Set("Retry-After", strconv.Itoa(int(s.cfg.RetryAfter.Seconds())))
		return http.StatusServiceUnavailable, "events not stored, retry later"
	}
	return http.StatusOK, ""
}

// authenticate returns 0 when the request carries every credential the cluster needs, else
// 401 (missing or unverifiable credentials) or 403 (valid, but not this cluster's).
func (s *Source) authenticate(r *http.Request, cl *cluster) (int, string) {
	if cl.tokens != nil {
		auth := r.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok || tok == "" {
			return http.StatusUnauthorized, "no bearer token"
		}
		sums, err := cl.tokens.get()
		if err != nil || !tokenMatches(strings.TrimSpace(tok), sums.([][32]byte)) {
			return http.StatusUnauthorized, "wrong bearer token"
		}
	}
	if len(cl.names) > 0 {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			return http.StatusUnauthorized, "no client certificate"
		}
		pool, err := s.caPool.get()
		if err != nil {
			return http.StatusUnauthorized, "client CA unavailable"
		}
		names, err := verifyClient(r.TLS.PeerCertificates, pool.(*x509.CertPool))
		if err != nil {
			return http.StatusUnauthorized, "untrusted client certificate"
		}
		if !slices.ContainsFunc(names, func(n string) bool { return slices.Contains(cl.names, n) }) {
			return http.StatusForbidden, "client certificate of another identity"
		}
	}
	return 0, ""
}

// readBody reads and decompresses the body within the configured limits.
func (s *Source) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity", "gzip":
	default:
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("content encoding %q is not supported (gzip or none)", enc)
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body exceeds %d bytes", s.cfg.MaxBodyBytes)
		}
		return nil, http.StatusBadRequest, fmt.Errorf("read body: %w", err)
	}
	// split.ReadAll recognises gzip by its magic bytes, with or without the header.
	data, err := split.ReadAll(bytes.NewReader(raw), split.Limits{MaxContainerBytes: s.cfg.MaxDecompressedBytes, MaxRecordBytes: s.limits.MaxRecordBytes})
	if errors.Is(err, split.ErrTooLarge) {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body exceeds %d bytes decompressed", s.cfg.MaxDecompressedBytes)
	}
	if err != nil {
		return raw, http.StatusBadRequest, err
	}
	return data, 0, nil
}

type badRequest struct{ err error }

func (b badRequest) Error() string { return b.err.Error() }

// publish splits an EventList (or a single Event) and publishes its events; it returns once
// JetStream acknowledged all of them.
func (s *Source) publish(ctx context.Context, clusterName string, body []byte) error {
	sk := s.sinks[clusterName]
	batch := sk.NewBatch("webhook:" + clusterName)
	var p fastjson.Parser
	emit := func(r split.Record) error {
		return batch.Add(sink.Record{Position: position(&p, clusterName, r.Data), Data: r.Data, Time: r.Time})
	}
	reject := func(r split.Rejected) error {
		pos := clusterName + "/" + contentKey(r.Data) + "#" + strconv.Itoa(r.Index)
		return sk.Reject(ctx, pos, r.Data, r.Reason)
	}
	if err := split.New(s.limits).Split(body, emit, reject); err != nil {
		if split.Unreadable(err) {
			return badRequest{err}
		}
		return err
	}
	return sk.PublishAll(ctx, batch)
}

// position is an event's stable place: the cluster, its audit id and stage (an API server
// that resends a batch sends the same events), or a hash of its content when it has none.
func position(p *fastjson.Parser, clusterName string, data []byte) string {
	v, err := p.ParseBytes(data)
	if err == nil {
		id, stage := v.GetStringBytes("auditID"), v.GetStringBytes("stage")
		if len(id) > 0 && len(id) <= 128 {
			return clusterName + "/" + string(id) + "/" + string(stage)
		}
	}
	return clusterName + "/" + contentKey(data)
}

func contentKey(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:16])
}

// reject dead-letters a request body that is not an audit batch.
func (s *Source) reject(ctx context.Context, clusterName string, body []byte, reason error) {
	kept := body
	if len(kept) > 64<<10 {
		kept = kept[:64<<10]
	}
	if err := s.sinks[clusterName].Reject(ctx, clusterName+"/"+contentKey(body), redact.Text(kept), reason); err != nil {
		s.log.Warn("dead-letter failed", "cluster", clusterName, "error", err)
	}
}
