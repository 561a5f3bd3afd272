package detect_test

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/eventstest"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
	"github.com/nhiwatch/nhiwatch/services/detect"
)

// workload builds a stream of events with history-dependent findings: identities act daily
// from one place for 40 days (the history), then half of them come back after 100 idle days
// (dormant_credential_reuse, which a lost state would miss), a third act from a new network
// and region (out_of_boundary, learned), and a few grant AdministratorAccess to another
// identity (privilege_expansion).
func workload(identities int) []*events.Event {
	start := time.Date(2024, 3, 1, 8, 0, 0, 0, time.UTC)
	var evs []*events.Event
	mk := func(i int, at time.Time, ip, region string) *events.Event {
		user := fmt.Sprintf("svc-%03d", i)
		return &events.Event{
			Id: fmt.Sprintf("aws:111122223333:%s-%d", user, at.Unix()), Provider: events.Provider_PROVIDER_AWS,
			TimeUnixNano: at.UnixNano(), ReceivedUnixNano: time.Now().UnixNano(), Account: "111122223333",
			Identity:   &events.Identity{Id: "aws:arn:aws:iam::111122223333:user/" + user, Kind: events.IdentityKind_IDENTITY_KIND_ACCESS_KEY_USER, Type: "IAMUser", Name: user},
			Credential: &events.Credential{Id: "aws:key:AKIA" + user, Type: events.CredentialType_CREDENTIAL_TYPE_ACCESS_KEY},
			Action:     &events.Action{Service: "s3", Name: "ListBuckets", Permission: "s3:ListAllMyBuckets"},
			Network:    &events.Network{Ip: ip, UserAgent: "aws-sdk-go/1.44.0", Region: region},
			Outcome:    &events.Outcome{Result: events.Result_RESULT_ALLOWED},
		}
	}
	for d := 0; d < 40; d++ {
		for i := 0; i < identities; i++ {
			evs = append(evs, mk(i, start.Add(time.Duration(d)*24*time.Hour+time.Duration(i)*time.Second), "198.51.100.7", "eu-west-1"))
		}
	}
	later := start.Add(140 * 24 * time.Hour)
	for i := 0; i < identities; i++ {
		switch {
		case i%2 == 0:
			evs = append(evs, mk(i, later.Add(time.Duration(i)*time.Second), "198.51.100.7", "eu-west-1"))
		case i%3 == 0:
			evs = append(evs, mk(i, start.Add(41*24*time.Hour+time.Duration(i)*time.Second), "203.0.113.9", "ap-southeast-2"))
		case i%7 == 0:
			ev := mk(i, start.Add(42*24*time.Hour), "198.51.100.7", "eu-west-1")
			ev.Id += "-grant"
			ev.Action = &events.Action{Service: "iam", Name: "AttachUserPolicy", Permission: "iam:AttachUserPolicy"}
			ev.GrantChanges = []*events.GrantChange{{
				Op: events.GrantOp_GRANT_OP_ADD, Grantee: fmt.Sprintf("aws:arn:aws:iam::111122223333:user/svc-%03d", i+1),
				Grant: "arn:aws:iam::aws:policy/AdministratorAccess", Mechanism: "attach_user_policy",
			}}
			evs = append(evs, ev)
		}
	}
	return evs
}

// publishEvents publishes events to NHI_EVENTS the way normalize does: batches per
// partition, copies to grantee partitions, deterministic message ids.
func publishEvents(t *testing.T, js jetstream.JetStream, p uint32, evs []*events.Event, perMsg int) {
	t.Helper()
	groups := map[uint32][]*events.Event{}
	var msgs []*nats.Msg
	flush := func(part uint32) {
		g := groups[part]
		if len(g) == 0 {
			return
		}
		data, err := events.Marshal(&events.EventBatch{Partition: part, Events: g})
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(events.EventSubject(events.Provider_PROVIDER_AWS, part))
		m.Header.Set(events.HeaderMsgID, events.EventBatchMsgID(part, g[0].Id, g[len(g)-1].Id))
		m.Data = data
		msgs = append(msgs, m)
		groups[part] = nil
	}
	for _, ev := range evs {
		ev.Partition = events.Partition(ev.Identity.Id, p)
		parts := []uint32{ev.Partition}
		for _, g := range ev.GrantChanges {
			if gp := events.Partition(g.Grantee, p); gp != ev.Partition {
				parts = append(parts, gp)
			}
		}
		for _, part := range parts {
			groups[part] = append(groups[part], ev)
			if len(groups[part]) >= perMsg {
				flush(part)
			}
		}
	}
	for part := uint32(0); part < p; part++ {
		flush(part)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := streams.NewPublisher(js).PublishAll(ctx, msgs); err != nil {
		t.Fatal(err)
	}
}

type worker struct {
	svc    *detect.Service
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
}

func startWorker(t *testing.T, srv *eventstest.Server, sc streams.Config, id string) *worker {
	t.Helper()
	nc, js := srv.Connect(t)
	cfg := detect.DefaultConfig()
	cfg.WorkerID = id
	cfg.LeaseTTL = 2 * time.Second
	cfg.CheckpointInterval = 50 * time.Millisecond
	cfg.CheckpointMessages = 4
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test_worker", id)
	svc, err := detect.New(cfg, detect.Deps{Logger: log, Meter: noop.NewMeterProvider().Meter("test"), JS: js, Streams: sc})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{svc: svc, nc: nc, cancel: cancel, done: make(chan error, 1)}
	go func() { w.done <- svc.Run(ctx) }()
	t.Cleanup(func() { w.stop(t) })
	return w
}

func (w *worker) stop(t *testing.T) {
	if w.cancel == nil {
		return
	}
	w.cancel()
	w.cancel = nil
	select {
	case err := <-w.done:
		if err != nil {
			t.Errorf("worker stopped with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("worker did not stop")
	}
}

// progress returns the messages acknowledged and still pending on the detect partitions.
func progress(t *testing.T, js jetstream.JetStream, p uint32) (acked, pending uint64) {
	t.Helper()
	ctx := context.Background()
	for part := uint32(0); part < p; part++ {
		c, err := js.Consumer(ctx, events.StreamEvents, fmt.Sprintf("detect-p%03d", part))
		if err != nil {
			pending++ // not created yet
			continue
		}
		info, err := c.Info(ctx)
		if err != nil {
			pending++ // being recreated by a worker taking the partition over
			continue
		}
		acked += info.AckFloor.Stream
		pending += info.NumPending + uint64(info.NumAckPending)
	}
	return acked, pending
}

// stopMidStream stops a worker as soon as some of the stream is acknowledged and some is
// still pending.
func stopMidStream(t *testing.T, js jetstream.JetStream, p uint32, w *worker) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		acked, pending := progress(t, js, p)
		if acked > 0 && pending > 0 {
			before := pending
			w.stop(t)
			acked, pending = progress(t, js, p)
			t.Logf("worker stopped mid-stream, with %d pending; now %d acknowledged, %d pending", before, acked, pending)
			return
		}
		if pending == 0 && acked > 0 || time.Now().After(deadline) {
			t.Fatal("the stream drained before the worker could be stopped: make the workload longer")
		}
		time.Sleep(time.Millisecond)
	}
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// findingIDs reads every NHI_FINDINGS message and returns the sorted ids and the number of
// messages.
func findingIDs(t *testing.T, js jetstream.JetStream) ([]string, int) {
	t.Helper()
	ctx := context.Background()
	c, err := js.OrderedConsumer(ctx, events.StreamFindings, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	n := 0
	for {
		batch, err := c.FetchNoWait(500)
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			f, err := events.UnmarshalFinding(m.Data())
			if err != nil {
				t.Fatal(err)
			}
			if m.Headers().Get(events.HeaderMsgID) != f.Id {
				t.Errorf("finding %s published with Nats-Msg-Id %q", f.Id, m.Headers().Get(events.HeaderMsgID))
			}
			seen[f.Id]++
		}
		n += got
		if got == 0 {
			break
		}
	}
	ids := make([]string, 0, len(seen))
	for id, c := range seen {
		if c > 1 {
			t.Errorf("finding %s stored %d times", id, c)
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids, n
}

func idle(t *testing.T, js jetstream.JetStream, p uint32) func() bool {
	return func() bool {
		_, pending := progress(t, js, p)
		return pending == 0
	}
}

// The three scale-out tests share one workload, partition count and reference run.
const (
	testPartitions = 8
	testIdentities = 400
)

var (
	refOnce sync.Once
	refIDs  []string
)

// sharedReference returns the findings of one uninterrupted worker over the shared workload.
func sharedReference(t *testing.T) ([]*events.Event, []string) {
	t.Helper()
	refOnce.Do(func() { refIDs = reference(t, workload(testIdentities), testPartitions) })
	if len(refIDs) < 50 {
		t.Fatalf("the workload raises only %d findings", len(refIDs))
	}
	return workload(testIdentities), refIDs
}

// reference runs one uninterrupted worker over the workload on its own server.
func reference(t *testing.T, evs []*events.Event, p uint32) []string {
	t.Helper()
	srv := eventstest.Start(t)
	sc := srv.Streams
	sc.Partitions = p
	publishEvents(t, srv.JS, p, evs, 16)
	w := startWorker(t, srv, sc, "reference")
	waitFor(t, "the reference run to drain", time.Minute, idle(t, srv.JS, p))
	w.stop(t)
	ids, _ := findingIDs(t, srv.JS)
	return ids
}

// TestRestartMidStream stops the only worker in the middle of the stream and starts a new
// one: the findings are exactly those of an uninterrupted run.
func TestRestartMidStream(t *testing.T) {
	const p = testPartitions
	evs, want := sharedReference(t)
	srv := eventstest.Start(t)
	sc := srv.Streams
	sc.Partitions = p
	publishEvents(t, srv.JS, p, evs, 16)
	w := startWorker(t, srv, sc, "first")
	stopMidStream(t, srv.JS, p, w)
	startWorker(t, srv, sc, "second")
	waitFor(t, "the stream to drain", time.Minute, idle(t, srv.JS, p))
	got, n := findingIDs(t, srv.JS)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("findings differ from the uninterrupted run (-want +got):\n%s", diff)
	}
	if n != len(got) {
		t.Errorf("%d finding messages for %d ids", n, len(got))
	}
}

// TestWorkersSharePartitions runs three workers, stops one in the middle of the stream, and
// checks its partitions are taken over with no finding lost or duplicated.
func TestWorkersSharePartitions(t *testing.T) {
	const p = testPartitions
	evs, want := sharedReference(t)
	srv := eventstest.Start(t)
	sc := srv.Streams
	sc.Partitions = p
	ws := []*worker{startWorker(t, srv, sc, "w1"), startWorker(t, srv, sc, "w2"), startWorker(t, srv, sc, "w3")}
	waitFor(t, "the partitions to spread over three workers", 30*time.Second, func() bool {
		total := 0
		for _, w := range ws {
			n := len(w.svc.Partitions())
			if n == 0 || n > 3 {
				return false
			}
			total += n
		}
		return total == p
	})
	stolen := ws[0].svc.Partitions()
	publishEvents(t, srv.JS, p, evs, 16)
	stopMidStream(t, srv.JS, p, ws[0])
	waitFor(t, "the stopped worker's partitions to be taken over", 30*time.Second, func() bool {
		owned := map[uint32]bool{}
		for _, w := range ws[1:] {
			for _, part := range w.svc.Partitions() {
				owned[part] = true
			}
		}
		for _, part := range stolen {
			if !owned[part] {
				return false
			}
		}
		return len(owned) == p
	})
	waitFor(t, "the stream to drain", time.Minute, idle(t, srv.JS, p))
	got, n := findingIDs(t, srv.JS)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("findings differ from a single uninterrupted worker (-want +got):\n%s", diff)
	}
	if n != len(got) {
		t.Errorf("%d finding messages for %d ids", n, len(got))
	}
	t.Logf("worker w1 held %v; %d findings", stolen, len(got))
}

// TestWorkerCrash cuts a worker off from NATS in the middle of the stream, as a crash would:
// it can neither checkpoint nor renew or release its leases. The other worker takes its
// partitions over once the leases expire, replays from their checkpoints, and the findings
// are still exactly those of an uninterrupted run.
func TestWorkerCrash(t *testing.T) {
	const p = testPartitions
	evs, want := sharedReference(t)
	srv := eventstest.Start(t)
	sc := srv.Streams
	sc.Partitions = p
	crash := startWorker(t, srv, sc, "crash")
	waitFor(t, "the first worker to hold every partition", 30*time.Second, func() bool { return len(crash.svc.Partitions()) == p })
	survivor := startWorker(t, srv, sc, "survivor")
	publishEvents(t, srv.JS, p, evs, 16)
	waitFor(t, "some progress", time.Minute, func() bool {
		acked, _ := progress(t, srv.JS, p)
		return acked > 0
	})
	crash.nc.Close()
	waitFor(t, "the survivor to take every partition over", 30*time.Second, func() bool { return len(survivor.svc.Partitions()) == p })
	waitFor(t, "the stream to drain", time.Minute, idle(t, srv.JS, p))
	got, n := findingIDs(t, srv.JS)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("findings differ from an uninterrupted run (-want +got):\n%s", diff)
	}
	if n != len(got) {
		t.Errorf("%d finding messages for %d ids", n, len(got))
	}
}

type testWriter struct{ t *testing.T }

var logMu sync.Mutex

func (w testWriter) Write(p []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	w.t.Log(string(p))
	return len(p), nil
}
