// Package load writes the audit-log files the fault tests feed to a real ingest files
// source: many distinct records, made from the real public samples in the repository's
// testdata/ (CloudTrail from Stratus Red Team, GCP LogEntries, a Kubernetes audit log), in
// every container form the source reads: CloudTrail delivery files (gzipped
// {"Records":[…]}), JSON arrays, JSON Lines, LookupEvents pages, EventBridge envelopes, GCP
// entries.list pages and JSON Lines, Kubernetes audit logs and EventLists.
//
// Each record gets its own id (eventID, insertId, auditID), an event time, and one of a set
// of identities (AWS accounts, GCP service accounts, Kubernetes service accounts), all drawn
// from a seeded generator, so the same Spec always writes the same bytes.
package load

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Providers, as the ingest source configuration names them.
const (
	AWS = "aws"
	GCP = "gcp"
	K8s = "k8s"
)

// Providers lists every provider in a fixed order.
var Providers = []string{AWS, GCP, K8s}

// Templates are real records, one JSON object each, to derive generated records from.
type Templates struct {
	AWS, GCP, K8s [][]byte
}

// LoadTemplates reads the samples under the repository's testdata directory.
func LoadTemplates(testdata string) (*Templates, error) {
	t := &Templates{}
	var err error
	if t.AWS, err = readGlob(filepath.Join(testdata, "cloudtrail", "stratus-red-team", "*.json"), readArray); err != nil {
		return nil, err
	}
	if t.GCP, err = readGlob(filepath.Join(testdata, "gcp", "logentry", "*.json"), readObject); err != nil {
		return nil, err
	}
	lines, err := readLines(filepath.Join(testdata, "gcp", "jsonl", "gcp_logging.jsonl"))
	if err != nil {
		return nil, err
	}
	t.GCP = append(t.GCP, lines...)
	if t.K8s, err = readLines(filepath.Join(testdata, "k8s", "audit-log", "audit2rbac-demo.log")); err != nil {
		return nil, err
	}
	if len(t.AWS) == 0 || len(t.GCP) == 0 || len(t.K8s) == 0 {
		return nil, fmt.Errorf("load: no samples under %s", testdata)
	}
	return t, nil
}

// readGlob reads the records of every file matching pattern with read.
func readGlob(pattern string, read func(path string) ([][]byte, error)) ([][]byte, error) {
	paths, err := filepath.Glob(pattern)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, p := range paths {
		recs, err := read(p)
		if err != nil {
			return nil, err
		}
		out = append(out, recs...)
	}
	return out, nil
}

// readArray reads a file holding a JSON array of records.
func readArray(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var recs []json.RawMessage
	if err := json.Unmarshal(data, &recs); err != nil {
		return nil, fmt.Errorf("load: %s: %w", path, err)
	}
	out := make([][]byte, len(recs))
	for i, r := range recs {
		out[i] = r
	}
	return out, nil
}

// readObject reads a file holding one record.
func readObject(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil {
		return nil, fmt.Errorf("load: %s: %w", path, err)
	}
	return [][]byte{buf.Bytes()}, nil
}

func readLines(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if !json.Valid(line) {
			return nil, fmt.Errorf("load: %s: a line is not JSON", path)
		}
		out = append(out, line)
	}
	return out, nil
}

// Spec says what to generate.
type Spec struct {
	Seed int64
	// Records per provider.
	AWS, GCP, K8s int
	// PerFile is the number of records in one file.
	PerFile int
	// Identities is how many distinct identities each provider's records spread over.
	Identities int
	// Start is the event time of the first record; each next record is Step later.
	Start time.Time
	Step  time.Duration
	// Prefix starts every file name, so two loads can share a directory.
	Prefix string
	// PadBytes, when positive, adds a field of that many characters to each CloudTrail
	// record's additionalEventData, which events keep (up to 4 KiB): heavier events, for a
	// test that needs a large backlog from few records.
	PadBytes int
}

// DefaultSpec is a few thousand records over a few dozen files.
func DefaultSpec(seed int64) Spec {
	return Spec{
		Seed: seed, AWS: 1800, GCP: 600, K8s: 600, PerFile: 100, Identities: 40,
		Start: time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC), Step: 3 * time.Second, Prefix: "load",
	}
}

// File is one generated file. Dir is the provider, the subdirectory a source watches.
type File struct {
	Dir     string
	Name    string
	Data    []byte
	Records int
}

// Rel is the file's path relative to the load's root directory.
func (f File) Rel() string { return filepath.Join(f.Dir, f.Name) }

// Total counts the records of files.
func Total(files []File) int {
	n := 0
	for _, f := range files {
		n += f.Records
	}
	return n
}

// Generate makes the files of spec, interleaving providers so that writing them in order
// keeps every source busy.
func (t *Templates) Generate(spec Spec) ([]File, error) {
	if spec.PerFile <= 0 || spec.Identities <= 0 {
		return nil, errors.New("load: PerFile and Identities must be positive")
	}
	g := t.generator(spec)
	var perProvider [3][]File
	for pi, p := range Providers {
		n := map[string]int{AWS: spec.AWS, GCP: spec.GCP, K8s: spec.K8s}[p]
		for fi := 0; n > 0; fi++ {
			k := min(n, spec.PerFile)
			recs := make([][]byte, k)
			for i := range recs {
				r, err := g.record(p)
				if err != nil {
					return nil, err
				}
				recs[i] = r
			}
			f, err := container(p, fi, recs)
			if err != nil {
				return nil, err
			}
			f.Name = fmt.Sprintf("%s-%04d-%s", spec.Prefix, fi, f.Name)
			perProvider[pi] = append(perProvider[pi], f)
			n -= k
		}
	}
	var out []File
	for i := 0; ; i++ {
		added := false
		for _, fs := range perProvider {
			if i < len(fs) {
				out = append(out, fs[i])
				added = true
			}
		}
		if !added {
			return out, nil
		}
	}
}

type generator struct {
	t    *Templates
	spec Spec
	rng  *rand.Rand
	n    int
}

func (t *Templates) generator(spec Spec) *generator {
	return &generator{t: t, spec: spec, rng: rand.New(rand.NewPCG(uint64(spec.Seed), 0x6e6869))}
}

// record derives the next record of provider p from a template.
func (g *generator) record(p string) ([]byte, error) {
	i := g.n
	g.n++
	at := g.spec.Start.Add(time.Duration(i) * g.spec.Step)
	k := g.rng.IntN(g.spec.Identities)
	switch p {
	case AWS:
		return g.aws(g.t.AWS[g.rng.IntN(len(g.t.AWS))], at, k)
	case GCP:
		return g.gcp(g.t.GCP[g.rng.IntN(len(g.t.GCP))], at, k)
	default:
		return g.k8s(g.t.K8s[g.rng.IntN(len(g.t.K8s))], at, k)
	}
}

// uuid is a random version-4 UUID from the generator.
func (g *generator) uuid() string {
	a, b := g.rng.Uint64(), g.rng.Uint64()
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", uint32(a>>32), uint16(a>>16), uint16(a)&0xfff, uint16(b>>48)&0x3fff|0x8000, b&0xffffffffffff)
}

// padding is n characters of hex groups, like a chain of request ids: nothing a redactor
// takes for a secret.
func (g *generator) padding(n int) string {
	var b strings.Builder
	for b.Len() < n {
		fmt.Fprintf(&b, "%016x-", g.rng.Uint64())
	}
	return b.String()[:n]
}

// AccountID is the AWS account of identity k.
func AccountID(k int) string { return fmt.Sprintf("%012d", 310000000000+k) }

func (g *generator) aws(tmpl []byte, at time.Time, k int) ([]byte, error) {
	m, err := decode(tmpl)
	if err != nil {
		return nil, err
	}
	old, _ := m["recipientAccountId"].(string)
	m["eventID"] = g.uuid()
	m["eventTime"] = at.UTC().Format(time.RFC3339)
	m["recipientAccountId"] = AccountID(k)
	if g.spec.PadBytes > 0 {
		object(m, "additionalEventData")["requestTrace"] = g.padding(g.spec.PadBytes)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	// The identity's ARN, account and resources all name the account: move them together.
	if old != "" {
		b = bytes.ReplaceAll(b, []byte(old), []byte(AccountID(k)))
	}
	return b, nil
}

func (g *generator) gcp(tmpl []byte, at time.Time, k int) ([]byte, error) {
	m, err := decode(tmpl)
	if err != nil {
		return nil, err
	}
	m["insertId"] = fmt.Sprintf("flt%016x", g.rng.Uint64())
	m["timestamp"] = at.UTC().Format(time.RFC3339Nano)
	m["receiveTimestamp"] = at.Add(time.Second).UTC().Format(time.RFC3339Nano)
	pp := object(m, "protoPayload")
	pp["@type"] = "type.googleapis.com/google.cloud.audit.AuditLog"
	auth := object(pp, "authenticationInfo")
	email := fmt.Sprintf("fault-sa-%d@fault-project-%d.iam.gserviceaccount.com", k, k%4)
	auth["principalEmail"] = email
	if _, ok := auth["principalSubject"]; ok {
		auth["principalSubject"] = "serviceAccount:" + email
	}
	return json.Marshal(m)
}

func (g *generator) k8s(tmpl []byte, at time.Time, k int) ([]byte, error) {
	m, err := decode(tmpl)
	if err != nil {
		return nil, err
	}
	m["auditID"] = g.uuid()
	m["stage"] = "ResponseComplete"
	ts := at.UTC().Format("2006-01-02T15:04:05.000000Z")
	m["timestamp"] = ts
	m["requestReceivedTimestamp"] = ts
	m["stageTimestamp"] = at.Add(20 * time.Millisecond).UTC().Format("2006-01-02T15:04:05.000000Z")
	object(m, "metadata")["creationTimestamp"] = at.UTC().Format(time.RFC3339)
	user := object(m, "user")
	user["username"] = fmt.Sprintf("system:serviceaccount:fault-ns-%d:fault-sa-%d", k%5, k)
	user["groups"] = []any{"system:serviceaccounts", fmt.Sprintf("system:serviceaccounts:fault-ns-%d", k%5), "system:authenticated"}
	return json.Marshal(m)
}

func decode(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("load: template: %w", err)
	}
	return m, nil
}

// object returns m[key] as an object, creating it when missing.
func object(m map[string]any, key string) map[string]any {
	if o, ok := m[key].(map[string]any); ok {
		return o
	}
	o := map[string]any{}
	m[key] = o
	return o
}

// container wraps recs the way provider p delivers them; the form rotates with the file
// index so that every form is in every load.
func container(p string, index int, recs [][]byte) (File, error) {
	f := File{Dir: p, Records: len(recs)}
	var err error
	switch p {
	case AWS:
		switch index % 5 {
		case 0: // S3 delivery file
			f.Name = "CloudTrail.json.gz"
			f.Data, err = gzipped(wrap(`{"Records":[`, recs, `]}`))
		case 1:
			f.Name = "array.json"
			f.Data = wrap("[", recs, "]")
		case 2:
			f.Name = "records.jsonl"
			f.Data = lines(recs)
		case 3:
			f.Name = "lookup-events.json"
			f.Data, err = lookupPage(recs)
		case 4:
			f.Name = "eventbridge.jsonl"
			f.Data, err = eventBridge(recs)
		}
	case GCP:
		switch index % 3 {
		case 0:
			f.Name = "entries.jsonl"
			f.Data = lines(recs)
		case 1:
			f.Name = "entries-list.json"
			f.Data = wrap(`{"entries":[`, recs, `],"nextPageToken":""}`)
		case 2:
			f.Name = "entries.jsonl.gz"
			f.Data, err = gzipped(lines(recs))
		}
	case K8s:
		switch index % 2 {
		case 0:
			f.Name = "audit.log"
			f.Data = lines(recs)
		case 1:
			f.Name = "eventlist.json"
			f.Data = wrap(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[`, recs, `]}`)
		}
	}
	return f, err
}

func wrap(open string, recs [][]byte, end string) []byte {
	var b bytes.Buffer
	b.WriteString(open)
	for i, r := range recs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(r)
	}
	b.WriteString(end)
	return b.Bytes()
}

func lines(recs [][]byte) []byte {
	var b bytes.Buffer
	for _, r := range recs {
		b.Write(r)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func gzipped(data []byte) ([]byte, error) {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// lookupPage is a CloudTrail LookupEvents response: each record a JSON string in
// CloudTrailEvent, beside the few fields the API lifts out of it.
func lookupPage(recs [][]byte) ([]byte, error) {
	type event struct {
		EventID         string `json:"EventId"`
		EventName       string `json:"EventName"`
		ReadOnly        string `json:"ReadOnly"`
		EventTime       string `json:"EventTime"`
		EventSource     string `json:"EventSource"`
		CloudTrailEvent string `json:"CloudTrailEvent"`
	}
	page := struct {
		Events    []event `json:"Events"`
		NextToken string  `json:"NextToken"`
	}{NextToken: "fault-page"}
	for _, r := range recs {
		var h struct {
			EventID, EventName, EventTime, EventSource string
			ReadOnly                                   bool
		}
		if err := json.Unmarshal(r, &h); err != nil {
			return nil, err
		}
		page.Events = append(page.Events, event{
			EventID: h.EventID, EventName: h.EventName, ReadOnly: fmt.Sprint(h.ReadOnly),
			EventTime: h.EventTime, EventSource: h.EventSource, CloudTrailEvent: string(r),
		})
	}
	return json.Marshal(page)
}

// eventBridge wraps each record in the envelope EventBridge delivers CloudTrail events in.
func eventBridge(recs [][]byte) ([]byte, error) {
	out := make([][]byte, len(recs))
	for i, r := range recs {
		var h struct{ EventID, EventTime, EventSource, AwsRegion, RecipientAccountID string }
		if err := json.Unmarshal(r, &h); err != nil {
			return nil, err
		}
		env := map[string]any{
			"version":     "0",
			"id":          h.EventID,
			"detail-type": "AWS API Call via CloudTrail",
			"source":      "aws." + strings.TrimSuffix(h.EventSource, ".amazonaws.com"),
			"account":     h.RecipientAccountID,
			"time":        h.EventTime,
			"region":      h.AwsRegion,
			"resources":   []any{},
			"detail":      json.RawMessage(r),
		}
		b, err := json.Marshal(env)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return lines(out), nil
}

// Write writes f under root atomically: to a name no source reads, then renamed, so a
// watching source never sees half a file. It returns the file's final path.
func Write(root string, f File) (string, error) {
	dir := filepath.Join(root, f.Dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, f.Name)
	tmp := path + ".partial"
	if err := os.WriteFile(tmp, f.Data, 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	return path, nil
}

// WriteAll writes files in order, waiting interval between two, until done or ctx ends.
func WriteAll(ctx context.Context, root string, files []File, interval time.Duration) error {
	for i, f := range files {
		if i > 0 && interval > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(interval):
			}
		}
		if _, err := Write(root, f); err != nil {
			return err
		}
	}
	return nil
}
