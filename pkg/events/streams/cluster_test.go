package streams_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
)

// cluster is three JetStream servers joined by routes, as deploy/compose/compose.cluster.yaml
// runs them, each with its own store directory.
type cluster struct {
	t     *testing.T
	opts  []*server.Options
	nodes []*server.Server
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		_ = ln.Close()
	}
	return ports
}

func startCluster(t *testing.T, size int) *cluster {
	t.Helper()
	ports := freePorts(t, 2*size)
	var routes []string
	for i := 0; i < size; i++ {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[size+i]))
	}
	c := &cluster{t: t}
	for i := 0; i < size; i++ {
		c.opts = append(c.opts, &server.Options{
			ServerName:             fmt.Sprintf("nats-%d", i+1),
			Host:                   "127.0.0.1",
			Port:                   ports[i],
			JetStream:              true,
			StoreDir:               t.TempDir(),
			NoSigs:                 true,
			NoLog:                  true,
			DisableJetStreamBanner: true,
			Cluster:                server.ClusterOpts{Name: "nhiwatch", Host: "127.0.0.1", Port: ports[size+i]},
			Routes:                 server.RoutesFromStr(strings.Join(routes, ",")),
		})
	}
	c.nodes = make([]*server.Server, size)
	for i := range c.opts {
		c.start(i)
	}
	t.Cleanup(func() {
		for _, ns := range c.nodes {
			if ns != nil {
				ns.Shutdown()
				ns.WaitForShutdown()
			}
		}
	})
	return c
}

// start starts (or restarts, on the same store) node i.
func (c *cluster) start(i int) {
	c.t.Helper()
	ns, err := server.NewServer(c.opts[i])
	if err != nil {
		c.t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		c.t.Fatalf("%s not ready", c.opts[i].ServerName)
	}
	c.nodes[i] = ns
}

// stop shuts node i down, like a killed container.
func (c *cluster) stop(i int) {
	c.nodes[i].Shutdown()
	c.nodes[i].WaitForShutdown()
	c.nodes[i] = nil
}

func (c *cluster) urls() string {
	var u []string
	for _, o := range c.opts {
		u = append(u, fmt.Sprintf("nats://127.0.0.1:%d", o.Port))
	}
	return strings.Join(u, ",")
}

func (c *cluster) index(name string) int {
	for i, o := range c.opts {
		if o.ServerName == name {
			return i
		}
	}
	c.t.Fatalf("no node named %q", name)
	return -1
}

// eventually polls f until it succeeds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestClusterNodeLossLosesNothing runs a 3-node JetStream cluster with R3 streams, publishes
// and consumes while the node leading NHI_RAW is shut down mid-stream, and checks that every
// acknowledged message is stored exactly once on the survivors and consumed, and that the
// node catches up when it comes back.
func TestClusterNodeLossLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test in -short mode")
	}
	const (
		total = 3000
		batch = 100
	)
	c := startCluster(t, 3)
	nc, err := nats.Connect(c.urls(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(256), jetstream.WithPublishAsyncTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	cfg := streams.DefaultConfig()
	cfg.Replicas = 3
	cfg.Partitions = 4
	eventually(t, 30*time.Second, "create R3 streams", func() error {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return streams.Ensure(actx, js, cfg)
	})
	cons, err := streams.EnsureConsumer(ctx, js, events.StreamRaw, streams.ConsumerConfig("normalize", "cluster test"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, events.StreamRaw)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("NHI_RAW is not R3: replicas %d, cluster %+v", info.Config.Replicas, info.Cluster)
	}
	victim := c.index(info.Cluster.Leader)

	// Consume concurrently, counting each message id once.
	var mu sync.Mutex
	seen := map[string]int{}
	consCtx, stopConsume := context.WithCancel(ctx)
	consumed := make(chan error, 1)
	go func() {
		consumed <- streams.Consume(consCtx, cons, streams.ConsumeOptions{
			Workers: 2, Stage: events.StageNormalize, Publisher: streams.NewPublisher(js),
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxDeliver: streams.DefaultMaxDeliver,
		}, func(_ context.Context, msg jetstream.Msg) error {
			mu.Lock()
			seen[msg.Headers().Get(events.HeaderMsgID)]++
			mu.Unlock()
			return nil
		})
	}()

	// Publish in batches; a third of the way in, shut the stream leader down while the
	// publisher keeps going.
	pub := streams.NewPublisher(js)
	killAt := make(chan struct{})
	published := make(chan error, 1)
	go func() {
		for first := 0; first < total; first += batch {
			if first == total/3 {
				close(killAt)
			}
			var msgs []*nats.Msg
			for i := first; i < first+batch; i++ {
				m := nats.NewMsg(events.RawSubject(events.Provider_PROVIDER_AWS))
				m.Header.Set(events.HeaderMsgID, fmt.Sprintf("rec-%05d", i))
				m.Data = []byte(fmt.Sprintf(`{"record":%d}`, i))
				msgs = append(msgs, m)
			}
			if err := pub.PublishAll(ctx, msgs); err != nil {
				published <- fmt.Errorf("batch at %d: %w", first, err)
				return
			}
		}
		published <- nil
	}()
	<-killAt
	c.stop(victim)
	killed := time.Now()
	if err := <-published; err != nil {
		t.Fatalf("publishing while %s was down: %v", c.opts[victim].ServerName, err)
	}
	t.Logf("stopped %s (leader of NHI_RAW); the rest was published %s later", c.opts[victim].ServerName, time.Since(killed).Round(time.Millisecond))

	// Every acknowledged message is in the stream on the survivors, once.
	eventually(t, 30*time.Second, "stream state on the survivors", func() error {
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != total || info.State.LastSeq != total {
			return fmt.Errorf("NHI_RAW holds %d messages up to seq %d, want %d", info.State.Msgs, info.State.LastSeq, total)
		}
		if info.Cluster.Leader == c.opts[victim].ServerName {
			return fmt.Errorf("the stopped node %s still leads", info.Cluster.Leader)
		}
		for _, r := range info.Cluster.Replicas {
			if r.Name != c.opts[victim].ServerName && (!r.Current || r.Lag != 0) {
				return fmt.Errorf("surviving replica %s is behind (current %v, lag %d)", r.Name, r.Current, r.Lag)
			}
		}
		return nil
	})
	eventually(t, 60*time.Second, "consume every message", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) != total {
			return fmt.Errorf("consumed %d distinct messages, want %d", len(seen), total)
		}
		return nil
	})
	stopConsume()
	if err := <-consumed; err != nil {
		t.Fatal(err)
	}
	for i := 0; i < total; i++ {
		if id := fmt.Sprintf("rec-%05d", i); seen[id] == 0 {
			t.Fatalf("message %s was never consumed", id)
		}
	}

	// The node comes back on its store and catches up.
	c.start(victim)
	eventually(t, 60*time.Second, "restarted node catches up", func() error {
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current || r.Lag != 0 {
				return fmt.Errorf("replica %s: current %v, lag %d", r.Name, r.Current, r.Lag)
			}
		}
		if len(info.Cluster.Replicas) != 2 || info.State.Msgs != total {
			return fmt.Errorf("%d replicas besides the leader, %d messages", len(info.Cluster.Replicas), info.State.Msgs)
		}
		return nil
	})
}
