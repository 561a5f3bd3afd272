// Package watch wakes a file reader when something changes in the directories it reads:
// at once on a file-system notification (inotify, kqueue, …), and in any case every poll
// interval, which covers what notifications miss (network file systems, a full inotify
// table, directories created later).
package watch

import (
	"context"
	"log/slog"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Waker fires after changes in watched directories and on every interval.
type Waker struct {
	w        *fsnotify.Watcher
	interval time.Duration
	kick     chan struct{}
	log      *slog.Logger
}

// New watches dirs (not recursively). When notifications are unavailable it only polls.
func New(dirs []string, interval time.Duration, log *slog.Logger) *Waker {
	k := &Waker{interval: interval, kick: make(chan struct{}, 1), log: log}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		log.Warn("file notifications unavailable, polling only", "error", err)
		return k
	}
	k.w = w
	for _, d := range dirs {
		k.Add(d)
	}
	return k
}

// Add watches one more directory; a failure leaves it to polling.
func (k *Waker) Add(dir string) {
	if k.w == nil {
		return
	}
	if err := k.w.Add(dir); err != nil {
		k.log.Debug("cannot watch directory, polling it", "dir", dir, "error", err)
	}
}

// Run forwards notifications until ctx ends, then releases the watcher.
func (k *Waker) Run(ctx context.Context) {
	if k.w == nil {
		<-ctx.Done()
		return
	}
	defer k.w.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-k.w.Events:
			if !ok {
				return
			}
			k.Kick()
		case err, ok := <-k.w.Errors:
			if !ok {
				return
			}
			k.log.Debug("file notification error", "error", err)
			k.Kick()
		}
	}
}

// Kick wakes the reader as if a change was seen.
func (k *Waker) Kick() {
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

// Wait returns after a change or the poll interval, or false once ctx ends.
func (k *Waker) Wait(ctx context.Context) bool {
	t := time.NewTimer(k.interval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-k.kick:
		// A writer makes many notifications in a row: let them coalesce into one wake-up.
		select {
		case <-ctx.Done():
			return false
		case <-time.After(10 * time.Millisecond):
		}
		select {
		case <-k.kick:
		default:
		}
		return true
	case <-t.C:
		return true
	}
}
