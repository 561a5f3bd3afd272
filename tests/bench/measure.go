package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/tests/internal/procs"
)

// scrape reads a service's Prometheus /metrics: every sample by its series
// ("name{labels}").
func scrape(ctx context.Context, addr string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out, nil
}

// sum adds the samples of metric name whose labels contain every one of labels
// (`key="value"`).
func sum(samples map[string]float64, name string, labels ...string) float64 {
	total := 0.0
	for series, v := range samples {
		if series != name && !strings.HasPrefix(series, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(series, l) {
				ok = false
				break
			}
		}
		if ok {
			total += v
		}
	}
	return total
}

// counters are the pipeline's progress counters at one moment.
type counters struct {
	at time.Time
	// records ingest published, events normalize published, events the detectors applied,
	// event rows detect inserted into ClickHouse.
	ingested, normalized, detected, stored float64
	cpu                                    map[string]time.Duration
}

// readCounters scrapes every service and reads every process's CPU time.
func readCounters(ctx context.Context, p *pipeline, pids map[string]int) (counters, error) {
	c := counters{at: time.Now(), cpu: map[string]time.Duration{}}
	get := func(svc, name string, labels ...string) (float64, error) {
		s, err := scrape(ctx, p.admin[svc])
		if err != nil {
			return 0, fmt.Errorf("scrape %s: %w", svc, err)
		}
		return sum(s, name, labels...), nil
	}
	var err error
	if c.ingested, err = get("ingest", "nhiwatch_ingest_records_total"); err != nil {
		return c, err
	}
	if c.normalized, err = get("normalize", "nhiwatch_normalize_events_total"); err != nil {
		return c, err
	}
	ds, err := scrape(ctx, p.admin["detect"])
	if err != nil {
		return c, fmt.Errorf("scrape detect: %w", err)
	}
	c.detected = sum(ds, "nhiwatch_detect_events_total")
	c.stored = sum(ds, "nhiwatch_store_rows_total", `table="events"`)
	for name, pid := range pids {
		c.cpu[name] = cpuTime(pid)
	}
	return c, nil
}

// done is how many events left the pipeline: detected and stored.
func (c counters) done() float64 { return min(c.detected, c.stored) }

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on every Linux port Go
// runs on).
const clockTicks = 100

// cpuTime is the user and system CPU time of a process (with its children's threads).
func cpuTime(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces: fields start after the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// rssBytes is a process's resident set size, 0 when unknown.
func rssBytes(pid int) int64 {
	if pid == 0 {
		return 0
	}
	n, err := procs.RSS(pid)
	if err != nil {
		return 0
	}
	return n
}

// clickhousePID finds the ClickHouse server listening for the benchmark: the pid file the
// Makefile's script writes, else any clickhouse-server process.
func clickhousePID(root string) int {
	dir := os.Getenv("CH_DIR")
	if dir == "" {
		dir = filepath.Join(root, ".clickhouse")
	}
	if data, err := os.ReadFile(filepath.Join(dir, "clickhouse.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
				return pid
			}
		}
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(cmd), "clickhouse-server") || strings.HasPrefix(string(cmd), "clickhouse\x00server") {
			return pid
		}
	}
	return 0
}

// loadAverage is the one-minute load average.
func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// findingSample is one finding as it was stored in NHI_FINDINGS.
type findingSample struct {
	detector string
	received time.Time // when ingest received the record that raised it
	stored   time.Time // when NHI_FINDINGS stored it
	eventIDs []string
}

// findingWatch reads every finding stored in NHI_FINDINGS from now on.
type findingWatch struct {
	mu      sync.Mutex
	samples []findingSample
	bad     int
	cc      jetstream.ConsumeContext
}

func watchFindings(ctx context.Context, js jetstream.JetStream) (*findingWatch, error) {
	cons, err := js.OrderedConsumer(ctx, events.StreamFindings, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		return nil, fmt.Errorf("watch findings: %w", err)
	}
	w := &findingWatch{}
	w.cc, err = cons.Consume(func(msg jetstream.Msg) {
		md, err := msg.Metadata()
		f, ferr := events.UnmarshalFinding(msg.Data())
		w.mu.Lock()
		defer w.mu.Unlock()
		if err != nil || ferr != nil {
			w.bad++
			return
		}
		s := findingSample{detector: f.Detector, received: time.Unix(0, f.ReceivedUnixNano), stored: md.Timestamp}
		for _, e := range f.Evidence {
			s.eventIDs = append(s.eventIDs, e.EventId)
		}
		w.samples = append(w.samples, s)
	})
	if err != nil {
		return nil, fmt.Errorf("watch findings: %w", err)
	}
	return w, nil
}

// between returns the findings whose record was received in [from, to).
func (w *findingWatch) between(from, to time.Time) []findingSample {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []findingSample
	for _, s := range w.samples {
		if !s.received.Before(from) && s.received.Before(to) {
			out = append(out, s)
		}
	}
	return out
}

func (w *findingWatch) stop() { w.cc.Stop() }

// Quantiles of a latency distribution, in milliseconds.
type Quantiles struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p99_9_ms"`
	Max  float64 `json:"max_ms"`
}

func quantiles(ms []float64) Quantiles {
	if len(ms) == 0 {
		return Quantiles{}
	}
	sort.Float64s(ms)
	q := func(p float64) float64 {
		i := int(p*float64(len(ms)) + 0.5)
		return round(ms[min(max(i-1, 0), len(ms)-1)])
	}
	return Quantiles{N: len(ms), P50: q(0.5), P90: q(0.9), P99: q(0.99), P999: q(0.999), Max: round(ms[len(ms)-1])}
}

func round(x float64) float64 { return float64(int64(x*10+0.5)) / 10 }

// storeLatency reads, from ClickHouse, how long after ingest received them the events
// received in [from, to) were inserted: quantiles of inserted_at_ms - received_at_ms.
func storeLatency(ctx context.Context, ch driver.Conn, from, to time.Time) (Quantiles, error) {
	rows, err := ch.Query(ctx, `SELECT toFloat64(inserted_at_ms) - toFloat64(received_at_ms) FROM events
 WHERE received_at_ms >= ? AND received_at_ms < ? AND inserted_at_ms > 0`, uint64(from.UnixMilli()), uint64(to.UnixMilli()))
	if err != nil {
		return Quantiles{}, fmt.Errorf("store latency: %w", err)
	}
	defer rows.Close()
	var ms []float64
	for rows.Next() {
		var v float64
		if err := rows.Scan(&v); err != nil {
			return Quantiles{}, err
		}
		ms = append(ms, v)
	}
	return quantiles(ms), rows.Err()
}

// consumerBacklog sums the messages waiting for, or held unacknowledged by, every durable
// consumer of the pipeline's streams.
func consumerBacklog(ctx context.Context, js jetstream.JetStream) (uint64, error) {
	var total uint64
	for _, stream := range []string{events.StreamRaw, events.StreamEvents, events.StreamFindings} {
		st, err := js.Stream(ctx, stream)
		if err != nil {
			return 0, err
		}
		l := st.ListConsumers(ctx)
		for info := range l.Info() {
			total += info.NumPending + uint64(info.NumAckPending)
		}
		if err := l.Err(); err != nil {
			return 0, err
		}
	}
	return total, nil
}

// lines counts the lines of a file.
func lines(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	n := 0
	for {
		b, err := r.ReadSlice('\n')
		if len(b) > 0 && b[len(b)-1] == '\n' {
			n++
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return n, nil
		}
	}
}
