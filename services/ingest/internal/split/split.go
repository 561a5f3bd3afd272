// Package split reads an audit-log container — a CloudTrail delivery file, a JSON array, JSON
// Lines, a Kubernetes EventList, a LookupEvents page, gzipped or not — and cuts it into
// records, with the secret values removed (package redact) before a record leaves ingest.
package split

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/valyala/fastjson"

	"github.com/nhiwatch/nhiwatch/pkg/events/jsonenc"
	"github.com/nhiwatch/nhiwatch/pkg/events/redact"
)

// Errors a caller can branch on. A container error means the whole container is unreadable
// (report it and skip it); a record error rejects one record.
var (
	ErrTooLarge  = errors.New("too large")
	ErrMalformed = errors.New("malformed")
	ErrNotJSON   = errors.New("not JSON")
)

// Unreadable reports whether err says a container can never be read (not JSON, malformed,
// too large), as opposed to a failure that may pass on a retry.
func Unreadable(err error) bool {
	return errors.Is(err, ErrNotJSON) || errors.Is(err, ErrMalformed) || errors.Is(err, ErrTooLarge)
}

// Limits bound what a hostile or broken container can make ingest do.
type Limits struct {
	// MaxContainerBytes bounds a container after decompression (gzip bombs stop here).
	MaxContainerBytes int64
	// MaxRecordBytes bounds one record.
	MaxRecordBytes int
}

// DefaultLimits suits CloudTrail delivery files (tens of MB) and Kubernetes audit batches.
func DefaultLimits() Limits {
	return Limits{MaxContainerBytes: 512 << 20, MaxRecordBytes: 800 << 10}
}

// Record is one record cut from a container. Data is redacted JSON owned by the callee only
// for the duration of the callback.
type Record struct {
	// Index is the record's position in its container, stable for the same content.
	Index int
	Data  []byte
	// Time is the record's event time when it has one of the usual fields (CloudTrail
	// eventTime, Kubernetes stageTimestamp, LogEntry timestamp), else zero.
	Time time.Time
}

// Rejected is a record that cannot be read. Data is redacted as text and may be cut short.
type Rejected struct {
	Index  int
	Data   []byte
	Reason error
}

// maxRejectedBytes bounds the copy of a rejected record kept for the dead-letter stream.
const maxRejectedBytes = 64 << 10

// ReadAll reads a container, decompressing gzip (detected by its magic bytes), and fails
// with ErrTooLarge past the limit.
func ReadAll(r io.Reader, lim Limits) ([]byte, error) {
	br := bufio.NewReader(r)
	var src io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		src = zr
	}
	data, err := io.ReadAll(io.LimitReader(src, lim.MaxContainerBytes+1))
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: truncated gzip stream", ErrMalformed)
		}
		return nil, fmt.Errorf("%w: gzip: %v", ErrMalformed, err)
	}
	if int64(len(data)) > lim.MaxContainerBytes {
		return nil, fmt.Errorf("%w: container exceeds %d bytes", ErrTooLarge, lim.MaxContainerBytes)
	}
	return data, nil
}

// Splitter cuts containers into records. It reuses its parser and buffers, so it is not safe
// for concurrent use; use one per goroutine.
type Splitter struct {
	lim    Limits
	parser fastjson.Parser
	line   fastjson.Parser
	inner  fastjson.Parser
	arena  fastjson.Arena
	buf    []byte
	// innerBuf holds a re-encoded embedded record until the outer record is encoded.
	innerBuf []byte
}

// New returns a Splitter with the given limits.
func New(lim Limits) *Splitter { return &Splitter{lim: lim} }

// Split cuts data into records and calls emit for each readable one and reject for each
// unreadable one, in container order. It returns a container error when data is not a
// container at all, and the first error emit or reject returns.
func (s *Splitter) Split(data []byte, emit func(Record) error, reject func(Rejected) error) error {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 byte order mark
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil
	}
	if utf8.Valid(trimmed) {
		if v, err := s.parser.ParseBytes(trimmed); err == nil {
			next := 0
			return s.expand(v, &next, emit, reject)
		}
	}
	return s.lines(data, emit, reject)
}

// maxHeldRejects bounds the rejected lines whose content is kept while the splitter does not
// yet know whether the container is JSON Lines at all; past it only their index and reason
// are kept.
const maxHeldRejects = 256

// lines reads data as JSON Lines: one record (or container) per line. A bad line rejects
// that line only. Rejects are held until the first good line shows the container is JSON
// Lines; a container without a single good line is not JSON at all.
func (s *Splitter) lines(data []byte, emit func(Record) error, reject func(Rejected) error) error {
	next, good := 0, 0
	var firstErr error
	var held []Rejected
	for len(data) > 0 {
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		v, reason := s.parseLine(line)
		if reason == nil {
			if good == 0 {
				for _, r := range held {
					if err := reject(r); err != nil {
						return err
					}
				}
				held = nil
			}
			good++
			if err := s.expand(v, &next, emit, reject); err != nil {
				return err
			}
			continue
		}
		r := Rejected{Index: next, Reason: reason}
		next++
		if good > 0 {
			r.Data = redactedCopy(line)
			if err := reject(r); err != nil {
				return err
			}
			continue
		}
		if firstErr == nil {
			firstErr = reason
		}
		if len(held) < maxHeldRejects {
			r.Data = redactedCopy(line)
		}
		held = append(held, r)
	}
	if good == 0 && len(held) > 0 {
		return fmt.Errorf("%w: container is neither a JSON document nor JSON Lines (%v)", ErrNotJSON, firstErr)
	}
	return nil
}

// parseLine parses a JSON Lines line into a record or container, or says why it is neither.
func (s *Splitter) parseLine(line []byte) (*fastjson.Value, error) {
	switch {
	case len(line) > s.lim.MaxRecordBytes:
		return nil, fmt.Errorf("%w: record of %d bytes exceeds %d", ErrTooLarge, len(line), s.lim.MaxRecordBytes)
	case !utf8.Valid(line):
		return nil, fmt.Errorf("%w: record is not valid UTF-8", ErrMalformed)
	}
	v, err := s.line.ParseBytes(line)
	if err != nil {
		return nil, fmt.Errorf("%w: record is not valid JSON", ErrMalformed)
	}
	if t := v.Type(); t != fastjson.TypeObject && t != fastjson.TypeArray {
		return nil, fmt.Errorf("%w: record is a %s, not an object", ErrMalformed, t)
	}
	return v, nil
}

// expand emits v, or the records inside v when it is a container.
func (s *Splitter) expand(v *fastjson.Value, next *int, emit func(Record) error, reject func(Rejected) error) error {
	switch v.Type() {
	case fastjson.TypeArray:
		items, _ := v.Array()
		for _, item := range items {
			if err := s.one(item, next, emit, reject); err != nil {
				return err
			}
		}
		return nil
	case fastjson.TypeObject:
		if items := containerItems(v); items != nil {
			for _, item := range items {
				if err := s.one(item, next, emit, reject); err != nil {
					return err
				}
			}
			return nil
		}
		return s.one(v, next, emit, reject)
	default:
		return fmt.Errorf("%w: top level is a %s, not an object or array", ErrNotJSON, v.Type())
	}
}

// containerItems returns the records of a known container object, or nil when v is a record.
func containerItems(v *fastjson.Value) []*fastjson.Value {
	// CloudTrail delivery file: {"Records":[…]}.
	if r := v.Get("Records"); r != nil && r.Type() == fastjson.TypeArray {
		return arrayOrEmpty(r)
	}
	// Kubernetes audit EventList.
	if string(v.GetStringBytes("kind")) == "EventList" {
		return arrayOrEmpty(v.Get("items"))
	}
	// CloudTrail LookupEvents page: {"Events":[{"CloudTrailEvent":"…"}], "NextToken":…}.
	if e := v.Get("Events"); e != nil && e.Type() == fastjson.TypeArray {
		return arrayOrEmpty(e)
	}
	// GCP entries.list response: {"entries":[LogEntry…]}.
	if e := v.Get("entries"); e != nil && e.Type() == fastjson.TypeArray && v.Get("protoPayload") == nil {
		return arrayOrEmpty(e)
	}
	return nil
}

// arrayOrEmpty returns v's items, never nil: a container with no records is still a container.
func arrayOrEmpty(v *fastjson.Value) []*fastjson.Value {
	if v == nil {
		return []*fastjson.Value{}
	}
	items, err := v.Array()
	if err != nil || items == nil {
		return []*fastjson.Value{}
	}
	return items
}

// one redacts and emits a single record.
func (s *Splitter) one(v *fastjson.Value, next *int, emit func(Record) error, reject func(Rejected) error) error {
	idx := *next
	*next++
	if v.Type() != fastjson.TypeObject {
		return reject(Rejected{Index: idx, Reason: fmt.Errorf("%w: record is a %s, not an object", ErrMalformed, v.Type())})
	}
	s.arena.Reset()
	redact.Value(v, &s.arena)
	s.redactEmbedded(v)
	s.buf = jsonenc.Append(s.buf[:0], v)
	if len(s.buf) > s.lim.MaxRecordBytes {
		return reject(Rejected{Index: idx, Data: truncate(s.buf), Reason: fmt.Errorf("%w: record of %d bytes exceeds %d", ErrTooLarge, len(s.buf), s.lim.MaxRecordBytes)})
	}
	return emit(Record{Index: idx, Data: s.buf, Time: EventTime(v)})
}

// embeddedRecordFields hold a whole record as a JSON string: the CloudTrail record of a
// LookupEvents result.
var embeddedRecordFields = []string{"CloudTrailEvent"}

// unreadableEmbedded replaces an embedded record that is not a JSON object.
const unreadableEmbedded = "[REDACTED:unreadable_record]"

// redactEmbedded redacts records carried as JSON strings inside v, which the structural pass
// sees only as opaque strings.
func (s *Splitter) redactEmbedded(v *fastjson.Value) {
	for _, f := range embeddedRecordFields {
		str := v.Get(f)
		if str == nil || str.Type() != fastjson.TypeString {
			continue
		}
		raw, _ := str.StringBytes()
		inner, err := s.inner.ParseBytes(raw)
		if err != nil || inner.Type() != fastjson.TypeObject {
			// Not a record: nothing of it can be told apart from a secret, and normalize
			// rejects it either way.
			v.Set(f, s.arena.NewString(unreadableEmbedded))
			continue
		}
		redact.Value(inner, &s.arena)
		s.innerBuf = jsonenc.Append(s.innerBuf[:0], inner)
		v.Set(f, s.arena.NewStringBytes(s.innerBuf))
	}
}

// timeFields are the event-time fields of the supported formats, most specific first.
var timeFields = []string{"eventTime", "stageTimestamp", "requestReceivedTimestamp", "timestamp", "receiveTimestamp", "time"}

// EventTime returns the event time of a record, or zero when it has none it can read.
func EventTime(v *fastjson.Value) time.Time {
	for _, f := range timeFields {
		b := v.GetStringBytes(f)
		if len(b) == 0 {
			continue
		}
		if t, err := time.Parse(time.RFC3339Nano, string(b)); err == nil {
			return t
		}
	}
	return time.Time{}
}

func redactedCopy(b []byte) []byte {
	return redact.Text(truncate(b))
}

func truncate(b []byte) []byte {
	if len(b) > maxRejectedBytes {
		b = b[:maxRejectedBytes]
	}
	return append([]byte(nil), b...)
}
