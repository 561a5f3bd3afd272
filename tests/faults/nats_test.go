//go:build faults

package faults

import (
	"context"
	"testing"
	"time"

	"github.com/nhiwatch/nhiwatch/tests/internal/harness"
)

// TestNATSRestart kill -9s the nats-server twice while a load flows and starts it again on
// the same store directory and port. JetStream recovers its streams, consumers, KV buckets
// and duplicate windows from file storage; the services reconnect, re-publish what was not
// acknowledged (same Nats-Msg-Id), and consumers get what they had not acknowledged again.
// Nothing acknowledged may be lost, nothing stored twice.
func TestNATSRestart(t *testing.T) {
	s := seed(t)
	files, err := templates.Generate(loadSpec(s))
	if err != nil {
		t.Fatal(err)
	}
	rng := newRNG(s, 10)
	const restarts = 2
	fault := func(ctx context.Context, p *harness.Pipeline) error {
		for i := 0; i < restarts; i++ {
			if err := sleep(ctx, jitter(rng, 500*time.Millisecond, 2*time.Second)); err != nil {
				return err
			}
			if err := p.NATS.Kill(); err != nil {
				return err
			}
			down := jitter(rng, 500*time.Millisecond, 2*time.Second)
			if err := sleep(ctx, down); err != nil {
				return err
			}
			start := time.Now()
			if err := p.NATS.Restart(); err != nil {
				return err
			}
			p.Logf("kill -9 nats-server (%d/%d), down for %v, JetStream back after %v", i+1, restarts, down.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		}
		return nil
	}
	o := scenario{files: files, interval: 150 * time.Millisecond, fault: fault}.run(t)
	if kills := o.p.NATS.Kills(); kills != restarts {
		t.Errorf("nats-server was killed %d times, want %d", kills, restarts)
	}
	// A delivery whose ledger write was lost with the server is made again.
	harness.CheckExactlyOnce(t, o.res, o.want, restarts*notifyWorkers)
	if exits := o.p.UnexpectedExits(); len(exits) > 0 {
		t.Errorf("services exited on their own while NATS was away (they must reconnect): %v", exits)
	}
}
