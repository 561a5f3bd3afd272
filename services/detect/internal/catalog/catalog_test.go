package catalog

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

func TestExampleCatalog(t *testing.T) {
	c, err := Load("../../../../examples/catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Rules) == 0 {
		t.Fatal("example catalog has no rules")
	}
}

func TestParse(t *testing.T) {
	c, err := Parse("c.yaml", []byte(`
version: 1
defaults:
  dormancy: 60d
  dormancy_by_kind: {access_key_user: 45d}
  learning_period: 3d
  learning_min_events: 5
identities:
  - match: ["aws:*:role/ci-*", "gcp:ci@*"]
    owner: alice@example.com
    kind: ci_cd
    dormancy: 14d
    boundary:
      cidrs: [10.0.0.0/8, 192.0.2.1]
      hours: "22:00-06:00"
      timezone: Europe/Paris
  - match: "*"
    owner: secops@example.com
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Match("aws:arn:aws:iam::1:role/ci-deploy"); got != 0 {
		t.Errorf("Match = %d, want 0", got)
	}
	if got := c.Match("gcp:other@x.iam.gserviceaccount.com"); got != 1 {
		t.Errorf("Match = %d, want 1 (the catch-all)", got)
	}
	r := c.Rule(0)
	if r.Kind != events.IdentityKind_IDENTITY_KIND_CI_CD || c.Dormancy(r, r.Kind) != 14*24*time.Hour {
		t.Errorf("rule 0 = %+v", r)
	}
	if d := c.Dormancy(nil, events.IdentityKind_IDENTITY_KIND_ACCESS_KEY_USER); d != 45*24*time.Hour {
		t.Errorf("per-kind dormancy = %s", d)
	}
	if d := c.Dormancy(nil, events.IdentityKind_IDENTITY_KIND_SERVICE_ACCOUNT); d != 60*24*time.Hour {
		t.Errorf("default dormancy = %s", d)
	}
	h := r.Boundary.Hours
	paris, _ := time.LoadLocation("Europe/Paris")
	if !h.Contains(time.Date(2024, 1, 1, 23, 0, 0, 0, paris)) || h.Contains(time.Date(2024, 1, 1, 12, 0, 0, 0, paris)) {
		t.Error("hours window wrapping midnight is wrong")
	}
	if len(r.Boundary.CIDRs) != 2 || r.Boundary.CIDRs[1].Bits() != 32 {
		t.Errorf("cidrs = %v", r.Boundary.CIDRs)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ doc, want string }{
		{"identities:\n  - match: x\n    ownr: a\n", "c.yaml:3: field ownr not found"},
		{"identities:\n  - owner: a\n", "c.yaml:2: identities[0].match: at least one identity pattern is required"},
		{"identities:\n  - match: x\n  - match: y\n    boundary:\n      cidrs: [10.0.0.0/33]\n", "c.yaml:3: identities[1].boundary.cidrs[0]"},
		{"identities:\n  - match: x\n    kind: robot\n", "c.yaml:2: identities[0].kind"},
		{"identities:\n  - match: x\n    dormancy: 2h\n", "below the minimum"},
		{"identities:\n  - match: x\n    suppress: [{detector: out_of_boundary}]\n", "reason: say why"},
		{"identities:\n  - match: x\n    suppress: [{detector: nope, reason: r}]\n", "unknown detector"},
		{"identities:\n  - match: x\n    boundary: {hours: '9-9'}\n", "hours"},
		{"identities:\n  - match: x\n    boundary: {timezone: Mars/Base}\n", "unknown time zone"},
		{"version: 7\n", "version 7"},
		{"defaults: {dormancy: soon}\n", "defaults.dormancy"},
	}
	for _, tt := range tests {
		_, err := Parse("c.yaml", []byte(tt.doc))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) error = %v, want one containing %q", tt.doc, err, tt.want)
		}
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		p, s string
		want bool
	}{
		{"*", "", true}, {"a*c", "abbbc", true}, {"a*c", "abd", false}, {"aws:*:role/*", "aws:arn:aws:iam::1:role/x/y", true},
		{"?x", "ax", true}, {"?x", "x", false}, {"*a*b*c*", "zzazzbzzczz", true}, {"*a*b*c*", "zzazzczzb", false}, {"a*", "a*x", true}, {"*x", "**x", true},
	}
	for _, tt := range tests {
		if got := Glob(tt.p, tt.s); got != tt.want {
			t.Errorf("Glob(%q, %q) = %v", tt.p, tt.s, got)
		}
	}
}

// TestHolderReload checks that a changed file is reloaded and a bad one refused.
func TestHolderReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.yaml")
	write := func(s string, mod time.Time) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	write("identities:\n  - match: a\n    owner: one\n", now.Add(-time.Hour))
	h, err := NewHolder(path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	write("identities:\n  - match: a\n    owner: two\n", now.Add(-30*time.Minute))
	if !h.Check() || h.Get().Rules[0].Owner != "two" || h.Generation() != 2 {
		t.Fatalf("reload not applied: %+v", h.Get().Rules)
	}
	write("identities:\n  - match: a\n    owner: [broken\n", now)
	if h.Check() || h.Get().Rules[0].Owner != "two" {
		t.Fatal("a bad catalog replaced the good one")
	}
}

func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile("../../../../examples/catalog.yaml"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("identities:\n  - match: x\n    boundary: {cidrs: [10.0.0.0/8], hours: '8-18'}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error without ErrInvalid: %v", err)
			}
			return
		}
		c.Match("aws:arn:aws:iam::1:role/x")
	})
}
