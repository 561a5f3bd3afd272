package store

import (
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

// EventsTable writes NHI_EVENTS batches to the events table. An event copied to a grantee's
// partition is written only from its actor's partition, so each event is one row.
func EventsTable() Table {
	return Table{
		Name:   "events",
		Insert: InsertEvents,
		Decode: func(msg jetstream.Msg) (any, int, error) {
			b, err := events.UnmarshalEventBatch(msg.Data())
			if err != nil {
				return nil, 0, err
			}
			own := b.Events[:0]
			for _, ev := range b.Events {
				if ev.Partition == b.Partition {
					own = append(own, ev)
				}
			}
			b.Events = own
			return b, len(own), nil
		},
		Append: func(batch driver.Batch, decoded any, now time.Time) error {
			for _, ev := range decoded.(*events.EventBatch).Events {
				if err := AppendEvent(batch, ev, now); err != nil {
					return fmt.Errorf("event %s: %w", ev.Id, err)
				}
			}
			return nil
		},
	}
}

// FindingsTable writes NHI_FINDINGS messages to the findings table.
func FindingsTable() Table {
	return Table{
		Name:   "findings",
		Insert: InsertFindings,
		Decode: func(msg jetstream.Msg) (any, int, error) {
			f, err := events.UnmarshalFinding(msg.Data())
			if err != nil {
				return nil, 0, err
			}
			return f, 1, nil
		},
		Append: func(batch driver.Batch, decoded any, _ time.Time) error {
			f := decoded.(*events.Finding)
			// A re-published finding keeps its creation time as version, so a replay
			// does not outrank a triage update written later.
			return AppendFinding(batch, f, uint64(f.CreatedUnixNano))
		},
	}
}
