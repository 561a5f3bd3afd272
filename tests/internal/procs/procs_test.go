package procs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func spec(t *testing.T, script string) Spec {
	dir := t.TempDir()
	return Spec{
		Name:   "sh",
		Path:   "/bin/sh",
		Args:   []string{"-c", script},
		Env:    []string{"GREETING=hello"},
		Stdout: filepath.Join(dir, "out"),
		Stderr: filepath.Join(dir, "err"),
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestKillAndStartAgain(t *testing.T) {
	s := spec(t, `echo "$GREETING $NHIWATCH_LEAK"; exec sleep 60`)
	t.Setenv("NHIWATCH_LEAK", "leaked")
	p, err := Start(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	waitFor(t, "output", func() bool {
		b, _ := os.ReadFile(s.Stdout)
		return len(b) > 0
	})
	if rss, err := p.RSS(); err != nil || rss <= 0 {
		t.Errorf("RSS() = %d, %v", rss, err)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if p.Running() {
		t.Fatal("running after Kill")
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "second output", func() bool {
		b, _ := os.ReadFile(s.Stdout)
		return strings.Count(string(b), "hello") == 2
	})
	b, _ := os.ReadFile(s.Stdout)
	if strings.Contains(string(b), "leaked") {
		t.Errorf("NHIWATCH_* from the test's environment reached the process: %q", b)
	}
	if got := p.UnexpectedExits(); len(got) != 0 {
		t.Errorf("a requested kill counted as unexpected: %v", got)
	}
	if p.Starts() != 2 || p.Kills() != 1 {
		t.Errorf("Starts() = %d, Kills() = %d, want 2 and 1", p.Starts(), p.Kills())
	}
}

func TestRestartAfterCrash(t *testing.T) {
	s := spec(t, `echo crashing >&2; exit 3`)
	s.Restart = true
	s.RestartDelay = 10 * time.Millisecond
	p, err := Start(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	waitFor(t, "three starts", func() bool { return p.Starts() >= 3 })
	p.Close()
	exits := p.UnexpectedExits()
	if len(exits) < 2 {
		t.Fatalf("UnexpectedExits() = %d, want at least 2", len(exits))
	}
	if !strings.Contains(exits[0].Err, "exit status 3") || !strings.Contains(exits[0].Tail, "crashing") {
		t.Errorf("exit = %+v, want the status and the last lines of stderr", exits[0])
	}
}
