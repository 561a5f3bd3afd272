// Package eventstest starts an in-process NATS JetStream server for tests, with its storage
// in the test's temporary directory, and the nhiwatch streams in place.
package eventstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nhiwatch/nhiwatch/pkg/events/natsembed"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
)

// Server is a running test server with one client connection.
type Server struct {
	NS       *server.Server
	NC       *nats.Conn
	JS       jetstream.JetStream
	StoreDir string
	Streams  streams.Config
}

// Start starts a JetStream server listening on a free loopback port, connects to it and
// creates the nhiwatch streams. Everything is shut down when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartAt(t, t.TempDir())
}

// StartAt is Start with a given store directory, to restart a server on the same data.
func StartAt(t testing.TB, storeDir string) *Server {
	t.Helper()
	ns, err := natsembed.Start(natsembed.Options{StoreDir: storeDir, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(ns.ClientURL(), nats.Name(t.Name()), nats.MaxReconnects(-1))
	if err != nil {
		ns.Shutdown()
		t.Fatal(err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1024))
	if err != nil {
		t.Fatal(err)
	}
	cfg := streams.DefaultConfig()
	cfg.Partitions = 4
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := streams.Ensure(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	s := &Server{NS: ns, NC: nc, JS: js, StoreDir: storeDir, Streams: cfg}
	t.Cleanup(s.Shutdown)
	return s
}

// Connect opens another client connection to the server, closed when the test ends.
func (s *Server) Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.NS.ClientURL(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1024))
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// Shutdown closes the connection and stops the server; safe to call twice.
func (s *Server) Shutdown() {
	if s.NC != nil {
		s.NC.Close()
	}
	if s.NS != nil {
		s.NS.Shutdown()
		s.NS.WaitForShutdown()
	}
}

// StreamMsgs returns the number of messages in a stream.
func (s *Server) StreamMsgs(t testing.TB, stream string) uint64 {
	t.Helper()
	st, err := s.JS.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}
