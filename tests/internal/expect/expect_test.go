package expect

import (
	"fmt"
	"path/filepath"
	"strings"
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
	spec.AWS, spec.GCP, spec.K8s, spec.PerFile = 250, 60, 60, 25
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

// TestPoisonsAsStated reads every poison file (but the gzip bomb, which would inflate to the
// default 512 MiB limit here) the way ingest does and checks that it is what the poison says:
// its bad record or the whole file rejected at the stage it names, its good records events.
func TestPoisonsAsStated(t *testing.T) {
	tmpl, err := load.LoadTemplates(filepath.Join("..", "..", "..", "testdata"))
	if err != nil {
		t.Fatal(err)
	}
	poisons, err := tmpl.Poisons(3)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for _, p := range poisons {
		t.Run(p.Name, func(t *testing.T) {
			if p.Name == "gzip bomb" {
				if len(p.File.Data) > 2<<20 {
					t.Errorf("the bomb is %d bytes; it should stay small", len(p.File.Data))
				}
				return
			}
			path, err := load.Write(root, p.File)
			if err != nil {
				t.Fatal(err)
			}
			src := Source{Name: "src", Provider: p.File.Dir, Format: map[string]string{load.AWS: "cloudtrail", load.GCP: "gcp", load.K8s: "k8s"}[p.File.Dir], Cluster: "c"}
			out := New()
			if err := out.AddFile(src, path); err != nil {
				t.Fatal(err)
			}
			pos := "file:" + path
			switch {
			case p.Unreadable():
				if _, ok := out.DeadLetters[p.Stage+":src:"+pos]; !ok || out.Records != 0 {
					t.Errorf("the whole file should be refused at %s; got %d records, dead letters %v", p.Stage, out.Records, out.DeadLetters)
				}
			case p.Bad >= 0:
				id := fmt.Sprintf("%s:src:%s#%d", p.Stage, pos, p.Bad)
				reason, ok := out.DeadLetters[id]
				if !ok || len(out.DeadLetters) != 1 {
					t.Errorf("want exactly the dead letter %s; got %v", id, out.DeadLetters)
				} else if !p.Reason.MatchString(reason) {
					t.Errorf("reason %q does not match %s", reason, p.Reason)
				}
			default:
				if len(out.DeadLetters) != 0 {
					t.Errorf("nothing should be refused; got %v", out.DeadLetters)
				}
			}
			for _, id := range p.GoodEvents {
				if _, ok := out.Events[id]; !ok {
					t.Errorf("good record %s is not an event", id)
				}
			}
		})
	}
}

// TestSecretsLoadIsReadable checks the planted-secret load: every format carries secrets,
// every file is read record by record, and the broken lines are the only dead letters at
// ingest.
func TestSecretsLoadIsReadable(t *testing.T) {
	tmpl, err := load.LoadTemplates(filepath.Join("..", "..", "..", "testdata"))
	if err != nil {
		t.Fatal(err)
	}
	files, secrets, err := tmpl.Secrets(5)
	if err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []string{"CloudTrail", "GCP", "K8s", load.LookupEventsForm, "EventBridge", "a broken CloudTrail line", "a GCP line with invalid UTF-8"} {
		n := 0
		for _, s := range secrets {
			if strings.HasPrefix(s.Where, prefix) {
				n++
			}
		}
		if n == 0 {
			t.Errorf("no secret planted in %s", prefix)
		}
	}
	root := t.TempDir()
	out := New()
	formats := map[string]string{load.AWS: "cloudtrail", load.GCP: "gcp", load.K8s: "k8s"}
	for _, f := range files {
		path, err := load.Write(root, f)
		if err != nil {
			t.Fatal(err)
		}
		before := out.Records
		if err := out.AddFile(Source{Name: "src", Provider: f.Dir, Format: formats[f.Dir], Cluster: "c"}, path); err != nil {
			t.Fatal(err)
		}
		if got := out.Records - before; got != f.Records {
			t.Errorf("%s: read %d records, wrote %d", f.Rel(), got, f.Records)
		}
	}
	if n := out.CountStage("ingest"); n != 2 {
		t.Errorf("%d records refused at ingest, want the 2 broken lines", n)
	}
}
