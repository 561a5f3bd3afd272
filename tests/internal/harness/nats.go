package harness

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nhiwatch/nhiwatch/tests/internal/procs"
)

// NATSServer is a nats-server process with JetStream on file storage. It keeps its port and
// store directory across restarts, so clients reconnect to the same address and find their
// streams where they left them.
type NATSServer struct {
	*procs.Proc
	Port        int
	MonitorPort int
	StoreDir    string
}

// StartNATS writes a configuration under dir and starts bin with it. The server uses the
// JetStream defaults of a real deployment (file storage, the default sync interval: data is
// written to the file before a publish is acknowledged and fsynced every two minutes), so
// killing the process loses nothing it acknowledged.
func StartNATS(bin, dir string) (*NATSServer, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	mport, err := FreePort()
	if err != nil {
		return nil, err
	}
	n := &NATSServer{Port: port, MonitorPort: mport, StoreDir: filepath.Join(dir, "jetstream")}
	conf := fmt.Sprintf(`server_name: nhiwatch_faults
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
jetstream {
  store_dir: %q
}
`, port, mport, n.StoreDir)
	confPath := filepath.Join(dir, "nats-server.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	p, err := procs.Start(procs.Spec{
		Name:   "nats-server",
		Path:   bin,
		Args:   []string{"-c", confPath},
		Stdout: filepath.Join(dir, "nats-server.out"),
		Stderr: filepath.Join(dir, "nats-server.log"),
	})
	if err != nil {
		return nil, err
	}
	n.Proc = p
	if err := n.WaitReady(30 * time.Second); err != nil {
		p.Close()
		return nil, err
	}
	return n, nil
}

// URL is the client URL.
func (n *NATSServer) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(n.Port) }

// Restart starts the server again on the same port and store and waits until JetStream
// has recovered its streams.
func (n *NATSServer) Restart() error {
	if err := n.Start(); err != nil {
		return err
	}
	return n.WaitReady(60 * time.Second)
}

// WaitReady waits until the server's /healthz says JetStream is up.
func (n *NATSServer) WaitReady(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	url := "http://127.0.0.1:" + strconv.Itoa(n.MonitorPort) + "/healthz"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nats-server not healthy within %v (last: %v)\n%s", timeout, err, n.Tail(20))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// FreePort returns a loopback TCP port nobody listens on right now.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
