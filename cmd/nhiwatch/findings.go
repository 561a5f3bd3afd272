package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/nhiwatch/nhiwatch/pkg/platform/base"
	"github.com/nhiwatch/nhiwatch/pkg/platform/chdb"
	"github.com/nhiwatch/nhiwatch/services/notify/triage"
)

// triageService is what the findings command drives: the store (NATS KV and ClickHouse
// from the configuration file) or the notify triage API.
type triageService interface {
	List(ctx context.Context, f triage.Filter) ([]triage.Item, error)
	Show(ctx context.Context, id string) (triage.Detail, error)
	Change(ctx context.Context, c triage.Change) (triage.Status, error)
}

const findingsUsage = `usage: nhiwatch findings [connection flags] <command> [flags] [ID]

commands:
  list      [-status S] [-severity MIN] [-detector D] [-identity SUBSTR] [-limit N]
  show      ID
  ack       ID -reason TEXT
  resolve   ID -reason TEXT
  suppress  ID -reason TEXT (-for 7d | -until 2025-01-31T00:00:00Z)
  reopen    ID -reason TEXT

connection (one of):
  -config FILE        talk to NATS KV (and ClickHouse) as configured; changes are made as -user
  -api URL            talk to the notify triage API (https://host:port), authenticated by
                      -token-file FILE (a bearer token) or -cert-file/-key-file (a client
                      certificate); -ca-file verifies the server
`

// findingsCmd lists, shows and triages findings.
func findingsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("findings", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, findingsUsage) }
	configPath := fs.String("config", os.Getenv("NHIWATCH_CONFIG"), "configuration file (YAML)")
	apiURL := fs.String("api", os.Getenv("NHIWATCH_API"), "notify triage API URL")
	tokenFile := fs.String("token-file", os.Getenv("NHIWATCH_API_TOKEN_FILE"), "file holding the API bearer token")
	caFile := fs.String("ca-file", "", "CA certificates (PEM) of the API server")
	certFile := fs.String("cert-file", "", "client certificate (PEM) for the API")
	keyFile := fs.String("key-file", "", "client key (PEM) for the API")
	asUser := fs.String("user", "", "who makes the change, with -config (default: the OS user)")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return usageError{"findings needs a command"}
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]

	sub := flag.NewFlagSet("findings "+cmd, flag.ContinueOnError)
	sub.SetOutput(stderr)
	asJSON := sub.Bool("json", false, "print JSON")
	var flt triage.Filter
	var reason, forDur, until string
	switch cmd {
	case "list":
		sub.StringVar(&flt.Status, "status", "", "open, acknowledged, resolved or suppressed")
		sub.StringVar(&flt.MinSeverity, "severity", "", "lowest severity: info, low, medium, high, critical")
		sub.StringVar(&flt.Detector, "detector", "", "detector name")
		sub.StringVar(&flt.Identity, "identity", "", "part of the identity id")
		sub.IntVar(&flt.Limit, "limit", 50, "at most this many findings")
	case "show":
	case "ack", "acknowledge", "resolve", "suppress", "reopen":
		sub.StringVar(&reason, "reason", "", "why (required; recorded with your name)")
		if cmd == "suppress" {
			sub.StringVar(&forDur, "for", "", "how long: 12h, 7d (at most 366d)")
			sub.StringVar(&until, "until", "", "until when, RFC 3339")
		}
	default:
		fs.Usage()
		return usageError{fmt.Sprintf("findings: unknown command %q", cmd)}
	}
	// Flags may come before or after the ID.
	var pos []string
	for {
		if err := sub.Parse(rest); err != nil {
			return usageError{err.Error()}
		}
		if sub.NArg() == 0 {
			break
		}
		pos, rest = append(pos, sub.Arg(0)), sub.Args()[1:]
	}
	wantIDs := 1
	if cmd == "list" {
		wantIDs = 0
	}
	if len(pos) != wantIDs {
		return usageError{fmt.Sprintf("findings %s takes %d finding id(s), got %d", cmd, wantIDs, len(pos))}
	}

	svc, author, closeFn, err := connectTriage(ctx, *configPath, *apiURL, *tokenFile, *caFile, *certFile, *keyFile, *asUser)
	if err != nil {
		return err
	}
	defer closeFn()

	switch cmd {
	case "list":
		items, err := svc.List(ctx, flt)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(stdout, items)
		}
		printList(stdout, items)
		return nil
	case "show":
		d, err := svc.Show(ctx, pos[0])
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(stdout, d)
		}
		printDetail(stdout, d)
		return nil
	}
	c := triage.Change{FindingID: pos[0], Reason: reason, For: forDur, By: author, Via: "cli"}
	c.To = map[string]string{"ack": triage.StatusAcknowledged, "acknowledge": triage.StatusAcknowledged, "resolve": triage.StatusResolved, "suppress": triage.StatusSuppressed, "reopen": triage.StatusOpen}[cmd]
	if until != "" {
		if c.Until, err = time.Parse(time.RFC3339, until); err != nil {
			return usageError{"-until must be RFC 3339, e.g. 2025-01-31T00:00:00Z"}
		}
	}
	if strings.TrimSpace(reason) == "" {
		return usageError{"-reason is required: every change records why"}
	}
	st, err := svc.Change(ctx, c)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, st)
	}
	line := fmt.Sprintf("finding %s: %s by %s (was %s)", st.FindingID, st.Status, st.By, st.Previous)
	if !st.Until.IsZero() {
		line += ", until " + st.Until.Format(time.RFC3339)
	}
	fmt.Fprintln(stdout, line)
	return nil
}

// connectTriage opens the store from the configuration, or a client of the API.
func connectTriage(ctx context.Context, configPath, apiURL, tokenFile, caFile, certFile, keyFile, asUser string) (triageService, string, func(), error) {
	if apiURL != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if caFile != "" {
			pem, err := os.ReadFile(caFile)
			if err != nil {
				return nil, "", nil, err
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, "", nil, errors.New("-ca-file holds no PEM certificate")
			}
		}
		if certFile != "" || keyFile != "" {
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return nil, "", nil, fmt.Errorf("client certificate: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		var token string
		if tokenFile != "" {
			b, err := os.ReadFile(tokenFile)
			if err != nil {
				return nil, "", nil, fmt.Errorf("-token-file: %w", err)
			}
			token = strings.TrimSpace(string(b))
		}
		if token == "" && len(tc.Certificates) == 0 {
			return nil, "", nil, usageError{"-api needs -token-file or -cert-file/-key-file"}
		}
		c, err := triage.NewClient(apiURL, token, tc)
		if err != nil {
			return nil, "", nil, err
		}
		return c, "", func() {}, nil
	}
	cfg, err := LoadConfig(configPath)
	if err != nil {
		return nil, "", nil, err
	}
	natsCfg := cfg.NATS
	if natsCfg.URL == "" && cfg.EmbeddedNATS.Listen != "" {
		natsCfg.URL = "nats://" + cfg.EmbeddedNATS.Listen
	}
	if natsCfg.URL == "" {
		return nil, "", nil, usageError{"findings needs nats.url (or embedded_nats.listen) in the configuration, or -api"}
	}
	author := asUser
	if author == "" {
		u, err := user.Current()
		if err != nil || u.Username == "" {
			return nil, "", nil, usageError{"cannot tell who you are: pass -user"}
		}
		author = u.Username
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	nc, js, err := base.ConnectNATS(ctx, natsCfg, "nhiwatch-findings", log)
	if err != nil {
		return nil, "", nil, err
	}
	closeFn := func() { nc.Close() }
	var store *triage.Store
	if cfg.ClickHouse.Enabled() {
		conn, err := chdb.Open(ctx, cfg.ClickHouse)
		if err != nil {
			closeFn()
			return nil, "", nil, err
		}
		closeFn = func() { conn.Close(); nc.Close() }
		store, err = triage.Open(ctx, js, cfg.Streams, conn)
		if err != nil {
			closeFn()
			return nil, "", nil, err
		}
	} else if store, err = triage.Open(ctx, js, cfg.Streams, nil); err != nil {
		closeFn()
		return nil, "", nil, err
	}
	return store, author, closeFn, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printList(w io.Writer, items []triage.Item) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSEVERITY\tSTATUS\tDETECTOR\tIDENTITY\tOWNER\tTIME\tTITLE")
	for _, it := range items {
		f := it.Finding
		owner := f.Owner
		if owner == "" {
			owner = "-"
		}
		when := "-"
		if !f.Time.IsZero() {
			when = f.Time.Format("2006-01-02 15:04Z")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.ID, f.Severity, it.Status.Label(), f.Detector, f.Identity, owner, when, oneLine(f.Title, 80))
	}
	tw.Flush()
}

func printDetail(w io.Writer, d triage.Detail) {
	f := d.Finding
	fmt.Fprintf(w, "%s  [%s] %s\n", f.ID, strings.ToUpper(f.Severity), oneLine(f.Title, 200))
	fmt.Fprintf(w, "  status:     %s", d.Status.Label())
	if d.Status.By != "" {
		fmt.Fprintf(w, " by %s at %s: %s", d.Status.By, d.Status.At.Format(time.RFC3339), oneLine(d.Status.Reason, 200))
	}
	if !d.Status.Until.IsZero() {
		fmt.Fprintf(w, " (until %s)", d.Status.Until.Format(time.RFC3339))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  detector:   %s\n  identity:   %s (%s)\n", f.Detector, f.Identity, f.IdentityKind)
	if f.Credential != "" {
		fmt.Fprintf(w, "  credential: %s\n", f.Credential)
	}
	owner := f.Owner
	if owner == "" {
		owner = "none"
	}
	fmt.Fprintf(w, "  owner:      %s %s\n", owner, f.Team)
	if !f.Time.IsZero() {
		fmt.Fprintf(w, "  when:       %s\n", f.Time.Format(time.RFC3339))
	}
	if f.Summary != "" {
		fmt.Fprintf(w, "  summary:    %s\n", oneLine(f.Summary, 1000))
	}
	for _, e := range f.Evidence {
		fmt.Fprintf(w, "  evidence:   %s %s %s %s\n", e.Time.Format(time.RFC3339), e.Action, e.IP, e.EventID)
	}
	if len(f.OWASPNHI)+len(f.MITREATTACK) > 0 {
		fmt.Fprintf(w, "  references: %s\n", strings.Join(append(append([]string{}, f.OWASPNHI...), f.MITREATTACK...), ", "))
	}
	if f.Recommendation != "" {
		fmt.Fprintf(w, "  next:       %s\n", oneLine(f.Recommendation, 1000))
	}
	if len(d.History) > 0 {
		fmt.Fprintln(w, "  history:")
		for _, h := range d.History {
			fmt.Fprintf(w, "    %s  %s -> %s by %s (%s): %s\n", h.At.Format(time.RFC3339), h.Previous, h.Status, h.By, h.Via, oneLine(h.Reason, 200))
		}
	}
}

// oneLine keeps text from a log on one terminal line, without control characters.
func oneLine(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
