package expect

import (
	"path/filepath"
	"testing"

	"github.com/nhiwatch/nhiwatch/tests/internal/load"
)

// TestLoadIsReadable checks the generated load against the real readers: every record of
// every container form is read, each yields an event or a dead letter (never both, never
// neither), and no two records share an event id.
func TestLoadIsReadable(t *testing.T) {
	tmpl, err := load.LoadTemplates(filepath.Join("..", "..", "..", "testdata"))
	if err != nil {
		t.Fatal(err)
	}
	spec := load.DefaultSpec(7)
	spec.AWS, spec.GCP, spec.K8s, spec.PerFile = 500, 150, 150, 50
	files, err := tmpl.Generate(spec)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	sources := map[string]Source{
		load.AWS: {Name: "aws", Provider: "aws", Format: "cloudtrail"},
		load.GCP: {Name: "gcp", Provider: "gcp", Format: "gcp"},
		load.K8s: {Name: "k8s", Provider: "k8s", Format: "k8s", Cluster: "faults"},
	}
	out := New()
	perProvider := map[string]int{}
	for _, f := range files {
		path, err := load.Write(root, f)
		if err != nil {
			t.Fatal(err)
		}
		before := out.Records
		if err := out.AddFile(sources[f.Dir], path); err != nil {
			t.Fatal(err)
		}
		if got := out.Records - before; got != f.Records {
			t.Errorf("%s: read %d records, wrote %d", f.Rel(), got, f.Records)
		}
		perProvider[f.Dir] += f.Records
	}
	if out.Records != load.Total(files) {
		t.Errorf("read %d records, wrote %d", out.Records, load.Total(files))
	}
	if got := len(out.Events) + len(out.DeadLetters) + out.Skipped; got != out.Records {
		t.Errorf("events %d + dead letters %d + skipped %d = %d, want every one of %d records once",
			len(out.Events), len(out.DeadLetters), out.Skipped, got, out.Records)
	}
	if n := out.CountStage("ingest"); n != 0 {
		t.Errorf("ingest rejects %d generated records; the load must be well-formed", n)
	}
	// CloudTrail is normalized today; every generated AWS record must become an event.
	aws := 0
	for id := range out.Events {
		if id[:4] == "aws:" {
			aws++
		}
	}
	if aws != perProvider[load.AWS] {
		t.Errorf("%d AWS events from %d AWS records", aws, perProvider[load.AWS])
		for id, reason := range out.DeadLetters {
			t.Logf("%s: %s", id, reason)
			break
		}
	}
	t.Logf("%d records: %d events, %d dead letters, %d skipped", out.Records, len(out.Events), len(out.DeadLetters), out.Skipped)

	again, err := tmpl.Generate(spec)
	if err != nil {
		t.Fatal(err)
	}
	for i := range files {
		if string(files[i].Data) != string(again[i].Data) || files[i].Name != again[i].Name {
			t.Fatalf("file %d differs between two runs of the same spec", i)
		}
	}
}
