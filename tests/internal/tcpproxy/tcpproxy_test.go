package tcpproxy

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(c net.Conn, line string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	s, err := bufio.NewReader(c).ReadString('\n')
	return s, err
}

func TestProxyForwardsCutsAndRestores(t *testing.T) {
	p, err := Start(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })

	open, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if got, err := roundTrip(open, "hello"); err != nil || got != "hello\n" {
		t.Fatalf("through the proxy: got %q, %v", got, err)
	}

	p.Cut()
	if _, err := roundTrip(open, "after cut"); err == nil {
		t.Error("an open connection still works after Cut")
	}
	c, err := net.Dial("tcp", p.Addr())
	if err == nil {
		if _, err := roundTrip(c, "new while cut"); err == nil {
			t.Error("a new connection works while cut")
		}
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.Refused() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if p.Refused() == 0 {
		t.Error("Refused() = 0 after a connection attempt while cut")
	}

	p.Restore()
	c, err = net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := roundTrip(c, "back"); err != nil || got != "back\n" {
		t.Fatalf("after Restore: got %q, %v", got, err)
	}
	if p.Accepted() != 2 {
		t.Errorf("Accepted() = %d, want 2", p.Accepted())
	}
}
