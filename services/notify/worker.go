package notify

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nhiwatch/nhiwatch/services/notify/internal/dest"
)

// worker serializes the deliveries to one destination through a bounded queue: a slow or
// rate-limited destination holds back only the findings that go to it, and a full queue
// pushes back on the consumer instead of growing memory.
type worker struct {
	d    dest.Destination
	jobs chan job
}

type job struct {
	ctx  context.Context
	fn   func(context.Context) error
	done chan error
}

func newWorker(d dest.Destination, queue int) *worker {
	return &worker{d: d, jobs: make(chan job, queue)}
}

// run handles jobs until the queue is closed.
func (w *worker) run() {
	for j := range w.jobs {
		if j.ctx.Err() != nil {
			j.done <- j.ctx.Err()
			continue
		}
		j.done <- j.fn(j.ctx)
	}
}

// do queues fn and waits for its result, or for ctx.
func (w *worker) do(ctx context.Context, fn func(context.Context) error) error {
	j := job{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case w.jobs <- j:
	case <-ctx.Done():
		return fmt.Errorf("destination %s: queue full: %w", w.d.Name(), ctx.Err())
	}
	select {
	case err := <-j.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("destination %s: %w", w.d.Name(), ctx.Err())
	}
}

// retryMargin is the time kept back from the handler's deadline for the ledger write and
// the dead-letter publish after the last attempt.
const retryMargin = 2 * time.Second

// deliver sends n with retries: a transient failure is retried with exponential back-off,
// a rate-limited one after the wait the receiver asked for, while the context's deadline
// allows; a permanent failure returns at once. What is left over is retried by JetStream
// redelivery.
func deliver(ctx context.Context, d dest.Destination, n dest.Notice, onRetry func(error)) (dest.Receipt, error) {
	backoff := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx := ctx
		var cancel context.CancelFunc = func() {}
		if dl, ok := ctx.Deadline(); ok {
			actx, cancel = context.WithDeadline(ctx, dl.Add(-retryMargin))
		}
		rc, err := d.Deliver(actx, n)
		cancel()
		if err == nil || dest.IsPermanent(err) {
			return rc, err
		}
		wait := backoff
		if ra := dest.RetryAfter(err); ra > 0 {
			wait = ra
		} else if backoff < 4*time.Second {
			backoff *= 2
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait+retryMargin {
			return rc, err
		}
		if onRetry != nil {
			onRetry(err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return rc, errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
}
