//go:build faults

package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/tests/internal/harness"
	"github.com/nhiwatch/nhiwatch/tests/internal/inspect"
)

// Bounds of TestClickHouseDown.
const (
	// outage is how long ClickHouse stays away from detect.
	outage = 12 * time.Second
	// maxRSSGrowth bounds how much detect's resident memory may grow while ClickHouse is
	// away: it holds at most one batch (store_batch_rows) per table while it retries, and
	// the backlog stays in JetStream.
	maxRSSGrowth = 24 << 20
	// maxDetectRSS bounds it absolutely.
	maxDetectRSS = 128 << 20
	// minBacklog is the NHI_EVENTS bytes that must pile up unstored during the outage for
	// the growth bound to prove anything: twice the bound.
	minBacklog = 2 * maxRSSGrowth
)

// TestClickHouseDown cuts ClickHouse away from detect (a proxy between them resets every
// connection) while a load flows, for longer than many flush intervals. The backlog must
// stay in JetStream, detect's memory must stay bounded, and once ClickHouse is back
// everything must drain, stored exactly once.
func TestClickHouseDown(t *testing.T) {
	s := seed(t)
	spec := loadSpec(s)
	spec.AWS, spec.GCP, spec.K8s, spec.PerFile = 50000, 1000, 1000, 500
	files, err := templates.Generate(spec)
	if err != nil {
		t.Fatal(err)
	}
	var (
		atCut, maxRSS          int64
		backlog, pending       uint64
		storedAtCut, storedEnd uint64
	)
	fault := func(ctx context.Context, p *harness.Pipeline) error {
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
		p.Proxy.Cut()
		cutAt := time.Now()
		p.Logf("ClickHouse cut away from detect (detect RSS %d MiB)", atCut>>20)
		// An insert that reached ClickHouse just before the cut may still land; after a
		// second nothing can.
		if err := sleep(ctx, time.Second); err != nil {
			return err
		}
		if storedAtCut, err = inspect.CountEvents(ctx, p.CH); err != nil {
			return err
		}
		for time.Since(cutAt) < outage {
			rss, err := p.Procs[harness.Detect].RSS()
			if err != nil {
				return fmt.Errorf("detect during the outage: %w", err)
			}
			maxRSS = max(maxRSS, rss)
			if err := sleep(ctx, 100*time.Millisecond); err != nil {
				return err
			}
		}
		if storedEnd, err = inspect.CountEvents(ctx, p.CH); err != nil {
			return err
		}
		cs, err := inspect.Consumers(ctx, p.JS)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if c.Name == "detect-store-events" {
				pending = c.Pending + c.AckPending
			}
		}
		if backlog, err = unstoredBytes(ctx, p); err != nil {
			return err
		}
		p.Logf("outage over after %v: detect RSS max %d MiB, %d NHI_EVENTS messages (%d MiB) waiting in JetStream",
			time.Since(cutAt).Round(time.Millisecond), maxRSS>>20, pending, backlog>>20)
		p.Proxy.Restore()
		return nil
	}
	o := scenario{
		files: files, interval: 20 * time.Millisecond, fault: fault,
		options: func(o *harness.Options) { o.StoreBatchRows = 2000 },
	}.run(t)

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
	harness.CheckExactlyOnce(t, o.res, o.want, true)
	if exits := o.p.UnexpectedExits(); len(exits) > 0 {
		t.Errorf("services exited on their own: %v", exits)
	}
}

// unstoredBytes estimates the NHI_EVENTS bytes detect has not stored yet: the stream's
// bytes times the share of messages still pending for the events writer.
func unstoredBytes(ctx context.Context, p *harness.Pipeline) (uint64, error) {
	st, err := p.JS.Stream(ctx, events.StreamEvents)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	cons, err := st.Consumer(ctx, "detect-store-events")
	if err != nil {
		return 0, err
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return 0, err
	}
	if info.State.Msgs == 0 {
		return 0, nil
	}
	waiting := ci.NumPending + uint64(ci.NumAckPending)
	return info.State.Bytes * waiting / info.State.Msgs, nil
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
