package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/platform/chdb"
	"github.com/nhiwatch/nhiwatch/tests/internal/expect"
	"github.com/nhiwatch/nhiwatch/tests/internal/fakes"
	"github.com/nhiwatch/nhiwatch/tests/internal/inspect"
	"github.com/nhiwatch/nhiwatch/tests/internal/load"
	"github.com/nhiwatch/nhiwatch/tests/internal/procs"
	"github.com/nhiwatch/nhiwatch/tests/internal/tcpproxy"
)

// Cluster is the Kubernetes cluster name of the k8s source.
const Cluster = "faults"

// Options configure a pipeline.
type Options struct {
	Bins Binaries
	// ClickHouse is the test database (chdbtest.Config).
	ClickHouse chdb.Config
	// LogLevel of every service: debug, info, warn or error (default info).
	LogLevel string
	// MaxContainerBytes bounds a file after decompression (default 64 MiB).
	MaxContainerBytes int64
	// StoreBatchRows bounds one ClickHouse insert (default 500).
	StoreBatchRows int
}

// Pipeline is a nats-server and the four services, each its own process, reading the files
// a test writes under Root.
type Pipeline struct {
	t    testing.TB
	opts Options
	dir  string
	// Root holds one directory per provider (aws, gcp, k8s), each watched by a files source.
	Root string
	// Logs holds every process's standard output (*.out) and error (*.log).
	Logs string

	NATS  *NATSServer
	Procs map[string]*procs.Proc
	// Proxy stands between detect and ClickHouse; Cut takes ClickHouse away from detect.
	Proxy *tcpproxy.Proxy
	// Slack and PagerDuty are where notify sends every finding (besides the terminal).
	Slack     *fakes.Slack
	PagerDuty *fakes.PagerDuty
	// Credentials are the secrets notify is configured with (the Slack token, the PagerDuty
	// routing key): they must never appear anywhere either.
	Credentials []string

	// NC and JS are the test's own connection, for inspection.
	NC *nats.Conn
	JS jetstream.JetStream
	// CH is the test's own connection to the test database.
	CH driver.Conn

	admin map[string]string
}

// Sources are the files sources of every pipeline, by provider.
func (p *Pipeline) Sources() map[string]expect.Source {
	return map[string]expect.Source{
		load.AWS: {Name: "aws-files", Provider: "aws", Format: "cloudtrail"},
		load.GCP: {Name: "gcp-files", Provider: "gcp", Format: "gcp"},
		load.K8s: {Name: "k8s-files", Provider: "k8s", Format: "k8s", Cluster: Cluster},
	}
}

// Start starts nats-server and the four services. Everything is killed when the test ends,
// and every process's log is checked for panics and data races then.
func Start(t testing.TB, opts Options) *Pipeline {
	t.Helper()
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	if opts.MaxContainerBytes == 0 {
		opts.MaxContainerBytes = 64 << 20
	}
	if opts.StoreBatchRows == 0 {
		opts.StoreBatchRows = 500
	}
	dir := t.TempDir()
	p := &Pipeline{
		t: t, opts: opts, dir: dir,
		Root: filepath.Join(dir, "logs-in"), Logs: filepath.Join(dir, "out"),
		Procs: map[string]*procs.Proc{}, admin: map[string]string{},
	}
	for _, d := range []string{p.Logs, filepath.Join(p.Root, load.AWS), filepath.Join(p.Root, load.GCP), filepath.Join(p.Root, load.K8s)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(p.close)

	var err error
	if p.NATS, err = StartNATS(opts.Bins.NATSServer, p.Logs); err != nil {
		t.Fatal(err)
	}
	if p.Proxy, err = tcpproxy.Start(opts.ClickHouse.Addr); err != nil {
		t.Fatal(err)
	}
	if p.NC, err = nats.Connect(p.NATS.URL(), nats.Name("faults-inspect"), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if p.JS, err = jetstream.New(p.NC); err != nil {
		t.Fatal(err)
	}
	if p.CH, err = clickhouse.Open(&clickhouse.Options{
		Addr: []string{opts.ClickHouse.Addr},
		Auth: clickhouse.Auth{Database: opts.ClickHouse.Database, Username: opts.ClickHouse.Username, Password: opts.ClickHouse.Password},
	}); err != nil {
		t.Fatal(err)
	}

	slackToken := "xoxb-4242424242-" + randomHex(12)
	pdKeyFile := filepath.Join(dir, "pagerduty.key")
	pdKey := randomHex(16)
	if err := os.WriteFile(pdKeyFile, []byte(pdKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.Credentials = []string{slackToken, pdKey}
	p.Slack = fakes.NewSlack(slackToken, slackChannel)
	p.PagerDuty = fakes.NewPagerDuty(pdKey)

	config := filepath.Join(dir, "nhiwatch.yaml")
	if err := os.WriteFile(config, []byte(p.config(pdKeyFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, svc := range Services {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		p.admin[svc] = "127.0.0.1:" + strconv.Itoa(port)
		chAddr := opts.ClickHouse.Addr
		if svc == Detect {
			chAddr = p.Proxy.Addr()
		}
		env := []string{
			"NHIWATCH_NATS_URL=" + p.NATS.URL(),
			"NHIWATCH_CLICKHOUSE_ADDR=" + chAddr,
			"NHIWATCH_CLICKHOUSE_DATABASE=" + opts.ClickHouse.Database,
			"NHIWATCH_TELEMETRY_ADMIN_ADDR=" + p.admin[svc],
		}
		if svc == Notify {
			env = append(env, slackTokenEnv+"="+slackToken)
		}
		proc, err := procs.Start(procs.Spec{
			Name:   svc,
			Path:   opts.Bins.Path(svc),
			Args:   []string{"-config", config},
			Env:    env,
			Stdout: filepath.Join(p.Logs, svc+".out"),
			Stderr: filepath.Join(p.Logs, svc+".log"),
			// Like a container's restart policy: a service that exits on its own comes back,
			// and the test sees the exit in UnexpectedExits.
			Restart:      true,
			RestartDelay: time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		p.Procs[svc] = proc
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.waitStarted(ctx); err != nil {
		t.Fatal(err)
	}
	return p
}

// startedConsumers are the durable consumers (by stream) that exist once every service has
// set up its part of JetStream (docs/architecture.md lists them).
var startedConsumers = map[string][]string{
	events.StreamRaw:      {"normalize"},
	events.StreamEvents:   {"detect-store-events"},
	events.StreamFindings: {"detect-store-findings", "notify"},
}

// waitStarted waits until every service has created its consumers and buckets: a fault
// injected earlier would hit a service still starting, which exits when JetStream does not
// answer and is restarted, a different case from the one a test means to show.
func (p *Pipeline) waitStarted(ctx context.Context) error {
	for {
		missing := p.notStarted(ctx)
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("services did not start: missing %v\nunexpected exits: %s\n%s", missing, strings.Join(p.UnexpectedExits(), "\n"), p.tails())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (p *Pipeline) notStarted(ctx context.Context) []string {
	var missing []string
	for stream, names := range startedConsumers {
		for _, name := range names {
			if _, err := p.JS.Consumer(ctx, stream, name); err != nil {
				missing = append(missing, stream+"/"+name)
			}
		}
	}
	if _, err := p.JS.KeyValue(ctx, events.BucketCursors); err != nil {
		missing = append(missing, "KV "+events.BucketCursors)
	}
	sort.Strings(missing)
	return missing
}

// config is the one configuration file every service reads: small batches and short poll
// intervals, so that a few thousand records are many messages, cursors and inserts to
// interrupt.
func (p *Pipeline) config(pdKeyFile string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `streams:
  partitions: 8
telemetry:
  log_format: json
  log_level: %s
ingest:
  max_batch_records: 25
  max_container_bytes: %d
  retry_backoff: 200ms
  max_retry_backoff: 2s
  sources:
`, p.opts.LogLevel, p.opts.MaxContainerBytes)
	srcs := p.Sources()
	for _, prov := range load.Providers {
		s := srcs[prov]
		fmt.Fprintf(&b, `    - name: %s
      type: files
      provider: %s
`, s.Name, s.Provider)
		if s.Cluster != "" {
			fmt.Fprintf(&b, "      cluster: %s\n", s.Cluster)
		}
		fmt.Fprintf(&b, `      files:
        paths: [%q]
        watch: true
        poll_interval: 100ms
        chunk_records: 50
`, filepath.Join(p.Root, prov))
	}
	fmt.Fprintf(&b, `normalize:
  workers: 2
detect:
  store_batch_rows: %d
  store_flush_interval: 200ms
  store_retry_backoff: 100ms
notify:
  terminal: true
  slack_per_second: 50
  retry_delay: 1s
  http:
    allow_insecure_http: true
    allow_private_networks: true
  destinations:
    - name: slack
      type: slack
      slack:
        token: {env: %s}
        channel: %s
        api_url: %s
    - name: pagerduty
      type: pagerduty
      pagerduty:
        routing_key: {file: %q}
        url: %s
  routes:
    - name: every-finding
      destinations: [slack, pagerduty]
`, p.opts.StoreBatchRows, slackTokenEnv, slackChannel, p.Slack.APIURL(), pdKeyFile, p.PagerDuty.EnqueueURL())
	return b.String()
}

// Where notify's Slack destination posts, and the variable its bot token is read from.
const (
	slackChannel  = "C0FAULTS"
	slackTokenEnv = "FAULTS_SLACK_BOT_TOKEN"
)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (p *Pipeline) close() {
	for _, svc := range Services {
		if proc := p.Procs[svc]; proc != nil {
			proc.Close()
		}
	}
	if p.NATS != nil {
		p.NATS.Close()
	}
	if p.Proxy != nil {
		_ = p.Proxy.Close()
	}
	if p.Slack != nil {
		p.Slack.Close()
	}
	if p.PagerDuty != nil {
		p.PagerDuty.Close()
	}
	if p.NC != nil {
		p.NC.Close()
	}
	if p.CH != nil {
		_ = p.CH.Close()
	}
	p.checkLogs()
}

// crashMarks are what a Go program writes when it panics, dies of a fatal error or trips the
// race detector.
var crashMarks = regexp.MustCompile(`(?m)^(panic: |fatal error: |WARNING: DATA RACE)`)

// checkLogs fails the test when any process panicked or raced.
func (p *Pipeline) checkLogs() {
	paths, _ := filepath.Glob(filepath.Join(p.Logs, "*.log"))
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		if loc := crashMarks.FindIndex(data); loc != nil {
			end := min(len(data), loc[0]+3000)
			p.t.Errorf("%s: a process crashed or raced:\n%s", filepath.Base(path), data[loc[0]:end])
		}
	}
}

// Path is where file f lands under Root.
func (p *Pipeline) Path(f load.File) string { return filepath.Join(p.Root, f.Dir, f.Name) }

// Expect computes the outcome of files already written under Root. unreadable lists files the sources cannot read at all, with a reason, which are not read
// here (a gzip bomb is not inflated twice).
func (p *Pipeline) Expect(files []load.File, unreadable map[string]string) (*expect.Outcome, error) {
	out := expect.New()
	srcs := p.Sources()
	for _, f := range files {
		path := p.Path(f)
		if reason, ok := unreadable[f.Rel()]; ok {
			out.AddUnreadable(srcs[f.Dir], path, reason)
			continue
		}
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("expect %s: write the files first: %w", f.Rel(), err)
		}
		if err := out.AddFile(srcs[f.Dir], path); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Kill kill -9s a service.
func (p *Pipeline) Kill(svc string) error { return p.Procs[svc].Kill() }

// Restart starts a killed service again.
func (p *Pipeline) Restart(svc string) error { return p.Procs[svc].Start() }

// UnexpectedExits describes every exit of a service that nobody asked for.
func (p *Pipeline) UnexpectedExits() []string {
	var out []string
	for _, svc := range Services {
		for _, e := range p.Procs[svc].UnexpectedExits() {
			out = append(out, fmt.Sprintf("%s at %s: %s\n%s", svc, e.At.Format(time.TimeOnly), e.Err, e.Tail))
		}
	}
	return out
}

// Progress is how far the pipeline got, for polling and for failure messages.
type Progress struct {
	Events      uint64
	DeadLetters uint64
	Consumers   []inspect.ConsumerState
}

// Busy reports whether any consumer has messages left.
func (pr Progress) Busy() bool {
	for _, c := range pr.Consumers {
		if c.Busy() {
			return true
		}
	}
	return false
}

func (pr Progress) String() string {
	return fmt.Sprintf("events stored (FINAL) %d, dead letters %d; consumers: %s", pr.Events, pr.DeadLetters, inspect.Describe(pr.Consumers))
}

// Progress reads the pipeline's progress.
func (p *Pipeline) Progress(ctx context.Context) (Progress, error) {
	var pr Progress
	var err error
	if pr.Events, err = inspect.CountEvents(ctx, p.CH); err != nil {
		return pr, err
	}
	st, err := p.JS.Stream(ctx, events.StreamDLQ)
	if err == nil {
		info, ierr := st.Info(ctx)
		if ierr != nil {
			return pr, ierr
		}
		pr.DeadLetters = info.State.Msgs
	}
	pr.Consumers, err = inspect.Consumers(ctx, p.JS)
	return pr, err
}

// WaitDrained waits until ClickHouse holds at least the outcome's events, NHI_DLQ at least
// its dead letters, and every consumer is idle, three polls in a row. The caller then
// asserts the exact numbers: waiting for "at least" and asserting "exactly" catches both
// losses (the wait times out) and duplicates.
func (p *Pipeline) WaitDrained(ctx context.Context, want *expect.Outcome) error {
	calm := 0
	var last Progress
	var lastErr error
	for {
		pr, err := p.Progress(ctx)
		if err == nil {
			last = pr
			if pr.Events >= uint64(len(want.Events)) && pr.DeadLetters >= uint64(len(want.DeadLetters)) && !pr.Busy() {
				calm++
			} else {
				calm = 0
			}
			if calm >= 3 {
				return nil
			}
		} else {
			lastErr = err
			calm = 0
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pipeline did not drain: want %d events and %d dead letters; %s (last error: %v)\nunexpected exits: %s\n%s",
				len(want.Events), len(want.DeadLetters), last, lastErr, strings.Join(p.UnexpectedExits(), "\n"), p.tails())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// tails renders the last lines of every service's log.
func (p *Pipeline) tails() string {
	var b strings.Builder
	for _, svc := range Services {
		fmt.Fprintf(&b, "--- %s (last lines)\n%s\n", svc, p.Procs[svc].Tail(8))
	}
	return b.String()
}

// Metric sums the samples of every metric whose name starts with prefix in the service's
// /metrics (Prometheus text format).
func (p *Pipeline) Metric(ctx context.Context, svc, prefix string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.admin[svc]+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	sum := 0.0
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' || !strings.HasPrefix(line, prefix) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum, nil
}

// TerminalFindings counts the findings notify printed to its terminal output, by id.
func (p *Pipeline) TerminalFindings() (map[string]int, error) {
	data, err := os.ReadFile(filepath.Join(p.Logs, Notify+".out"))
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	out := map[string]int{}
	for _, m := range terminalFinding.FindAllSubmatch(data, -1) {
		out[string(m[1])]++
	}
	return out, nil
}

// terminalFinding matches the id in notify's terminal block ("  when: …  finding: <id>").
var terminalFinding = regexp.MustCompile(`finding: (\S+)`)

// LogFiles lists every file a process wrote its output to.
func (p *Pipeline) LogFiles() []string {
	paths, _ := filepath.Glob(filepath.Join(p.Logs, "*"))
	var out []string
	for _, path := range paths {
		if strings.HasSuffix(path, ".log") || strings.HasSuffix(path, ".out") {
			out = append(out, path)
		}
	}
	sort.Strings(out)
	return out
}

// Logf logs to the test.
func (p *Pipeline) Logf(format string, args ...any) {
	p.t.Helper()
	p.t.Logf(format, args...)
}

// Database is the name of the test database.
func (p *Pipeline) Database() string { return p.opts.ClickHouse.Database }
