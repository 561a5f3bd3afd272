// Package tail follows growing log files line by line — a Kubernetes API server's audit
// log (--audit-log-path), or any JSON Lines log — the way `tail -F` does, without losing or
// repeating a line:
//
//   - a partial last line is left until its newline arrives;
//   - rotation by rename (the writer's own, or logrotate's) is noticed by the inode; the old
//     file is read to its end before the new one is followed;
//   - copytruncate is noticed by the file shrinking or its first line changing; lines written
//     between the last read and the truncation are recovered from the copy;
//   - the cursor is a fingerprint of the file's first line (which names a file generation
//     whatever its name), its inode and the byte offset after the last acknowledged line, so
//     a restart resumes where it stopped — also when the file was rotated meanwhile, by
//     finishing the rotated file first.
//
// Record positions are <path>@<fingerprint>:<offset of the line>, the same whether a line is
// read before or after its file was rotated.
package tail

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events/redact"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/cursor"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/sink"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/split"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/watch"
)

// Config configures a tail source.
type Config struct {
	// Paths are the live log files to follow (not their rotated copies). A pattern with
	// glob characters follows every file it matches.
	Paths []string `yaml:"paths"`
	// StartAt is where a file without a cursor starts: "beginning" (default) or "end".
	StartAt string `yaml:"start_at"`
	// PollInterval is how often files are checked when no notification arrives.
	PollInterval time.Duration `yaml:"poll_interval"`
	// RotateWait is how long a renamed file is still read after the rotation, for a writer
	// that reopens its file late (logrotate's postrotate signal).
	RotateWait time.Duration `yaml:"rotate_wait"`
	// ChunkRecords is how many lines are acknowledged between cursor saves.
	ChunkRecords int `yaml:"chunk_records"`
}

// DefaultConfig returns the defaults of a tail source.
func DefaultConfig() Config {
	return Config{StartAt: "beginning", PollInterval: time.Second, RotateWait: time.Second, ChunkRecords: 1000}
}

// WithDefaults fills the settings a configuration file left out.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	if c.StartAt == "" {
		c.StartAt = d.StartAt
	}
	if c.PollInterval == 0 {
		c.PollInterval = d.PollInterval
	}
	if c.RotateWait == 0 {
		c.RotateWait = d.RotateWait
	}
	if c.ChunkRecords == 0 {
		c.ChunkRecords = d.ChunkRecords
	}
	return c
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if len(c.Paths) == 0 {
		return errors.New("tail: at least one path is required")
	}
	for _, p := range c.Paths {
		if _, err := filepath.Match(p, "x"); err != nil {
			return fmt.Errorf("tail: path %q: %w", p, err)
		}
	}
	switch {
	case c.StartAt != "beginning" && c.StartAt != "end":
		return errors.New(`tail: start_at must be "beginning" or "end"`)
	case c.PollInterval <= 0 || c.RotateWait < 0:
		return errors.New("tail: poll_interval must be positive and rotate_wait not negative")
	case c.ChunkRecords < 1:
		return errors.New("tail: chunk_records must be positive")
	}
	return nil
}

// Source follows the configured files.
type Source struct {
	cfg     Config
	sink    *sink.Sink
	cursors *cursor.Store
	limits  split.Limits
	log     *slog.Logger
}

// New returns a tail source.
func New(cfg Config, s *sink.Sink, cursors *cursor.Store, limits split.Limits, log *slog.Logger) (*Source, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Source{cfg: cfg, sink: s, cursors: cursors, limits: limits, log: log}, nil
}

// Run follows the files until ctx ends.
func (s *Source) Run(ctx context.Context) error {
	var dirs []string
	for _, p := range s.cfg.Paths {
		dirs = append(dirs, filepath.Dir(p))
	}
	waker := watch.New(slices.Compact(slices.Sorted(slices.Values(dirs))), s.cfg.PollInterval, s.log)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go waker.Run(wctx)
	followers := map[string]*follower{}
	defer func() {
		for _, f := range followers {
			f.close()
		}
	}()
	for {
		var backlog int64
		for _, path := range s.expand() {
			fl := followers[path]
			if fl == nil {
				fl = &follower{src: s, path: path, log: s.log.With("path", path)}
				followers[path] = fl
			}
			if err := fl.step(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			backlog += fl.backlog
		}
		s.sink.ObserveBacklog(ctx, backlog, "bytes")
		if !waker.Wait(ctx) {
			return nil
		}
	}
}

// expand returns the files to follow: literal paths (present or not yet) and glob matches.
func (s *Source) expand() []string {
	var out []string
	for _, p := range s.cfg.Paths {
		if !strings.ContainsAny(p, `*?[\`) {
			out = append(out, filepath.Clean(p))
			continue
		}
		m, _ := filepath.Glob(p)
		out = append(out, m...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// position is the cursor of one followed path.
type position struct {
	// Fingerprint is a hash of the first line of the file generation being read.
	Fingerprint string `json:"fingerprint"`
	Dev         uint64 `json:"dev"`
	Ino         uint64 `json:"ino"`
	// Offset is the byte after the last acknowledged line.
	Offset int64 `json:"offset"`
}

// follower follows one path across rotations.
type follower struct {
	src     *Source
	path    string
	log     *slog.Logger
	loaded  bool
	f       *os.File
	pos     position
	rotated time.Time // when the path was seen to name another file
	backlog int64
}

func (fl *follower) close() {
	if fl.f != nil {
		fl.f.Close()
		fl.f = nil
	}
}

// errReplaced stops reading a file whose content turned out to be a new generation.
var errReplaced = errors.New("file replaced while reading")

// step reads what is new and handles rotation.
func (fl *follower) step(ctx context.Context) error {
	if fl.f == nil {
		ok, err := fl.open(ctx)
		if !ok || err != nil {
			return err
		}
	}
	if fl.replaced() {
		return fl.truncated(ctx)
	}
	err := fl.consume(ctx, fl.f, &fl.pos, false)
	if errors.Is(err, errReplaced) {
		return fl.truncated(ctx)
	}
	if err != nil {
		return err
	}
	info, err := os.Stat(fl.path)
	dev, ino := uint64(0), uint64(0)
	if err == nil {
		dev, ino = fileID(info)
	}
	switch {
	case err != nil || (ino != 0 && (dev != fl.pos.Dev || ino != fl.pos.Ino)):
		// Renamed away (or deleted): read the old file a little longer, then to its end.
		if fl.rotated.IsZero() {
			fl.rotated = time.Now()
			fl.log.Info("file rotated")
		}
		if time.Since(fl.rotated) < fl.src.cfg.RotateWait {
			return nil
		}
		if err := fl.consume(ctx, fl.f, &fl.pos, true); err != nil {
			return err
		}
		fl.close()
		fl.rotated = time.Time{}
		fl.backlog = 0
		return nil
	case info.Size() < fl.pos.Offset:
		return fl.truncated(ctx)
	}
	fl.backlog = max(0, info.Size()-fl.pos.Offset)
	return nil
}

// truncated handles copytruncate: what was written after our last read is in the copy;
// the file itself is followed again from its new first line.
func (fl *follower) truncated(ctx context.Context) error {
	fl.log.Info("file truncated")
	if err := fl.drainCopy(ctx, fl.pos); err != nil {
		return err
	}
	fl.close()
	return nil
}

// replaced reports whether the open file's first line is no longer the one we fingerprinted
// (truncated and rewritten past our offset between two checks).
func (fl *follower) replaced() bool {
	fp, ok := fingerprint(fl.f)
	return !ok || fp != fl.pos.Fingerprint
}

// open opens the path once its first line is complete, and decides where to start.
func (fl *follower) open(ctx context.Context) (bool, error) {
	f, err := os.Open(fl.path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("tail: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return false, fmt.Errorf("tail: %w", err)
	}
	fp, ok := fingerprint(f)
	if !ok {
		f.Close() // no complete first line yet
		return false, nil
	}
	dev, ino := fileID(info)
	next := position{Fingerprint: fp, Dev: dev, Ino: ino}
	if !fl.loaded {
		var saved position
		found, err := fl.src.cursors.Load(ctx, fl.path, &saved)
		if err != nil {
			f.Close()
			return false, err
		}
		fl.loaded = true
		switch {
		case found && saved.Fingerprint == fp:
			next.Offset = saved.Offset
			if next.Offset > info.Size() {
				next.Offset = 0
			}
		case found:
			// The file we were reading was rotated while we were stopped: finish it first.
			if err := fl.drainRotated(ctx, saved); err != nil {
				f.Close()
				return false, err
			}
		case fl.src.cfg.StartAt == "end":
			next.Offset = lastLineEnd(f, info.Size())
		}
	}
	fl.f, fl.pos = f, next
	fl.log.Debug("following", "fingerprint", fp, "offset", next.Offset)
	return true, fl.save(ctx)
}

// drainRotated finds the rotated file of a saved cursor next to the path (same inode, or
// same first line) and reads it from the saved offset to its end.
func (fl *follower) drainRotated(ctx context.Context, saved position) error {
	f := fl.sibling(func(info os.FileInfo, f *os.File) bool {
		if dev, ino := fileID(info); ino != 0 && dev == saved.Dev && ino == saved.Ino {
			return true
		}
		fp, ok := fingerprint(f)
		return ok && fp == saved.Fingerprint
	})
	if f == nil {
		fl.src.sink.CountError(ctx)
		fl.log.Warn("the rotated file of the saved cursor is gone; lines after its offset are lost", "offset", saved.Offset)
		return nil
	}
	defer f.Close()
	fl.log.Info("finishing the file rotated while stopped", "rotated", f.Name(), "offset", saved.Offset)
	pos := saved
	return fl.consume(ctx, f, &pos, true)
}

// drainCopy reads, from the copy copytruncate made, the lines after the current offset.
func (fl *follower) drainCopy(ctx context.Context, cur position) error {
	f := fl.sibling(func(info os.FileInfo, f *os.File) bool {
		fp, ok := fingerprint(f)
		return ok && fp == cur.Fingerprint && info.Size() > cur.Offset
	})
	if f == nil {
		return nil
	}
	defer f.Close()
	pos := cur
	return fl.consume(ctx, f, &pos, true)
}

// sibling returns the first file next to the path, named like its rotations (same stem),
// for which match holds. Compressed rotations cannot be continued and are skipped.
func (fl *follower) sibling(match func(os.FileInfo, *os.File) bool) *os.File {
	dir, base := filepath.Split(fl.path)
	stem := strings.TrimSuffix(base, filepath.Ext(base))
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	for _, e := range entries {
		name := e.Name()
		if name == base || !strings.HasPrefix(name, stem) || !e.Type().IsRegular() || strings.HasSuffix(name, ".gz") {
			continue
		}
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		info, err := f.Stat()
		if err == nil && match(info, f) {
			return f
		}
		f.Close()
	}
	return nil
}

// consume reads complete lines of f from pos.Offset to the end and publishes them, saving
// the cursor after every chunk. With final, a last line without newline counts too (the
// file will not grow any more).
func (fl *follower) consume(ctx context.Context, f *os.File, pos *position, final bool) error {
	s := fl.src
	maxLine := s.limits.MaxRecordBytes
	prefix := fl.path + "@" + pos.Fingerprint + ":"
	batch := s.sink.NewBatch(prefix + strconv.FormatInt(pos.Offset, 10))
	splitter := split.New(s.limits)
	lines := 0
	flush := func(offset int64) error {
		// What was read from the live file belongs to the generation we fingerprinted only
		// if its first line is still the same now, after the read.
		if !final && fl.replaced() {
			return errReplaced
		}
		if err := s.sink.PublishWait(ctx, batch); err != nil {
			return err
		}
		pos.Offset = offset
		lines = 0
		return fl.saveAt(ctx, *pos)
	}
	handle := func(line []byte, at int64) error {
		line = bytes.TrimRight(line, "\r")
		if len(bytes.TrimSpace(line)) == 0 {
			return nil
		}
		lp := prefix + strconv.FormatInt(at, 10)
		lines++
		err := splitter.Split(line, func(r split.Record) error {
			p := lp
			if r.Index > 0 {
				p += "#" + strconv.Itoa(r.Index)
			}
			return batch.Add(sink.Record{Position: p, Data: r.Data, Time: r.Time})
		}, func(r split.Rejected) error {
			return s.sink.Reject(ctx, lp+"#"+strconv.Itoa(r.Index), r.Data, r.Reason)
		})
		if err != nil && (errors.Is(err, split.ErrNotJSON) || errors.Is(err, split.ErrMalformed)) {
			return s.sink.Reject(ctx, lp, redact.Text(truncate(line)), err)
		}
		return err
	}
	r := io.NewSectionReader(f, pos.Offset, 1<<62)
	buf := make([]byte, 256<<10)
	var partial []byte
	lineStart := pos.Offset
	skipping := false // inside a line longer than the record limit
	for {
		n, rerr := r.Read(buf)
		data := buf[:n]
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				if !skipping {
					partial = append(partial, data...)
					if len(partial) > maxLine {
						reason := fmt.Errorf("%w: line exceeds %d bytes", split.ErrTooLarge, maxLine)
						if err := s.sink.Reject(ctx, prefix+strconv.FormatInt(lineStart, 10), redact.Text(truncate(partial)), reason); err != nil {
							return err
						}
						skipping, partial = true, nil
					}
				}
				break
			}
			end := lineStart + int64(len(partial)) + int64(i) + 1
			if skipping {
				skipping = false
			} else {
				partial = append(partial, data[:i]...)
				if len(partial) > maxLine {
					reason := fmt.Errorf("%w: line exceeds %d bytes", split.ErrTooLarge, maxLine)
					if err := s.sink.Reject(ctx, prefix+strconv.FormatInt(lineStart, 10), redact.Text(truncate(partial)), reason); err != nil {
						return err
					}
				} else if err := handle(partial, lineStart); err != nil {
					return err
				}
			}
			partial = partial[:0]
			data = data[i+1:]
			lineStart = end
			if lines >= s.cfg.ChunkRecords {
				if err := flush(lineStart); err != nil {
					return err
				}
				batch = s.sink.NewBatch(prefix + strconv.FormatInt(lineStart, 10))
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("tail: read %s: %w", f.Name(), rerr)
		}
	}
	if final && len(partial) > 0 && !skipping {
		if err := handle(partial, lineStart); err != nil {
			return err
		}
		lineStart += int64(len(partial))
	}
	if lines == 0 && lineStart == pos.Offset {
		return nil
	}
	return flush(lineStart)
}

func (fl *follower) save(ctx context.Context) error { return fl.saveAt(ctx, fl.pos) }

// saveAt stores a cursor. A drain of a rotated file saves that file's position, so a crash
// in the middle finishes it after the restart.
func (fl *follower) saveAt(ctx context.Context, p position) error {
	return fl.src.sink.Retry(ctx, "save cursor", func() error { return fl.src.cursors.Save(ctx, fl.path, p) })
}

// maxFingerprintLine bounds the first line read for a fingerprint.
const maxFingerprintLine = 64 << 10

// fingerprint hashes the first line of f; ok is false until that line is complete.
func fingerprint(f *os.File) (string, bool) {
	buf := make([]byte, 4096)
	var line []byte
	for off := int64(0); off < maxFingerprintLine; {
		n, err := f.ReadAt(buf, off)
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			line = append(line, buf[:i]...)
			sum := sha256.Sum256(line)
			return hex.EncodeToString(sum[:8]), true
		}
		line = append(line, buf[:n]...)
		off += int64(n)
		if err != nil {
			return "", false
		}
	}
	// A first line longer than the bound: its first bytes are the fingerprint.
	sum := sha256.Sum256(line[:maxFingerprintLine])
	return hex.EncodeToString(sum[:8]), true
}

// lastLineEnd returns the offset after the last newline of f's first size bytes.
func lastLineEnd(f *os.File, size int64) int64 {
	buf := make([]byte, 64<<10)
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		n, _ := f.ReadAt(buf[:end-start], start)
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return start + int64(i) + 1
		}
		end = start
	}
	return 0
}

func truncate(b []byte) []byte {
	const maxKept = 64 << 10
	if len(b) > maxKept {
		b = b[:maxKept]
	}
	return append([]byte(nil), b...)
}
