package notify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/dest"
	"github.com/nhiwatch/nhiwatch/services/notify/internal/ledger"
	"github.com/nhiwatch/nhiwatch/services/notify/triage"
)

// outcome of one destination for one message.
type outcome struct {
	name string
	err  error
}

// handleFinding delivers one finding to every destination its routes name. It returns nil
// (ack) once each destination has it or dead-lettered it; a transient failure returns an
// error (redelivery), and the ledger makes the redelivery skip the destinations that
// already have it. On the last delivery every failure is dead-lettered.
func (s *Service) handleFinding(ctx context.Context, msg jetstream.Msg, last bool) error {
	f, err := events.UnmarshalFinding(msg.Data())
	if err != nil {
		return streams.Permanent(err)
	}
	if !triage.ValidFindingID(f.Id) {
		return streams.Permanent(fmt.Errorf("%w: finding id is not a plain token", events.ErrMalformed))
	}
	md, err := msg.Metadata()
	if err != nil {
		return err
	}
	names, _ := s.router.Destinations(f)
	if len(names) == 0 {
		return nil
	}
	status, err := s.triage.Status(ctx, f.Id)
	if err != nil {
		return err
	}
	suppression := status
	suppressed := status.Active(s.now())
	if !suppressed {
		if suppression, suppressed, err = s.triage.Suppressed(ctx, f.GetIdentity().GetId(), f.Cause); err != nil {
			return err
		}
		if suppressed {
			// A new finding under a suppression shows as suppressed wherever it goes.
			suppression.FindingID, suppression.Revision = f.Id, 0
			status = suppression
		}
	}
	in := findingDelivery{f: f, raw: msg.Data(), seq: md.Sequence.Stream, status: status, suppressed: suppressed}
	results := make(chan outcome, len(names))
	for _, name := range names {
		go func() {
			w := s.workers[name]
			results <- outcome{name, w.do(ctx, func(ctx context.Context) error { return s.deliverFinding(ctx, w.d, in) })}
		}()
	}
	var failed []outcome
	for range names {
		if o := <-results; o.err != nil {
			failed = append(failed, o)
		}
	}
	return s.settle(ctx, msg, f.Id, "", failed, last)
}

// settle dead-letters the permanent failures (all of them on the last delivery) and
// reports whether anything is left to retry.
func (s *Service) settle(ctx context.Context, msg jetstream.Msg, findingID, suffix string, failed []outcome, last bool) error {
	var retry []string
	var lastErr error
	for _, o := range failed {
		if !dest.IsPermanent(o.err) && !last {
			retry = append(retry, o.name)
			lastErr = o.err
			continue
		}
		if err := s.deadLetter(ctx, msg, findingID, o.name, suffix, o.err); err != nil {
			return err
		}
	}
	if len(retry) > 0 {
		return fmt.Errorf("destinations %s will be retried: %w", strings.Join(retry, ", "), lastErr)
	}
	return nil
}

// deadLetter puts the message in NHI_DLQ for one destination, with the reason, and marks
// the ledger so a redelivery does not try that destination again.
func (s *Service) deadLetter(ctx context.Context, msg jetstream.Msg, findingID, name, suffix string, reason error) error {
	id := findingID + ":" + name + suffix
	h := nats.Header{}
	for k, v := range msg.Headers() {
		if !strings.HasPrefix(k, "Nats-") {
			h[k] = v
		}
	}
	h.Set("Nhi-Destination", name)
	if err := streams.DeadLetter(ctx, s.pub, events.StageNotify, id, msg.Subject(), h, msg.Data(), reason); err != nil {
		return fmt.Errorf("dead-letter %s: %w", id, err)
	}
	s.m.deadLettered.Add(ctx, 1, attrs(name))
	s.log.Warn("delivery dead-lettered", "finding_id", findingID, "destination", name, "reason", streams.Reason(reason))
	if suffix == "" {
		if e, ok, err := s.ledger.Get(ctx, findingID, name); err == nil {
			md, _ := msg.Metadata()
			if md != nil && (!ok || e.State != ledger.Sent) {
				e.State, e.Reason = ledger.DeadLettered, streams.Reason(reason)
				e.MarkHandled(md.Sequence.Stream)
				_ = s.ledger.Put(ctx, &e)
			}
		}
	}
	return nil
}

type findingDelivery struct {
	f          *events.Finding
	raw        []byte
	seq        uint64
	status     triage.Status
	suppressed bool
}

// deliverFinding delivers one finding to one destination, guided by the ledger.
func (s *Service) deliverFinding(ctx context.Context, d dest.Destination, in findingDelivery) error {
	name := d.Name()
	e, exists, err := s.ledger.Get(ctx, in.f.Id, name)
	if err != nil {
		return err
	}
	if exists && e.Covers(in.seq) {
		s.m.skipped.Add(ctx, 1, attrs(name))
		return nil
	}
	now := s.now()
	alerting := d.Kind().Alerting()
	sent := exists && e.State == ledger.Sent
	if alerting && !sent {
		if in.suppressed {
			s.m.suppressed.Add(ctx, 1, attrs(name))
			s.log.Debug("alert suppressed", "finding_id", in.f.Id, "destination", name, "until", in.status.Until)
			return nil
		}
		if in.status.Label() == triage.StatusResolved {
			// Resolved before anyone was alerted: nothing to raise.
			return nil
		}
	}
	e.FindingID, e.Destination = in.f.Id, name
	e.Seen++
	e.LastSeen = now
	e.Finding = in.raw
	if sent && alerting {
		// A repeat: update the alert, at most once per fold window.
		e.MarkHandled(in.seq)
		if now.Sub(e.LastUpdate) < s.cfg.FoldWindow {
			e.Pending = true
			if err := s.putLedger(ctx, &e); err != nil {
				return err
			}
			s.m.folded.Add(ctx, 1, attrs(name))
			s.markPending(e, e.LastUpdate.Add(s.cfg.FoldWindow))
			return nil
		}
		return s.sendUpdate(ctx, d, &e, in.f, in.status, now)
	}
	kind := dest.New
	if sent {
		kind = dest.Repeat
	}
	if alerting && !sent {
		// Record the attempt before sending: a crash between the send and the ledger
		// write leaves "sending", and the redelivery sends again rather than losing it.
		e.State = ledger.Sending
		if err := s.putLedger(ctx, &e); err != nil {
			return err
		}
	}
	n := dest.Notice{Kind: kind, Finding: in.f, Status: dstStatus(in.status), Receipt: e.Receipt, Seen: e.Seen, LastSeen: now, Revision: in.seq, Link: s.link(in.f.Id)}
	rc, err := deliver(ctx, d, n, func(err error) { s.countFailure(ctx, name, err) })
	if err != nil {
		s.countFailure(ctx, name, err)
		return err
	}
	s.m.delivered.Add(ctx, 1, attrs(name, attribute.String("kind", kind.String())))
	if kind == dest.New && in.f.ReceivedUnixNano > 0 {
		s.m.latency.Record(ctx, time.Since(time.Unix(0, in.f.ReceivedUnixNano)).Seconds(), attrs(name))
	}
	e.State, e.Receipt, e.Pending, e.Reason = ledger.Sent, rc, false, ""
	e.MarkHandled(in.seq)
	if e.FirstSent.IsZero() {
		e.FirstSent = now
	}
	e.LastUpdate = now
	e.Status, e.StatusRev = in.status.Label(), max(e.StatusRev, in.status.Revision)
	return s.putLedger(ctx, &e)
}

// sendUpdate shows the folded repeats of a finding on its alert.
func (s *Service) sendUpdate(ctx context.Context, d dest.Destination, e *ledger.Entry, f *events.Finding, st triage.Status, now time.Time) error {
	n := dest.Notice{Kind: dest.Repeat, Finding: f, Status: dstStatus(st), Receipt: e.Receipt, Seen: e.Seen, LastSeen: e.LastSeen, Revision: e.Seq, Link: s.link(f.Id)}
	if _, err := deliver(ctx, d, n, func(err error) { s.countFailure(ctx, d.Name(), err) }); err != nil {
		s.countFailure(ctx, d.Name(), err)
		return err
	}
	s.m.delivered.Add(ctx, 1, attrs(d.Name(), attribute.String("kind", dest.Repeat.String())))
	e.Pending, e.LastUpdate = false, now
	return s.putLedger(ctx, e)
}

// putLedger writes an entry, retrying briefly: the destination already has what the entry
// records, and failing here would make a redelivery send it again.
func (s *Service) putLedger(ctx context.Context, e *ledger.Entry) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = s.ledger.Put(ctx, e); err == nil || errors.Is(err, ledger.ErrConflict) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt+1) * 100 * time.Millisecond):
		}
	}
	return err
}

func (s *Service) countFailure(ctx context.Context, name string, err error) {
	class := "transient"
	switch {
	case dest.IsPermanent(err):
		class = "permanent"
	case dest.RetryAfter(err) > 0:
		class = "rate_limited"
	}
	s.m.failures.Add(ctx, 1, attrs(name, attribute.String("class", class)))
	s.log.Warn("delivery failed", "destination", name, "class", class, "error", err)
}

func dstStatus(st triage.Status) dest.Status {
	return dest.Status{Status: st.Label(), By: st.By, Reason: st.Reason, At: st.At, Until: st.Until}
}

// handleStatus applies a triage change to every destination that has the finding.
func (s *Service) handleStatus(ctx context.Context, msg jetstream.Msg, last bool) error {
	st, ok, err := statusOf(msg)
	if err != nil || !ok {
		return err
	}
	entries, err := s.ledger.ForFinding(ctx, st.FindingID)
	if err != nil {
		return err
	}
	var todo []ledger.Entry
	for _, e := range entries {
		if s.workers[e.Destination] == nil || e.StatusRev >= st.Revision {
			continue
		}
		switch e.State {
		case ledger.Sending:
			if !last {
				return fmt.Errorf("finding %s is being delivered to %s; the status change waits", st.FindingID, e.Destination)
			}
		case ledger.Sent:
			todo = append(todo, e)
		}
	}
	results := make(chan outcome, len(todo))
	for _, e := range todo {
		go func() {
			w := s.workers[e.Destination]
			results <- outcome{e.Destination, w.do(ctx, func(ctx context.Context) error { return s.deliverStatus(ctx, w.d, st) })}
		}()
	}
	var failed []outcome
	for range todo {
		if o := <-results; o.err != nil {
			failed = append(failed, o)
		}
	}
	return s.settle(ctx, msg, st.FindingID, fmt.Sprintf(":status:%d", st.Revision), failed, last)
}

// deliverStatus shows a triage change on one destination's alert.
func (s *Service) deliverStatus(ctx context.Context, d dest.Destination, st triage.Status) error {
	e, ok, err := s.ledger.Get(ctx, st.FindingID, d.Name())
	if err != nil || !ok || e.StatusRev >= st.Revision {
		return err
	}
	f, err := events.UnmarshalFinding(e.Finding)
	if err != nil {
		return dest.Permanent(fmt.Errorf("alert ledger holds an unreadable finding: %w", err))
	}
	n := dest.Notice{Kind: dest.StatusChange, Finding: f, Status: dstStatus(st), Receipt: e.Receipt, Seen: e.Seen, LastSeen: e.LastSeen, Revision: st.Revision, Link: s.link(f.Id)}
	if _, err := deliver(ctx, d, n, func(err error) { s.countFailure(ctx, d.Name(), err) }); err != nil {
		s.countFailure(ctx, d.Name(), err)
		return err
	}
	s.m.delivered.Add(ctx, 1, attrs(d.Name(), attribute.String("kind", dest.StatusChange.String())))
	e.StatusRev, e.Status, e.LastUpdate = st.Revision, st.Label(), s.now()
	return s.putLedger(ctx, &e)
}

func (s *Service) markPending(e ledger.Entry, due time.Time) {
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	s.pending[ledger.Key(e.FindingID, e.Destination)] = due
}

// flushLoop sends the updates of folded repeats whose window has passed. Pending marks are
// in memory: after a restart, the next repeat of a finding carries the count instead.
func (s *Service) flushLoop(ctx context.Context) {
	every := s.cfg.FoldWindow / 4
	if every < 100*time.Millisecond {
		every = 100 * time.Millisecond
	}
	if every > 30*time.Second {
		every = 30 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := s.now()
		s.pendingMu.Lock()
		var due []string
		for key, at := range s.pending {
			if !now.Before(at) {
				due = append(due, key)
				delete(s.pending, key)
			}
		}
		s.pendingMu.Unlock()
		for _, key := range due {
			s.flush(ctx, key)
		}
	}
}

func (s *Service) flush(ctx context.Context, key string) {
	rest, _ := strings.CutPrefix(key, "a.")
	findingID, name, _ := strings.Cut(rest, ".")
	w := s.workers[name]
	if w == nil {
		return
	}
	fctx, cancel := context.WithTimeout(ctx, 25*time.Second)
	defer cancel()
	err := w.do(fctx, func(ctx context.Context) error {
		e, ok, err := s.ledger.Get(ctx, findingID, name)
		if err != nil || !ok || !e.Pending || e.State != ledger.Sent {
			return err
		}
		f, err := events.UnmarshalFinding(e.Finding)
		if err != nil {
			return nil
		}
		st, err := s.triage.Status(ctx, findingID)
		if err != nil {
			return err
		}
		return s.sendUpdate(ctx, w.d, &e, f, st, s.now())
	})
	if err != nil && ctx.Err() == nil {
		s.log.Warn("folded update failed; retrying later", "finding_id", findingID, "destination", name, "error", err)
		s.markPending(ledger.Entry{FindingID: findingID, Destination: name}, s.now().Add(s.cfg.FoldWindow))
	}
}
