package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/eventstest"
	"github.com/nhiwatch/nhiwatch/pkg/platform/chdbtest"
	"github.com/nhiwatch/nhiwatch/services/detect"
)

var snapshotFixtures = []string{
	"aws-authorization-details.json", "aws-credential-report.csv", "gcp-ancestors-iam-policy.json",
	"gcp-role-reportPublisher.json", "k8s-rbac.json",
}

// snapshotDir copies the inventory fixtures into a directory of exports, with one file that
// is not an export.
func snapshotDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range snapshotFixtures {
		b, err := os.ReadFile(grantsTestdata + f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("exported on Monday"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".hidden.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nhiwatch.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = realMain(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestGrantsImport imports a directory of exports with the configuration `nhiwatch run`
// uses, while a detect worker runs with posture on: the snapshots land in NHI_GRANTS and
// ClickHouse, and the worker puts them in force (its posture findings name their
// identities).
func TestGrantsImport(t *testing.T) {
	srv := eventstest.Start(t)
	ch, chCfg := chdbtest.Open(t)
	cfgPath := writeConfig(t, fmt.Sprintf(`nats:
  url: %s
clickhouse:
  addr: %s
  database: %s
detect:
  usage:
    posture: true
    posture_interval: 1h
`, srv.NS.ClientURL(), chCfg.Addr, chCfg.Database))
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := detect.New(cfg.Detect, detect.Deps{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Meter: noop.NewMeterProvider().Meter("test"), JS: srv.JS, Streams: srv.Streams})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	code, stdout, stderr := runCLI(t, "grants", "import", "-config", cfgPath, "-taken", "2024-08-01T00:00:00Z", snapshotDir(t))
	if code != 1 || !strings.Contains(stderr, "notes.txt") || strings.Contains(stderr, ".hidden") {
		t.Fatalf("exit %d, want 1 for the unreadable notes.txt only\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"aws-authorization-details.json: aws_authorization_details aws:229654561268 taken 2024-08-01T00:00:00Z: 5 identities",
		"gcp-ancestors-iam-policy.json: gcp_iam_policy gcp:projects/acme-prod",
		"gcp-ancestors-iam-policy.json: gcp_iam_policy gcp:organizations/615294012843",
		"k8s-rbac.json: k8s_rbac k8s:default",
		"stored 6 snapshots in NHI_GRANTS",
		"ClickHouse " + chCfg.Database + ": wrote ",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	snaps, err := detect.StoredSnapshots(context.Background(), srv.JS, srv.Streams)
	if err != nil || len(snaps) != 6 {
		t.Fatalf("NHI_GRANTS holds %d snapshots (%v), want 6", len(snaps), err)
	}
	var n uint64
	if err := ch.QueryRow(context.Background(), "SELECT count() FROM grants FINAL WHERE active = 1 AND identity_id = 'aws:arn:aws:iam::229654561268:user/ci/ci-deployer'").Scan(&n); err != nil || n != 5 {
		t.Errorf("ci-deployer has %d active grant rows (%v), want 5", n, err)
	}
	if err := ch.QueryRow(context.Background(), "SELECT count() FROM grant_credentials FINAL WHERE active = 1").Scan(&n); err != nil || n != 3 {
		t.Errorf("%d active credentials (%v), want the 3 keys of the credential report", n, err)
	}

	// The running worker put the snapshots in force: its posture findings name them.
	waitUntil(t, 30*time.Second, func() bool {
		for _, f := range findingsOf(t, srv.JS) {
			if f.Detector == "posture_key_rotation" && f.GetIdentity().GetId() == "aws:arn:aws:iam::229654561268:user/ci/ci-deployer" {
				return true
			}
		}
		return false
	})

	// An older export of a scope already stored is refused, the stored one stays.
	code, _, stderr = runCLI(t, "grants", "import", "-config", cfgPath, "-taken", "2024-07-01T00:00:00Z", grantsTestdata+"aws-credential-report.csv")
	if code != 0 || !strings.Contains(stderr, "older than the snapshot stored for its scope") {
		t.Errorf("older import: exit %d, stderr %s", code, stderr)
	}
	code, stdout, _ = runCLI(t, "grants", "list", "-config", cfgPath)
	if code != 0 || strings.Count(stdout, "\n") != 6 || !strings.Contains(stdout, "aws_credential_report aws-credentials:229654561268 taken 2024-08-01T00:00:00Z") {
		t.Errorf("grants list: exit %d\n%s", code, stdout)
	}
}

func findingsOf(t *testing.T, js jetstream.JetStream) []*events.Finding {
	t.Helper()
	cons, err := js.OrderedConsumer(context.Background(), events.StreamFindings, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*events.Finding
	for {
		batch, err := cons.Fetch(100, jetstream.FetchMaxWait(200*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			if f, err := events.UnmarshalFinding(msg.Data()); err == nil {
				out = append(out, f)
			}
		}
		if n == 0 {
			return out
		}
	}
}

func waitUntil(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not reached within %s", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestGrantsImportDryRun reads and describes the exports without any server.
func TestGrantsImportDryRun(t *testing.T) {
	cfgPath := writeConfig(t, "nats:\n  url: nats://127.0.0.1:1\n")
	code, stdout, stderr := runCLI(t, "grants", "import", "-config", cfgPath, "-dry-run", "-cluster", "prod",
		grantsTestdata+"k8s-rbac.json", grantsTestdata+"gcp-role-reportPublisher.json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"k8s_rbac k8s:prod", "gcp_roles gcp-roles:projects/acme-prod/roles/reportPublisher"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "stored") {
		t.Errorf("a dry run stored something:\n%s", stdout)
	}
}

func TestGrantsErrors(t *testing.T) {
	noNATS := writeConfig(t, "embedded_nats:\n  store_dir: "+t.TempDir()+"\n")
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"grants"}, 2, "import or list"},
		{[]string{"grants", "export"}, 2, "unknown subcommand"},
		{[]string{"grants", "import", "-config", noNATS}, 2, "at least one FILE"},
		{[]string{"grants", "import", "-config", noNATS, grantsTestdata + "k8s-rbac.json"}, 1, "embedded_nats.listen"},
		{[]string{"grants", "import", "-config", noNATS, "no-such-file.json"}, 1, "no-such-file.json"},
		{[]string{"grants", "import", "-config", noNATS, "-taken", "monday", grantsTestdata + "k8s-rbac.json"}, 2, "-taken"},
		{[]string{"grants", "list", "-config", noNATS, "extra"}, 2, "no arguments"},
	}
	for _, tt := range tests {
		code, _, stderr := runCLI(t, tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", tt.args, code, stderr, tt.code, tt.want)
		}
	}
}
