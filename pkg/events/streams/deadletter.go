package streams

import (
	"context"
	"strings"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/nhiwatch/nhiwatch/pkg/events"
)

// maxReasonLen bounds the Nhi-Error header.
const maxReasonLen = 512

// DeadLetter publishes data to NHI_DLQ under the stage's subject with the reason and stage
// headers, and returns once JetStream has stored it. id is the original message or record id;
// the dead-letter copy keeps it as its Nats-Msg-Id (prefixed by the stage), so dead-lettering
// the same record twice stores it once. header carries the original headers to keep (may be
// nil). reason must not contain record content: callers pass their own error text.
func DeadLetter(ctx context.Context, p *Publisher, stage, id, subject string, header nats.Header, data []byte, reason error) error {
	msg := nats.NewMsg(events.DLQSubject(stage))
	for k, v := range header {
		if k == nats.MsgIdHdr {
			continue
		}
		msg.Header[k] = v
	}
	msg.Header.Set(nats.MsgIdHdr, stage+":"+id)
	msg.Header.Set(events.HeaderStage, stage)
	msg.Header.Set(events.HeaderError, Reason(reason))
	if subject != "" {
		msg.Header.Set(events.HeaderSubject, subject)
	}
	msg.Data = data
	return p.Publish(ctx, msg)
}

// Reason renders an error as a single bounded header line.
func Reason(err error) string {
	if err == nil {
		return "unknown"
	}
	s := strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, err.Error())
	if len(s) > maxReasonLen {
		s = s[:maxReasonLen]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "?")
	}
	return s
}
