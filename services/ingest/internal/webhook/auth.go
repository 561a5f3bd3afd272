package webhook

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"
)

// watchedFile is a file re-read when its modification time or size changes, checked at
// most once a second.
type watchedFile struct {
	path    string
	parse   func([]byte) (any, error)
	mu      sync.Mutex
	checked time.Time
	mtime   time.Time
	size    int64
	value   any
}

func newWatchedFile(path string, parse func([]byte) (any, error)) (*watchedFile, error) {
	f := &watchedFile{path: path, parse: parse}
	if _, err := f.get(); err != nil {
		return nil, err
	}
	return f, nil
}

// get returns the parsed content, re-reading the file when it changed. When a re-read fails
// (a half-written file), the previous value stays.
func (f *watchedFile) get() (any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.value != nil && time.Since(f.checked) < time.Second {
		return f.value, nil
	}
	f.checked = time.Now()
	info, err := os.Stat(f.path)
	if err == nil && f.value != nil && info.ModTime().Equal(f.mtime) && info.Size() == f.size {
		return f.value, nil
	}
	var v any
	if err == nil {
		var data []byte
		if data, err = os.ReadFile(f.path); err == nil {
			v, err = f.parse(data)
		}
	}
	if err != nil {
		if f.value != nil {
			return f.value, nil
		}
		return nil, fmt.Errorf("read %s: %w", f.path, err)
	}
	f.value, f.mtime, f.size = v, info.ModTime(), info.Size()
	return v, nil
}

// parseTokens reads one token per line; the hashes are kept, never the tokens.
func parseTokens(data []byte) (any, error) {
	var sums [][32]byte
	for line := range bytes.Lines(data) {
		if tok := bytes.TrimSpace(line); len(tok) > 0 {
			sums = append(sums, sha256.Sum256(tok))
		}
	}
	if len(sums) == 0 {
		return nil, errors.New("no token in file")
	}
	return sums, nil
}

// tokenMatches compares a presented token with the cluster's in constant time (over hashes
// of equal length, so neither the content nor the length leaks).
func tokenMatches(presented string, sums [][32]byte) bool {
	got := sha256.Sum256([]byte(presented))
	ok := 0
	for _, s := range sums {
		ok |= subtle.ConstantTimeCompare(got[:], s[:])
	}
	return ok == 1
}

func parseCertPool(data []byte) (any, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, errors.New("no PEM certificate in file")
	}
	return pool, nil
}

// verifyClient checks a presented client certificate chain against the CA pool and returns
// its identities (subject CN and DNS SANs).
func verifyClient(certs []*x509.Certificate, pool *x509.CertPool) ([]string, error) {
	if len(certs) == 0 {
		return nil, errors.New("no client certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	names := slices.Clone(certs[0].DNSNames)
	if cn := certs[0].Subject.CommonName; cn != "" {
		names = append(names, cn)
	}
	return names, nil
}

// certLoader serves the server certificate, reloaded when its files change.
type certLoader struct {
	cert, key *watchedFile
	mu        sync.Mutex
	certPEM   []byte
	keyPEM    []byte
	pair      *tls.Certificate
}

func newCertLoader(certFile, keyFile string) (*certLoader, error) {
	raw := func(b []byte) (any, error) { return b, nil }
	cert, err := newWatchedFile(certFile, raw)
	if err != nil {
		return nil, err
	}
	key, err := newWatchedFile(keyFile, raw)
	if err != nil {
		return nil, err
	}
	l := &certLoader{cert: cert, key: key}
	if _, err := l.get(nil); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *certLoader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c, err := l.cert.get()
	if err != nil {
		return nil, err
	}
	k, err := l.key.get()
	if err != nil {
		return nil, err
	}
	certPEM, keyPEM := c.([]byte), k.([]byte)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pair != nil && bytes.Equal(certPEM, l.certPEM) && bytes.Equal(keyPEM, l.keyPEM) {
		return l.pair, nil
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if l.pair != nil {
			return l.pair, nil // a renewal half-written: keep serving the previous pair
		}
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	l.pair, l.certPEM, l.keyPEM = &pair, certPEM, keyPEM
	return l.pair, nil
}
