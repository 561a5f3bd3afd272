// Package inspect reads what a pipeline left behind, independently of the services: every
// message of every JetStream stream (KV buckets included), the consumers' progress, and the
// rows of the ClickHouse database.
package inspect

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

// Message is one stored JetStream message.
type Message struct {
	Stream  string
	Seq     uint64
	Subject string
	Header  nats.Header
	Data    []byte
}

// Streams lists the names of every stream on the server, KV buckets' streams included.
func Streams(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	var names []string
	l := js.StreamNames(ctx)
	for n := range l.Name() {
		names = append(names, n)
	}
	if err := l.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		return nil, fmt.Errorf("list streams: %w", err)
	}
	sort.Strings(names)
	return names, nil
}

// Each calls fn for every message stored in stream, in order, as of the call.
func Each(ctx context.Context, js jetstream.JetStream, stream string, fn func(Message) error) error {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s info: %w", stream, err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	last := info.State.LastSeq
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("stream %s: ordered consumer: %w", stream, err)
	}
	for {
		batch, err := cons.Fetch(512, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("stream %s: fetch: %w", stream, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			if err := fn(Message{Stream: stream, Seq: md.Sequence.Stream, Subject: m.Subject(), Header: m.Headers(), Data: m.Data()}); err != nil {
				return err
			}
			if md.Sequence.Stream >= last {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("stream %s: fetch: %w", stream, err)
		}
		if n == 0 {
			return fmt.Errorf("stream %s: no message after a wait, last sequence %d not reached", stream, last)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// DeadLetter is one NHI_DLQ message.
type DeadLetter struct {
	// ID is its Nats-Msg-Id: "<stage>:<original id>".
	ID      string
	Stage   string
	Error   string
	Subject string
	Size    int
}

// DeadLetters reads every message of NHI_DLQ.
func DeadLetters(ctx context.Context, js jetstream.JetStream) ([]DeadLetter, error) {
	var out []DeadLetter
	err := Each(ctx, js, events.StreamDLQ, func(m Message) error {
		out = append(out, DeadLetter{
			ID:      m.Header.Get(nats.MsgIdHdr),
			Stage:   m.Header.Get(events.HeaderStage),
			Error:   m.Header.Get(events.HeaderError),
			Subject: m.Header.Get(events.HeaderSubject),
			Size:    len(m.Data),
		})
		return nil
	})
	return out, err
}

// FindingIDs reads the ids (Nats-Msg-Id) of every message of NHI_FINDINGS.
func FindingIDs(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	var out []string
	err := Each(ctx, js, events.StreamFindings, func(m Message) error {
		f, err := events.UnmarshalFinding(m.Data)
		if err != nil {
			return err
		}
		out = append(out, f.Id)
		return nil
	})
	return out, err
}

// ConsumerState is the progress of one durable consumer.
type ConsumerState struct {
	Stream, Name           string
	Pending, AckPending    uint64
	Redelivered, Delivered uint64
}

func (c ConsumerState) String() string {
	return fmt.Sprintf("%s/%s pending=%d ack_pending=%d redelivered=%d", c.Stream, c.Name, c.Pending, c.AckPending, c.Redelivered)
}

// Busy reports whether the consumer still has work: messages not yet delivered or not yet
// acknowledged.
func (c ConsumerState) Busy() bool { return c.Pending > 0 || c.AckPending > 0 }

// Consumers returns the state of every durable consumer of the pipeline streams.
func Consumers(ctx context.Context, js jetstream.JetStream) ([]ConsumerState, error) {
	var out []ConsumerState
	for _, name := range []string{events.StreamRaw, events.StreamEvents, events.StreamFindings} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				continue
			}
			return nil, err
		}
		l := st.ListConsumers(ctx)
		for info := range l.Info() {
			// Ephemeral consumers (ordered readers such as detect's grants sync) are not
			// pipeline work: one left behind by a killed process keeps "pending" messages
			// until the server removes it after its inactivity threshold.
			if info.Config.Durable == "" {
				continue
			}
			out = append(out, ConsumerState{
				Stream: name, Name: info.Name, Pending: info.NumPending, AckPending: uint64(info.NumAckPending),
				Redelivered: uint64(info.NumRedelivered), Delivered: info.Delivered.Stream,
			})
		}
		if err := l.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
			return nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Stream+out[i].Name < out[j].Stream+out[j].Name })
	return out, nil
}

// Describe renders consumer states on one line.
func Describe(cs []ConsumerState) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.String()
	}
	return strings.Join(parts, "; ")
}
