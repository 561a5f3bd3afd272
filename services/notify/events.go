package notify

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/kafkasink"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/ocsf"
)

// consumeEvents forwards NHI_EVENTS to the configured Kafka destination as OCSF API
// Activity (every event) and Account Change (every grant change with a grantee), keyed by
// event id. It is at-least-once: a SIEM de-duplicates on metadata.uid.
func (s *Service) consumeEvents(ctx context.Context) error {
	k, ok := s.dests[s.cfg.ForwardEvents.Destination].(*kafkasink.Destination)
	if !ok {
		return fmt.Errorf("notify.forward_events: %s is not a kafka destination", s.cfg.ForwardEvents.Destination)
	}
	cc := streams.ConsumerConfig(EventsConsumerName, "notify: events to the SIEM as OCSF", events.SubjectsEvents)
	cons, err := streams.EnsureConsumer(ctx, s.deps.JS, events.StreamEvents, cc)
	if err != nil {
		return err
	}
	opts := s.consumeOptions(events.StageNotify, cc.MaxDeliver, 2)
	return streams.Consume(ctx, cons, opts, func(ctx context.Context, msg jetstream.Msg) error {
		b, err := events.UnmarshalEventBatch(msg.Data())
		if err != nil {
			return streams.Permanent(err)
		}
		part, copyOf := subjectPartition(msg.Subject())
		var docs []kafkasink.Doc
		now := s.now()
		for _, ev := range b.Events {
			// An event that changed another identity's grants is also published to the
			// grantee's partition; forward it from its actor's partition only.
			if copyOf && ev.Partition != part {
				continue
			}
			js, err := ocsf.EventDocs(s.product, ev, now)
			if err != nil {
				continue
			}
			for i, j := range js {
				class := 6003
				if i > 0 {
					class = 3001
				}
				docs = append(docs, kafkasink.Doc{Key: ev.Id, ClassUID: class, JSON: j})
			}
		}
		if err := k.WriteEvents(ctx, docs); err != nil {
			return err
		}
		s.m.delivered.Add(ctx, int64(len(docs)), attrs(k.Name()))
		return nil
	})
}

// subjectPartition reads <partition> of nhi.events.<provider>.<partition>.
func subjectPartition(subject string) (uint32, bool) {
	i := strings.LastIndexByte(subject, '.')
	if i < 0 {
		return 0, false
	}
	p, err := strconv.ParseUint(subject[i+1:], 10, 32)
	return uint32(p), err == nil
}
