package main

import (
	"fmt"

	"github.com/nhiwatch/nhiwatch/pkg/platform/base"
	"github.com/nhiwatch/nhiwatch/pkg/platform/config"
	"github.com/nhiwatch/nhiwatch/services/detect"
	"github.com/nhiwatch/nhiwatch/services/ingest"
	"github.com/nhiwatch/nhiwatch/services/normalize"
	"github.com/nhiwatch/nhiwatch/services/notify"
)

// Config is the whole configuration file: the common sections, the embedded NATS server and
// one section per service. The separate service binaries read the same file.
type Config struct {
	base.Common `yaml:",inline"`
	// EmbeddedNATS is used when nats.url is empty.
	EmbeddedNATS EmbeddedNATS     `yaml:"embedded_nats" envPrefix:"EMBEDDED_NATS_"`
	Ingest       ingest.Config    `yaml:"ingest" envPrefix:"INGEST_"`
	Normalize    normalize.Config `yaml:"normalize" envPrefix:"NORMALIZE_"`
	Detect       detect.Config    `yaml:"detect" envPrefix:"DETECT_"`
	Notify       notify.Config    `yaml:"notify" envPrefix:"NOTIFY_"`
}

// EmbeddedNATS configures the in-process JetStream server of `nhiwatch run`.
type EmbeddedNATS struct {
	// StoreDir holds JetStream's files.
	StoreDir string `yaml:"store_dir" env:"STORE_DIR"`
	// Listen is host:port for other processes (the separate service binaries, the nats CLI);
	// empty serves in-process connections only.
	Listen string `yaml:"listen" env:"LISTEN"`
}

// DefaultConfig returns the defaults of every section.
func DefaultConfig() Config {
	return Config{
		Common:       base.DefaultCommon(),
		EmbeddedNATS: EmbeddedNATS{StoreDir: "data/nats"},
		Ingest:       ingest.DefaultConfig(),
		Normalize:    normalize.DefaultConfig(),
		Detect:       detect.DefaultConfig(),
		Notify:       notify.DefaultConfig(),
	}
}

// LoadConfig reads the configuration file (when path is not empty) and the environment.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	if err := config.Load(path, &cfg); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if err := c.Common.Validate(); err != nil {
		return err
	}
	if c.NATS.URL == "" && c.EmbeddedNATS.StoreDir == "" {
		return fmt.Errorf("embedded_nats.store_dir is required when nats.url is empty")
	}
	for _, v := range []interface{ Validate() error }{c.Ingest, c.Normalize, c.Detect, c.Notify} {
		if err := v.Validate(); err != nil {
			return err
		}
	}
	return nil
}
