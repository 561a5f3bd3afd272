// Package expect computes what the pipeline must end with for a set of files, without a
// pipeline: it reads each file the way an ingest files source does (ingest.ReadFile) and
// normalizes each record in process (normalize.Normalizer). The fault tests then demand that
// the real processes, killed and restarted, end with exactly that: every event stored once,
// every bad record dead-lettered once, nothing else.
//
// It follows the services as they grow: when normalize learns a new format, the events it
// yields move from "dead-lettered" to "stored" here and in the pipeline alike.
package expect

import (
	"errors"
	"strconv"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/services/ingest"
	"github.com/nhiwatch/nhiwatch/services/normalize"
)

// Source is a configured ingest source reading files.
type Source struct {
	Name     string
	Provider string
	// Format is what the source tells normalize ("cloudtrail", "gcp", "k8s" or "auto").
	Format  string
	Cluster string
}

// Outcome is what the pipeline must hold once it has drained.
type Outcome struct {
	// Records counts the records read from the files (good and bad).
	Records int
	// Events maps each event id to the record id it comes from.
	Events map[string]string
	// DeadLetters maps each dead-letter id (the Nats-Msg-Id of its NHI_DLQ message:
	// "<stage>:<record id>") to the reason.
	DeadLetters map[string]string
	// Skipped counts valid records that deliberately yield no event.
	Skipped int
}

// New returns an empty Outcome.
func New() *Outcome {
	return &Outcome{Events: map[string]string{}, DeadLetters: map[string]string{}}
}

// AddFile adds what the pipeline makes of the file at path (as the source sees it) read by
// src.
func (o *Outcome) AddFile(src Source, path string) error {
	n := normalize.NewNormalizer()
	now := time.Now()
	pos := "file:" + path
	err := ingest.ReadFile(path,
		func(index int, data []byte) error {
			o.Records++
			rid := events.RecordID(src.Name, pos+"#"+strconv.Itoa(index))
			ev, err := n.Normalize(normalize.Input{
				Data: data, Format: src.Format, Cluster: src.Cluster, Source: src.Name,
				RecordID: rid, Position: pos, ReceivedAt: now,
			})
			switch {
			case errors.Is(err, normalize.ErrSkipped):
				o.Skipped++
			case err != nil:
				o.DeadLetters[events.StageNormalize+":"+rid] = err.Error()
			default:
				// The same event read twice (two sources, a re-delivered file) is stored once.
				if _, dup := o.Events[ev.Id]; !dup {
					o.Events[ev.Id] = rid
				}
			}
			return nil
		},
		func(index int, reason error) error {
			o.Records++
			rid := events.RecordID(src.Name, pos+"#"+strconv.Itoa(index))
			o.DeadLetters[events.StageIngest+":"+rid] = reason.Error()
			return nil
		})
	if errors.Is(err, ingest.ErrUnreadable) {
		o.AddUnreadable(src, path, err.Error())
		return nil
	}
	return err
}

// AddUnreadable records a whole file the source dead-letters without reading a record.
func (o *Outcome) AddUnreadable(src Source, path, reason string) {
	o.DeadLetters[events.StageIngest+":"+events.RecordID(src.Name, "file:"+path)] = reason
}

// CountStage counts the dead letters of one stage.
func (o *Outcome) CountStage(stage string) int {
	n := 0
	for id := range o.DeadLetters {
		if len(id) > len(stage) && id[:len(stage)+1] == stage+":" {
			n++
		}
	}
	return n
}
