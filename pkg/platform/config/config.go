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
	"reflect"
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

// ApplyEnv sets the fields of dst that have an `env` tag from environ ("KEY=value" pairs),
// under the NHIWATCH_ prefix.
func ApplyEnv(dst any, environ []string) error {
	return applyEnvPrefix(dst, EnvPrefix, environ)
}

// LoadService reads what one service binary needs from the shared configuration file: the
// common sections into common (top-level keys; the other services' sections are ignored)
// and the service's own section, the top-level key name, into section. Both are strict
// about unknown keys inside them. Environment overrides follow: NHIWATCH_<KEY> for common,
// NHIWATCH_<NAME>_<KEY> for the section.
func LoadService(path, name string, common, section any) error {
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read config: %w", err)
		}
		if err := decodeService(data, name, common, section); err != nil {
			return fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := ApplyEnv(common, os.Environ()); err != nil {
		return err
	}
	return applyEnvPrefix(section, EnvPrefix+strings.ToUpper(name)+"_", os.Environ())
}

// decodeService splits the document into the service's section and the rest.
func decodeService(data []byte, name string, common, section any) error {
	var top map[string]yaml.Node
	if err := yaml.Unmarshal(data, &top); err != nil {
		return err
	}
	rest := map[string]yaml.Node{}
	for k, v := range top {
		switch {
		case k == name:
			b, err := yaml.Marshal(&v)
			if err != nil {
				return err
			}
			if err := Decode(b, section); err != nil {
				return fmt.Errorf("section %s: %w", name, err)
			}
		case isCommonKey(common, k):
			rest[k] = v
		}
	}
	b, err := yaml.Marshal(rest)
	if err != nil {
		return err
	}
	return Decode(b, common)
}

// isCommonKey reports whether key is a yaml key of common's struct (following inline
// fields), so that another service's section is skipped rather than refused.
func isCommonKey(common any, key string) bool {
	t := reflect.TypeOf(common)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return hasYAMLKey(t, key)
}

func hasYAMLKey(t reflect.Type, key string) bool {
	if t.Kind() != reflect.Struct {
		return false
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if strings.Contains(opts, "inline") {
			if hasYAMLKey(f.Type, key) {
				return true
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if name == key {
			return true
		}
	}
	return false
}

func applyEnvPrefix(dst any, prefix string, environ []string) error {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	if err := env.ParseWithOptions(dst, env.Options{Prefix: prefix, Environment: m}); err != nil {
		return fmt.Errorf("environment overrides: %w", err)
	}
	return nil
}
