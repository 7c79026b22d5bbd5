// Package ratelimit is a token bucket: rate tokens a second, at most
// burst at once. Wait blocks (honouring ctx) until a token is free. Any
// package may import it; it imports nothing of certd.
package ratelimit

import (
	"context"
	"sync"
	"time"

	"github.com/certd/certd/internal/ctxtime"
)

// Bucket is safe for concurrent use. The zero value is not usable; use New.
type Bucket struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error

	mu     sync.Mutex
	tokens float64
	at     time.Time
}

// New returns a full bucket. now and sleep may be nil (the real clock).
func New(rate float64, burst int, now func() time.Time, sleep func(ctx context.Context, d time.Duration) error) *Bucket {
	if now == nil {
		now = time.Now
	}
	if sleep == nil {
		sleep = ctxtime.Sleep
	}
	if burst < 1 {
		burst = 1
	}
	return &Bucket{rate: rate, burst: float64(burst), now: now, sleep: sleep, tokens: float64(burst), at: now()}
}

// Wait takes a token, waiting for one if none is free.
func (b *Bucket) Wait(ctx context.Context) error {
	for {
		b.mu.Lock()
		now := b.now()
		b.tokens = min(b.burst, b.tokens+now.Sub(b.at).Seconds()*b.rate)
		b.at = now
		if b.tokens >= 1 {
			b.tokens--
			b.mu.Unlock()
			return nil
		}
		wait := time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
		b.mu.Unlock()
		if err := b.sleep(ctx, wait); err != nil {
			return err
		}
	}
}
