package harness

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/nhiwatch/nhiwatch/tests/internal/expect"
	"github.com/nhiwatch/nhiwatch/tests/internal/inspect"
)

// Result is what a drained pipeline holds.
type Result struct {
	Events      inspect.Stored
	DeadLetters []inspect.DeadLetter
	// Findings are the finding ids in NHI_FINDINGS, one entry per message.
	Findings []string
	// FindingRows are the distinct finding ids in the findings table; FindingsFinal its
	// count with FINAL.
	FindingRows   map[string]bool
	FindingsFinal uint64
	// Terminal counts how often notify printed each finding.
	Terminal map[string]int
}

// Result reads everything the pipeline stored.
func (p *Pipeline) Result(ctx context.Context) (Result, error) {
	var r Result
	var err error
	if r.Events, err = inspect.Events(ctx, p.CH); err != nil {
		return r, err
	}
	if r.DeadLetters, err = inspect.DeadLetters(ctx, p.JS); err != nil {
		return r, err
	}
	if r.Findings, err = inspect.FindingIDs(ctx, p.JS); err != nil {
		return r, err
	}
	if r.FindingRows, r.FindingsFinal, err = inspect.Findings(ctx, p.CH); err != nil {
		return r, err
	}
	if r.Terminal, err = p.TerminalFindings(); err != nil {
		return r, err
	}
	return r, nil
}

// FindingSet is the distinct finding ids of NHI_FINDINGS.
func (r Result) FindingSet() map[string]bool {
	out := make(map[string]bool, len(r.Findings))
	for _, id := range r.Findings {
		out[id] = true
	}
	return out
}

// CheckExactlyOnce fails t for every way r differs from want: every expected event stored
// once (count with FINAL = distinct ids = expected), no other event; every expected dead
// letter in NHI_DLQ once, no other; every finding once in NHI_FINDINGS and in the findings
// table; every finding printed by notify at least once, and exactly once when alertsOnce.
func CheckExactlyOnce(t testing.TB, r Result, want *expect.Outcome, alertsOnce bool) {
	t.Helper()
	n := uint64(len(want.Events))
	if r.Events.Final != n || r.Events.Distinct != n {
		t.Errorf("events: count() FINAL = %d, uniqExact(event_id) = %d, want %d of each (%d rows before merges)",
			r.Events.Final, r.Events.Distinct, n, r.Events.Rows)
	}
	missing, extra := diff(keys(want.Events), r.Events.IDs)
	if len(missing) > 0 {
		t.Errorf("events: %d acknowledged records never reached ClickHouse, e.g. %s", len(missing), sample(missing, want.Events))
	}
	if len(extra) > 0 {
		t.Errorf("events: %d events in ClickHouse that no record yields, e.g. %v", len(extra), head(extra))
	}

	dl := map[string]int{}
	for _, d := range r.DeadLetters {
		dl[d.ID]++
	}
	var dups []string
	for id, c := range dl {
		if c > 1 {
			dups = append(dups, fmt.Sprintf("%s ×%d", id, c))
		}
	}
	sort.Strings(dups)
	if len(dups) > 0 {
		t.Errorf("dead letters: %d stored more than once, e.g. %v", len(dups), head(dups))
	}
	got := map[string]bool{}
	for id := range dl {
		got[id] = true
	}
	missing, extra = diff(keys(want.DeadLetters), got)
	if len(missing) > 0 {
		t.Errorf("dead letters: %d bad records not in NHI_DLQ, e.g. %s", len(missing), sample(missing, want.DeadLetters))
	}
	if len(extra) > 0 {
		reasons := map[string]string{}
		for _, d := range r.DeadLetters {
			reasons[d.ID] = d.Error
		}
		t.Errorf("dead letters: %d in NHI_DLQ that should not be, e.g. %s", len(extra), sample(extra, reasons))
	}

	CheckFindings(t, r, alertsOnce)
}

// CheckFindings checks that findings are stored once and alerted.
func CheckFindings(t testing.TB, r Result, alertsOnce bool) {
	t.Helper()
	set := r.FindingSet()
	if len(set) != len(r.Findings) {
		t.Errorf("findings: NHI_FINDINGS holds %d messages for %d distinct findings", len(r.Findings), len(set))
	}
	if r.FindingsFinal != uint64(len(r.FindingRows)) {
		t.Errorf("findings: count() FINAL = %d for %d distinct ids", r.FindingsFinal, len(r.FindingRows))
	}
	missing, extra := diff(set, r.FindingRows)
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("findings: table and stream differ: %d only in the stream (%v), %d only in the table (%v)",
			len(missing), head(missing), len(extra), head(extra))
	}
	// Alerts. The terminal destination prints each finding it is given; a notify killed, or
	// a server lost, between printing and acknowledging prints that finding again on
	// redelivery, which is why only a run without either demands exactly one print.
	//
	// TODO(notify #7): once notify delivers to Slack and PagerDuty, point them at local fake
	// servers speaking their protocols and demand at most one alert per finding id there
	// whatever was killed (the NHI_ALERTS ledger's guarantee), and at least one.
	for id := range set {
		c := r.Terminal[id]
		switch {
		case c == 0:
			t.Errorf("alerts: finding %s was never printed by notify", id)
		case alertsOnce && c > 1:
			t.Errorf("alerts: finding %s printed %d times by a notify that was never killed", id, c)
		}
	}
	for id := range r.Terminal {
		if !set[id] {
			t.Errorf("alerts: notify printed finding %s, which is not in NHI_FINDINGS", id)
		}
	}
}

// CheckSameFindings fails t when r's findings are not those of an uninterrupted run.
func CheckSameFindings(t testing.TB, r, baseline Result) {
	t.Helper()
	missing, extra := diff(baseline.FindingSet(), r.FindingSet())
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("findings differ from the uninterrupted run: %d missing (%v), %d extra (%v)",
			len(missing), head(missing), len(extra), head(extra))
	}
	missing, extra = diff(baseline.FindingRows, r.FindingRows)
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("stored findings differ from the uninterrupted run: %d missing (%v), %d extra (%v)",
			len(missing), head(missing), len(extra), head(extra))
	}
}

func keys[V any](m map[string]V) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

// diff returns the keys of want missing from got and the keys of got not in want, sorted.
func diff(want, got map[string]bool) (missing, extra []string) {
	for k := range want {
		if !got[k] {
			missing = append(missing, k)
		}
	}
	for k := range got {
		if !want[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return missing, extra
}

func head(s []string) []string {
	if len(s) > 5 {
		return s[:5]
	}
	return s
}

func sample(ids []string, detail map[string]string) string {
	var parts []string
	for _, id := range head(ids) {
		parts = append(parts, fmt.Sprintf("%s (%s)", id, detail[id]))
	}
	return strings.Join(parts, ", ")
}
