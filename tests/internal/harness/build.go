// Package harness runs the real nhiwatch pipeline as separate processes for the fault
// tests: it builds the service binaries and a nats-server from source, starts the server with
// JetStream on file storage, runs each service with a generated configuration, and lets a test
// kill -9 and restart any of them, cut ClickHouse away from detect, and read what the pipeline
// stored.
package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Binaries are the built programs.
type Binaries struct {
	NATSServer string
	Ingest     string
	Normalize  string
	Detect     string
	Notify     string
}

// Service names, as the binaries and configuration sections name them, in pipeline order.
const (
	Ingest    = "ingest"
	Normalize = "normalize"
	Detect    = "detect"
	Notify    = "notify"
)

// Services lists the four services in pipeline order.
var Services = []string{Ingest, Normalize, Detect, Notify}

// Path is the binary of a service.
func (b Binaries) Path(service string) string {
	switch service {
	case Ingest:
		return b.Ingest
	case Normalize:
		return b.Normalize
	case Detect:
		return b.Detect
	case Notify:
		return b.Notify
	}
	return ""
}

// RepoRoot returns the repository root: the nearest directory above the working directory
// that holds go.work.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("harness: no go.work above the working directory")
		}
		dir = parent
	}
}

// Build compiles the four services and nats-server into dir with one `go build` in the
// workspace at root. race builds them with the race detector.
func Build(ctx context.Context, root, dir string, race bool) (Binaries, error) {
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if race {
		args = append(args, "-race")
	}
	args = append(args,
		"./services/ingest/cmd/ingest",
		"./services/normalize/cmd/normalize",
		"./services/detect/cmd/detect",
		"./services/notify/cmd/notify",
		// The server a deployment runs, at the version tests/go.mod requires as a tool.
		"github.com/nats-io/nats-server/v2",
	)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return Binaries{}, fmt.Errorf("harness: go %v: %w\n%s", args, err, out)
	}
	b := Binaries{
		NATSServer: filepath.Join(dir, "nats-server"),
		Ingest:     filepath.Join(dir, Ingest),
		Normalize:  filepath.Join(dir, Normalize),
		Detect:     filepath.Join(dir, Detect),
		Notify:     filepath.Join(dir, Notify),
	}
	for _, p := range []string{b.NATSServer, b.Ingest, b.Normalize, b.Detect, b.Notify} {
		if _, err := os.Stat(p); err != nil {
			return Binaries{}, fmt.Errorf("harness: built binary missing: %w", err)
		}
	}
	return b, nil
}
