package grants

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

func FuzzParsePolicyDocument(f *testing.F) {
	f.Add(`{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}`)
	f.Add(`"%7B%22Statement%22%3A%5B%5D%7D"`)
	f.Add(`{"Statement":[{"Effect":"Deny","NotAction":["iam:*"],"NotResource":"arn:aws:s3:::b/${aws:username}/*"}]}`)
	f.Fuzz(func(t *testing.T, raw string) {
		doc, err := ParsePolicyDocument(json.RawMessage(raw))
		if err != nil {
			return
		}
		r := Request{Permission: "s3:GetObject", Resources: []string{"arn:aws:s3:::b/u/k"}, UserName: "u"}
		for i := range doc.Statements {
			statementMatches(&doc.Statements[i], &r)
		}
	})
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil && filepath.Ext(p) != ".md" {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		snaps, err := Parse(data, ImportOptions{Cluster: "c", Taken: time.Unix(0, 0)})
		if err != nil {
			return
		}
		m := NewModel()
		for _, s := range snaps {
			if err := m.Import(s); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range m.Principals() {
			for _, e := range m.Entries(p) {
				m.Evaluate(Request{Identity: p, Provider: events.Provider_PROVIDER_AWS, Permission: e.Permission})
			}
		}
	})
}

func FuzzGlob(f *testing.F) {
	f.Add("s3:Get*", "s3:GetObject")
	f.Add("a*b?c*", "axxbyczz")
	f.Add("IAM:Put*Policy", "iam:putRolePolicy")
	f.Add("É*", "é")
	f.Fuzz(func(t *testing.T, pattern, s string) {
		got := Glob(pattern, s, false)
		if pattern == s && !got {
			t.Errorf("Glob(%q, itself) = false", pattern)
		}
		// The case-insensitive match, done byte by byte, is the match of the lower cases.
		if fold, want := Glob(pattern, s, true), Glob(strings.ToLower(pattern), strings.ToLower(s), false); fold != want {
			t.Errorf("Glob(%q, %q, fold) = %v, lower-case match %v", pattern, s, fold, want)
		}
	})
}
