package markmonitor

import (
	"context"
	"sync"
	"time"

	"github.com/certd/certd/internal/ctxtime"
)

// window is the account's request limit as a sliding log: at most n
// requests in any span. A token bucket of n a minute lets up to 2n through
// in some minute (a full bucket, then its refill); the API counts
// requests in a minute, so certd keeps the send times of the last n
// requests and sends the next only when the oldest is a span old. It is
// safe for concurrent use and shared by every call of one Client (one
// account).
type window struct {
	n     int
	span  time.Duration
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error

	mu   sync.Mutex
	sent []time.Time // send times, oldest first, at most n
}

func newWindow(n int, span time.Duration, now func() time.Time) *window {
	return &window{n: n, span: span, now: now, sleep: ctxtime.Sleep, sent: make([]time.Time, 0, n)}
}

// Wait takes a slot, waiting (honouring ctx) until the oldest of the last
// n requests is a span old.
func (w *window) Wait(ctx context.Context) error {
	for {
		w.mu.Lock()
		now := w.now()
		drop := 0
		for drop < len(w.sent) && now.Sub(w.sent[drop]) >= w.span {
			drop++
		}
		if drop > 0 {
			w.sent = append(w.sent[:0], w.sent[drop:]...)
		}
		if len(w.sent) < w.n {
			w.sent = append(w.sent, now)
			w.mu.Unlock()
			return nil
		}
		wait := w.sent[0].Add(w.span).Sub(now)
		w.mu.Unlock()
		if err := w.sleep(ctx, wait); err != nil {
			return err
		}
	}
}
