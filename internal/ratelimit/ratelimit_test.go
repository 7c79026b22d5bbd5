package ratelimit

import (
	"context"
	"testing"
	"time"
)

func TestBucketPacesRequests(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var slept time.Duration
	b := New(10, 2, func() time.Time { return now }, func(_ context.Context, d time.Duration) error {
		slept += d
		now = now.Add(d)
		return nil
	})
	for range 12 {
		if err := b.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// 2 from the burst, then 10 at 10 a second: one second of waiting.
	if slept < 990*time.Millisecond || slept > 1010*time.Millisecond {
		t.Fatalf("waited %v, want about 1s", slept)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b2 := New(1, 1, func() time.Time { return now }, nil)
	_ = b2.Wait(ctx)
	if err := b2.Wait(ctx); err == nil {
		t.Fatal("a cancelled wait returned a token")
	}
}
