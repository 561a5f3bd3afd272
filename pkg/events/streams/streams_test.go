package streams_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/eventstest"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
)

func TestEnsureIsIdempotent(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := streams.Ensure(ctx, srv.JS, srv.Streams); err != nil {
			t.Fatalf("Ensure #%d: %v", i+1, err)
		}
	}
	for _, name := range []string{events.StreamRaw, events.StreamEvents, events.StreamFindings, events.StreamDLQ} {
		st, err := srv.JS.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.Storage != jetstream.FileStorage {
			t.Errorf("%s: storage %v, want file", name, info.Config.Storage)
		}
		if info.Config.Duplicates < 10*time.Minute {
			t.Errorf("%s: duplicate window %s, want >= 10m", name, info.Config.Duplicates)
		}
	}
	cc := streams.ConsumerConfig("test", "test consumer", events.SubjectsRaw)
	for i := 0; i < 2; i++ {
		if _, err := streams.EnsureConsumer(ctx, srv.JS, events.StreamRaw, cc); err != nil {
			t.Fatalf("EnsureConsumer #%d: %v", i+1, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*streams.Config)
		ok     bool
	}{
		{"default", func(*streams.Config) {}, true},
		{"short duplicate window", func(c *streams.Config) { c.DuplicateWindow = time.Minute }, false},
		{"no partitions", func(c *streams.Config) { c.Partitions = 0 }, false},
		{"replicas", func(c *streams.Config) { c.Replicas = 0 }, false},
		{"age below window", func(c *streams.Config) { c.RawMaxAge = time.Minute }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := streams.DefaultConfig()
			tt.mutate(&c)
			if err := c.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestPublishAllDeduplicatesByMsgID(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	p := streams.NewPublisher(srv.JS)
	mk := func(id string) *nats.Msg {
		m := nats.NewMsg(events.RawSubject(events.Provider_PROVIDER_AWS))
		m.Header.Set(events.HeaderMsgID, id)
		m.Data = []byte(id)
		return m
	}
	msgs := []*nats.Msg{mk("a"), mk("b"), mk("c")}
	for i := 0; i < 3; i++ {
		if err := p.PublishAll(ctx, msgs); err != nil {
			t.Fatal(err)
		}
	}
	if got := srv.StreamMsgs(t, events.StreamRaw); got != 3 {
		t.Errorf("NHI_RAW holds %d messages after publishing 3 three times, want 3", got)
	}
	noID := nats.NewMsg(events.RawSubject(events.Provider_PROVIDER_AWS))
	if err := p.PublishAll(ctx, []*nats.Msg{noID}); !errors.Is(err, streams.ErrNoMsgID) {
		t.Errorf("publish without id: %v, want ErrNoMsgID", err)
	}
}

func TestPublishAllFailsOnUnboundSubject(t *testing.T) {
	srv := eventstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	m := nats.NewMsg("not.a.stream")
	m.Header.Set(events.HeaderMsgID, "x")
	if err := streams.NewPublisher(srv.JS).PublishAll(ctx, []*nats.Msg{m}); err == nil {
		t.Error("publish to a subject no stream captures succeeded")
	}
}

func TestDeadLetterKeepsReasonAndDeduplicates(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	p := streams.NewPublisher(srv.JS)
	h := nats.Header{}
	h.Set(events.HeaderSource, "trail")
	for i := 0; i < 2; i++ {
		if err := streams.DeadLetter(ctx, p, events.StageNormalize, "rec-1", "nhi.raw.aws.cloudtrail", h, []byte("{"), errors.New("malformed JSON\nat offset 1")); err != nil {
			t.Fatal(err)
		}
	}
	if got := srv.StreamMsgs(t, events.StreamDLQ); got != 1 {
		t.Fatalf("NHI_DLQ holds %d messages, want 1", got)
	}
	st, _ := srv.JS.Stream(ctx, events.StreamDLQ)
	raw, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := raw.Header.Get(events.HeaderError); got != "malformed JSON at offset 1" {
		t.Errorf("Nhi-Error = %q", got)
	}
	if got := raw.Header.Get(events.HeaderStage); got != events.StageNormalize {
		t.Errorf("Nhi-Stage = %q", got)
	}
	if got := raw.Header.Get(events.HeaderSource); got != "trail" {
		t.Errorf("Nhi-Source = %q", got)
	}
}
