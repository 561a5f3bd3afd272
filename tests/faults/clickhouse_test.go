//go:build faults

package faults

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/tests/internal/harness"
	"github.com/nhiwatch/nhiwatch/tests/internal/inspect"
	"github.com/nhiwatch/nhiwatch/tests/internal/load"
)

// Bounds of TestClickHouseDown.
const (
	// minOutage is how long ClickHouse stays away from detect at least; the outage lasts
	// until the whole load has been normalized, so all of it is backlog.
	minOutage = 10 * time.Second
	// maxRSSGrowth bounds how much detect's resident memory may grow while ClickHouse is
	// away. Its ClickHouse writers hold at most one batch (store_batch_rows) each while they
	// retry, and the backlog stays in JetStream; its detectors and grants model keep running
	// meanwhile (alerts do not wait on ClickHouse) and grow with the identities they meet,
	// which is what most of this allowance is for (17–29 MiB measured).
	maxRSSGrowth = 48 << 20
	// maxDetectRSS bounds it absolutely.
	maxDetectRSS = 384 << 20
	// minBacklog is the NHI_EVENTS bytes that must pile up unstored during the outage for
	// the growth bound to prove anything: more than the growth allowed, so a detect that
	// buffered the backlog in memory could not pass.
	minBacklog = 64 << 20
)

// TestClickHouseDown cuts ClickHouse away from detect (a proxy between them resets every
// connection) once detect has stored a first part of the load, and writes the rest of the
// load during the outage. The backlog must stay in JetStream (nothing stored meanwhile,
// detect's memory bounded while the backlog outgrows the bound), and once ClickHouse is back
// everything must drain, stored exactly once.
func TestClickHouseDown(t *testing.T) {
	s := seed(t)
	spec := loadSpec(s)
	spec.AWS, spec.GCP, spec.K8s, spec.PerFile, spec.PadBytes = 20000, 500, 500, 400, 3000
	files, err := templates.Generate(spec)
	if err != nil {
		t.Fatal(err)
	}
	const warmup = 3
	var (
		atCut, maxRSS          int64
		backlog, pending       uint64
		storedAtCut, storedEnd uint64
		outageTook             time.Duration
	)
	write := func(ctx context.Context, p *harness.Pipeline) error {
		if err := load.WriteAll(ctx, p.Root, files[:warmup], 0); err != nil {
			return err
		}
		// Cut once detect has stored something, so the outage starts mid-stream.
		if err := poll(ctx, time.Minute, func() (bool, error) {
			n, err := inspect.CountEvents(ctx, p.CH)
			return err == nil && n > 0, nil // an error: detect has not created the tables yet
		}); err != nil {
			return fmt.Errorf("detect stored nothing before the cut: %w", err)
		}
		var err error
		if atCut, err = p.Procs[harness.Detect].RSS(); err != nil {
			return err
		}
		maxRSS = atCut
		p.Proxy.Cut()
		cutAt := time.Now()
		p.Logf("ClickHouse cut away from detect (detect RSS %d MiB)", atCut>>20)
		wrote := make(chan error, 1)
		go func() { wrote <- load.WriteAll(ctx, p.Root, files[warmup:], 20*time.Millisecond) }()
		// An insert that reached ClickHouse just before the cut may still land; after a
		// second nothing can.
		if err := sleep(ctx, time.Second); err != nil {
			return err
		}
		if storedAtCut, err = inspect.CountEvents(ctx, p.CH); err != nil {
			return err
		}
		writing, calm := true, 0
		var lastRaw uint64
		for {
			rss, err := p.Procs[harness.Detect].RSS()
			if err != nil {
				return fmt.Errorf("detect during the outage: %w", err)
			}
			maxRSS = max(maxRSS, rss)
			select {
			case err := <-wrote:
				if err != nil {
					return err
				}
				writing = false
			default:
			}
			// The outage ends once the whole load is in NHI_EVENTS: the files written,
			// NHI_RAW no longer growing and normalize idle, for half a second.
			raw := rawLastSeq(ctx, p)
			if !writing && raw == lastRaw && normalized(ctx, p) {
				calm++
			} else {
				calm = 0
			}
			lastRaw = raw
			if calm >= 5 && time.Since(cutAt) >= minOutage {
				break
			}
			if time.Since(cutAt) > 2*time.Minute {
				return errors.New("the load was not normalized within two minutes of the cut")
			}
			if err := sleep(ctx, 100*time.Millisecond); err != nil {
				return err
			}
		}
		if storedEnd, err = inspect.CountEvents(ctx, p.CH); err != nil {
			return err
		}
		if pending, backlog, err = unstored(ctx, p); err != nil {
			return err
		}
		outageTook = time.Since(cutAt)
		p.Logf("outage over after %v: detect RSS max %d MiB, %d NHI_EVENTS messages (%d MiB) waiting in JetStream",
			outageTook.Round(time.Millisecond), maxRSS>>20, pending, backlog>>20)
		p.Proxy.Restore()
		return nil
	}
	o := scenario{files: files, write: write}.run(t)

	if storedEnd != storedAtCut {
		t.Errorf("ClickHouse went from %d to %d events while it was cut away from detect", storedAtCut, storedEnd)
	}
	if pending == 0 {
		t.Error("no backlog for detect in JetStream at the end of the outage")
	}
	if backlog < minBacklog {
		t.Errorf("the backlog in JetStream reached only %d MiB; the memory bounds prove nothing under %d MiB", backlog>>20, minBacklog>>20)
	}
	if maxRSS > maxDetectRSS || maxRSS-atCut > maxRSSGrowth {
		t.Errorf("detect's RSS went from %d MiB at the cut to %d MiB during the outage; bounds: %d MiB growth, %d MiB in all",
			atCut>>20, maxRSS>>20, maxRSSGrowth>>20, maxDetectRSS>>20)
	}
	if o.p.Proxy.Refused() == 0 {
		t.Error("detect never tried to reach ClickHouse during the outage")
	}
	harness.CheckExactlyOnce(t, o.res, o.want, 0)
	if exits := o.p.UnexpectedExits(); len(exits) > 0 {
		t.Errorf("services exited on their own: %v", exits)
	}
}

// normalized reports whether normalize has nothing left to read.
func normalized(ctx context.Context, p *harness.Pipeline) bool {
	cs, err := inspect.Consumers(ctx, p.JS)
	if err != nil {
		return false
	}
	for _, c := range cs {
		if c.Name == "normalize" {
			return !c.Busy()
		}
	}
	return false
}

// rawLastSeq is the last sequence of NHI_RAW, 0 when unknown.
func rawLastSeq(ctx context.Context, p *harness.Pipeline) uint64 {
	st, err := p.JS.Stream(ctx, events.StreamRaw)
	if err != nil {
		return 0
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.LastSeq
}

// unstored reports the NHI_EVENTS messages the events writer has not stored yet and their
// bytes (the stream's bytes times the share of its messages still pending for the writer).
func unstored(ctx context.Context, p *harness.Pipeline) (msgs, bytes uint64, err error) {
	st, err := p.JS.Stream(ctx, events.StreamEvents)
	if err != nil {
		return 0, 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	cons, err := st.Consumer(ctx, "detect-store-events")
	if err != nil {
		return 0, 0, err
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	if info.State.Msgs == 0 {
		return 0, 0, nil
	}
	msgs = ci.NumPending + uint64(ci.NumAckPending)
	return msgs, info.State.Bytes * msgs / info.State.Msgs, nil
}

// poll calls cond every 50ms until it reports true, it fails, or timeout passes.
func poll(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}
