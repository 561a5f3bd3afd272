package load

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

// Poison is one hostile input mixed into a load, and what must become of it.
type Poison struct {
	// Name says what is hostile about it.
	Name string
	File File
	// Bad is the index of the bad record in File; -1 when the source must refuse the whole
	// file without reading a record (Unreadable); -2 when nothing in it is bad and every
	// record must become an event (an edge case that must not be mistaken for poison).
	Bad int
	// Stage is the service that must dead-letter it (events.StageIngest, …).
	Stage string
	// Reason must match its Nhi-Error header.
	Reason *regexp.Regexp
	// GoodEvents are the event ids of the good CloudTrail records beside the bad one, which
	// must all be stored.
	GoodEvents []string
}

// Unreadable reports whether the whole file must be refused.
func (p Poison) Unreadable() bool { return p.Bad == -1 }

// Poisons makes the hostile inputs of the poison test: invalid JSON, invalid UTF-8, a 10 MB
// record, nesting 1000 levels deep (past the JSON parser's limit) and 250 levels deep (past
// normalize's), a JSON value that is not a record, an object that is no CloudTrail record,
// a gzip bomb, a truncated gzip file and a broken JSON document; and, as a control, legal
// nesting that must not be refused. Bad records sit between good
// CloudTrail records, whose events must all arrive.
func (t *Templates) Poisons(seed int64) ([]Poison, error) {
	spec := DefaultSpec(seed)
	spec.Seed = seed ^ 0x706f69736f6e // a different stream of ids than the main load
	g := t.generator(spec)
	good := func(n int) ([][]byte, []string, error) {
		recs := make([][]byte, n)
		ids := make([]string, n)
		for i := range recs {
			r, err := g.record(AWS)
			if err != nil {
				return nil, nil, err
			}
			var h struct{ RecipientAccountID, EventID string }
			if err := json.Unmarshal(r, &h); err != nil {
				return nil, nil, err
			}
			recs[i], ids[i] = r, events.CloudTrailEventID(h.RecipientAccountID, h.EventID)
		}
		return recs, ids, nil
	}
	// mixed is a file of good records with bad at index at: JSON Lines, or a JSON array
	// when array is set.
	mixed := func(name string, array bool, n, at int, bad []byte, stage, reason string) (Poison, error) {
		recs, ids, err := good(n)
		if err != nil {
			return Poison{}, err
		}
		all := append(append(append([][]byte{}, recs[:at]...), bad), recs[at:]...)
		f := File{Dir: AWS, Name: "poison-" + slug(name) + ".jsonl", Data: lines(all), Records: len(all)}
		if array {
			f.Name, f.Data = "poison-"+slug(name)+".json", wrap("[", all, "]")
		}
		return Poison{Name: name, Bad: at, Stage: stage, Reason: regexp.MustCompile(reason), GoodEvents: ids, File: f}, nil
	}
	var out []Poison
	add := func(p Poison, err error) error {
		if err != nil {
			return fmt.Errorf("poison %q: %w", p.Name, err)
		}
		out = append(out, p)
		return nil
	}

	ct := `{"eventVersion":"1.08","eventSource":"iam.amazonaws.com","eventName":"ListRoles","awsRegion":"us-east-1","eventTime":"2026-03-02T08:00:00Z","recipientAccountId":"310000000001","eventID":"%s","userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::310000000001:assumed-role/poison/s","accountId":"310000000001"},"requestParameters":%s}`
	tooLarge := fmt.Sprintf(ct, "poison-10mb", `{"blob":"`+strings.Repeat("A", 10<<20)+`"}`)
	deep := func(levels int) string {
		return fmt.Sprintf(ct, fmt.Sprintf("poison-deep-%d", levels), strings.Repeat("[", levels)+strings.Repeat("]", levels))
	}
	steps := []struct {
		name   string
		array  bool
		n, at  int
		bad    []byte
		stage  string
		reason string
	}{
		{"invalid JSON", false, 20, 7, []byte(`{"eventVersion":"1.08","eventSource":"iam.amazonaws.com","eventName":`), events.StageIngest, `(?i)not valid JSON`},
		{"invalid UTF-8", false, 20, 3, []byte("{\"eventVersion\":\"1.08\",\"userAgent\":\"\xff\xfe\xfd\x80\"}"), events.StageIngest, `(?i)UTF-8`},
		{"10 MB record", false, 20, 12, []byte(tooLarge), events.StageIngest, `(?i)exceeds`},
		{"1000-deep nesting", false, 20, 5, []byte(deep(1000)), events.StageIngest, `(?i)JSON`},
		{"250-deep nesting", false, 20, 15, []byte(deep(250)), events.StageNormalize, `(?i)deep`},
		{"a JSON value that is not a record", false, 20, 9, []byte(`42`), events.StageIngest, `(?i)not an object`},
		{"a JSON value that is not a record, in an array", true, 20, 9, []byte(`42`), events.StageIngest, `(?i)not an object`},
		{"an object that is no CloudTrail record", false, 20, 4, []byte(`{"hello":"world","count":3}`), events.StageNormalize, `.`},
	}
	for _, s := range steps {
		if err := add(mixed(s.name, s.array, s.n, s.at, s.bad, s.stage, s.reason)); err != nil {
			return nil, err
		}
	}

	// Nesting 32 levels deep is unusual but legal: the record must become an event like its
	// neighbours, not be mistaken for poison.
	recs, ids, err := good(5)
	if err != nil {
		return nil, err
	}
	legalID := fmt.Sprintf("nested-legal-%d", seed)
	legal := []byte(fmt.Sprintf(ct, legalID, strings.Repeat(`{"a":`, 32)+"1"+strings.Repeat("}", 32)))
	ids = append(ids, events.CloudTrailEventID("310000000001", legalID))
	all := append(recs, legal)
	if err := add(Poison{
		Name: "legal nesting", Bad: -2, GoodEvents: ids,
		File: File{Dir: AWS, Name: "edge-nested-legal.jsonl", Data: lines(all), Records: len(all)},
	}, nil); err != nil {
		return nil, err
	}

	bomb, err := gzipBomb(1 << 30)
	if err := add(Poison{
		Name: "gzip bomb", Bad: -1, Stage: events.StageIngest, Reason: regexp.MustCompile(`(?i)exceeds`),
		File: File{Dir: AWS, Name: "poison-bomb.json.gz", Data: bomb},
	}, err); err != nil {
		return nil, err
	}

	gcpRecs := make([][]byte, 50)
	for i := range gcpRecs {
		if gcpRecs[i], err = g.record(GCP); err != nil {
			return nil, err
		}
	}
	whole, err := gzipped(lines(gcpRecs))
	if err := add(Poison{
		Name: "truncated gzip", Bad: -1, Stage: events.StageIngest, Reason: regexp.MustCompile(`(?i)gzip`),
		File: File{Dir: GCP, Name: "poison-truncated.jsonl.gz", Data: whole[:len(whole)/2]},
	}, err); err != nil {
		return nil, err
	}

	k8sRec, err := g.record(K8s)
	if err != nil {
		return nil, err
	}
	broken := append([]byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[`), k8sRec...)
	broken = append(broken, []byte(`,{"kind":"Event","auditID":`)...)
	if err := add(Poison{
		Name: "broken JSON document", Bad: -1, Stage: events.StageIngest, Reason: regexp.MustCompile(`(?i)JSON`),
		File: File{Dir: K8s, Name: "poison-broken.json", Data: broken},
	}, nil); err != nil {
		return nil, err
	}
	return out, nil
}

// gzipBomb is a small gzip file that inflates to size zero bytes: one member compressing
// 1 MiB of zeros, repeated (a gzip file may hold many members; readers concatenate them).
func gzipBomb(size int) ([]byte, error) {
	member, err := gzipped(make([]byte, 1<<20))
	if err != nil {
		return nil, err
	}
	return bytes.Repeat(member, size>>20), nil
}

func slug(s string) string {
	return strings.Trim(regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(s), "-"), "-")
}
