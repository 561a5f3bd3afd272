package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const token = "xoxb-123456789012-abcdefghijkl"

func TestValueNeverPrints(t *testing.T) {
	v := New(token)
	holder := struct {
		Name  string
		Token Value
		Ptr   *Value
	}{"slack", v, &v}
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	log.Info("x", "token", v, "holder", holder)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "token", v)
	js, err := json.Marshal(holder)
	if err != nil {
		t.Fatal(err)
	}
	outputs := []string{
		v.String(), fmt.Sprint(v), fmt.Sprintf("%v %+v %#v %s %q %x", v, v, v, v, v, v),
		fmt.Sprintf("%v %+v %#v", holder, holder, holder), string(js), logs.String(),
	}
	for _, out := range outputs {
		if strings.Contains(out, token) || strings.Contains(out, fmt.Sprintf("%x", token)) {
			t.Errorf("secret leaked in %q", out)
		}
	}
	if v.Reveal() != token {
		t.Errorf("Reveal() = %q", v.Reveal())
	}
}

func TestRefLoad(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tok")
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_TEST_TOKEN", token)
	tests := []struct {
		name string
		ref  Ref
		ok   bool
	}{
		{"file", Ref{File: file}, true},
		{"env", Ref{Env: "NOTIFY_TEST_TOKEN"}, true},
		{"both", Ref{File: file, Env: "NOTIFY_TEST_TOKEN"}, false},
		{"neither", Ref{}, false},
		{"missing file", Ref{File: filepath.Join(dir, "nope")}, false},
		{"unset env", Ref{Env: "NOTIFY_TEST_UNSET_VARIABLE"}, false},
		{"empty file", Ref{File: empty}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := tt.ref.Load("slack token")
			if (err == nil) != tt.ok {
				t.Fatalf("Load() error = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && strings.Contains(err.Error(), token) {
				t.Errorf("error quotes the secret: %v", err)
			}
			if tt.ok && v.Reveal() != token {
				t.Errorf("Load() = %q, want the trimmed token", v.Reveal())
			}
		})
	}
}
