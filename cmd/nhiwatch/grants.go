package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nhiwatch/nhiwatch/pkg/platform/base"
	"github.com/nhiwatch/nhiwatch/pkg/platform/chdb"
	"github.com/nhiwatch/nhiwatch/services/detect"
)

// grantsCmd manages the inventory snapshots detect evaluates grants from:
//
//	nhiwatch grants import [-config FILE] [-cluster NAME] [-gcp-resource RES] [-taken TIME] [-dry-run] FILE|DIR...
//	nhiwatch grants list   [-config FILE]
func grantsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"grants needs a subcommand: import or list"}
	}
	switch args[0] {
	case "import":
		return grantsImport(ctx, args[1:], stdout, stderr)
	case "list":
		return grantsList(ctx, args[1:], stdout, stderr)
	}
	return usageError{fmt.Sprintf("grants: unknown subcommand %q: want import or list", args[0])}
}

// grantsImport reads inventory exports (any supported format, detected per file), stores
// their snapshots in NHI_GRANTS, where a running detect puts them in force at once, and
// writes their grants to ClickHouse when it is configured.
func grantsImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("grants import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", os.Getenv("NHIWATCH_CONFIG"), "configuration file (YAML), the one nhiwatch run uses")
	cluster := fs.String("cluster", "", "Kubernetes cluster of RBAC exports (default: detect.usage.cluster)")
	gcpResource := fs.String("gcp-resource", "", "resource of a bare GCP IAM policy export, e.g. projects/my-project (default: detect.usage.gcp_resource)")
	takenFlag := fs.String("taken", "", "when the exports were taken, RFC 3339 (default: what the file says, else its modification time)")
	dryRun := fs.Bool("dry-run", false, "read and describe the exports; store nothing")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() == 0 {
		return usageError{"grants import needs at least one FILE or DIR"}
	}
	taken, err := parseTime("-taken", *takenFlag)
	if err != nil {
		return err
	}
	cfg, err := LoadConfig(*configPath)
	if err != nil {
		return err
	}
	opts := detect.SnapshotOptions{Cluster: firstNonEmpty(*cluster, cfg.Detect.Usage.Cluster), GCPResource: firstNonEmpty(*gcpResource, cfg.Detect.Usage.GCPResource), Taken: taken}
	files, err := snapshotFiles(fs.Args())
	if err != nil {
		return err
	}
	var snaps []*detect.Snapshot
	var from []string
	failed := 0
	for _, f := range files {
		s, err := detect.ReadSnapshots([]string{f}, opts)
		if err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			failed++
			continue
		}
		for _, x := range s {
			fmt.Fprintf(stdout, "%s: %s\n", f, describeSnapshot(x))
			snaps, from = append(snaps, x), append(from, f)
		}
	}
	if *dryRun || len(snaps) == 0 {
		return importResult(failed)
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	nc, js, err := connectForTools(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	stored, skipped := 0, 0
	for i, s := range snaps {
		err := detect.StoreSnapshot(ctx, js, cfg.Streams, s)
		switch {
		case errors.Is(err, detect.ErrOlderSnapshot):
			fmt.Fprintf(stderr, "%s: %s: not stored: %v\n", from[i], s.Scope, err)
			skipped++
		case err != nil:
			return err
		default:
			stored++
		}
	}
	fmt.Fprintf(stdout, "stored %d snapshots in %s", stored, "NHI_GRANTS")
	if skipped > 0 {
		fmt.Fprintf(stdout, " (%d older than the stored ones, skipped)", skipped)
	}
	fmt.Fprintln(stdout, "; a running detect puts them in force at once")
	if !cfg.ClickHouse.Enabled() {
		fmt.Fprintln(stdout, "ClickHouse: not configured, no grant rows written")
		return importResult(failed)
	}
	conn, err := chdb.Open(ctx, cfg.ClickHouse)
	if err != nil {
		return err
	}
	defer conn.Close()
	rows, creds, err := detect.WriteStoredGrants(ctx, js, cfg.Streams, conn, time.Now().UTC())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ClickHouse %s: wrote %d grant rows and %d credential rows from every stored snapshot\n", cfg.ClickHouse.Database, rows, creds)
	return importResult(failed)
}

func importResult(failed int) error {
	if failed > 0 {
		return fmt.Errorf("%d files could not be read", failed)
	}
	return nil
}

// grantsList prints the snapshots stored in NHI_GRANTS.
func grantsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("grants list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", os.Getenv("NHIWATCH_CONFIG"), "configuration file (YAML), the one nhiwatch run uses")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() != 0 {
		return usageError{"grants list takes no arguments"}
	}
	cfg, err := LoadConfig(*configPath)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	nc, js, err := connectForTools(ctx, cfg, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	defer nc.Close()
	snaps, err := detect.StoredSnapshots(ctx, js, cfg.Streams)
	if err != nil {
		return err
	}
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].Scope < snaps[j].Scope })
	for _, s := range snaps {
		fmt.Fprintln(stdout, describeSnapshot(s))
	}
	return nil
}

// describeSnapshot says what a snapshot holds, in one line.
func describeSnapshot(s *detect.Snapshot) string {
	return fmt.Sprintf("%s %s taken %s: %d identities, %d bindings, %d definitions, %d memberships, %d credentials",
		s.Format, s.Scope, s.Taken.UTC().Format(time.RFC3339), len(s.Identities), len(s.Bindings), len(s.Definitions), len(s.Memberships), len(s.Credentials))
}

// snapshotFiles expands directories into their regular, non-hidden files, sorted.
func snapshotFiles(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, a)
			continue
		}
		entries, err := os.ReadDir(a)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				out = append(out, filepath.Join(a, e.Name()))
			}
		}
	}
	return out, nil
}

// connectForTools connects a tool to the NATS of the configuration: nats.url, or the
// embedded server of a running `nhiwatch run` when it listens (embedded_nats.listen).
func connectForTools(ctx context.Context, cfg Config, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	n := cfg.NATS
	if n.URL == "" {
		if cfg.EmbeddedNATS.Listen == "" {
			return nil, nil, errors.New("no NATS to reach: set nats.url, or embedded_nats.listen for the server of a running `nhiwatch run` (e.g. 127.0.0.1:4222)")
		}
		n.URL = "nats://" + cfg.EmbeddedNATS.Listen
	}
	nc, js, err := base.ConnectNATS(ctx, n, "nhiwatch-grants", log, nats.MaxReconnects(2))
	if err != nil {
		return nil, nil, err
	}
	return nc, js, nil
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
