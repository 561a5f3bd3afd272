package normalize_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nhiwatch/nhiwatch/services/normalize"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

const sharedTestdata = "../../testdata"

// goldenSets are the public samples of ../../testdata, one golden file each.
var goldenSets = []struct {
	name  string
	glob  string
	panth bool // Panther test cases: the record is the "event" of each line
}{
	{name: "stratus-red-team", glob: "cloudtrail/stratus-red-team/*.json"},
	{name: "s3-delivery", glob: "cloudtrail/s3-delivery/*.json.gz"},
	{name: "lookup-events", glob: "cloudtrail/lookup-events/*.jsonl"},
	{name: "eventbridge", glob: "cloudtrail/eventbridge/*.json"},
	{name: "gcp-logentry", glob: "gcp/logentry/*.json"},
	{name: "gcp-jsonl", glob: "gcp/jsonl/*.jsonl"},
	{name: "k8s-audit", glob: "k8s/audit-log/*.log"},
	{name: "panther", glob: "panther/*.jsonl", panth: true},
}

// TestGolden normalizes every record of the shared samples and compares the events, and the
// reasons of the rejected records, with testdata/golden/<set>.jsonl.
func TestGolden(t *testing.T) {
	for _, set := range goldenSets {
		t.Run(set.name, func(t *testing.T) {
			files, err := filepath.Glob(filepath.Join(sharedTestdata, set.glob))
			if err != nil || len(files) == 0 {
				t.Fatalf("no files for %s: %v", set.glob, err)
			}
			sort.Strings(files)
			n := normalize.NewNormalizer()
			var out bytes.Buffer
			normalized, rejected, skipped := 0, 0, 0
			reasons := map[string]int{}
			for _, f := range files {
				recs := readRecords(t, f, set.panth)
				base := filepath.Base(f)
				for i, r := range recs {
					ev, err := n.Normalize(normalize.Input{
						Data: r, Format: "auto", Cluster: "test", Source: "golden",
						RecordID: fmt.Sprintf("%s#%d", base, i), Position: base,
					})
					switch {
					case errors.Is(err, normalize.ErrSkipped):
						skipped++
						fmt.Fprintf(&out, "{\"record\":%q,\"skipped\":%q}\n", fmt.Sprintf("%s#%d", base, i), err.Error())
					case err != nil:
						rejected++
						reasons[reasonOf(err)]++
						fmt.Fprintf(&out, "{\"record\":%q,\"rejected\":%q}\n", fmt.Sprintf("%s#%d", base, i), err.Error())
					default:
						normalized++
						b, err := normalize.EventJSON(ev)
						if err != nil {
							t.Fatal(err)
						}
						out.Write(b)
						out.WriteByte('\n')
					}
				}
			}
			t.Logf("%s: %d normalized, %d rejected, %d skipped; rejections by reason: %v", set.name, normalized, rejected, skipped, reasons)
			golden := filepath.Join("testdata", "golden", set.name+".jsonl")
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update)", err)
			}
			if diff := cmp.Diff(string(want), out.String()); diff != "" {
				t.Errorf("%s differs from the golden file (-want +got):\n%s", set.name, diff)
			}
		})
	}
}

// reasonOf is the error's text up to the first colon after the sentinel: the reason class
// and field, without values.
func reasonOf(err error) string {
	s := err.Error()
	if i := strings.Index(s, " ("); i > 0 {
		s = s[:i]
	}
	return s
}

// readRecords cuts a sample file into records the way ingest does for these forms: a JSON
// array, a CloudTrail delivery file ({"Records":[…]}, gzipped), one JSON document, or JSON
// Lines. Panther lines carry the record in "event".
func readRecords(t testing.TB, path string, panther bool) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	}
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(trimmed, &items); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, it := range items {
			out = append(out, it)
		}
		return out
	}
	if json.Valid(trimmed) {
		var doc struct {
			Records []json.RawMessage `json:"Records"`
		}
		if err := json.Unmarshal(trimmed, &doc); err == nil && doc.Records != nil {
			for _, it := range doc.Records {
				out = append(out, it)
			}
			return out
		}
		return [][]byte{trimmed}
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 1<<20), 8<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		rec := append([]byte(nil), line...)
		if panther {
			var p struct {
				Event json.RawMessage `json:"event"`
			}
			if err := json.Unmarshal(rec, &p); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			rec = p.Event
		}
		out = append(out, rec)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
