//go:build faults

package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/tests/internal/expect"
	"github.com/nhiwatch/nhiwatch/tests/internal/harness"
	"github.com/nhiwatch/nhiwatch/tests/internal/load"
)

// maxDeadLetterBytes bounds the copy of a refused record kept in NHI_DLQ (64 KiB, plus
// room for the redaction markers).
const maxDeadLetterBytes = 64<<10 + 4<<10

// TestPoison mixes hostile inputs into the load: invalid JSON, invalid UTF-8, a 10 MB
// record, nesting 1000 and 250 levels deep, a JSON value that is not a record, an object no
// normalizer understands, a gzip bomb inflating to 1 GiB, a truncated gzip file and a broken
// JSON document. Each must be dead-lettered once with its reason (Nhi-Error) and counted in a
// metric; every good record beside them must still be stored exactly once; and the run must
// take about as long as the same load without poison.
func TestPoison(t *testing.T) {
	s := seed(t)
	files, err := templates.Generate(loadSpec(s))
	if err != nil {
		t.Fatal(err)
	}
	poisons, err := templates.Poisons(s)
	if err != nil {
		t.Fatal(err)
	}

	var clean outcome
	t.Run("clean", func(t *testing.T) {
		clean = scenario{files: files, interval: 50 * time.Millisecond}.run(t)
		harness.CheckExactlyOnce(t, clean.res, clean.want, 0)
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("poisoned", func(t *testing.T) {
		extra := make([]load.File, len(poisons))
		for i, ps := range poisons {
			extra[i] = ps.File
		}
		all := interleave(files, extra)
		o := scenario{
			files: all, interval: 50 * time.Millisecond,
			want: func(p *harness.Pipeline) (*expect.Outcome, error) { return poisonedOutcome(p, files, poisons) },
		}.run(t)
		harness.CheckExactlyOnce(t, o.res, o.want, 0)
		checkPoisonReasons(t, o, poisons)

		ctx := context.Background()
		want := map[string]int{}
		for _, ps := range poisons {
			if ps.Stage != "" {
				want[ps.Stage]++
			}
		}
		ingestRejected, err := o.p.Metric(ctx, harness.Ingest, "nhiwatch_ingest_rejected")
		if err != nil {
			t.Fatal(err)
		}
		if int(ingestRejected) != o.want.CountStage(events.StageIngest) {
			t.Errorf("nhiwatch_ingest_rejected = %v, want %d", ingestRejected, o.want.CountStage(events.StageIngest))
		}
		normRejected, err := o.p.Metric(ctx, harness.Normalize, "nhiwatch_normalize_rejected")
		if err != nil {
			t.Fatal(err)
		}
		if int(normRejected) != o.want.CountStage(events.StageNormalize) {
			t.Errorf("nhiwatch_normalize_rejected = %v, want %d", normRejected, o.want.CountStage(events.StageNormalize))
		}
		t.Logf("poisons dead-lettered per stage: %v; clean run %v, poisoned run %v", want, clean.took.Round(time.Millisecond), o.took.Round(time.Millisecond))
		// Throughput kept: the poison must cost the pipeline little more than reading it.
		if bound := 2*clean.took + 20*time.Second; o.took > bound {
			t.Errorf("the poisoned run took %v, the clean one %v: over the bound %v", o.took, clean.took, bound)
		}
		if exits := o.p.UnexpectedExits(); len(exits) > 0 {
			t.Errorf("services exited on their own: %v", exits)
		}
	})
}

// poisonedOutcome is the clean load's outcome plus, per poison, its dead letter and the
// events of the good records beside it. The poison files are not read by expect: what must
// become of them is stated by the poison itself.
func poisonedOutcome(p *harness.Pipeline, files []load.File, poisons []load.Poison) (*expect.Outcome, error) {
	want, err := p.Expect(files, nil)
	if err != nil {
		return nil, err
	}
	srcs := p.Sources()
	for _, ps := range poisons {
		src, path := srcs[ps.File.Dir], p.Path(ps.File)
		for _, id := range ps.GoodEvents {
			want.Events[id] = ps.File.Rel()
		}
		switch {
		case ps.Unreadable():
			want.DeadLetters[ps.Stage+":"+events.RecordID(src.Name, "file:"+path)] = ps.Name
		case ps.Bad >= 0:
			want.DeadLetters[ps.Stage+":"+events.RecordID(src.Name, fmt.Sprintf("file:%s#%d", path, ps.Bad))] = ps.Name
		}
	}
	return want, nil
}

// checkPoisonReasons checks each poison's dead letter: its reason and its size.
func checkPoisonReasons(t *testing.T, o outcome, poisons []load.Poison) {
	t.Helper()
	byID := map[string]int{}
	for i, d := range o.res.DeadLetters {
		byID[d.ID] = i
	}
	srcs := o.p.Sources()
	for _, ps := range poisons {
		if ps.Stage == "" {
			continue
		}
		pos := "file:" + o.p.Path(ps.File)
		if !ps.Unreadable() {
			pos += fmt.Sprintf("#%d", ps.Bad)
		}
		id := ps.Stage + ":" + events.RecordID(srcs[ps.File.Dir].Name, pos)
		i, ok := byID[id]
		if !ok {
			continue // CheckExactlyOnce reported it
		}
		d := o.res.DeadLetters[i]
		if d.Stage != ps.Stage {
			t.Errorf("%s: dead-lettered by %q, want %q", ps.Name, d.Stage, ps.Stage)
		}
		if !ps.Reason.MatchString(d.Error) {
			t.Errorf("%s: Nhi-Error %q does not match %s", ps.Name, d.Error, ps.Reason)
		}
		if d.Size > maxDeadLetterBytes {
			t.Errorf("%s: the dead letter keeps %d bytes of it, more than %d", ps.Name, d.Size, maxDeadLetterBytes)
		}
		t.Logf("%s → NHI_DLQ (%s, %d bytes): %s", ps.Name, d.Stage, d.Size, d.Error)
	}
}
