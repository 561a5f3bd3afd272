//go:build faults

package faults

import (
	"testing"
	"time"

	"github.com/nhiwatch/nhiwatch/tests/internal/harness"
)

// TestKill9 runs the same load through an uninterrupted pipeline and then through one where
// a service is kill -9ed three times at random moments with work in flight. Every run must
// store every acknowledged record exactly once (count() FINAL = uniqExact(event_id) =
// records sent that normalize turns into events), dead-letter every bad record exactly once,
// end with the findings of the uninterrupted run, and alert each finding once on the
// terminal, Slack and PagerDuty (a killed notify may repeat the deliveries it had in flight).
func TestKill9(t *testing.T) {
	s := seed(t)
	files, err := templates.Generate(loadSpec(s))
	if err != nil {
		t.Fatal(err)
	}
	var baseline outcome
	t.Run("uninterrupted", func(t *testing.T) {
		baseline = scenario{files: files, interval: 150 * time.Millisecond}.run(t)
		harness.CheckExactlyOnce(t, baseline.res, baseline.want, 0)
		if exits := baseline.p.UnexpectedExits(); len(exits) > 0 {
			t.Errorf("services exited on their own: %v", exits)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	for i, svc := range harness.Services {
		t.Run(svc, func(t *testing.T) {
			t.Parallel()
			rng := newRNG(s, uint64(i+1))
			o := scenario{files: files, interval: 150 * time.Millisecond, fault: killRandomly(rng, svc, 3)}.run(t)
			if kills := o.p.Procs[svc].Kills(); kills != 3 {
				t.Errorf("%s was killed %d times, want 3", svc, kills)
			}
			extra := 0
			if svc == harness.Notify {
				extra = 3 * notifyWorkers
			}
			harness.CheckExactlyOnce(t, o.res, o.want, extra)
			harness.CheckSameFindings(t, o.res, baseline.res)
			if exits := o.p.UnexpectedExits(); len(exits) > 0 {
				t.Errorf("services exited on their own: %v", exits)
			}
		})
	}
}
