// Package api is notify's triage HTTP API: list and show findings, and acknowledge, resolve,
// suppress or reopen them. Every request is authenticated, by a bearer token from the
// tokens file (each token names its user; compared in constant time) or by a client
// certificate signed by the configured CA (the user is its common name), and every change
// records who made it, how they authenticated, when and why.
//
//	GET  /v1/findings?status=open&severity=high&detector=…&identity=…&limit=100
//	GET  /v1/findings/{id}
//	POST /v1/findings/{id}/ack|resolve|suppress|reopen   {"reason": "…", "for": "7d" | "until": "…"}
package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nhiwatch/nhiwatch/services/notify/triage"
)

// Config configures the API server.
type Config struct {
	// Listen is host:port; empty disables the API.
	Listen string `yaml:"listen" env:"LISTEN"`
	// TokensFile holds one "user:token" per line (# comments); tokens are at least 20 bytes.
	TokensFile string `yaml:"tokens_file" env:"TOKENS_FILE"`
	// TLSCertFile and TLSKeyFile serve HTTPS.
	TLSCertFile string `yaml:"tls_cert_file" env:"TLS_CERT_FILE"`
	TLSKeyFile  string `yaml:"tls_key_file" env:"TLS_KEY_FILE"`
	// ClientCAFile enables client-certificate authentication (needs TLS).
	ClientCAFile string `yaml:"client_ca_file" env:"CLIENT_CA_FILE"`
	// AllowInsecure serves plain HTTP on a non-loopback address (tokens then cross the
	// network in clear: only behind a TLS-terminating proxy).
	AllowInsecure bool `yaml:"allow_insecure" env:"ALLOW_INSECURE"`
}

// Enabled reports whether the API is served.
func (c Config) Enabled() bool { return c.Listen != "" }

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("notify.api.listen: %w", err)
	}
	tlsOn := c.TLSCertFile != "" || c.TLSKeyFile != ""
	switch {
	case (c.TLSCertFile == "") != (c.TLSKeyFile == ""):
		return errors.New("notify.api: tls_cert_file and tls_key_file go together")
	case c.TokensFile == "" && c.ClientCAFile == "":
		return errors.New("notify.api: tokens_file or client_ca_file is required (the API never runs without authentication)")
	case c.ClientCAFile != "" && !tlsOn:
		return errors.New("notify.api: client_ca_file needs tls_cert_file and tls_key_file")
	case !tlsOn && !c.AllowInsecure && !loopback(host):
		return errors.New("notify.api: plain HTTP is only served on a loopback address; configure TLS or allow_insecure")
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Service is what the API serves; *triage.Store implements it.
type Service interface {
	List(ctx context.Context, f triage.Filter) ([]triage.Item, error)
	Show(ctx context.Context, id string) (triage.Detail, error)
	Change(ctx context.Context, c triage.Change) (triage.Status, error)
}

var _ Service = (*triage.Store)(nil)

// Server serves the API.
type Server struct {
	cfg    Config
	svc    Service
	log    *slog.Logger
	tokens *tokens
	// OnAuthFailure is called for every refused request (for metrics); may be nil.
	OnAuthFailure func(reason string)
}

// New reads the tokens file.
func New(cfg Config, svc Service, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, svc: svc, log: log}
	if cfg.TokensFile != "" {
		t, err := loadTokens(cfg.TokensFile)
		if err != nil {
			return nil, err
		}
		s.tokens = t
	}
	return s, nil
}

// Serve listens until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	tlsOn := s.cfg.TLSCertFile != ""
	if tlsOn {
		tc, err := s.TLSConfig()
		if err != nil {
			return err
		}
		srv.TLSConfig = tc
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("notify api: %w", err)
	}
	s.log.Info("triage API listening", "addr", ln.Addr().String(), "tls", tlsOn, "client_certificates", s.cfg.ClientCAFile != "")
	errc := make(chan error, 1)
	go func() {
		if tlsOn {
			errc <- srv.ServeTLS(ln, s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("notify api: %w", err)
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(shutdownCtx)
	}
}

// TLSConfig is the server's TLS configuration: TLS 1.2 or later, and client certificates
// verified against the client CA when one is configured.
func (s *Server) TLSConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(s.cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("notify api client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("notify api client_ca_file holds no PEM certificate")
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return tc, nil
}

// Handler returns the API's routes behind authentication.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/findings", s.list)
	mux.HandleFunc("GET /v1/findings/{id}", s.show)
	mux.HandleFunc("POST /v1/findings/{id}/{action}", s.change)
	return s.authenticate(mux)
}

type userKey struct{}

type principal struct{ user, via string }

func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, reason := s.who(r)
		if reason != "" {
			s.log.Warn("triage API request refused", "reason", reason, "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
			if s.OnAuthFailure != nil {
				s.OnAuthFailure(reason)
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="nhiwatch"`)
			writeError(w, http.StatusUnauthorized, "authentication required")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, p)))
	})
}

// who identifies the caller: a verified client certificate, else a bearer token.
func (s *Server) who(r *http.Request) (principal, string) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		cn := r.TLS.VerifiedChains[0][0].Subject.CommonName
		if cn == "" {
			return principal{}, "client certificate without a common name"
		}
		return principal{user: cn, via: "certificate"}, ""
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return principal{}, "no credentials"
	}
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || s.tokens == nil {
		return principal{}, "unsupported authorization scheme"
	}
	user, ok := s.tokens.lookup(strings.TrimSpace(tok))
	if !ok {
		return principal{}, "unknown token"
	}
	return principal{user: user, via: "token"}, ""
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := triage.Filter{Status: q.Get("status"), MinSeverity: q.Get("severity"), Detector: q.Get("detector"), Identity: q.Get("identity")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil {
			writeError(w, http.StatusBadRequest, "limit must be a number")
			return
		}
		f.Limit = n
	}
	items, err := s.svc.List(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"findings": items})
}

func (s *Server) show(w http.ResponseWriter, r *http.Request) {
	d, err := s.svc.Show(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

var actions = map[string]string{
	"ack": triage.StatusAcknowledged, "acknowledge": triage.StatusAcknowledged,
	"resolve": triage.StatusResolved, "suppress": triage.StatusSuppressed, "reopen": triage.StatusOpen,
}

func (s *Server) change(w http.ResponseWriter, r *http.Request) {
	to, ok := actions[r.PathValue("action")]
	if !ok {
		writeError(w, http.StatusNotFound, "unknown action (ack, resolve, suppress, reopen)")
		return
	}
	var c triage.Change
	dec := json.NewDecoder(io.LimitReader(r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		writeError(w, http.StatusBadRequest, "body must be JSON: {\"reason\": …, \"for\" or \"until\" for suppress}")
		return
	}
	p := r.Context().Value(userKey{}).(principal)
	c.FindingID, c.To, c.By, c.Via = r.PathValue("id"), to, p.user, "api-"+p.via
	st, err := s.svc.Change(r.Context(), c)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("finding status changed", "finding_id", st.FindingID, "status", st.Status, "previous", st.Previous, "by", st.By, "via", st.Via)
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, triage.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, triage.ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		s.log.Error("triage API request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// tokens is the tokens file, re-read when it changes (checked at most every 5 s), so a
// token can be added or revoked without a restart.
type tokens struct {
	path    string
	mu      sync.Mutex
	entries []tokenEntry
	mtime   time.Time
	checked time.Time
}

type tokenEntry struct {
	user string
	hash [32]byte
}

// MinTokenLen is the shortest token accepted in the tokens file.
const MinTokenLen = 20

func loadTokens(path string) (*tokens, error) {
	t := &tokens{path: path}
	if err := t.reload(); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *tokens) reload() error {
	fi, err := os.Stat(t.path)
	if err != nil {
		return fmt.Errorf("notify api tokens_file: %w", err)
	}
	data, err := os.ReadFile(t.path)
	if err != nil {
		return fmt.Errorf("notify api tokens_file: %w", err)
	}
	entries, err := ParseTokens(data)
	if err != nil {
		return fmt.Errorf("notify api tokens_file: %w", err)
	}
	t.entries, t.mtime = entries, fi.ModTime()
	return nil
}

// ParseTokens reads "user:token" lines. Errors name the line, never the token.
func ParseTokens(data []byte) ([]tokenEntry, error) {
	var out []tokenEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, tok, ok := strings.Cut(line, ":")
		user, tok = strings.TrimSpace(user), strings.TrimSpace(tok)
		switch {
		case !ok || user == "":
			return nil, fmt.Errorf("line %d: want user:token", n)
		case len(tok) < MinTokenLen:
			return nil, fmt.Errorf("line %d: the token of %s is shorter than %d bytes", n, user, MinTokenLen)
		}
		out = append(out, tokenEntry{user: user, hash: sha256.Sum256([]byte(tok))})
	}
	return out, sc.Err()
}

// lookup finds the user of tok. It compares the token's hash with every entry in constant
// time, so the answer's timing tells nothing about how close a guess was.
func (t *tokens) lookup(tok string) (string, bool) {
	t.mu.Lock()
	if time.Since(t.checked) > 5*time.Second {
		t.checked = time.Now()
		if fi, err := os.Stat(t.path); err == nil && !fi.ModTime().Equal(t.mtime) {
			_ = t.reload() // on error the previous tokens stay in force
		}
	}
	entries := t.entries
	t.mu.Unlock()
	h := sha256.Sum256([]byte(tok))
	user, found := "", 0
	for _, e := range entries {
		if subtle.ConstantTimeCompare(h[:], e.hash[:]) == 1 {
			user, found = e.user, 1
		}
	}
	return user, found == 1
}
