// Package procs runs the binaries under test as child processes that a test can kill -9 and
// start again, the way an orchestrator restarts a crashed container. Output is appended to
// files that survive restarts, so a test can scan everything a process ever wrote.
package procs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Spec describes a process.
type Spec struct {
	// Name labels the process in errors.
	Name string
	Path string
	Args []string
	// Env is added to a copy of the test's environment from which every NHIWATCH_* variable
	// was removed, so the test's own settings never leak into a service.
	Env []string
	// Stdout and Stderr are files the process's output is appended to (created if missing).
	Stdout, Stderr string
	// Restart starts the process again, after RestartDelay, when it exits without having
	// been told to (a crash or an error exit), like a container's restart policy.
	Restart      bool
	RestartDelay time.Duration
}

// Exit is one exit of the process that nobody asked for.
type Exit struct {
	At   time.Time
	Err  string
	Tail string
}

// Proc is a started process. Its methods are safe for concurrent use.
type Proc struct {
	spec Spec

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	stopping bool
	closed   bool
	starts   int
	kills    int
	exits    []Exit
}

// Start starts the process described by spec.
func Start(spec Spec) (*Proc, error) {
	if spec.RestartDelay <= 0 {
		spec.RestartDelay = 500 * time.Millisecond
	}
	p := &Proc{spec: spec}
	if err := p.Start(); err != nil {
		return nil, err
	}
	return p, nil
}

// Name is the process's name.
func (p *Proc) Name() string { return p.spec.Name }

// Start starts the process again after Kill or Stop. It fails when the process is running.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.startLocked()
}

func (p *Proc) startLocked() error {
	if p.closed {
		return fmt.Errorf("%s: closed", p.spec.Name)
	}
	if p.cmd != nil {
		return fmt.Errorf("%s: already running", p.spec.Name)
	}
	stdout, err := os.OpenFile(p.spec.Stdout, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	stderr, err := os.OpenFile(p.spec.Stderr, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		stdout.Close()
		return err
	}
	cmd := exec.Command(p.spec.Path, p.spec.Args...)
	cmd.Env = append(cleanEnv(), p.spec.Env...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Its own process group, so a signal meant for the test does not reach it; and killed
	// if the test process dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		stdout.Close()
		stderr.Close()
		return fmt.Errorf("%s: start: %w", p.spec.Name, err)
	}
	p.cmd = cmd
	p.done = make(chan struct{})
	p.stopping = false
	p.starts++
	go p.wait(cmd, p.done, stdout, stderr)
	return nil
}

// wait reaps the process and restarts it when it exited on its own and Restart is set.
func (p *Proc) wait(cmd *exec.Cmd, done chan struct{}, files ...*os.File) {
	err := cmd.Wait()
	for _, f := range files {
		f.Close()
	}
	p.mu.Lock()
	expected := p.stopping || p.closed
	if !expected {
		msg := "exited with status 0"
		if err != nil {
			msg = err.Error()
		}
		p.exits = append(p.exits, Exit{At: time.Now(), Err: msg, Tail: tail(p.spec.Stderr, 20)})
	}
	p.cmd = nil
	close(done)
	restart := !expected && p.spec.Restart
	p.mu.Unlock()
	if restart {
		time.Sleep(p.spec.RestartDelay)
		p.mu.Lock()
		if p.cmd == nil && !p.closed {
			_ = p.startLocked()
		}
		p.mu.Unlock()
	}
}

// Kill sends SIGKILL and waits until the process is gone. Killing a stopped process is a
// no-op.
func (p *Proc) Kill() error {
	return p.signal(syscall.SIGKILL, 10*time.Second)
}

// Stop sends SIGTERM, waits up to timeout for a clean exit, then kills.
func (p *Proc) Stop(timeout time.Duration) error {
	if err := p.signal(syscall.SIGTERM, timeout); err == nil {
		return nil
	}
	return p.Kill()
}

func (p *Proc) signal(sig syscall.Signal, timeout time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	if cmd == nil {
		p.mu.Unlock()
		return nil
	}
	p.stopping = true
	if sig == syscall.SIGKILL {
		p.kills++
	}
	err := cmd.Process.Signal(sig)
	p.mu.Unlock()
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("%s: signal %v: %w", p.spec.Name, sig, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s: still running %s after %v", p.spec.Name, timeout, sig)
	}
}

// Close kills the process for good; a pending restart does not happen.
func (p *Proc) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	_ = p.Kill()
}

// Running reports whether the process is running.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// Pid is the running process's id, 0 when it is not running.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Starts is how often the process was started; Kills how often it was killed with SIGKILL.
func (p *Proc) Starts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.starts
}

// Kills is how often the process was sent SIGKILL by Kill.
func (p *Proc) Kills() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.kills
}

// UnexpectedExits lists the exits nobody asked for.
func (p *Proc) UnexpectedExits() []Exit {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Exit(nil), p.exits...)
}

// RSS is the resident memory of the running process in bytes, from /proc.
func (p *Proc) RSS() (int64, error) {
	pid := p.Pid()
	if pid == 0 {
		return 0, fmt.Errorf("%s: not running", p.spec.Name)
	}
	return RSS(pid)
}

// RSS reads VmRSS of a process from /proc/<pid>/status.
func RSS(pid int) (int64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "VmRSS:") {
			continue
		}
		f := strings.Fields(strings.TrimPrefix(line, "VmRSS:"))
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("unexpected VmRSS line %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, err
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// cleanEnv is the test's environment without NHIWATCH_* variables.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NHIWATCH_") {
			out = append(out, kv)
		}
	}
	return out
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Tail returns the last n lines of the process's standard error.
func (p *Proc) Tail(n int) string { return tail(p.spec.Stderr, n) }
