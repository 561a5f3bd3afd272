package route

import (
	"path"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

func finding(sev events.Severity, detector, identity, owner, team string) *events.Finding {
	return &events.Finding{
		Id: "f1", Detector: detector, Severity: sev, Provider: events.Provider_PROVIDER_AWS,
		Identity: &events.Identity{Id: identity}, Owner: owner, Team: team,
	}
}

func TestRouterDestinations(t *testing.T) {
	routes := []Route{
		{Name: "pager", Match: Match{MinSeverity: "high", Detectors: []string{"privilege_expansion", "dormant_*"}}, Destinations: []string{"pd", "slack"}},
		{Name: "ci", Match: Match{Identities: []string{"aws:arn:aws:iam::*:role/ci-*"}}, Destinations: []string{"slack-ci"}},
		{Name: "platform", Match: Match{Teams: []string{"Platform"}, Providers: []string{"aws", "gcp"}}, Destinations: []string{"slack"}},
		{Name: "unowned", Match: Match{Owners: []string{"-"}}, Destinations: []string{"slack-posture"}},
		{Name: "siem", Destinations: []string{"kafka", "kafka"}},
	}
	known := map[string]bool{"pd": true, "slack": true, "slack-ci": true, "slack-posture": true, "kafka": true}
	r, err := New(routes, func(s string) bool { return known[s] })
	if err != nil {
		t.Fatal(err)
	}
	const ciRole = "aws:arn:aws:iam::123456789012:role/ci-deploy"
	tests := []struct {
		name       string
		f          *events.Finding
		wantDests  []string
		wantRoutes []string
	}{
		{"critical privilege expansion by a CI role", finding(events.Severity_SEVERITY_CRITICAL, "privilege_expansion", ciRole, "alice", "platform"),
			[]string{"pd", "slack", "slack-ci", "kafka"}, []string{"pager", "ci", "platform", "siem"}},
		{"medium is below the pager", finding(events.Severity_SEVERITY_MEDIUM, "privilege_expansion", "aws:arn:aws:iam::1:role/app", "bob", "data"),
			[]string{"kafka"}, []string{"siem"}},
		{"detector pattern", finding(events.Severity_SEVERITY_HIGH, "dormant_credential_reuse", "gcp:sa@p.iam.gserviceaccount.com", "bob", ""),
			[]string{"pd", "slack", "kafka"}, []string{"pager", "siem"}},
		{"no owner", finding(events.Severity_SEVERITY_LOW, "posture_unowned", "k8s:c:system:serviceaccount:ns:x", "", ""),
			[]string{"slack-posture", "kafka"}, []string{"unowned", "siem"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dests, matched := r.Destinations(tt.f)
			if diff := cmp.Diff(tt.wantDests, dests); diff != "" {
				t.Errorf("destinations (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantRoutes, matched); diff != "" {
				t.Errorf("routes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	exists := func(s string) bool { return s == "slack" }
	tests := []struct {
		name   string
		routes []Route
	}{
		{"unknown destination", []Route{{Destinations: []string{"nope"}}}},
		{"no destination", []Route{{Name: "x"}}},
		{"bad severity", []Route{{Match: Match{MinSeverity: "urgent"}, Destinations: []string{"slack"}}}},
		{"bad provider", []Route{{Match: Match{Providers: []string{"azure"}}, Destinations: []string{"slack"}}}},
		{"duplicate name", []Route{{Name: "a", Destinations: []string{"slack"}}, {Name: "a", Destinations: []string{"slack"}}}},
		{"empty pattern", []Route{{Match: Match{Identities: []string{" "}}, Destinations: []string{"slack"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.routes, exists); err == nil {
				t.Error("New accepted invalid routes")
			}
		})
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "anything/at:all", true},
		{"aws:arn:aws:iam::*:role/ci-*", "aws:arn:aws:iam::123:role/ci-deploy", true},
		{"aws:arn:aws:iam::*:role/ci-*", "aws:arn:aws:iam::123:role/path/ci-deploy", false},
		{"aws:arn:aws:iam::*:role/*ci-*", "aws:arn:aws:iam::123:role/path/ci-deploy", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"abc", "abc", true},
		{"abc", "abcd", false},
		{"*x*y*z*", "xxyyzz", true},
		{"*x*y*z*", "zyx", false},
		{strings.Repeat("*a", 30) + "b", strings.Repeat("a", 60), false},
	}
	for _, tt := range tests {
		if got := Glob(tt.pattern, tt.s); got != tt.want {
			t.Errorf("Glob(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

// FuzzGlob checks Glob against path.Match on inputs where the two agree: no '/', no '[' or
// '\\' (path.Match's classes and escapes).
func FuzzGlob(f *testing.F) {
	for _, s := range [][2]string{{"a*c", "abbc"}, {"*", ""}, {"?", "x"}, {"ci-*", "ci-deploy"}, {"**a?", "baab"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, s string) {
		got := Glob(pattern, s)
		if strings.ContainsAny(pattern+s, "/[\\]") || !isASCII(pattern+s) {
			return
		}
		want, err := path.Match(pattern, s)
		if err != nil {
			return
		}
		if got != want {
			t.Errorf("Glob(%q, %q) = %v, path.Match says %v", pattern, s, got, want)
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
