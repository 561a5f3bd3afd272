package ingest

import (
	"errors"
	"fmt"
	"os"

	"github.com/nhiwatch/nhiwatch/services/ingest/internal/split"
)

// ErrUnreadable marks a container that cannot be read at all: not JSON, truncated gzip, over
// the size limit.
var ErrUnreadable = errors.New("unreadable container")

// ReadFile reads one log file of any supported form the way a files source does (gzip, JSON
// documents and arrays, JSON Lines, CloudTrail delivery files, EventLists, LookupEvents
// pages), with secrets removed, and calls emit for every record and reject for every record
// it cannot read. It is what the operator tools use to read files without a pipeline.
func ReadFile(path string, emit func(index int, data []byte) error, reject func(index int, reason error) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	lim := split.DefaultLimits()
	data, err := split.ReadAll(f, lim)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrUnreadable, path, err)
	}
	err = split.New(lim).Split(data,
		func(r split.Record) error { return emit(r.Index, r.Data) },
		func(r split.Rejected) error { return reject(r.Index, r.Reason) })
	if split.Unreadable(err) {
		return fmt.Errorf("%w: %s: %v", ErrUnreadable, path, err)
	}
	return err
}
