package normalize_test

import (
	"encoding/json"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fastjson"

	"github.com/nhiwatch/nhiwatch/services/normalize"
)

// benchRecords loads the shared samples of one provider (the Panther events excluded: they
// are hand-made and many are rejected).
func benchRecords(b *testing.B, globs ...string) [][]byte {
	b.Helper()
	var out [][]byte
	for _, g := range globs {
		files, _ := filepath.Glob(filepath.Join(sharedTestdata, g))
		sort.Strings(files)
		for _, f := range files {
			out = append(out, readRecords(b, f, false)...)
		}
	}
	if len(out) == 0 {
		b.Fatal("no records")
	}
	return out
}

func benchNormalize(b *testing.B, format string, recs [][]byte) {
	n := normalize.NewNormalizer()
	var bytes int64
	for _, r := range recs {
		bytes += int64(len(r))
	}
	b.SetBytes(bytes / int64(len(recs)))
	b.ReportAllocs()
	cpu := startCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := n.Normalize(normalize.Input{Data: recs[i%len(recs)], Format: format, Cluster: "bench"}); err != nil && !strings.Contains(err.Error(), "skipped") && !strings.Contains(err.Error(), "payload") {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}

// cpuClock measures the CPU time the process spends, so that records per CPU-second can be
// reported even when other processes share the machine (wall-clock ns/op then overstates).
type cpuClock struct{ start time.Duration }

func startCPU() cpuClock { return cpuClock{processCPU()} }

func (c cpuClock) report(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	if used := processCPU() - c.start; used > 0 {
		b.ReportMetric(float64(b.N)/used.Seconds(), "records/cpu-s")
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkNormalizeCloudTrail(b *testing.B) {
	benchNormalize(b, "auto", benchRecords(b, "cloudtrail/stratus-red-team/*.json", "cloudtrail/s3-delivery/*.json.gz", "cloudtrail/lookup-events/*.jsonl", "cloudtrail/eventbridge/*.json"))
}

func BenchmarkNormalizeGCP(b *testing.B) {
	benchNormalize(b, "auto", benchRecords(b, "gcp/logentry/*.json", "gcp/jsonl/*.jsonl"))
}

func BenchmarkNormalizeK8s(b *testing.B) {
	benchNormalize(b, "auto", benchRecords(b, "k8s/audit-log/*.log"))
}

// BenchmarkNaiveCloudTrail is the baseline the Normalizer is measured against: decode each
// record with encoding/json into map[string]any and pull out the same core fields.
func BenchmarkNaiveCloudTrail(b *testing.B) {
	recs := benchRecords(b, "cloudtrail/stratus-red-team/*.json", "cloudtrail/s3-delivery/*.json.gz", "cloudtrail/eventbridge/*.json")
	b.ReportAllocs()
	cpu := startCPU()
	b.ResetTimer()
	var sink int
	for i := 0; i < b.N; i++ {
		var m map[string]any
		if err := json.Unmarshal(recs[i%len(recs)], &m); err != nil {
			b.Fatal(err)
		}
		if d, ok := m["detail"].(map[string]any); ok {
			m = d
		}
		str := func(v any) string { s, _ := v.(string); return s }
		u, _ := m["userIdentity"].(map[string]any)
		fields := []string{
			str(m["eventID"]), str(m["eventTime"]), str(m["eventSource"]), str(m["eventName"]),
			str(m["awsRegion"]), str(m["sourceIPAddress"]), str(m["userAgent"]), str(m["errorCode"]),
			str(u["type"]), str(u["arn"]), str(u["accessKeyId"]), str(u["principalId"]),
		}
		if ctx, ok := u["sessionContext"].(map[string]any); ok {
			if iss, ok := ctx["sessionIssuer"].(map[string]any); ok {
				fields = append(fields, str(iss["arn"]))
			}
		}
		if rp, ok := m["requestParameters"].(map[string]any); ok {
			extras, _ := json.Marshal(rp)
			sink += len(extras)
		}
		sink += len(fields)
	}
	_ = sink
	cpu.report(b)
}

// BenchmarkParseOnlyCloudTrail is the floor: fastjson parsing the same records, nothing else.
func BenchmarkParseOnlyCloudTrail(b *testing.B) {
	recs := benchRecords(b, "cloudtrail/stratus-red-team/*.json", "cloudtrail/s3-delivery/*.json.gz", "cloudtrail/lookup-events/*.jsonl", "cloudtrail/eventbridge/*.json")
	var p fastjson.Parser
	b.ReportAllocs()
	cpu := startCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.ParseBytes(recs[i%len(recs)]); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}
