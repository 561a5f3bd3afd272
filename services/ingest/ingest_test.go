package ingest

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/eventstest"
	"github.com/nhiwatch/nhiwatch/pkg/platform/config"
)

// TestExampleSourcesAreValid decodes examples/sources.yaml with the strict loader and
// validates it, so the example stays true to the code.
func TestExampleSourcesAreValid(t *testing.T) {
	data, err := os.ReadFile("../../examples/sources.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Ingest Config `yaml:"ingest"`
	}
	file.Ingest = DefaultConfig()
	if err := config.Decode(data, &file); err != nil {
		t.Fatal(err)
	}
	if err := file.Ingest.Validate(); err != nil {
		t.Fatal(err)
	}
	types := map[string]bool{}
	for _, s := range file.Ingest.Sources {
		types[s.Type] = true
	}
	for _, want := range []string{"files", "tail", "s3sqs", "lookup", "pubsub", "webhook", "kafka"} {
		if !types[want] {
			t.Errorf("the example has no %s source", want)
		}
	}
}

func TestValidateSources(t *testing.T) {
	files := &FilesConfig{Paths: []string{"/logs"}}
	tests := []struct {
		name string
		src  SourceConfig
		want string // "" for valid, else a part of the error
	}{
		{"files", SourceConfig{Name: "a", Type: "files", Provider: "aws", Files: files}, ""},
		{"no type", SourceConfig{Name: "a", Provider: "aws", Files: files}, "type is required"},
		{"unknown type", SourceConfig{Name: "a", Type: "ftp", Provider: "aws"}, `unknown type "ftp"`},
		{"missing section", SourceConfig{Name: "a", Type: "kafka", Provider: "aws"}, "needs a kafka section"},
		{"foreign section", SourceConfig{Name: "a", Type: "files", Provider: "aws", Files: files, Kafka: &KafkaConfig{}}, "does not belong"},
		{"k8s without cluster", SourceConfig{Name: "a", Type: "files", Provider: "k8s", Files: files}, "cluster name"},
		{"webhook with cluster", SourceConfig{Name: "a", Type: "webhook", Provider: "k8s", Cluster: "x", Webhook: &WebhookConfig{}}, "webhook.clusters"},
		{"s3sqs for gcp", SourceConfig{Name: "a", Type: "s3sqs", Provider: "gcp", S3SQS: &S3SQSConfig{}}, "provider must be aws"},
		{"lookup without targets", SourceConfig{Name: "a", Type: "lookup", Provider: "aws", Lookup: &LookupConfig{}}, "at least one target"},
		{"pubsub without project", SourceConfig{Name: "a", Type: "pubsub", Provider: "gcp", PubSub: &PubSubConfig{Subscription: "s"}}, "project is required"},
		{"tail without paths", SourceConfig{Name: "a", Type: "tail", Provider: "k8s", Cluster: "c", Tail: &TailConfig{}}, "at least one path"},
		{"bad provider", SourceConfig{Name: "a", Type: "files", Provider: "azure", Files: files}, "unknown provider"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Sources = []SourceConfig{tt.src}
			err := cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v, want an error with %q", err, tt.want)
			}
		})
	}
	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{{Name: "a", Type: "files", Provider: "aws", Files: files}, {Name: "a", Type: "files", Provider: "aws", Files: files}}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "two sources") {
		t.Errorf("duplicate names: %v", err)
	}
}

// TestServiceRunsSeveralSources runs a files source and a tail source side by side from one
// configuration, over a real JetStream server.
func TestServiceRunsSeveralSources(t *testing.T) {
	srv := eventstest.Start(t)
	dir := t.TempDir()
	trail, err := os.ReadFile("../../testdata/cloudtrail/stratus-red-team/aws.persistence.iam-backdoor-role.json")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "trail.json"), trail, 0o644)
	audit, err := os.ReadFile("../../testdata/k8s/audit-log/audit2rbac-demo.log")
	if err != nil {
		t.Fatal(err)
	}
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	os.WriteFile(auditPath, audit, 0o644)

	cfg := DefaultConfig()
	cfg.Sources = []SourceConfig{
		{Name: "trail", Type: "files", Provider: "aws", Files: &FilesConfig{Paths: []string{dir}}},
		{Name: "apiserver", Type: "tail", Provider: "k8s", Cluster: "prod", Tail: &TailConfig{Paths: []string{auditPath}, PollInterval: 50 * time.Millisecond}},
	}
	reader := sdkmetric.NewManualReader()
	svc, err := New(cfg, Deps{
		Logger: slog.New(slog.DiscardHandler), Meter: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test"),
		JS: srv.JS, Streams: srv.Streams,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() { cancel(); <-done }()

	want := map[string]int{"trail": strings.Count(string(trail), `"eventID"`), "apiserver": strings.Count(string(audit), "\n")}
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := map[string]int{}
		st, _ := srv.JS.Stream(ctx, events.StreamRaw)
		info, _ := st.Info(ctx)
		for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if err != nil {
				t.Fatal(err)
			}
			b, err := events.UnmarshalRawBatch(m.Data)
			if err != nil {
				t.Fatal(err)
			}
			got[b.Source] += len(b.Records)
		}
		if got["trail"] == want["trail"] && got["apiserver"] == want["apiserver"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("records by source %v, want %v", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
