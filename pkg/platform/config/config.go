// Package config loads a service's configuration: defaults from the caller, then one YAML
// file, then environment variables on top (NHIWATCH_ prefix, `env` struct tags), and
// nothing else. Unknown YAML keys are errors, so a typo does not silently fall back to a
// default.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/caarlos0/env/v11"
	"go.yaml.in/yaml/v3"
)

// EnvPrefix prefixes every environment override: NHIWATCH_NATS_URL, NHIWATCH_CLICKHOUSE_ADDR, …
const EnvPrefix = "NHIWATCH_"

// Load fills dst, which already holds the defaults, from the YAML file at path (skipped when
// path is empty) and then from the environment.
func Load(path string, dst any) error {
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read config: %w", err)
		}
		if err := Decode(data, dst); err != nil {
			return fmt.Errorf("config %s: %w", path, err)
		}
	}
	return ApplyEnv(dst, os.Environ())
}

// Decode fills dst from YAML, refusing unknown keys.
func Decode(data []byte, dst any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(dst); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// ApplyEnv sets the fields of dst that have an `env` tag from environ ("KEY=value" pairs).
func ApplyEnv(dst any, environ []string) error {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	if err := env.ParseWithOptions(dst, env.Options{Prefix: EnvPrefix, Environment: m}); err != nil {
		return fmt.Errorf("environment overrides: %w", err)
	}
	return nil
}
