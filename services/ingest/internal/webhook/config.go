package webhook

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Cluster is one Kubernetes cluster allowed to send audit events, at
// /clusters/<name>/audit. It must present every credential configured for it.
type Cluster struct {
	// Name names the cluster in the URL path, in event ids and in the records' cluster.
	Name string `yaml:"name"`
	// TokenFile holds the bearer token(s) the cluster sends, one per line (several allow a
	// rotation without downtime). It is re-read when it changes.
	TokenFile string `yaml:"token_file"`
	// ClientNames are the client-certificate identities (subject CN or DNS SAN) of the
	// cluster's API servers; the certificate must chain to client_ca_file.
	ClientNames []string `yaml:"client_names"`
}

// Config configures a webhook source.
type Config struct {
	// Listen is the address to serve on, e.g. ":8443".
	Listen string `yaml:"listen"`
	// TLSCertFile and TLSKeyFile are the server certificate and key (re-read when they
	// change, so a renewed certificate needs no restart).
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// ClientCAFile holds the CAs that sign API-server client certificates.
	ClientCAFile string `yaml:"client_ca_file"`
	// AllowPlainHTTP serves without TLS, for a TLS-terminating proxy in front; only bearer
	// tokens can authenticate then.
	AllowPlainHTTP bool `yaml:"allow_plain_http"`
	// Clusters are the clusters allowed to send.
	Clusters []Cluster `yaml:"clusters"`
	// MaxBodyBytes bounds a request body as sent; MaxDecompressedBytes bounds it after gzip.
	MaxBodyBytes         int64 `yaml:"max_body_bytes"`
	MaxDecompressedBytes int64 `yaml:"max_decompressed_bytes"`
	// MaxInflight is how many requests are processed at once; more get 503.
	MaxInflight int `yaml:"max_inflight"`
	// PublishTimeout bounds the wait for JetStream; past it the request gets 503 and the API
	// server sends the batch again (the same ids, so nothing is stored twice).
	PublishTimeout time.Duration `yaml:"publish_timeout"`
	// RetryAfter is the Retry-After of a 503.
	RetryAfter time.Duration `yaml:"retry_after"`
}

// DefaultConfig returns the defaults of a webhook source.
func DefaultConfig() Config {
	return Config{
		Listen:               ":8443",
		MaxBodyBytes:         16 << 20,
		MaxDecompressedBytes: 128 << 20,
		MaxInflight:          16,
		PublishTimeout:       20 * time.Second,
		RetryAfter:           5 * time.Second,
	}
}

// WithDefaults fills the settings a configuration file left out.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	if c.Listen == "" {
		c.Listen = d.Listen
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = d.MaxBodyBytes
	}
	if c.MaxDecompressedBytes == 0 {
		c.MaxDecompressedBytes = d.MaxDecompressedBytes
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = d.MaxInflight
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = d.PublishTimeout
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = d.RetryAfter
	}
	return c
}

var clusterName = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`)

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if c.AllowPlainHTTP {
		if c.TLSCertFile != "" || c.ClientCAFile != "" {
			return errors.New("webhook: allow_plain_http excludes tls_cert_file and client_ca_file")
		}
	} else if c.TLSCertFile == "" || c.TLSKeyFile == "" {
		return errors.New("webhook: tls_cert_file and tls_key_file are required (or allow_plain_http behind a TLS proxy)")
	}
	if len(c.Clusters) == 0 {
		return errors.New("webhook: at least one cluster is required")
	}
	names := map[string]bool{}
	for i, cl := range c.Clusters {
		if !clusterName.MatchString(cl.Name) {
			return fmt.Errorf("webhook: cluster %d: name %q must be lower-case letters, digits, '.', '_' or '-'", i, cl.Name)
		}
		if names[cl.Name] {
			return fmt.Errorf("webhook: cluster %q is listed twice", cl.Name)
		}
		names[cl.Name] = true
		if cl.TokenFile == "" && len(cl.ClientNames) == 0 {
			return fmt.Errorf("webhook: cluster %q needs token_file or client_names", cl.Name)
		}
		if len(cl.ClientNames) > 0 && c.ClientCAFile == "" {
			return fmt.Errorf("webhook: cluster %q uses client_names, which need client_ca_file", cl.Name)
		}
	}
	switch {
	case c.MaxBodyBytes <= 0 || c.MaxDecompressedBytes < c.MaxBodyBytes:
		return errors.New("webhook: max_body_bytes must be positive and at most max_decompressed_bytes")
	case c.MaxInflight < 1:
		return errors.New("webhook: max_inflight must be positive")
	case c.PublishTimeout <= 0 || c.RetryAfter <= 0:
		return errors.New("webhook: publish_timeout and retry_after must be positive")
	}
	return nil
}
