package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/tests/bench/loadgen"
	"github.com/nhiwatch/nhiwatch/tests/internal/harness"
	"github.com/nhiwatch/nhiwatch/tests/internal/procs"
)

// cluster is the Kubernetes cluster name of the benchmark's k8s source.
const cluster = "bench"

// pipeline is a nats-server and the four services, each its own process, reading the JSON
// Lines files the load generator appends to, one tail source per provider.
type pipeline struct {
	dir   string
	logs  string
	files map[string]string // provider → the file its tail source follows
	nats  *harness.NATSServer
	procs map[string]*procs.Proc
	admin map[string]string
	nc    *nats.Conn
	js    jetstream.JetStream
}

// pipelineOptions are what a run varies.
type pipelineOptions struct {
	bins       harness.Binaries
	dir        string
	chAddr     string
	chDatabase string
	partitions int
	// extra is YAML appended to the service sections (per service name), for experiments.
	extra map[string]string
}

func startPipeline(ctx context.Context, o pipelineOptions) (*pipeline, error) {
	p := &pipeline{
		dir: o.dir, logs: filepath.Join(o.dir, "out"),
		files: map[string]string{}, procs: map[string]*procs.Proc{}, admin: map[string]string{},
	}
	in := filepath.Join(o.dir, "logs-in")
	for _, d := range []string{p.logs, in} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	for _, prov := range loadgen.Providers {
		p.files[prov] = filepath.Join(in, prov+".jsonl")
	}
	catalog := filepath.Join(o.dir, "catalog.yaml")
	if err := os.WriteFile(catalog, []byte(loadgen.Catalog), 0o600); err != nil {
		return nil, err
	}
	var err error
	if p.nats, err = harness.StartNATS(o.bins.NATSServer, p.logs); err != nil {
		return nil, err
	}
	if p.nc, err = nats.Connect(p.nats.URL(), nats.Name("bench"), nats.MaxReconnects(-1)); err != nil {
		p.close()
		return nil, err
	}
	if p.js, err = jetstream.New(p.nc); err != nil {
		p.close()
		return nil, err
	}
	config := filepath.Join(o.dir, "nhiwatch.yaml")
	if err := os.WriteFile(config, []byte(p.config(o, catalog)), 0o600); err != nil {
		p.close()
		return nil, err
	}
	for _, svc := range harness.Services {
		port, err := harness.FreePort()
		if err != nil {
			p.close()
			return nil, err
		}
		p.admin[svc] = "127.0.0.1:" + strconv.Itoa(port)
		proc, err := procs.Start(procs.Spec{
			Name: svc,
			Path: o.bins.Path(svc),
			Args: []string{"-config", config},
			Env: []string{
				"NHIWATCH_NATS_URL=" + p.nats.URL(),
				"NHIWATCH_CLICKHOUSE_ADDR=" + o.chAddr,
				"NHIWATCH_CLICKHOUSE_DATABASE=" + o.chDatabase,
				"NHIWATCH_TELEMETRY_ADMIN_ADDR=" + p.admin[svc],
			},
			Stdout: filepath.Join(p.logs, svc+".out"),
			Stderr: filepath.Join(p.logs, svc+".log"),
		})
		if err != nil {
			p.close()
			return nil, err
		}
		p.procs[svc] = proc
	}
	if err := p.waitStarted(ctx); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// config is the configuration every service reads: the defaults a deployment ships with,
// except the sources and the catalog.
func (p *pipeline) config(o pipelineOptions, catalog string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "streams:\n  partitions: %d\ntelemetry:\n  log_format: json\n  log_level: warn\n", o.partitions)
	b.WriteString("ingest:\n  sources:\n")
	for _, prov := range loadgen.Providers {
		fmt.Fprintf(&b, "    - name: bench-%s\n      type: tail\n      provider: %s\n", prov, prov)
		if prov == loadgen.K8s {
			fmt.Fprintf(&b, "      cluster: %s\n", cluster)
		}
		fmt.Fprintf(&b, "      tail:\n        paths: [%q]\n", p.files[prov])
	}
	b.WriteString(o.extra[harness.Ingest])
	b.WriteString("normalize:\n")
	if x := o.extra[harness.Normalize]; x != "" {
		b.WriteString(x)
	} else {
		b.WriteString("  {}\n")
	}
	fmt.Fprintf(&b, "detect:\n  catalog: %q\n", catalog)
	b.WriteString(o.extra[harness.Detect])
	b.WriteString("notify:\n  terminal: true\n")
	return b.String()
}

// consumersStarted are the durable consumers (by stream) that exist once every service set
// up its part of JetStream.
var consumersStarted = map[string][]string{
	events.StreamRaw:      {"normalize"},
	events.StreamEvents:   {"detect-store-events"},
	events.StreamFindings: {"detect-store-findings", "notify"},
}

func (p *pipeline) waitStarted(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		var missing []string
		for stream, names := range consumersStarted {
			for _, name := range names {
				if _, err := p.js.Consumer(ctx, stream, name); err != nil {
					missing = append(missing, stream+"/"+name)
				}
			}
		}
		if len(missing) == 0 {
			return nil
		}
		sort.Strings(missing)
		select {
		case <-ctx.Done():
			return fmt.Errorf("services did not start: missing %v\n%s", missing, p.tails())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// pids are the processes whose CPU and memory the report shows.
func (p *pipeline) pids() map[string]int {
	out := map[string]int{"nats-server": p.nats.Pid()}
	for svc, proc := range p.procs {
		out[svc] = proc.Pid()
	}
	return out
}

// exited lists the services that are not running.
func (p *pipeline) exited() []string {
	var out []string
	for _, svc := range harness.Services {
		if !p.procs[svc].Running() {
			out = append(out, svc)
		}
	}
	return out
}

func (p *pipeline) tails() string {
	var b strings.Builder
	for _, svc := range harness.Services {
		if proc := p.procs[svc]; proc != nil {
			fmt.Fprintf(&b, "--- %s (last lines)\n%s\n", svc, proc.Tail(8))
		}
	}
	return b.String()
}

// stop stops the services with SIGTERM (each drains and flushes), then the server.
func (p *pipeline) close() {
	for i := len(harness.Services) - 1; i >= 0; i-- {
		if proc := p.procs[harness.Services[i]]; proc != nil {
			_ = proc.Stop(20 * time.Second)
		}
	}
	if p.nc != nil {
		p.nc.Close()
	}
	if p.nats != nil {
		p.nats.Close()
	}
}
