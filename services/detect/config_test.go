package detect_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/platform/config"
	"github.com/nhiwatch/nhiwatch/services/detect"
)

// TestConfigFile checks the detector settings read from YAML (inline in the detect section)
// and from the environment, and their validation.
func TestConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "detect.yaml")
	if err := os.WriteFile(path, []byte("catalog: examples/catalog.yaml\nlease_ttl: 20s\ncheckpoint_interval: 500ms\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NHIWATCH_CHECKPOINT_MESSAGES", "77")
	cfg := detect.DefaultConfig()
	if err := config.Load(path, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Catalog != "examples/catalog.yaml" || cfg.LeaseTTL != 20*time.Second || cfg.CheckpointInterval != 500*time.Millisecond || cfg.CheckpointMessages != 77 {
		t.Errorf("config = %+v", cfg.DetectorsConfig)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.CheckpointInterval = 15 * time.Second
	if err := cfg.Validate(); err == nil {
		t.Error("a checkpoint interval over half the lease TTL must be refused")
	}
}
