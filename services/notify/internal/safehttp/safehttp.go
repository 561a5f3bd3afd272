// Package safehttp builds the HTTP client notify talks to Slack, PagerDuty and webhooks with.
// Destination URLs come from configuration that an attacker may influence (a webhook URL in
// a file, a DNS record), so the client refuses what would turn notify into a proxy into the
// private network: plain http, redirects, and connections to private, loopback, link-local
// and other non-public addresses. The address is checked after DNS resolution, on the socket
// about to connect (net.Dialer.Control), so a name that resolves to 10.0.0.1 or rebinds
// between two lookups is refused too.
package safehttp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"
)

// Config says what the client may reach.
type Config struct {
	// Timeout bounds one request, from dial to the end of the response body.
	Timeout time.Duration `yaml:"timeout"`
	// AllowInsecureHTTP permits http:// URLs. Only for tests and local receivers.
	AllowInsecureHTTP bool `yaml:"allow_insecure_http"`
	// AllowPrivateNetworks permits private, loopback and link-local addresses, for a
	// receiver inside the network (an on-premises SIEM) and for tests.
	AllowPrivateNetworks bool `yaml:"allow_private_networks"`
}

// DefaultConfig is https to public addresses with a 10 s timeout.
func DefaultConfig() Config { return Config{Timeout: 10 * time.Second} }

// Validate reports a setting that cannot work.
func (c Config) Validate() error {
	if c.Timeout <= 0 || c.Timeout > 5*time.Minute {
		return fmt.Errorf("http.timeout must be between 0 and 5m, got %s", c.Timeout)
	}
	return nil
}

// ErrRefusedAddress is returned when a connection would reach a non-public address.
var ErrRefusedAddress = errors.New("refused: destination address is not public")

// ErrInsecureScheme is returned for a URL that is not https.
var ErrInsecureScheme = errors.New("refused: destination URL must use https")

// ErrRedirect is returned when a server answers with a redirect, which is never followed.
var ErrRedirect = errors.New("refused: destination answered with a redirect")

// NewClient returns a client that enforces c.
func NewClient(c Config) *http.Client {
	dialer := &net.Dialer{
		Timeout:   c.Timeout,
		KeepAlive: 30 * time.Second,
		Control: func(network, address string, _ syscall.RawConn) error {
			if c.AllowPrivateNetworks {
				return nil
			}
			return checkAddress(address)
		},
	}
	transport := &http.Transport{
		// No proxy from the environment: a proxy would make the address check meaningless.
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   c.Timeout,
		ResponseHeaderTimeout: c.Timeout,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Timeout:   c.Timeout,
		Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// CheckURL reports whether u may be requested under c: https (or http when allowed), with a
// host. Address checks happen when connecting.
func CheckURL(c Config, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse quotes the URL in its error, and destination URLs can be secrets.
		return errors.New("destination URL does not parse")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && c.AllowInsecureHTTP:
	default:
		return ErrInsecureScheme
	}
	if u.Host == "" {
		return errors.New("destination URL has no host")
	}
	if u.User != nil {
		return errors.New("destination URL must not carry credentials")
	}
	return nil
}

// checkAddress refuses an ip:port that is not a public unicast address.
func checkAddress(address string) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRefusedAddress, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: %q is not an IP address", ErrRefusedAddress, host)
	}
	if !IsPublic(ip) {
		return fmt.Errorf("%w: %s", ErrRefusedAddress, ip)
	}
	return nil
}

// nonPublic lists ranges that are not private, loopback or link-local by netip's methods
// but are not the public internet either.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // TEST-NET-1
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // TEST-NET-2
	netip.MustParsePrefix("203.0.113.0/24"),  // TEST-NET-3
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
}

// IsPublic reports whether ip is a global unicast address outside the private, loopback,
// link-local, shared and reserved ranges. IPv4-mapped IPv6 addresses are judged as IPv4.
func IsPublic(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsUnspecified() || ip.IsLoopback() || ip.IsPrivate() ||
		ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() ||
		ip.IsMulticast() || !ip.IsGlobalUnicast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// Do sends req with client and strips the URL from transport errors: *url.Error quotes the
// request URL, and a Slack webhook or a generic webhook URL is a secret.
func Do(ctx context.Context, client *http.Client, req *http.Request) (*http.Response, error) {
	resp, err := client.Do(req.WithContext(ctx))
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, err
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		resp.Body.Close()
		return nil, fmt.Errorf("%w (HTTP %d)", ErrRedirect, resp.StatusCode)
	}
	return resp, nil
}
