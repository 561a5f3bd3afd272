package triage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
)

// History is how many changes the bucket keeps per finding (the most JetStream KV allows).
const History = 64

// maxScan bounds the NHI_FINDINGS messages read to find or list findings without ClickHouse.
const maxScan = 200_000

func errorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// Store reads and changes finding statuses in KV, and reads findings from ClickHouse when
// it has a connection, else from the NHI_FINDINGS stream. It is safe for concurrent use.
type Store struct {
	kv  jetstream.KeyValue
	js  jetstream.JetStream
	ch  driver.Conn
	now func() time.Time
}

// Open creates the status bucket when missing. ch may be nil.
func Open(ctx context.Context, js jetstream.JetStream, sc streams.Config, ch driver.Conn) (*Store, error) {
	kv, err := streams.EnsureBucket(ctx, js, sc, events.BucketFindingStatus, "triage status of findings, with history", History)
	if err != nil {
		return nil, err
	}
	return &Store{kv: kv, js: js, ch: ch, now: time.Now}, nil
}

// Status returns the finding's status: open with revision 0 when it never changed.
func (s *Store) Status(ctx context.Context, id string) (Status, error) {
	if !ValidFindingID(id) {
		return Status{}, errorf("bad finding id")
	}
	e, err := s.kv.Get(ctx, StatusKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Status{FindingID: id, Status: StatusOpen}, nil
	}
	if err != nil {
		return Status{}, fmt.Errorf("read status of %s: %w", id, err)
	}
	st, err := DecodeStatus(e.Value())
	st.Revision = e.Revision()
	return st, err
}

// History returns the finding's changes, oldest first (at most History).
func (s *Store) History(ctx context.Context, id string) ([]Status, error) {
	entries, err := s.kv.History(ctx, StatusKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read history of %s: %w", id, err)
	}
	var out []Status
	for _, e := range entries {
		if e.Operation() != jetstream.KeyValuePut {
			continue
		}
		st, err := DecodeStatus(e.Value())
		if err != nil {
			continue
		}
		st.Revision = e.Revision()
		out = append(out, st)
	}
	return out, nil
}

// Suppressed returns the suppression in force for an identity and cause, if any.
func (s *Store) Suppressed(ctx context.Context, identityID, cause string) (Status, bool, error) {
	e, err := s.kv.Get(ctx, SuppressionKey(identityID, cause))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Status{}, false, nil
	}
	if err != nil {
		return Status{}, false, fmt.Errorf("read suppression: %w", err)
	}
	st, err := DecodeStatus(e.Value())
	if err != nil {
		return Status{}, false, err
	}
	return st, st.Active(s.now()) && st.IdentityID == identityID && st.Cause == cause, nil
}

// Change applies a status change and returns the new status. The finding must exist. The
// write is a compare-and-set on the key's revision, retried when another change won.
func (s *Store) Change(ctx context.Context, c Change) (Status, error) {
	now := s.now().UTC()
	if err := c.Validate(now); err != nil {
		return Status{}, err
	}
	f, err := s.Finding(ctx, c.FindingID)
	if err != nil {
		return Status{}, err
	}
	for attempt := 0; attempt < 5; attempt++ {
		cur, err := s.Status(ctx, c.FindingID)
		if err != nil {
			return Status{}, err
		}
		next := Status{
			FindingID: c.FindingID, Status: c.To, Previous: cur.Label(), Reason: c.Reason, By: c.By, Via: c.Via,
			At: now.Truncate(time.Millisecond), Until: c.Until, IdentityID: f.GetIdentity().GetId(), Cause: f.Cause,
		}
		data, err := json.Marshal(next)
		if err != nil {
			return Status{}, err
		}
		var rev uint64
		if cur.Revision == 0 {
			rev, err = s.kv.Create(ctx, StatusKey(c.FindingID), data)
		} else {
			rev, err = s.kv.Update(ctx, StatusKey(c.FindingID), data, cur.Revision)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || isWrongSequence(err) {
			continue
		}
		if err != nil {
			return Status{}, fmt.Errorf("write status of %s: %w", c.FindingID, err)
		}
		next.Revision = rev
		if err := s.syncSuppression(ctx, cur, next); err != nil {
			return next, err
		}
		return next, nil
	}
	return Status{}, fmt.Errorf("write status of %s: too many concurrent changes", c.FindingID)
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// syncSuppression writes the identity-and-cause suppression of a suppressed finding, and
// lifts it when the finding that set it changes to another status.
func (s *Store) syncSuppression(ctx context.Context, prev, next Status) error {
	if next.IdentityID == "" && next.Cause == "" {
		return nil
	}
	key := SuppressionKey(next.IdentityID, next.Cause)
	if next.Status == StatusSuppressed {
		data, _ := json.Marshal(next)
		if _, err := s.kv.Put(ctx, key, data); err != nil {
			return fmt.Errorf("write suppression: %w", err)
		}
		return nil
	}
	if prev.Status != StatusSuppressed {
		return nil
	}
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read suppression: %w", err)
	}
	if cur, err := DecodeStatus(e.Value()); err == nil && cur.FindingID == next.FindingID {
		if err := s.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision())); err != nil && !isWrongSequence(err) {
			return fmt.Errorf("lift suppression: %w", err)
		}
	}
	return nil
}

// Show returns a finding with its status and history.
func (s *Store) Show(ctx context.Context, id string) (Detail, error) {
	f, err := s.Finding(ctx, id)
	if err != nil {
		return Detail{}, err
	}
	st, err := s.Status(ctx, id)
	if err != nil {
		return Detail{}, err
	}
	h, err := s.History(ctx, id)
	if err != nil {
		return Detail{}, err
	}
	return Detail{Item: Item{Finding: View(f), Status: st}, History: h}, nil
}

// Finding returns the finding with id, or ErrNotFound.
func (s *Store) Finding(ctx context.Context, id string) (*events.Finding, error) {
	if !ValidFindingID(id) {
		return nil, errorf("bad finding id")
	}
	if s.ch != nil {
		fs, err := s.queryFindings(ctx, "WHERE finding_id = ?", []any{id}, 1)
		if err != nil {
			return nil, err
		}
		if len(fs) == 1 {
			return fs[0], nil
		}
		return nil, fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	var found *events.Finding
	err := s.scan(ctx, func(f *events.Finding) {
		if f.Id == id {
			found = f
		}
	})
	if err != nil {
		return nil, err
	}
	if found == nil {
		return nil, fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	return found, nil
}

// List returns findings matching the filter, newest first, with their statuses.
func (s *Store) List(ctx context.Context, flt Filter) ([]Item, error) {
	if err := flt.normalize(); err != nil {
		return nil, err
	}
	changed, err := s.changedStatuses(ctx)
	if err != nil {
		return nil, err
	}
	var fs []*events.Finding
	if s.ch != nil {
		fs, err = s.listClickHouse(ctx, flt, changed)
	} else {
		fs, err = s.listStream(ctx, flt, changed)
	}
	if err != nil {
		return nil, err
	}
	items := make([]Item, 0, len(fs))
	for _, f := range fs {
		st, ok := changed[f.Id]
		if !ok {
			st = Status{FindingID: f.Id, Status: StatusOpen}
		}
		items = append(items, Item{Finding: View(f), Status: st})
	}
	return items, nil
}

// changedStatuses reads the status of every finding that was ever triaged.
func (s *Store) changedStatuses(ctx context.Context) (map[string]Status, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, statusPrefix+">")
	if err != nil {
		return nil, fmt.Errorf("list statuses: %w", err)
	}
	out := map[string]Status{}
	for key := range lister.Keys() {
		id := FindingIDOfKey(key)
		if id == "" {
			continue
		}
		st, err := s.Status(ctx, id)
		if err != nil {
			_ = lister.Stop()
			return nil, err
		}
		out[id] = st
	}
	return out, nil
}

func (f Filter) wants(fd *events.Finding, changed map[string]Status) bool {
	if f.Status != "" {
		st := StatusOpen
		if c, ok := changed[fd.Id]; ok {
			st = c.Label()
		}
		if st != f.Status {
			return false
		}
	}
	if f.MinSeverity != "" {
		min, _ := events.ParseSeverity(f.MinSeverity)
		if fd.Severity < min {
			return false
		}
	}
	if f.Detector != "" && fd.Detector != f.Detector {
		return false
	}
	return f.Identity == "" || strings.Contains(fd.GetIdentity().GetId(), f.Identity)
}

// listStream reads NHI_FINDINGS (the latest version of each finding), for deployments
// without ClickHouse.
func (s *Store) listStream(ctx context.Context, flt Filter, changed map[string]Status) ([]*events.Finding, error) {
	latest := map[string]*events.Finding{}
	if err := s.scan(ctx, func(f *events.Finding) { latest[f.Id] = f }); err != nil {
		return nil, err
	}
	var out []*events.Finding
	for _, f := range latest {
		if flt.wants(f, changed) {
			out = append(out, f)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].TimeUnixNano != out[j].TimeUnixNano {
			return out[i].TimeUnixNano > out[j].TimeUnixNano
		}
		return out[i].Id < out[j].Id
	})
	if len(out) > flt.Limit {
		out = out[:flt.Limit]
	}
	return out, nil
}

// scan calls fn with every finding in NHI_FINDINGS, oldest first, through an ordered
// (ephemeral) consumer.
func (s *Store) scan(ctx context.Context, fn func(*events.Finding)) error {
	st, err := s.js.Stream(ctx, events.StreamFindings)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("findings stream: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("findings stream: %w", err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	last := info.State.LastSeq
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return fmt.Errorf("findings stream: %w", err)
	}
	for read := 0; read < maxScan; {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("read findings: %w", err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			read++
			if f, err := events.UnmarshalFinding(msg.Data()); err == nil && ValidFindingID(f.Id) {
				fn(f)
			}
			if md, err := msg.Metadata(); err == nil && md.Sequence.Stream >= last {
				return nil
			}
		}
		if n == 0 {
			return nil
		}
	}
	return nil
}

const findingColumns = `finding_id, detector, severity, title, summary, provider, account, region, identity_id,
 identity_kind, identity_name, credential_id, owner, team, cause, grantee, permissions_added,
 event_time_ms, created_at_ms, evidence, owasp_nhi, mitre_attack, recommendation`

func (s *Store) listClickHouse(ctx context.Context, flt Filter, changed map[string]Status) ([]*events.Finding, error) {
	var where []string
	var args []any
	if flt.Status != "" {
		var ids []string
		for id, st := range changed {
			if st.Label() != StatusOpen {
				ids = append(ids, id)
			}
		}
		sort.Strings(ids)
		if flt.Status == StatusOpen {
			if len(ids) > 0 {
				where = append(where, "NOT has(?, finding_id)")
				args = append(args, ids)
			}
		} else {
			var match []string
			for _, id := range ids {
				if changed[id].Label() == flt.Status {
					match = append(match, id)
				}
			}
			if len(match) == 0 {
				return nil, nil
			}
			where = append(where, "has(?, finding_id)")
			args = append(args, match)
		}
	}
	if flt.MinSeverity != "" {
		min, _ := events.ParseSeverity(flt.MinSeverity)
		where = append(where, "severity_rank >= ?")
		args = append(args, uint8(min))
	}
	if flt.Detector != "" {
		where = append(where, "detector = ?")
		args = append(args, flt.Detector)
	}
	if flt.Identity != "" {
		where = append(where, "position(identity_id, ?) > 0")
		args = append(args, flt.Identity)
	}
	clause := ""
	if len(where) > 0 {
		clause = "WHERE " + strings.Join(where, " AND ")
	}
	return s.queryFindings(ctx, clause, args, flt.Limit)
}

func (s *Store) queryFindings(ctx context.Context, where string, args []any, limit int) ([]*events.Finding, error) {
	q := fmt.Sprintf("SELECT %s FROM findings FINAL %s ORDER BY event_time_ms DESC, finding_id LIMIT %d", findingColumns, where, limit)
	rows, err := s.ch.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query findings: %w", err)
	}
	defer rows.Close()
	var out []*events.Finding
	for rows.Next() {
		var (
			f                                      events.Finding
			severity, provider, kind, idID, idName string
			cred, evidence                         string
			eventMs, createdMs                     uint64
		)
		if err := rows.Scan(&f.Id, &f.Detector, &severity, &f.Title, &f.Summary, &provider, &f.Account, &f.Region, &idID,
			&kind, &idName, &cred, &f.Owner, &f.Team, &f.Cause, &f.Grantee, &f.PermissionsAdded,
			&eventMs, &createdMs, &evidence, &f.OwaspNhi, &f.MitreAttack, &f.Recommendation); err != nil {
			return nil, fmt.Errorf("read findings: %w", err)
		}
		f.Severity, _ = events.ParseSeverity(severity)
		f.Provider, _ = events.ParseProvider(provider)
		f.Identity = &events.Identity{Id: idID, Name: idName}
		f.Identity.Kind, _ = events.ParseIdentityKind(kind)
		if cred != "" {
			f.Credential = &events.Credential{Id: cred}
		}
		f.TimeUnixNano = int64(eventMs) * int64(time.Millisecond)
		f.CreatedUnixNano = int64(createdMs) * int64(time.Millisecond)
		_ = json.Unmarshal([]byte(evidence), &f.Evidence)
		out = append(out, &f)
	}
	return out, rows.Err()
}

// InsertStatuses writes status changes to finding_status and finding_status_log. Replaying
// a change is harmless: both tables collapse rows with the same finding id and revision.
func InsertStatuses(ctx context.Context, conn driver.Conn, sts []Status) error {
	if len(sts) == 0 {
		return nil
	}
	cur, err := conn.PrepareBatch(ctx, "INSERT INTO finding_status (finding_id, status, previous_status, reason, changed_by, changed_via, changed_at, changed_at_ms, expires_at, identity_id, cause, version)")
	if err != nil {
		return fmt.Errorf("insert finding_status: %w", err)
	}
	log, err := conn.PrepareBatch(ctx, "INSERT INTO finding_status_log (finding_id, version, status, previous_status, reason, changed_by, changed_via, changed_at, changed_at_ms, expires_at, identity_id, cause)")
	if err != nil {
		_ = cur.Abort()
		return fmt.Errorf("insert finding_status_log: %w", err)
	}
	for _, s := range sts {
		at := s.At.UTC()
		until := time.Unix(0, 0).UTC()
		if !s.Until.IsZero() {
			until = s.Until.UTC()
		}
		if err := cur.Append(s.FindingID, s.Label(), s.Previous, s.Reason, s.By, s.Via, at, uint64(at.UnixMilli()), until, s.IdentityID, s.Cause, s.Revision); err != nil {
			return fmt.Errorf("insert finding_status: %w", err)
		}
		if err := log.Append(s.FindingID, s.Revision, s.Label(), s.Previous, s.Reason, s.By, s.Via, at, uint64(at.UnixMilli()), until, s.IdentityID, s.Cause); err != nil {
			return fmt.Errorf("insert finding_status_log: %w", err)
		}
	}
	if err := cur.Send(); err != nil {
		return fmt.Errorf("insert finding_status: %w", err)
	}
	if err := log.Send(); err != nil {
		return fmt.Errorf("insert finding_status_log: %w", err)
	}
	return nil
}
