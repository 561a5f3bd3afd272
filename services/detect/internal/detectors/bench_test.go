package detectors

import (
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/catalog"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/state"
	"github.com/nhiwatch/nhiwatch/services/normalize"
)

const million = 1_000_000

// benchEvent is a reusable event of identity i at time at, from one of two networks.
func benchEvent(ev *events.Event, ids []string, keys []string, i int, at time.Time, net int) {
	ev.Identity.Id = ids[i]
	ev.Identity.Name = ids[i][len(ids[i])-8:]
	ev.Credential.Id = keys[i]
	ev.TimeUnixNano = at.UnixNano()
	if net == 0 {
		ev.Network.Ip = "198.51.100.7"
	} else {
		ev.Network.Ip = "203.0.113.9"
	}
}

func newBenchEvent() *events.Event {
	return &events.Event{
		Id: "aws:111122223333:bench", Provider: events.Provider_PROVIDER_AWS, Account: "111122223333",
		Identity:   &events.Identity{Kind: events.IdentityKind_IDENTITY_KIND_ACCESS_KEY_USER, Type: "IAMUser"},
		Credential: &events.Credential{Type: events.CredentialType_CREDENTIAL_TYPE_ACCESS_KEY},
		Action:     &events.Action{Service: "s3", Name: "GetObject", Permission: "s3:GetObject", ReadOnly: true},
		Network:    &events.Network{UserAgent: "aws-sdk-go/1.44.0 (go1.21; linux; amd64)", Region: "eu-west-1"},
		Outcome:    &events.Outcome{Result: events.Result_RESULT_ALLOWED},
	}
}

// fill builds the state of n identities, each with a history of three events on two days
// from two networks (two activity spans, two learned networks, a region, a client family
// and an access key), as a production identity has after a while.
func fill(b *testing.B, n int) (*Detector, *state.Partition, []string, []string) {
	ids := make([]string, n)
	keys := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("aws:arn:aws:iam::111122223333:user/svc-%08d", i)
		keys[i] = fmt.Sprintf("aws:key:AKIA%016d", i)
	}
	det := New(Env{Catalog: catalog.Static(catalog.Empty()), Partitions: 1})
	part := state.NewPartition(0)
	ev := newBenchEvent()
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for d := 0; d < 3; d++ {
		for i := range ids {
			benchEvent(ev, ids, keys, i, start.Add(time.Duration(d)*36*time.Hour), d%2)
			det.Process(part, ev, 0)
		}
	}
	part.Dirty()
	return det, part, ids, keys
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkStateMemory reports the heap taken by the state of one million identities, per
// identity (the ids themselves, which the state does not keep, are allocated before).
func BenchmarkStateMemory(b *testing.B) {
	for range b.N {
		ids := make([]string, million)
		for i := range ids {
			ids[i] = fmt.Sprintf("aws:arn:aws:iam::111122223333:user/svc-%08d", i)
		}
		before := heapInUse()
		_, part, _, _ := fill(b, million)
		after := heapInUse()
		b.ReportMetric(float64(after-before)/million, "bytes/identity")
		runtime.KeepAlive(part)
		runtime.KeepAlive(ids)
	}
}

// BenchmarkDetect1M applies events of random identities to a partition holding one million
// identities, on one core: every event runs the three detectors and updates the state.
func BenchmarkDetect1M(b *testing.B) {
	det, part, ids, keys := fill(b, million)
	ev := newBenchEvent()
	at := time.Date(2024, 1, 10, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	for i := range b.N {
		j := (i * 7919) % million
		benchEvent(ev, ids, keys, j, at.Add(time.Duration(i)*time.Millisecond), i%2)
		det.Process(part, ev, 0)
	}
	reportRates(b, cpu)
}

// BenchmarkNormalizeDetect runs real CloudTrail records through normalize and the detectors
// in process, on one core.
func BenchmarkNormalizeDetect(b *testing.B) {
	var records [][]byte
	for _, f := range []string{
		"cloudtrail/stratus-red-team/aws.credential-access.ec2-steal-instance-credentials.json",
		"cloudtrail/stratus-red-team/aws.execution.ssm-send-command.json",
		"cloudtrail/stratus-red-team/aws.persistence.iam-create-admin-user.json",
		"cloudtrail/lookup-events/aws_cloudtrail.jsonl",
		"cloudtrail/s3-delivery/111111111111_CloudTrail_eu-central-1_20171211T1505Z_A6kvhMoVeCsc7v8U.json.gz",
	} {
		records = append(records, rawRecords(b, testdata+f)...)
	}
	n := normalize.NewNormalizer()
	det := New(Env{Catalog: catalog.Static(catalog.Empty()), Partitions: 1})
	part := state.NewPartition(0)
	buf := make([]byte, 0, 64<<10)
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	for i := range b.N {
		rec := records[i%len(records)]
		buf = append(buf[:0], rec...)
		ev, err := n.Normalize(normalize.Input{Data: buf, Format: "auto", Source: "bench", RecordID: "bench", ReceivedAt: now})
		if err != nil {
			b.Fatal(err)
		}
		det.Process(part, ev, uint64(i+1))
	}
	reportRates(b, cpu)
}

func rawRecords(b *testing.B, path string) [][]byte {
	var out [][]byte
	err := ingestRead(path, func(data []byte) { out = append(out, append([]byte(nil), data...)) })
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// cpuTime is the CPU time this process used so far (user and system). On a shared machine
// wall time also counts the time other processes held the cores; events per CPU second is
// the rate one dedicated core sustains.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportRates(b *testing.B, cpuBefore time.Duration) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	if used := cpuTime() - cpuBefore; used > 0 {
		b.ReportMetric(float64(b.N)/used.Seconds(), "events/cpu-s")
	}
}
