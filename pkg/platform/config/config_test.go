package config_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nhiwatch/nhiwatch/pkg/platform/config"
)

type inner struct {
	URL     string        `yaml:"url" env:"URL"`
	Timeout time.Duration `yaml:"timeout" env:"TIMEOUT"`
}

type sample struct {
	Name  string   `yaml:"name" env:"NAME"`
	NATS  inner    `yaml:"nats" envPrefix:"NATS_"`
	Tags  []string `yaml:"tags"`
	Count int      `yaml:"count"`
}

func TestLoadLayersDefaultsFileAndEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("name: file\nnats:\n  timeout: 5s\ntags: [a, b]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NHIWATCH_NATS_URL", "nats://env:4222")
	got := sample{Name: "default", NATS: inner{URL: "nats://default", Timeout: time.Second}, Count: 3}
	if err := config.Load(path, &got); err != nil {
		t.Fatal(err)
	}
	want := sample{Name: "file", NATS: inner{URL: "nats://env:4222", Timeout: 5 * time.Second}, Tags: []string{"a", "b"}, Count: 3}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Load (-want +got):\n%s", diff)
	}
}

func TestDecodeRefusesUnknownKeys(t *testing.T) {
	var s sample
	if err := config.Decode([]byte("nmae: typo\n"), &s); err == nil {
		t.Error("unknown key accepted")
	}
}

func TestEnvWrongType(t *testing.T) {
	var s sample
	if err := config.ApplyEnv(&s, []string{"NHIWATCH_NATS_TIMEOUT=soon"}); err == nil {
		t.Error("bad duration accepted")
	}
}

type section struct {
	Workers int    `yaml:"workers" env:"WORKERS"`
	Mode    string `yaml:"mode" env:"MODE"`
}

type common struct {
	NATS inner `yaml:"nats" envPrefix:"NATS_"`
}

func TestLoadServiceReadsItsSectionAndTheCommonOnes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	doc := "nats:\n  url: nats://file\nnormalize:\n  workers: 3\n  mode: fast\ndetect:\n  anything: goes\n"
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NHIWATCH_NORMALIZE_MODE", "env")
	c := common{}
	s := section{Workers: 1}
	if err := config.LoadService(path, "normalize", &c, &s); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(section{Workers: 3, Mode: "env"}, s); diff != "" {
		t.Errorf("section (-want +got):\n%s", diff)
	}
	if c.NATS.URL != "nats://file" {
		t.Errorf("common nats.url = %q", c.NATS.URL)
	}
}

func TestLoadServiceRefusesUnknownKeys(t *testing.T) {
	dir := t.TempDir()
	for name, doc := range map[string]string{
		"in section": "normalize:\n  wrokers: 3\n",
		"in common":  "nats:\n  ulr: x\n",
	} {
		path := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := config.LoadService(path, "normalize", &common{}, &section{}); err == nil {
			t.Errorf("%s: unknown key accepted", name)
		}
	}
}
