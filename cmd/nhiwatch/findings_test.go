package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/eventstest"
	"github.com/nhiwatch/nhiwatch/services/notify"
	"github.com/nhiwatch/nhiwatch/services/notify/triage"
)

func publishFinding(t *testing.T, srv *eventstest.Server) *events.Finding {
	t.Helper()
	f := &events.Finding{
		Id: events.FindingID("privilege_expansion", "aws:arn:aws:iam::1:role/ci", "attach", "b"), Detector: "privilege_expansion",
		Severity: events.Severity_SEVERITY_HIGH, Title: "ci attached AdministratorAccess to itself", Provider: events.Provider_PROVIDER_AWS,
		Identity: &events.Identity{Id: "aws:arn:aws:iam::1:role/ci", Kind: events.IdentityKind_IDENTITY_KIND_CI_CD}, Cause: "attach",
		TimeUnixNano: time.Date(2024, 5, 2, 9, 58, 0, 0, time.UTC).UnixNano(),
	}
	data, _ := events.Marshal(f)
	m := nats.NewMsg(events.FindingSubject(f.Severity, f.Detector))
	m.Header.Set(events.HeaderMsgID, f.Id)
	m.Data = data
	if _, err := srv.JS.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	return f
}

func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := realMain(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), code
}

func TestFindingsDirect(t *testing.T) {
	srv := eventstest.Start(t)
	f := publishFinding(t, srv)
	cfgPath := filepath.Join(t.TempDir(), "nhiwatch.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf("nats:\n  url: %s\nstreams:\n  partitions: 4\nclickhouse:\n  addr: \"\"\n", srv.NS.ClientURL())), 0o600)
	t.Setenv("NHIWATCH_CLICKHOUSE_ADDR", "")

	out, errs, code := run(t, "findings", "-config", cfgPath, "list")
	if code != 0 || !strings.Contains(out, f.Id) || !strings.Contains(out, "open") {
		t.Fatalf("list = %d\n%s%s", code, out, errs)
	}
	if _, errs, code := run(t, "findings", "-config", cfgPath, "-user", "alice", "ack", f.Id); code != 2 || !strings.Contains(errs, "-reason") {
		t.Errorf("ack without a reason = %d %s", code, errs)
	}
	out, errs, code = run(t, "findings", "-config", cfgPath, "-user", "alice", "ack", f.Id, "-reason", "looking into it")
	if code != 0 || !strings.Contains(out, "acknowledged by alice (was open)") {
		t.Fatalf("ack = %d\n%s%s", code, out, errs)
	}
	out, errs, code = run(t, "findings", "-config", cfgPath, "-user", "bob", "suppress", "-reason", "known job", "-for", "7d", f.Id)
	if code != 0 || !strings.Contains(out, "suppressed by bob (was acknowledged), until") {
		t.Fatalf("suppress = %d\n%s%s", code, out, errs)
	}
	out, _, _ = run(t, "findings", "-config", cfgPath, "show", f.Id)
	for _, want := range []string{"status:     suppressed by bob", "open -> acknowledged by alice (cli): looking into it", "acknowledged -> suppressed by bob (cli): known job"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	out, _, _ = run(t, "findings", "-config", cfgPath, "list", "-status", "open", "-json")
	var items []triage.Item
	if err := json.Unmarshal([]byte(out), &items); err != nil || len(items) != 0 {
		t.Errorf("list -status open = %v %v", items, err)
	}
	if _, errs, code := run(t, "findings", "-config", cfgPath, "show", "0000"); code != 1 || !strings.Contains(errs, "not found") {
		t.Errorf("show unknown = %d %s", code, errs)
	}
}

func TestFindingsThroughTheAPI(t *testing.T) {
	srv := eventstest.Start(t)
	f := publishFinding(t, srv)
	dir := t.TempDir()
	token := "carol-token-0123456789abcdef"
	os.WriteFile(filepath.Join(dir, "tokens"), []byte("carol:"+token+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "mytoken"), []byte(token+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "wrong"), []byte("wrong-token-0123456789abcdef\n"), 0o600)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := notify.DefaultConfig()
	cfg.Terminal = false
	cfg.API.Listen = addr
	cfg.API.TokensFile = filepath.Join(dir, "tokens")
	_, js := srv.Connect(t)
	svc, err := notify.New(cfg, notify.Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Meter: noop.NewMeterProvider().Meter("t"), JS: js, Streams: srv.Streams})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() { cancel(); <-done }()
	api := "http://" + addr
	var out, errs string
	var code int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if out, errs, code = run(t, "findings", "-api", api, "-token-file", filepath.Join(dir, "mytoken"), "list"); code == 0 {
			break
		}
	}
	if code != 0 || !strings.Contains(out, f.Id) {
		t.Fatalf("list through the API = %d\n%s%s", code, out, errs)
	}
	if _, errs, code := run(t, "findings", "-api", api, "-token-file", filepath.Join(dir, "wrong"), "list"); code != 1 || !strings.Contains(errs, "401") {
		t.Errorf("wrong token = %d %s", code, errs)
	}
	out, errs, code = run(t, "findings", "-api", api, "-token-file", filepath.Join(dir, "mytoken"), "resolve", f.Id, "-reason", "rotated the role")
	if code != 0 || !strings.Contains(out, "resolved by carol (was open)") {
		t.Errorf("resolve = %d\n%s%s", code, out, errs)
	}
}

func TestFindingsUsage(t *testing.T) {
	for _, args := range [][]string{{"findings"}, {"findings", "delete", "x"}, {"findings", "-api", "http://127.0.0.1:1", "show"}} {
		if _, _, code := run(t, args...); code != 2 {
			t.Errorf("%v = %d, want 2", args, code)
		}
	}
}
