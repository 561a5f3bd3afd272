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
	// Terminal counts how often notify printed each finding; SlackPosts how often it posted
	// a Slack message for it; PagerDutyTriggers how many trigger events PagerDuty got per
	// dedup_key (the finding id).
	Terminal          map[string]int
	SlackPosts        map[string]int
	PagerDutyTriggers map[string]int
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
	r.SlackPosts = p.Slack.Posts()
	r.PagerDutyTriggers = p.PagerDuty.Triggers()
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
// table, and alerted (see CheckFindings).
func CheckExactlyOnce(t testing.TB, r Result, want *expect.Outcome, extraAlerts int) {
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

	CheckFindings(t, r, extraAlerts)
}

// CheckFindings checks that findings are stored once and alerted: every finding printed on
// the terminal, posted to Slack and triggered on PagerDuty, and nothing else alerted. Each
// destination may alert a finding more than once at most extraAlerts times in all: notify's
// ledger records a delivery after the receiver confirmed it, so a notify killed, or a NATS
// server lost, in between delivers that finding again (at most one per notify worker per
// crash); with no such fault, extraAlerts is 0 and every alert happens exactly once.
func CheckFindings(t testing.TB, r Result, extraAlerts int) {
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
	for _, d := range []struct {
		name   string
		counts map[string]int
	}{{"terminal", r.Terminal}, {"Slack", r.SlackPosts}, {"PagerDuty", r.PagerDutyTriggers}} {
		var never, repeated, unknown []string
		extra := 0
		for id := range set {
			switch c := d.counts[id]; {
			case c == 0:
				never = append(never, id)
			case c > 1:
				repeated = append(repeated, fmt.Sprintf("%s ×%d", id, c))
				extra += c - 1
			}
		}
		for id := range d.counts {
			if !set[id] {
				unknown = append(unknown, id)
			}
		}
		sort.Strings(never)
		sort.Strings(repeated)
		sort.Strings(unknown)
		if len(never) > 0 {
			t.Errorf("alerts: %d findings never reached %s, e.g. %v", len(never), d.name, head(never))
		}
		if extra > extraAlerts {
			t.Errorf("alerts: %s got %d alerts too many (allowed %d): %v", d.name, extra, extraAlerts, head(repeated))
		} else if extra > 0 {
			t.Logf("alerts: %s got %d repeated alerts, within the %d a crash may cause: %v", d.name, extra, extraAlerts, head(repeated))
		}
		if len(unknown) > 0 {
			t.Errorf("alerts: %s was alerted about %d findings not in NHI_FINDINGS, e.g. %v", d.name, len(unknown), head(unknown))
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
