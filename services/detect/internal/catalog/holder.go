package catalog

import (
	"context"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// Holder keeps the catalog in force and reloads its file when the file changes. Readers call
// Get on every use; a reload swaps the whole catalog atomically. A file that no longer
// validates is refused with a log line saying why, and the previous catalog stays.
type Holder struct {
	path string
	log  *slog.Logger
	cur  atomic.Pointer[Catalog]
	gen  atomic.Uint32
	// Reloaded is called after every successful reload (may be nil).
	Reloaded func(*Catalog)

	modTime time.Time
	size    int64
}

// NewHolder loads the catalog at path, or holds the empty catalog when path is "".
func NewHolder(path string, log *slog.Logger) (*Holder, error) {
	h := &Holder{path: path, log: log}
	if path == "" {
		h.cur.Store(Empty())
		h.gen.Store(1)
		return h, nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	c, err := Load(path)
	if err != nil {
		return nil, err
	}
	h.modTime, h.size = st.ModTime(), st.Size()
	h.cur.Store(c)
	h.gen.Store(1)
	return h, nil
}

// Static returns a Holder of a fixed catalog (tests, tools).
func Static(c *Catalog) *Holder {
	h := &Holder{}
	h.cur.Store(c)
	h.gen.Store(1)
	return h
}

// Get returns the catalog in force.
func (h *Holder) Get() *Catalog { return h.cur.Load() }

// Generation increases with every successful reload, so callers can cache rule matches.
func (h *Holder) Generation() uint32 { return h.gen.Load() }

// Watch polls the file every interval until ctx ends and reloads it when its modification
// time or size changed. Polling works on every file system, including mounted ConfigMaps
// whose files are swapped through symlinks.
func (h *Holder) Watch(ctx context.Context, interval time.Duration) {
	if h.path == "" {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.Check()
		}
	}
}

// Check reloads the file once if it changed, and reports whether a new catalog is in force.
func (h *Holder) Check() bool {
	if h.path == "" {
		return false
	}
	st, err := os.Stat(h.path)
	if err != nil {
		h.log.Warn("catalog: cannot stat file; keeping the catalog in force", "path", h.path, "error", err)
		return false
	}
	if st.ModTime().Equal(h.modTime) && st.Size() == h.size {
		return false
	}
	h.modTime, h.size = st.ModTime(), st.Size()
	c, err := Load(h.path)
	if err != nil {
		h.log.Error("catalog: reload refused; keeping the catalog in force", "path", h.path, "error", err)
		return false
	}
	h.cur.Store(c)
	h.gen.Add(1)
	h.log.Info("catalog reloaded", "path", h.path, "rules", len(c.Rules))
	if h.Reloaded != nil {
		h.Reloaded(c)
	}
	return true
}
