// Package files reads audit logs from files and directories: CloudTrail delivery files
// (.json.gz), JSON documents and arrays, JSON Lines, Kubernetes audit logs and EventLists,
// GCP log exports. Each file's progress is a cursor (records done, size, modification time
// and a hash of its first bytes), so a restart resumes where the last acknowledged batch
// ended, and a file that grew (JSON Lines appended to) is read on from its last record.
//
// In watch mode new and grown files are picked up as file-system notifications arrive, and
// in any case every poll interval (notifications miss network file systems).
package files

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nhiwatch/nhiwatch/services/ingest/internal/cursor"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/sink"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/split"
	"github.com/nhiwatch/nhiwatch/services/ingest/internal/watch"
)

// Config configures a files source.
type Config struct {
	// Paths are files or directories (read recursively).
	Paths []string `yaml:"paths"`
	// Include are glob patterns matched against file names; a file matching none is skipped.
	Include []string `yaml:"include"`
	// Watch keeps looking for new and grown files instead of stopping after one pass.
	Watch bool `yaml:"watch"`
	// PollInterval is how often a watching source looks for new files when no file-system
	// notification arrives.
	PollInterval time.Duration `yaml:"poll_interval"`
	// ChunkRecords is how many records are acknowledged between cursor saves.
	ChunkRecords int `yaml:"chunk_records"`
	// SettleTime (watch mode) leaves a file modified more recently than this for a later
	// pass: it is probably still being written.
	SettleTime time.Duration `yaml:"settle_time"`
}

// DefaultConfig reads the usual audit-log file names once.
func DefaultConfig() Config {
	return Config{
		Include:      []string{"*.json", "*.json.gz", "*.jsonl", "*.jsonl.gz", "*.ndjson", "*.log", "*.log.gz", "*.gz"},
		PollInterval: 5 * time.Second,
		ChunkRecords: 2000,
		SettleTime:   2 * time.Second,
	}
}

// WithDefaults fills the settings a configuration file left out.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	if c.Include == nil {
		c.Include = d.Include
	}
	if c.PollInterval == 0 {
		c.PollInterval = d.PollInterval
	}
	if c.SettleTime == 0 {
		c.SettleTime = d.SettleTime
	}
	if c.ChunkRecords == 0 {
		c.ChunkRecords = d.ChunkRecords
	}
	return c
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if len(c.Paths) == 0 {
		return errors.New("files: at least one path is required")
	}
	for _, p := range c.Include {
		if _, err := filepath.Match(p, "x"); err != nil {
			return fmt.Errorf("files: include pattern %q: %w", p, err)
		}
	}
	if c.Watch && c.PollInterval <= 0 {
		return errors.New("files: poll_interval must be positive when watching")
	}
	if c.ChunkRecords <= 0 {
		return errors.New("files: chunk_records must be positive")
	}
	if c.SettleTime < 0 {
		return errors.New("files: settle_time must not be negative")
	}
	return nil
}

// Source reads files into a sink.
type Source struct {
	cfg     Config
	sink    *sink.Sink
	cursors *cursor.Store
	limits  split.Limits
	log     *slog.Logger
}

// New returns a files source.
func New(cfg Config, s *sink.Sink, cursors *cursor.Store, limits split.Limits, log *slog.Logger) (*Source, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Source{cfg: cfg, sink: s, cursors: cursors, limits: limits, log: log}, nil
}

// state is a file's cursor.
type state struct {
	Size     int64 `json:"size"`
	ModTime  int64 `json:"mtime_unix_nano"`
	Next     int   `json:"next_index"`
	Complete bool  `json:"complete"`
	// Head is a hash of the file's first HeadLen bytes: when a file grows and its head is
	// unchanged, it was appended to and reading goes on from Next.
	Head    string `json:"head,omitempty"`
	HeadLen int64  `json:"head_len,omitempty"`
}

// headBytes is how much of a file's beginning identifies it.
const headBytes = 4096

// Run reads every matching file once, or keeps watching when configured.
func (s *Source) Run(ctx context.Context) error {
	if !s.cfg.Watch {
		if err := s.pass(ctx, nil); err != nil && ctx.Err() == nil {
			return err
		}
		return nil
	}
	waker := watch.New(nil, s.cfg.PollInterval, s.log)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go waker.Run(wctx)
	for {
		if err := s.pass(ctx, waker); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if !waker.Wait(ctx) {
			return nil
		}
	}
}

// pass reads every file that is new or changed since its cursor.
func (s *Source) pass(ctx context.Context, waker *watch.Waker) error {
	paths, err := s.list(waker)
	if err != nil {
		return err
	}
	var young time.Duration // the shortest wait until a file left for later settles
	for _, p := range paths {
		if ctx.Err() != nil {
			return nil
		}
		if waker != nil {
			if info, err := os.Stat(p); err == nil {
				if age := time.Since(info.ModTime()); age < s.cfg.SettleTime {
					if wait := s.cfg.SettleTime - age; young == 0 || wait < young {
						young = wait
					}
					continue
				}
			}
		}
		if err := s.file(ctx, p); err != nil {
			return err
		}
	}
	if young > 0 {
		time.AfterFunc(young, waker.Kick)
	}
	return nil
}

// list returns the matching files under the configured paths, sorted, and has the waker
// watch every directory on the way.
func (s *Source) list(waker *watch.Waker) ([]string, error) {
	var out []string
	for _, root := range s.cfg.Paths {
		info, err := os.Stat(root)
		if err != nil {
			return nil, fmt.Errorf("files: %w", err)
		}
		if !info.IsDir() {
			out = append(out, filepath.Clean(root))
			if waker != nil {
				waker.Add(filepath.Dir(root))
			}
			continue
		}
		err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != root && strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir
				}
				if waker != nil {
					waker.Add(path)
				}
				return nil
			}
			if d.Type().IsRegular() && s.included(d.Name()) {
				out = append(out, filepath.Clean(path))
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("files: walk %s: %w", root, err)
		}
	}
	sort.Strings(out)
	return out, nil
}

func (s *Source) included(name string) bool {
	if len(s.cfg.Include) == 0 {
		return true
	}
	for _, p := range s.cfg.Include {
		if ok, _ := filepath.Match(p, name); ok {
			return true
		}
	}
	return false
}

// file reads one file from its cursor on. Read and publish failures return an error (the
// caller retries); a broken file is dead-lettered and marked done until it changes.
func (s *Source) file(ctx context.Context, path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("files: %w", err)
	}
	var st state
	if _, err := s.cursors.Load(ctx, path, &st); err != nil {
		return err
	}
	if st.Size == info.Size() && st.ModTime == info.ModTime().UnixNano() && st.Complete {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("files: %w", err)
	}
	defer f.Close()
	if st.Size != info.Size() || st.ModTime != info.ModTime().UnixNano() {
		// Changed: appended to (same head, larger) keeps the records done; else start over.
		appended := st.Head != "" && info.Size() > st.Size && headHash(f, st.HeadLen) == st.Head
		next := 0
		if appended {
			next = st.Next
		}
		headLen := min(info.Size(), headBytes)
		st = state{Size: info.Size(), ModTime: info.ModTime().UnixNano(), Next: next, Head: headHash(f, headLen), HeadLen: headLen}
	}
	data, err := split.ReadAll(f, s.limits)
	if err != nil {
		return s.broken(ctx, path, st, err)
	}
	pos := "file:" + path
	batch := s.sink.NewBatch(pos)
	chunk := 0
	total := st.Next // records in the file: where an append goes on from
	flush := func(next int) error {
		if err := s.sink.PublishWait(ctx, batch); err != nil {
			return err
		}
		st.Next = next
		chunk = 0
		return s.cursors.Save(ctx, path, st)
	}
	emit := func(r split.Record) error {
		total = max(total, r.Index+1)
		if r.Index < st.Next {
			return nil
		}
		if err := batch.Add(sink.Record{Position: pos + "#" + strconv.Itoa(r.Index), Data: r.Data, Time: r.Time}); err != nil {
			return err
		}
		chunk++
		if chunk >= s.cfg.ChunkRecords {
			return flush(r.Index + 1)
		}
		return nil
	}
	reject := func(r split.Rejected) error {
		total = max(total, r.Index+1)
		if r.Index < st.Next {
			return nil
		}
		return s.sink.Reject(ctx, pos+"#"+strconv.Itoa(r.Index), r.Data, r.Reason)
	}
	splitter := split.New(s.limits)
	if err := splitter.Split(data, emit, reject); err != nil {
		if split.Unreadable(err) {
			return s.broken(ctx, path, st, err)
		}
		return err
	}
	if err := s.sink.PublishWait(ctx, batch); err != nil {
		return err
	}
	st.Complete = true
	st.Next = total
	s.log.Debug("file read", "source", s.sink.Source(), "path", path)
	return s.cursors.Save(ctx, path, st)
}

// headHash hashes the first n bytes of f.
func headHash(f *os.File, n int64) string {
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:12])
}

// broken dead-letters a file that cannot be read and marks it done until it changes.
func (s *Source) broken(ctx context.Context, path string, st state, reason error) error {
	s.log.Warn("skipping unreadable file", "source", s.sink.Source(), "path", path, "error", reason)
	if err := s.sink.Reject(ctx, "file:"+path, nil, reason); err != nil {
		return err
	}
	st.Complete = true
	return s.cursors.Save(ctx, path, st)
}
