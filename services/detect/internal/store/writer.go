package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
)

// Table turns JetStream messages into rows of one table.
type Table struct {
	// Name labels metrics and logs.
	Name string
	// Insert is the INSERT statement with its column list.
	Insert string
	// Decode turns a message into what Append writes and says how many rows that is. An
	// error wrapping events.ErrMalformed dead-letters the message; any other stops the writer.
	Decode func(msg jetstream.Msg) (any, int, error)
	// Append appends the rows of one decoded message to b.
	Append func(b driver.Batch, decoded any, now time.Time) error
}

// WriterConfig bounds a batch by rows and by age.
type WriterConfig struct {
	BatchRows     int
	FlushInterval time.Duration
	// RetryBackoff is the first wait after a failed insert; it doubles up to a minute.
	RetryBackoff time.Duration
}

// Writer moves messages from one consumer into one table.
type Writer struct {
	cfg   WriterConfig
	table Table
	conn  driver.Conn
	pub   *streams.Publisher
	log   *slog.Logger
	now   func() time.Time

	rows     metric.Int64Counter
	inserts  metric.Int64Histogram
	latency  metric.Float64Histogram
	failures metric.Int64Counter
}

// NewWriter returns a Writer.
func NewWriter(cfg WriterConfig, t Table, conn driver.Conn, pub *streams.Publisher, log *slog.Logger, meter metric.Meter) (*Writer, error) {
	if cfg.BatchRows <= 0 || cfg.FlushInterval <= 0 || cfg.RetryBackoff <= 0 {
		return nil, errors.New("store: batch rows, flush interval and retry back-off must be positive")
	}
	w := &Writer{cfg: cfg, table: t, conn: conn, pub: pub, log: log.With("table", t.Name), now: time.Now}
	var err error
	if w.rows, err = meter.Int64Counter("nhiwatch_store_rows", metric.WithDescription("rows inserted into ClickHouse")); err != nil {
		return nil, err
	}
	if w.inserts, err = meter.Int64Histogram("nhiwatch_store_batch_rows", metric.WithDescription("rows per ClickHouse insert")); err != nil {
		return nil, err
	}
	if w.latency, err = meter.Float64Histogram("nhiwatch_store_insert_seconds", metric.WithDescription("ClickHouse insert latency"), metric.WithUnit("s")); err != nil {
		return nil, err
	}
	if w.failures, err = meter.Int64Counter("nhiwatch_store_insert_failures", metric.WithDescription("failed ClickHouse inserts, retried")); err != nil {
		return nil, err
	}
	return w, nil
}

// ConsumerConfig is the durable consumer a Writer reads: explicit acks, sent per message
// once its rows are inserted (never AckAll: a later ack must not cover a batch that was
// abandoned), and no delivery limit, since an insert failure is always transient (bad
// messages are dead-lettered explicitly).
func ConsumerConfig(durable, desc, filter string, batchRows int) jetstream.ConsumerConfig {
	cc := streams.ConsumerConfig(durable, desc, filter)
	cc.MaxDeliver = -1
	cc.BackOff = nil
	cc.AckWait = 30 * time.Second
	cc.MaxAckPending = max(streams.DefaultMaxAckPending, 4*batchRows)
	return cc
}

type held struct {
	msg     jetstream.Msg
	decoded any
	rows    int
}

// Run fetches, batches and inserts until ctx ends, then flushes what it holds.
func (w *Writer) Run(ctx context.Context, cons jetstream.Consumer) error {
	var pending []held
	rows := 0
	var first time.Time
	for {
		if ctx.Err() != nil {
			return w.flush(ctx, pending, rows)
		}
		wait := w.cfg.FlushInterval
		if len(pending) > 0 {
			wait = max(time.Millisecond, w.cfg.FlushInterval-w.now().Sub(first))
		}
		msgs, err := cons.Fetch(max(1, min(w.cfg.BatchRows-rows, 1024)), jetstream.FetchMaxWait(wait))
		if err != nil {
			if ctx.Err() == nil {
				w.log.Warn("fetch failed", "error", err)
				sleepCtx(ctx, time.Second)
			}
			continue
		}
		for msg := range msgs.Messages() {
			decoded, n, err := w.table.Decode(msg)
			if err != nil {
				if !errors.Is(err, events.ErrMalformed) {
					return fmt.Errorf("store %s: %w", w.table.Name, err)
				}
				if derr := streams.DeadLetterMsg(ctx, w.pub, events.StageStore, msg, err); derr != nil {
					return fmt.Errorf("store %s: dead-letter: %w", w.table.Name, derr)
				}
				w.log.Warn("message dead-lettered", "reason", streams.Reason(err))
				decoded, n = nil, 0
			}
			if len(pending) == 0 {
				first = w.now()
			}
			pending = append(pending, held{msg, decoded, n})
			rows += n
		}
		if len(pending) > 0 && (rows >= w.cfg.BatchRows || w.now().Sub(first) >= w.cfg.FlushInterval) {
			if err := w.flush(ctx, pending, rows); err != nil {
				return err
			}
			pending, rows = pending[:0], 0
		}
	}
}

// flush inserts the held rows and acknowledges their messages. While ClickHouse fails it
// retries with back-off, keeping the messages alive with in-progress acks; they stay in
// JetStream meanwhile, so nothing is lost and memory stays bounded by one batch. When ctx
// ends it tries a last few times and then hands the messages back (nak) for a redelivery.
func (w *Writer) flush(ctx context.Context, pending []held, rows int) error {
	if len(pending) == 0 {
		return nil
	}
	attrs := metric.WithAttributes(attribute.String("table", w.table.Name))
	wait := w.cfg.RetryBackoff
	for attempt := 1; ; attempt++ {
		insertCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		err := w.insert(insertCtx, pending, rows)
		cancel()
		if err == nil {
			break
		}
		w.failures.Add(ctx, 1, attrs)
		if ctx.Err() != nil && attempt >= 3 {
			for _, h := range pending {
				_ = h.msg.Nak()
			}
			return fmt.Errorf("store %s: giving up on shutdown, %d messages handed back: %w", w.table.Name, len(pending), err)
		}
		w.log.Warn("insert failed; retrying", "rows", rows, "error", err, "retry_in", wait.String())
		for _, h := range pending {
			_ = h.msg.InProgress()
		}
		if ctx.Err() != nil {
			time.Sleep(min(wait, time.Second))
		} else {
			sleepCtx(ctx, wait)
		}
		wait = min(2*wait, time.Minute)
	}
	for _, h := range pending {
		if err := h.msg.Ack(); err != nil {
			w.log.Warn("ack after insert failed; the rows will be re-inserted idempotently", "error", err)
		}
	}
	return nil
}

func (w *Writer) insert(ctx context.Context, pending []held, rows int) error {
	if rows == 0 {
		return nil
	}
	start := w.now()
	b, err := w.conn.PrepareBatch(ctx, w.table.Insert)
	if err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	for _, h := range pending {
		if h.rows == 0 {
			continue
		}
		if err := w.table.Append(b, h.decoded, start); err != nil {
			_ = b.Abort()
			return fmt.Errorf("append: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	attrs := metric.WithAttributes(attribute.String("table", w.table.Name))
	w.latency.Record(ctx, w.now().Sub(start).Seconds(), attrs)
	w.inserts.Record(ctx, int64(rows), attrs)
	w.rows.Add(ctx, int64(rows), attrs)
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
