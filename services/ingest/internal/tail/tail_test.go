package tail

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/ingesttest"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/split"
)

const testdata = "../../../../testdata"

// auditLines returns n Kubernetes audit events, one per line: the audit2rbac demo log's
// events repeated with distinct audit ids.
func auditLines(t *testing.T, n int, tag string) []string {
	f, err := os.Open(filepath.Join(testdata, "k8s/audit-log/audit2rbac-demo.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var base []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err == nil {
			base = append(base, m)
		}
	}
	out := make([]string, n)
	for i := range out {
		m := base[i%len(base)]
		m["auditID"] = fmt.Sprintf("%s-%05d", tag, i)
		b, _ := json.Marshal(m)
		out[i] = string(b)
	}
	return out
}

type env struct {
	h    *ingesttest.Harness
	dir  string
	path string
	mu   sync.Mutex
	want map[string]bool // audit ids written
}

func newEnv(t *testing.T) *env {
	dir := t.TempDir()
	return &env{h: ingesttest.New(t), dir: dir, path: filepath.Join(dir, "audit.log"), want: map[string]bool{}}
}

// appendTo writes lines to a file (creating it), noting their audit ids.
func (e *env) appendTo(t *testing.T, path string, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, l := range lines {
		if _, err := io.WriteString(f, l+"\n"); err != nil {
			t.Fatal(err)
		}
		e.note(l)
	}
}

func (e *env) note(line string) {
	var m struct{ AuditID string }
	json.Unmarshal([]byte(line), &m)
	e.mu.Lock()
	e.want[m.AuditID] = true
	e.mu.Unlock()
}

func (e *env) start(t *testing.T) (stop func()) {
	t.Helper()
	cfg := Config{Paths: []string{e.path}, PollInterval: 20 * time.Millisecond, RotateWait: 50 * time.Millisecond, ChunkRecords: 25}
	src, err := New(cfg, e.h.Sink("apiserver", events.Provider_PROVIDER_K8S, "k8s", "prod"), e.h.Cursors("apiserver"), split.DefaultLimits(), e.h.Log)
	if err != nil {
		t.Fatal(err)
	}
	return ingesttest.Start(t, src.Run).Stop
}

// stored returns how often each audit id is in NHI_RAW, by distinct record id and in total.
func (e *env) stored(t *testing.T) (byAudit map[string]int) {
	byAudit = map[string]int{}
	for _, b := range e.h.Raw(t) {
		for _, r := range b.Batch.Records {
			var m struct{ AuditID string }
			json.Unmarshal(r.Data, &m)
			byAudit[m.AuditID]++
		}
	}
	return byAudit
}

// waitAll waits until every written event is stored, then checks each is stored once.
func (e *env) waitAll(t *testing.T) {
	t.Helper()
	e.mu.Lock()
	n := len(e.want)
	e.mu.Unlock()
	ingesttest.Eventually(t, 20*time.Second, "every line", func() bool { return len(e.stored(t)) >= n })
	time.Sleep(100 * time.Millisecond)
	got := e.stored(t)
	e.mu.Lock()
	defer e.mu.Unlock()
	for id := range e.want {
		if got[id] != 1 {
			t.Errorf("event %s stored %d times", id, got[id])
		}
	}
	if len(got) != len(e.want) {
		t.Errorf("%d events stored, %d written", len(got), len(e.want))
	}
}

func TestFollowsPartialLinesAndResumes(t *testing.T) {
	e := newEnv(t)
	lines := auditLines(t, 300, "a")
	e.appendTo(t, e.path, lines[:100]...)
	stop := e.start(t)
	e.waitAll(t)

	// A partial line is not read until its newline arrives.
	f, _ := os.OpenFile(e.path, os.O_WRONLY|os.O_APPEND, 0)
	half := len(lines[100]) / 2
	f.WriteString(lines[100][:half])
	f.Sync()
	time.Sleep(200 * time.Millisecond)
	if n := len(e.stored(t)); n != 100 {
		t.Fatalf("%d events stored with a partial line pending, want 100", n)
	}
	f.WriteString(lines[100][half:] + "\n")
	f.Close()
	e.note(lines[100])
	e.waitAll(t)

	// Lines written while stopped are read after the restart, from the saved offset.
	stop()
	e.appendTo(t, e.path, lines[101:300]...)
	e.start(t)
	e.waitAll(t)
	if n := e.h.Sum(t, "nhiwatch_ingest_records", attribute.String("source", "apiserver")); n != 300 {
		t.Errorf("published %d records for 300 lines: the restart re-read acknowledged lines", n)
	}
}

func TestRenameRotation(t *testing.T) {
	e := newEnv(t)
	lines := auditLines(t, 120, "r")
	e.appendTo(t, e.path, lines[:40]...)
	e.start(t)
	e.waitAll(t)
	// The writer renames its file, writes a few last lines to it, and starts a new one.
	rotated := filepath.Join(e.dir, "audit-2024-07-31T13-00-00.000.log")
	if err := os.Rename(e.path, rotated); err != nil {
		t.Fatal(err)
	}
	e.appendTo(t, rotated, lines[40:50]...)
	e.appendTo(t, e.path, lines[50:120]...)
	e.waitAll(t)
}

func TestRotationWhileStopped(t *testing.T) {
	e := newEnv(t)
	lines := auditLines(t, 150, "s")
	e.appendTo(t, e.path, lines[:50]...)
	stop := e.start(t)
	e.waitAll(t)
	stop()
	e.appendTo(t, e.path, lines[50:80]...)
	if err := os.Rename(e.path, e.path+".1"); err != nil {
		t.Fatal(err)
	}
	e.appendTo(t, e.path, lines[80:150]...)
	e.start(t)
	e.waitAll(t)
}

func TestCopyTruncate(t *testing.T) {
	e := newEnv(t)
	lines := auditLines(t, 200, "c")
	e.appendTo(t, e.path, lines[:60]...)
	stop := e.start(t)
	e.waitAll(t)
	stop()
	// Lines written just before the copy are only in the copy after the truncation.
	e.appendTo(t, e.path, lines[60:70]...)
	copyTruncate(t, e.path, e.path+".1")
	e.appendTo(t, e.path, lines[70:100]...)
	e.start(t)
	e.waitAll(t)
	// And while running.
	copyTruncate(t, e.path, e.path+".2")
	e.appendTo(t, e.path, lines[100:200]...)
	e.waitAll(t)
}

func copyTruncate(t *testing.T, path, to string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
}

func TestBrokenLinesAreDeadLettered(t *testing.T) {
	e := newEnv(t)
	lines := auditLines(t, 3, "b")
	e.appendTo(t, e.path, lines[0])
	f, _ := os.OpenFile(e.path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"kind":"Event","auditID":"broken", "user":{"password":"hunter2"` + "\n")
	f.WriteString(strings.Repeat("x", 900<<10) + "\n")
	f.Close()
	e.appendTo(t, e.path, lines[1:]...)
	e.start(t)
	e.waitAll(t)
	dlq := e.h.DLQ(t)
	if len(dlq) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dlq))
	}
	for _, d := range dlq {
		if strings.Contains(string(d.Data), "hunter2") {
			t.Error("a dead letter keeps a secret")
		}
	}
}

func TestStartAtEnd(t *testing.T) {
	e := newEnv(t)
	lines := auditLines(t, 20, "e")
	f, _ := os.Create(e.path)
	for _, l := range lines[:10] {
		f.WriteString(l + "\n")
	}
	f.Close()
	cfg := Config{Paths: []string{e.path}, StartAt: "end", PollInterval: 20 * time.Millisecond}
	src, err := New(cfg, e.h.Sink("apiserver", events.Provider_PROVIDER_K8S, "k8s", "prod"), e.h.Cursors("apiserver"), split.DefaultLimits(), e.h.Log)
	if err != nil {
		t.Fatal(err)
	}
	ingesttest.Start(t, src.Run)
	time.Sleep(200 * time.Millisecond)
	e.appendTo(t, e.path, lines[10:]...)
	e.waitAll(t)
}

// TestStopWhileJetStreamIsFull stops the source while it waits for room in NHI_RAW in the
// middle of a file; after the restart every line is stored once.
func TestStopWhileJetStreamIsFull(t *testing.T) {
	e := newEnv(t)
	e.appendTo(t, e.path, auditLines(t, 300, "f")...)
	lift := e.h.LimitRaw(t, 4)
	stop := e.start(t)
	ingesttest.Eventually(t, 20*time.Second, "a full stream", func() bool { return e.h.Server.StreamMsgs(t, events.StreamRaw) == 4 })
	stop()
	lift()
	if n := len(e.stored(t)); n != 100 {
		t.Fatalf("%d events stored before the stop, want 100 (4 chunks of 25)", n)
	}
	e.start(t)
	e.waitAll(t)
	if n := e.h.Sum(t, "nhiwatch_ingest_records", attribute.String("source", "apiserver")); n != 300 {
		t.Errorf("published %d records for 300 lines", n)
	}
}

// TestGlobFollowsEveryMatch follows each file a pattern matches, including one created later.
func TestGlobFollowsEveryMatch(t *testing.T) {
	e := newEnv(t)
	lines := auditLines(t, 60, "g")
	a, b := filepath.Join(e.dir, "node-a.log"), filepath.Join(e.dir, "node-b.log")
	e.appendTo(t, a, lines[:20]...)
	cfg := Config{Paths: []string{filepath.Join(e.dir, "node-*.log")}, PollInterval: 20 * time.Millisecond}
	src, err := New(cfg, e.h.Sink("apiserver", events.Provider_PROVIDER_K8S, "k8s", "prod"), e.h.Cursors("apiserver"), split.DefaultLimits(), e.h.Log)
	if err != nil {
		t.Fatal(err)
	}
	ingesttest.Start(t, src.Run)
	e.waitAll(t)
	e.appendTo(t, b, lines[20:40]...)
	e.appendTo(t, a, lines[40:60]...)
	e.waitAll(t)
}
