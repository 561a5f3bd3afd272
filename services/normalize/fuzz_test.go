package normalize_test

import (
	"errors"
	"path/filepath"
	"testing"
	"unicode/utf8"

	"github.com/nhiwatch/nhiwatch/services/normalize"
)

// seed adds every record of the shared samples matching globs to the corpus.
func seed(f *testing.F, globs ...string) {
	for _, g := range globs {
		files, _ := filepath.Glob(filepath.Join(sharedTestdata, g))
		for _, file := range files {
			for _, r := range readRecords(f, file, filepath.Base(file) == "panther_tests.jsonl") {
				f.Add(r)
			}
		}
	}
}

// fuzzNormalize checks what must hold for any input: no panic, an event or a classified
// error, and a well-formed event.
func fuzzNormalize(f *testing.F, format string) {
	n := normalize.NewNormalizer()
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := n.Normalize(normalize.Input{Data: data, Format: format, Cluster: "fuzz", Source: "fuzz"})
		if err != nil {
			if ev != nil {
				t.Fatal("event and error")
			}
			if !errors.Is(err, normalize.ErrMalformed) && !errors.Is(err, normalize.ErrMissingField) &&
				!errors.Is(err, normalize.ErrUnsupported) && !errors.Is(err, normalize.ErrSkipped) && !errors.Is(err, normalize.ErrTooLarge) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if ev.Id == "" || ev.Identity.GetId() == "" || ev.Action == nil || ev.Outcome == nil || ev.Network == nil {
			t.Fatalf("incomplete event: %v", ev)
		}
		js, err := normalize.EventJSON(ev)
		if err != nil {
			t.Fatalf("EventJSON: %v", err)
		}
		if !utf8.Valid(js) {
			t.Fatal("event JSON is not UTF-8")
		}
		if len(ev.Extras) > 4096 {
			t.Fatalf("extras of %d bytes", len(ev.Extras))
		}
	})
}

func FuzzCloudTrail(f *testing.F) {
	seed(f, "cloudtrail/stratus-red-team/*.json", "cloudtrail/s3-delivery/*.json.gz", "cloudtrail/lookup-events/*.jsonl", "cloudtrail/eventbridge/*.json")
	fuzzNormalize(f, "cloudtrail")
}

func FuzzGCP(f *testing.F) {
	seed(f, "gcp/logentry/*.json", "gcp/jsonl/*.jsonl")
	fuzzNormalize(f, "gcp")
}

func FuzzK8s(f *testing.F) {
	seed(f, "k8s/audit-log/*.log")
	fuzzNormalize(f, "k8s")
}

func FuzzNormalize(f *testing.F) {
	seed(f, "panther/*.jsonl", "k8s/audit-log/*.log", "gcp/jsonl/*.jsonl")
	fuzzNormalize(f, "auto")
}
