package base_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/eventstest"
	"github.com/nhiwatch/nhiwatch/pkg/platform/base"
	"github.com/nhiwatch/nhiwatch/pkg/platform/chdbtest"
)

func setup(t *testing.T, c base.Common) *base.Process {
	t.Helper()
	p, err := base.Setup(context.Background(), c, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}

func TestReadinessFollowsStreams(t *testing.T) {
	srv := eventstest.Start(t)
	c := base.DefaultCommon()
	c.NATS.URL = srv.NS.ClientURL()
	p := setup(t, c)
	ctx := context.Background()
	if failed := p.Health.Ready(ctx); len(failed) != 0 {
		t.Fatalf("ready checks failed: %v", failed)
	}
	if err := srv.JS.DeleteStream(ctx, events.StreamFindings); err != nil {
		t.Fatal(err)
	}
	failed := p.Health.Ready(ctx)
	if err := failed["streams"]; err == nil || !strings.Contains(err.Error(), events.StreamFindings) {
		t.Errorf("streams check = %v, want NHI_FINDINGS named", err)
	}
	if err := failed["nats"]; err != nil {
		t.Errorf("nats check failed: %v", err)
	}
}

func TestReadinessPingsClickHouse(t *testing.T) {
	srv := eventstest.Start(t)
	_, cfg := chdbtest.Open(t)
	c := base.DefaultCommon()
	c.NATS.URL = srv.NS.ClientURL()
	c.ClickHouse = cfg
	p := setup(t, c)
	if failed := p.Health.Ready(context.Background()); len(failed) != 0 {
		t.Fatalf("ready checks failed with ClickHouse up: %v", failed)
	}

	// A ClickHouse that does not answer makes the process unready, not failed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close()
	c.ClickHouse.Addr = dead
	p = setup(t, c)
	failed := p.Health.Ready(context.Background())
	if _, ok := failed["clickhouse"]; !ok || len(failed) != 1 {
		t.Errorf("ready failures = %v, want clickhouse alone", failed)
	}
}

func TestSetupWithoutClickHouseHasNoClickHouseCheck(t *testing.T) {
	srv := eventstest.Start(t)
	c := base.DefaultCommon()
	c.NATS.URL = srv.NS.ClientURL()
	p := setup(t, c)
	if failed := p.Health.Ready(context.Background()); len(failed) != 0 {
		t.Errorf("ready checks failed: %v", failed)
	}
	if p.Tracing == nil || p.Tracing.Enabled() {
		t.Error("tracing should be present and off without an OTLP endpoint")
	}
	if err := p.Lag.Poll(context.Background()); err != nil {
		t.Errorf("lag poll: %v", err)
	}
}
