package triage

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client calls the notify triage API. Its methods mirror Store's.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// NewClient calls the API at baseURL with a bearer token (empty when tlsConfig carries a
// client certificate). tlsConfig may be nil.
func NewClient(baseURL, token string, tlsConfig *tls.Config) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errors.New("triage API URL must be http(s)://host[:port]")
	}
	tr := &http.Transport{TLSClientConfig: tlsConfig, Proxy: http.ProxyFromEnvironment}
	return &Client{
		base: strings.TrimRight(baseURL, "/"), token: token,
		http: &http.Client{Timeout: 30 * time.Second, Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}, nil
}

// List lists findings.
func (c *Client) List(ctx context.Context, f Filter) ([]Item, error) {
	q := url.Values{}
	for k, v := range map[string]string{"status": f.Status, "severity": f.MinSeverity, "detector": f.Detector, "identity": f.Identity} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out struct {
		Findings []Item `json:"findings"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/findings?"+q.Encode(), nil, &out)
	return out.Findings, err
}

// Show returns one finding with its history.
func (c *Client) Show(ctx context.Context, id string) (Detail, error) {
	var d Detail
	if !ValidFindingID(id) {
		return d, errorf("bad finding id")
	}
	err := c.do(ctx, http.MethodGet, "/v1/findings/"+id, nil, &d)
	return d, err
}

// Change changes a finding's status; the API records the authenticated user as its author.
func (c *Client) Change(ctx context.Context, ch Change) (Status, error) {
	var st Status
	if !ValidFindingID(ch.FindingID) {
		return st, errorf("bad finding id")
	}
	action := map[string]string{StatusAcknowledged: "ack", StatusResolved: "resolve", StatusSuppressed: "suppress", StatusOpen: "reopen"}[ch.To]
	if action == "" {
		return st, errorf("unknown status %q", ch.To)
	}
	err := c.do(ctx, http.MethodPost, "/v1/findings/"+ch.FindingID+"/"+action, ch, &st)
	return st, err
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("triage API: %w", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(data, &e)
		msg := e.Error
		if msg == "" {
			msg = http.StatusText(resp.StatusCode)
		}
		switch resp.StatusCode {
		case http.StatusNotFound:
			return fmt.Errorf("%w: %s", ErrNotFound, msg)
		case http.StatusBadRequest:
			return fmt.Errorf("%w: %s", ErrInvalid, msg)
		}
		return fmt.Errorf("triage API: HTTP %d: %s", resp.StatusCode, msg)
	}
	return json.Unmarshal(data, out)
}
