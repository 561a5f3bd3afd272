package ocsf_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/ocsf"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/ocsf/ocsftest"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/testfixture"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var (
	product = ocsf.Product{Name: "nhiwatch", Vendor: "nhiwatch", Version: "test"}
	now     = time.Date(2024, 5, 2, 10, 0, 0, 0, time.UTC)
)

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, got, "", "  "); err != nil {
		t.Fatal(err)
	}
	pretty.WriteByte('\n')
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), pretty.String()); diff != "" {
		t.Errorf("%s (-want +got):\n%s", name, diff)
	}
}

func TestDetectionFindingValidatesAndMatchesGolden(t *testing.T) {
	v := ocsftest.New(t)
	tests := []struct {
		name   string
		in     ocsf.FindingInput
		golden string
	}{
		{"create", ocsf.FindingInput{Finding: testfixture.Finding(), Status: "open", Activity: ocsf.ActivityCreate, Revision: 7, Link: "https://nhiwatch.example.com/findings/" + testfixture.Finding().Id, Now: now}, "detection_finding_create.json"},
		{"resolved", ocsf.FindingInput{Finding: testfixture.Finding(), Status: "resolved", Activity: ocsf.ActivityClose, Revision: 9, Now: now}, "detection_finding_close.json"},
		{"k8s, bare", ocsf.FindingInput{Finding: testfixture.K8sFinding(), Status: "acknowledged", Activity: ocsf.ActivityUpdate, Now: now}, "detection_finding_k8s.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := ocsf.DetectionFinding(product, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Validate(doc); err != nil {
				t.Fatalf("invalid OCSF: %v\n%s", err, doc)
			}
			golden(t, tt.golden, doc)
		})
	}
}

func TestEventDocsValidate(t *testing.T) {
	v := ocsftest.New(t)
	for _, ev := range testfixture.Events() {
		t.Run(ev.Id, func(t *testing.T) {
			docs, err := ocsf.EventDocs(product, ev, now)
			if err != nil {
				t.Fatal(err)
			}
			if want := 1 + grantees(ev); len(docs) != want {
				t.Fatalf("%d documents, want %d", len(docs), want)
			}
			for _, d := range docs {
				if err := v.Validate(d); err != nil {
					t.Fatalf("invalid OCSF: %v\n%s", err, d)
				}
			}
			name := "event_" + strings.NewReplacer(":", "_", "/", "_").Replace(ev.Id) + ".json"
			golden(t, name, []byte("["+string(bytes.Join(docs, []byte(",")))+"]"))
		})
	}
}

func grantees(ev *events.Event) int {
	n := 0
	for _, g := range ev.GrantChanges {
		if g.Grantee != "" {
			n++
		}
	}
	return n
}

func TestSchemasRejectWhatOCSFForbids(t *testing.T) {
	v := ocsftest.New(t)
	good, err := ocsf.DetectionFinding(product, ocsf.FindingInput{Finding: testfixture.Finding(), Status: "open", Activity: ocsf.ActivityCreate, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(m map[string]any)
	}{
		{"missing finding_info", func(m map[string]any) { delete(m, "finding_info") }},
		{"missing metadata.product", func(m map[string]any) { delete(m["metadata"].(map[string]any), "product") }},
		{"severity out of enum", func(m map[string]any) { m["severity_id"] = 7 }},
		{"type_uid disagrees with activity", func(m map[string]any) { m["type_uid"] = 200402 }},
		{"wrong class", func(m map[string]any) { m["category_uid"] = 3 }},
		{"time as string", func(m map[string]any) { m["time"] = "2024-05-02T10:00:00Z" }},
		{"unknown attribute", func(m map[string]any) { m["severity_name"] = "High" }},
		{"bad ip", func(m map[string]any) {
			m["evidences"].([]any)[0].(map[string]any)["src_endpoint"] = map[string]any{"ip": "not-an-ip"}
		}},
		{"bad technique id", func(m map[string]any) {
			fi := m["finding_info"].(map[string]any)
			fi["attacks"] = []any{map[string]any{"technique": map[string]any{"uid": "Account Manipulation"}}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal(good, &m); err != nil {
				t.Fatal(err)
			}
			tt.mutate(m)
			bad, _ := json.Marshal(m)
			if err := v.Validate(bad); err == nil {
				t.Error("schema accepted an invalid document")
			}
		})
	}
}

// FuzzDetectionFinding checks that any finding that decodes renders as a valid document.
func FuzzDetectionFinding(f *testing.F) {
	for _, fd := range []*events.Finding{testfixture.Finding(), testfixture.K8sFinding()} {
		b, _ := events.Marshal(fd)
		f.Add(b)
	}
	v := ocsftest.New(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fd, err := events.UnmarshalFinding(data)
		if err != nil || fd.Id == "" {
			return
		}
		doc, err := ocsf.DetectionFinding(product, ocsf.FindingInput{Finding: fd, Status: "open", Activity: ocsf.ActivityCreate, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Validate(doc); err != nil {
			t.Fatalf("invalid OCSF: %v\n%s", err, doc)
		}
	})
}

// FuzzEventDocs checks that any event that decodes renders as valid documents.
func FuzzEventDocs(f *testing.F) {
	for _, ev := range testfixture.Events() {
		b, _ := events.Marshal(&events.EventBatch{Events: []*events.Event{ev}})
		f.Add(b)
	}
	v := ocsftest.New(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := events.UnmarshalEventBatch(data)
		if err != nil {
			return
		}
		for _, ev := range b.Events {
			if ev.GetId() == "" {
				continue
			}
			docs, err := ocsf.EventDocs(product, ev, now)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range docs {
				if err := v.Validate(d); err != nil {
					t.Fatalf("invalid OCSF: %v\n%s", err, d)
				}
			}
		}
	})
}

func BenchmarkDetectionFinding(b *testing.B) {
	in := ocsf.FindingInput{Finding: testfixture.Finding(), Status: "open", Activity: ocsf.ActivityCreate, Now: now}
	for b.Loop() {
		if _, err := ocsf.DetectionFinding(product, in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEventDocs(b *testing.B) {
	ev := testfixture.Events()[0]
	for b.Loop() {
		if _, err := ocsf.EventDocs(product, ev, now); err != nil {
			b.Fatal(err)
		}
	}
}
