package deploy_test

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/nhiwatch/nhiwatch/pkg/platform/base"
	"github.com/nhiwatch/nhiwatch/pkg/platform/config"
	"github.com/nhiwatch/nhiwatch/services/detect"
	"github.com/nhiwatch/nhiwatch/services/ingest"
	"github.com/nhiwatch/nhiwatch/services/normalize"
	"github.com/nhiwatch/nhiwatch/services/notify"
)

// The four nhiwatch services and the rest of the stack.
var (
	pipelineServices = []string{"ingest", "normalize", "detect", "notify"}
	stackServices    = []string{"nats", "clickhouse", "otel-collector", "prometheus", "grafana"}
)

// composeEnv is what an operator puts in .env (see .env.example).
var composeEnv = []string{
	"CLICKHOUSE_PASSWORD=test-password",
	"CLICKHOUSE_GRAFANA_PASSWORD=test-grafana-password",
	"GRAFANA_ADMIN_PASSWORD=test-admin-password",
}

func loadProject(t *testing.T, env []string, files ...string) *types.Project {
	t.Helper()
	var paths []string
	for _, f := range files {
		paths = append(paths, filepath.Join("compose", f))
	}
	opts, err := cli.NewProjectOptions(paths, cli.WithEnv(env), cli.WithName("nhiwatch"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load %v: %v", files, err)
	}
	return p
}

func TestComposeRequiresSecrets(t *testing.T) {
	opts, err := cli.NewProjectOptions([]string{"compose/compose.yaml"}, cli.WithEnv(nil), cli.WithName("nhiwatch"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := opts.LoadProject(context.Background()); err == nil || !strings.Contains(err.Error(), "CLICKHOUSE_PASSWORD") {
		t.Errorf("loading without .env: %v, want an error naming CLICKHOUSE_PASSWORD", err)
	}
}

func TestComposeSingleNode(t *testing.T) {
	p := loadProject(t, composeEnv, "compose.yaml")
	checkStack(t, p, []string{"nats"})
	for _, name := range pipelineServices {
		env := p.Services[name].Environment
		if got := deref(env["NHIWATCH_STREAMS_REPLICAS"]); got != "" {
			t.Errorf("%s: NHIWATCH_STREAMS_REPLICAS=%q on a single node", name, got)
		}
	}
	natsConf := readFile(t, "compose/nats/nats.conf")
	checkNATSConf(t, natsConf)
}

func TestComposeCluster(t *testing.T) {
	p := loadProject(t, composeEnv, "compose.yaml", "compose.cluster.yaml")
	nodes := []string{"nats", "nats-2", "nats-3"}
	checkStack(t, p, nodes)
	for _, name := range pipelineServices {
		s := p.Services[name]
		if got := deref(s.Environment["NHIWATCH_STREAMS_REPLICAS"]); got != "3" {
			t.Errorf("%s: NHIWATCH_STREAMS_REPLICAS=%q, want 3 (R3 streams)", name, got)
		}
		for _, n := range nodes {
			if dep, ok := s.DependsOn[n]; !ok || dep.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s does not wait for %s to be healthy", name, n)
			}
		}
	}
	conf := readFile(t, "compose/nats/cluster.conf")
	checkNATSConf(t, conf)
	for _, n := range nodes {
		if !strings.Contains(conf, "nats://"+n+":6222") {
			t.Errorf("cluster.conf has no route to %s", n)
		}
		s := p.Services[n]
		if deref(s.Environment["NATS_SERVER_NAME"]) == "" {
			t.Errorf("%s has no NATS_SERVER_NAME", n)
		}
		if !slices.Contains(s.Command, "/etc/nats/cluster.conf") {
			t.Errorf("%s runs %v, want the cluster configuration", n, s.Command)
		}
	}
	// Each node keeps its own JetStream store.
	seen := map[string]string{}
	for _, n := range nodes {
		v := volumeAt(p.Services[n], "/data")
		if v == nil || v.Type != types.VolumeTypeVolume {
			t.Fatalf("%s: no named volume at /data", n)
		}
		if other, dup := seen[v.Source]; dup {
			t.Errorf("%s and %s share the volume %s", n, other, v.Source)
		}
		seen[v.Source] = n
	}
}

// checkStack checks what both variants share: services, health checks, dependencies,
// wiring, builds and mounted files. natsNodes are the NATS services the pipeline must reach.
func checkStack(t *testing.T, p *types.Project, natsNodes []string) {
	t.Helper()
	var names []string
	for name := range p.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	want := append(append(append([]string{}, pipelineServices...), stackServices...), natsNodes[1:]...)
	sort.Strings(want)
	if diff := cmp.Diff(want, names); diff != "" {
		t.Fatalf("services (-want +got):\n%s", diff)
	}
	for name, s := range p.Services {
		if s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) < 2 {
			t.Errorf("%s has no health check", name)
		}
		if s.Restart == "" {
			t.Errorf("%s has no restart policy", name)
		}
	}
	for _, name := range pipelineServices {
		s := p.Services[name]
		t.Run(name, func(t *testing.T) {
			checkPipelineService(t, p, s, natsNodes)
		})
	}
	detectEnv := p.Services["detect"].Environment
	host, port, err := net.SplitHostPort(deref(detectEnv["NHIWATCH_CLICKHOUSE_ADDR"]))
	if err != nil || host != "clickhouse" || port != "9000" {
		t.Errorf("detect: NHIWATCH_CLICKHOUSE_ADDR=%q, want clickhouse:9000 (%v)", deref(detectEnv["NHIWATCH_CLICKHOUSE_ADDR"]), err)
	}
	if dep := p.Services["detect"].DependsOn["clickhouse"]; dep.Condition != types.ServiceConditionHealthy {
		t.Error("detect does not wait for a healthy ClickHouse")
	}
	if f := deref(detectEnv["NHIWATCH_CLICKHOUSE_PASSWORD_FILE"]); f == "" || !hasSecret(p.Services["detect"], filepath.Base(f)) {
		t.Errorf("detect: password file %q is not a mounted secret", f)
	}
	for _, dep := range []string{"clickhouse", "prometheus"} {
		if p.Services["grafana"].DependsOn[dep].Condition != types.ServiceConditionHealthy {
			t.Errorf("grafana does not wait for a healthy %s", dep)
		}
	}
	if v := volumeAt(p.Services["clickhouse"], "/var/lib/clickhouse"); v == nil || v.Type != types.VolumeTypeVolume {
		t.Error("clickhouse keeps its data in no named volume")
	}
	checkBindMounts(t, p)
}

func checkPipelineService(t *testing.T, p *types.Project, s types.ServiceConfig, natsNodes []string) {
	env := s.Environment
	raw := deref(env["NHIWATCH_NATS_URL"])
	var hosts []string
	for _, u := range strings.Split(raw, ",") {
		pu, err := url.Parse(u)
		if err != nil || pu.Scheme != "nats" || pu.Port() != "4222" {
			t.Errorf("NHIWATCH_NATS_URL entry %q is not nats://<service>:4222", u)
			continue
		}
		hosts = append(hosts, pu.Hostname())
	}
	if diff := cmp.Diff(natsNodes, hosts); diff != "" {
		t.Errorf("NHIWATCH_NATS_URL hosts (-want +got):\n%s", diff)
	}
	for _, n := range natsNodes {
		if _, ok := p.Services[n]; !ok {
			t.Errorf("NATS URL names %s, which is no service", n)
		}
	}
	if dep := s.DependsOn["nats"]; dep.Condition != types.ServiceConditionHealthy {
		t.Error("does not wait for a healthy NATS")
	}
	otlp, err := url.Parse(deref(env["NHIWATCH_TELEMETRY_OTLP_ENDPOINT"]))
	if err != nil || otlp.Hostname() != "otel-collector" || otlp.Port() != "4317" {
		t.Errorf("NHIWATCH_TELEMETRY_OTLP_ENDPOINT=%q, want http://otel-collector:4317", deref(env["NHIWATCH_TELEMETRY_OTLP_ENDPOINT"]))
	}
	if deref(env["NHIWATCH_TELEMETRY_ADMIN_ADDR"]) != ":9090" {
		t.Error("the admin endpoint is not on :9090, where the health check and Prometheus look")
	}
	if !strings.Contains(strings.Join(s.HealthCheck.Test, " "), "http://127.0.0.1:9090/readyz") {
		t.Errorf("health check %v does not probe /readyz", s.HealthCheck.Test)
	}
	if !s.ReadOnly {
		t.Error("root file system is writable")
	}
	// The build names a Dockerfile that exists, a target in it, and a SERVICE it knows.
	b := s.Build
	if b == nil {
		t.Fatal("no build")
	}
	dockerfile := readFile(t, filepath.Join(b.Context, b.Dockerfile))
	if !regexp.MustCompile(`(?m)^FROM \S+ AS ` + regexp.QuoteMeta(b.Target) + `$`).MatchString(dockerfile) {
		t.Errorf("Dockerfile %s has no stage %q", b.Dockerfile, b.Target)
	}
	svc := deref(b.Args["SERVICE"])
	if svc != s.Name {
		t.Errorf("build arg SERVICE=%q, want %q", svc, s.Name)
	}
	if _, err := os.Stat(filepath.Join(b.Context, "services", svc, "cmd", svc, "main.go")); err != nil {
		t.Errorf("SERVICE=%s builds nothing: %v", svc, err)
	}
	if v := volumeAt(s, "/etc/nhiwatch/nhiwatch.yaml"); v == nil || v.Type != types.VolumeTypeBind || !v.ReadOnly {
		t.Error("nhiwatch.yaml is not mounted read-only at /etc/nhiwatch/nhiwatch.yaml")
	} else if deref(env["NHIWATCH_CONFIG"]) != v.Target {
		t.Errorf("NHIWATCH_CONFIG=%q, want %s", deref(env["NHIWATCH_CONFIG"]), v.Target)
	}
	checkServiceConfig(t, s)
}

// checkServiceConfig loads the mounted nhiwatch.yaml the way the service binary does (strict
// YAML, then the service's NHIWATCH_* environment on top) and validates it.
func checkServiceConfig(t *testing.T, s types.ServiceConfig) {
	t.Helper()
	for k, v := range s.Environment {
		if strings.HasPrefix(k, "NHIWATCH_") {
			t.Setenv(k, deref(v))
		}
	}
	cfg := struct {
		base.Common `yaml:",inline"`
		Ingest      ingest.Config    `yaml:"ingest" envPrefix:"INGEST_"`
		Normalize   normalize.Config `yaml:"normalize" envPrefix:"NORMALIZE_"`
		Detect      detect.Config    `yaml:"detect" envPrefix:"DETECT_"`
		Notify      notify.Config    `yaml:"notify" envPrefix:"NOTIFY_"`
	}{base.DefaultCommon(), ingest.DefaultConfig(), normalize.DefaultConfig(), detect.DefaultConfig(), notify.DefaultConfig()}
	if err := config.Load(volumeAt(s, "/etc/nhiwatch/nhiwatch.yaml").Source, &cfg); err != nil {
		t.Fatalf("nhiwatch.yaml: %v", err)
	}
	if err := cfg.Common.Validate(); err != nil {
		t.Errorf("nhiwatch.yaml with %s's environment: %v", s.Name, err)
	}
	if cfg.Telemetry.LogFormat != "json" || cfg.Telemetry.OTLPEndpoint == "" {
		t.Errorf("telemetry %+v: want JSON logs and an OTLP endpoint", cfg.Telemetry)
	}
	var err error
	switch s.Name {
	case "ingest":
		err = cfg.Ingest.Validate()
	case "normalize":
		err = cfg.Normalize.Validate()
	case "detect":
		err = cfg.Detect.Validate()
		if !cfg.ClickHouse.Enabled() {
			t.Error("detect has no ClickHouse")
		}
	case "notify":
		err = cfg.Notify.Validate()
	}
	if err != nil {
		t.Errorf("%s section: %v", s.Name, err)
	}
}

// checkNATSConf checks the JetStream durability settings of a NATS configuration.
func checkNATSConf(t *testing.T, conf string) {
	t.Helper()
	if !regexp.MustCompile(`(?m)^\s*sync_interval:\s*always\s*$`).MatchString(conf) {
		t.Error("JetStream does not fsync every write (sync_interval: always)")
	}
	if !regexp.MustCompile(`(?m)^\s*store_dir:\s*/data/`).MatchString(conf) {
		t.Error("JetStream store_dir is not on the /data volume")
	}
}

// checkBindMounts checks that every file a service mounts from the repository exists, and
// that Prometheus, Grafana and the collector are configured for the stack as composed.
func checkBindMounts(t *testing.T, p *types.Project) {
	t.Helper()
	for name, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s mounts %s, which does not exist: %v", name, v.Source, err)
			}
		}
	}
	// Prometheus scrapes the four services on their admin port.
	var prom struct {
		ScrapeConfigs []struct {
			JobName      string `yaml:"job_name"`
			DNSSDConfigs []struct {
				Names []string `yaml:"names"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	unmarshalFile(t, volumeAt(p.Services["prometheus"], "/etc/prometheus/prometheus.yml").Source, &prom)
	var scraped []string
	for _, sc := range prom.ScrapeConfigs {
		for _, d := range sc.DNSSDConfigs {
			if d.Port != 9090 {
				t.Errorf("job %s scrapes port %d, want the admin port 9090", sc.JobName, d.Port)
			}
			scraped = append(scraped, d.Names...)
		}
	}
	if diff := cmp.Diff(pipelineServices, scraped); diff != "" {
		t.Errorf("services Prometheus scrapes (-want +got):\n%s", diff)
	}
	// Grafana: the provisioned data sources are the ones the dashboards use, and the
	// dashboard provider reads the directory the dashboards are mounted at.
	g := p.Services["grafana"]
	prov := volumeAt(g, "/etc/grafana/provisioning").Source
	var ds struct {
		Datasources []struct {
			UID      string         `yaml:"uid"`
			Type     string         `yaml:"type"`
			URL      string         `yaml:"url"`
			JSONData map[string]any `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	unmarshalFile(t, filepath.Join(prov, "datasources", "datasources.yaml"), &ds)
	uids := map[string]string{}
	for _, d := range ds.Datasources {
		uids[d.UID] = d.Type
		if d.Type == "grafana-clickhouse-datasource" && (d.JSONData["host"] != "clickhouse" || d.JSONData["port"] != 9000) {
			t.Errorf("ClickHouse data source points at %v:%v", d.JSONData["host"], d.JSONData["port"])
		}
	}
	if uids["clickhouse"] != "grafana-clickhouse-datasource" || uids["prometheus"] != "prometheus" {
		t.Errorf("provisioned data sources %v, want clickhouse and prometheus", uids)
	}
	if !strings.Contains(deref(g.Environment["GF_PLUGINS_PREINSTALL_SYNC"]), "grafana-clickhouse-datasource") {
		t.Error("Grafana does not install the ClickHouse data source plugin")
	}
	var dp struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	unmarshalFile(t, filepath.Join(prov, "dashboards", "dashboards.yaml"), &dp)
	if len(dp.Providers) != 1 || volumeAt(g, dp.Providers[0].Options.Path) == nil {
		t.Errorf("the dashboard provider reads %v, where no dashboards are mounted", dp.Providers)
	}
	dashboards, _ := filepath.Glob(filepath.Join(volumeAt(g, dp.Providers[0].Options.Path).Source, "*.json"))
	if len(dashboards) < 4 {
		t.Errorf("%d dashboards provisioned, want findings, permissions, credentials and pipeline", len(dashboards))
	}
	checkCollector(t, p)
}

// checkCollector checks that every component a collector pipeline names is defined, and
// that the services' OTLP endpoint is the collector's gRPC receiver.
func checkCollector(t *testing.T, p *types.Project) {
	t.Helper()
	var c struct {
		Receivers  map[string]any `yaml:"receivers"`
		Processors map[string]any `yaml:"processors"`
		Exporters  map[string]any `yaml:"exporters"`
		Extensions map[string]any `yaml:"extensions"`
		Service    struct {
			Extensions []string `yaml:"extensions"`
			Pipelines  map[string]struct {
				Receivers  []string `yaml:"receivers"`
				Processors []string `yaml:"processors"`
				Exporters  []string `yaml:"exporters"`
			} `yaml:"pipelines"`
		} `yaml:"service"`
	}
	col := p.Services["otel-collector"]
	unmarshalFile(t, volumeAt(col, "/etc/otelcol/collector.yaml").Source, &c)
	traces, ok := c.Service.Pipelines["traces"]
	if !ok {
		t.Fatal("the collector has no traces pipeline")
	}
	for kind, names := range map[string][]string{"receiver": traces.Receivers, "processor": traces.Processors, "exporter": traces.Exporters, "extension": c.Service.Extensions} {
		defined := map[string]map[string]any{"receiver": c.Receivers, "processor": c.Processors, "exporter": c.Exporters, "extension": c.Extensions}[kind]
		for _, n := range names {
			if _, ok := defined[n]; !ok {
				t.Errorf("collector %s %q is used but not defined", kind, n)
			}
		}
	}
	otlp, _ := c.Receivers["otlp"].(map[string]any)
	protocols, _ := otlp["protocols"].(map[string]any)
	grpc, _ := protocols["grpc"].(map[string]any)
	if grpc["endpoint"] != "0.0.0.0:4317" {
		t.Errorf("collector OTLP gRPC receiver listens on %v, want 0.0.0.0:4317", grpc["endpoint"])
	}
	ch, _ := c.Exporters["clickhouse"].(map[string]any)
	if ep, _ := ch["endpoint"].(string); !strings.HasPrefix(ep, "tcp://clickhouse:9000") {
		t.Errorf("collector ClickHouse exporter endpoint %q", ep)
	}
	if !strings.Contains(strings.Join(col.HealthCheck.Test, " "), "13133") {
		t.Error("the collector health check does not probe the health_check extension")
	}
}

// TestNATSImageMatchesTestedServer keeps the compose NATS image at the nats-server version
// the tests run in process (pkg/events/go.mod).
func TestNATSImageMatchesTestedServer(t *testing.T) {
	mod := readFile(t, "../pkg/events/go.mod")
	m := regexp.MustCompile(`github.com/nats-io/nats-server/v2 v(\d+\.\d+\.\d+)`).FindStringSubmatch(mod)
	if m == nil {
		t.Fatal("pkg/events/go.mod requires no nats-server")
	}
	for _, files := range [][]string{{"compose.yaml"}, {"compose.yaml", "compose.cluster.yaml"}} {
		p := loadProject(t, composeEnv, files...)
		for name, s := range p.Services {
			if strings.HasPrefix(name, "nats") && s.Image != "nats:"+m[1]+"-alpine" {
				t.Errorf("%v: %s runs %s, want nats:%s-alpine", files, name, s.Image, m[1])
			}
		}
	}
}

func volumeAt(s types.ServiceConfig, target string) *types.ServiceVolumeConfig {
	for i, v := range s.Volumes {
		if v.Target == target {
			return &s.Volumes[i]
		}
	}
	return nil
}

func hasSecret(s types.ServiceConfig, name string) bool {
	for _, sec := range s.Secrets {
		if sec.Source == name {
			return true
		}
	}
	return false
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func unmarshalFile(t *testing.T, path string, v any) {
	t.Helper()
	if err := yaml.Unmarshal([]byte(readFile(t, path)), v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
