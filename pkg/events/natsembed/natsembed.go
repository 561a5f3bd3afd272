// Package natsembed runs a NATS server with JetStream inside the process: the all-in-one
// `nhiwatch run`, the replay tools and the tests use it, on the same JetStream code paths as
// a deployment with an external server.
package natsembed

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Options configures the embedded server.
type Options struct {
	// StoreDir is where JetStream keeps its files. Required.
	StoreDir string
	// Host and Port to listen on for other processes; Port -1 picks a free port, and
	// DontListen serves only in-process connections.
	Host       string
	Port       int
	DontListen bool
	// SyncInterval is how often JetStream fsyncs its files (0: the server's default).
	// SyncAlways fsyncs every write: slow, but nothing acknowledged is lost on power loss.
	SyncInterval time.Duration
	SyncAlways   bool
	// ServerName names the server in a cluster; empty picks one.
	ServerName string
	// Logs routes the server's own log lines to stderr.
	Logs bool
}

// Start starts the server and waits until it accepts connections.
func Start(o Options) (*server.Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("natsembed: StoreDir is required")
	}
	opts := &server.Options{
		ServerName:             o.ServerName,
		Host:                   o.Host,
		Port:                   o.Port,
		DontListen:             o.DontListen,
		JetStream:              true,
		StoreDir:               o.StoreDir,
		SyncInterval:           o.SyncInterval,
		SyncAlways:             o.SyncAlways,
		NoSigs:                 true,
		NoLog:                  !o.Logs,
		DisableJetStreamBanner: true,
		MaxPayload:             8 << 20,
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsembed: %w", err)
	}
	if o.Logs {
		ns.ConfigureLogger()
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("natsembed: server not ready within 30s")
	}
	return ns, nil
}

// Connect opens a client connection to an embedded server, in process (no TCP).
func Connect(ns *server.Server, name string, opts ...nats.Option) (*nats.Conn, error) {
	all := append([]nats.Option{
		nats.InProcessServer(ns),
		nats.Name(name),
		nats.MaxReconnects(-1),
	}, opts...)
	nc, err := nats.Connect("", all...)
	if err != nil {
		return nil, fmt.Errorf("natsembed: connect: %w", err)
	}
	return nc, nil
}
