package detectors

import (
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/catalog"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/state"
	"github.com/nhiwatch/nhiwatch/services/ingest"
	"github.com/nhiwatch/nhiwatch/services/normalize"
)

// readEvents normalizes log files the way the pipeline does (ingest's reader, then
// normalize), and returns their events in event-time order. Rejected records fail the test
// unless allowRejects.
func readEvents(t testing.TB, paths ...string) []*events.Event {
	t.Helper()
	n := normalize.NewNormalizer()
	var out []*events.Event
	for _, path := range paths {
		err := ingest.ReadFile(path,
			func(i int, data []byte) error {
				ev, err := n.Normalize(normalize.Input{
					Data: data, Format: "auto", Cluster: "demo", Source: "test",
					RecordID: fmt.Sprintf("test:%s#%d", filepath.Base(path), i), Position: path, ReceivedAt: time.Unix(1_800_000_000, 0),
				})
				if err != nil {
					t.Logf("%s#%d: %v", path, i, err)
					return nil
				}
				out = append(out, ev)
				return nil
			},
			func(i int, reason error) error { t.Logf("%s#%d rejected: %v", path, i, reason); return nil })
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].TimeUnixNano < out[j].TimeUnixNano })
	return out
}

// world routes events to partitions the way normalize does (the actor's partition, plus
// each grantee's) and runs one Detector over per-partition state.
type world struct {
	det   *Detector
	parts map[uint32]*state.Partition
	p     uint32
	seq   uint64
}

func newWorld(cat *catalog.Catalog, p uint32, env Env) *world {
	if cat == nil {
		cat = catalog.Empty()
	}
	env.Catalog = catalog.Static(cat)
	env.Partitions = p
	env.Now = func() time.Time { return time.Unix(1_900_000_000, 0) }
	return &world{det: New(env), parts: map[uint32]*state.Partition{}, p: p}
}

func (w *world) part(id uint32) *state.Partition {
	if w.parts[id] == nil {
		w.parts[id] = state.NewPartition(id)
	}
	return w.parts[id]
}

// feed processes events in order and returns every finding.
func (w *world) feed(evs ...*events.Event) []*events.Finding {
	var out []*events.Finding
	for _, ev := range evs {
		w.seq++
		ev.Partition = events.Partition(ev.GetIdentity().GetId(), w.p)
		targets := []uint32{ev.Partition}
		for _, g := range ev.GrantChanges {
			if !isIdentityID(g.Grantee) {
				continue
			}
			gp := events.Partition(g.Grantee, w.p)
			dup := false
			for _, x := range targets {
				dup = dup || x == gp
			}
			if !dup {
				targets = append(targets, gp)
			}
		}
		for _, p := range targets {
			out = append(out, w.det.Process(w.part(p), ev, w.seq)...)
		}
	}
	return out
}

// summary is the part of a finding the table tests compare.
type summary struct {
	Detector, Identity, Grantee, Severity, Cause string
}

func summarize(fs []*events.Finding) []summary {
	out := make([]summary, 0, len(fs))
	for _, f := range fs {
		out = append(out, summary{f.Detector, f.GetIdentity().GetId(), f.Grantee, f.Severity.Label(), f.Cause})
	}
	return sortSummaries(out)
}

func sortSummaries(s []summary) []summary {
	if s == nil {
		s = []summary{}
	}
	sort.Slice(s, func(i, j int) bool { return fmt.Sprint(s[i]) < fmt.Sprint(s[j]) })
	return s
}

// ingestRead calls fn with every record of a file, as ingest reads it.
func ingestRead(path string, fn func([]byte)) error {
	return ingest.ReadFile(path, func(_ int, data []byte) error { fn(data); return nil }, func(int, error) error { return nil })
}
