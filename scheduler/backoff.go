package scheduler

import (
	"math/rand/v2"
	"time"
)

// retrySchedule is the delay after the n-th consecutive failure (1-based),
// before jitter: quick first retries for blips, then slower ones so a
// broken account is not hammered. The last entry repeats.
var retrySchedule = [...]time.Duration{
	1 * time.Minute,
	10 * time.Minute,
	100 * time.Minute,
	6 * time.Hour,
}

// Backoff returns the delay before the next attempt after failures
// consecutive failures, with up to ±20% jitter drawn from r (so a fleet
// that failed together does not retry together). retryAfter, when later,
// wins: a CA's Retry-After is never cut short.
func Backoff(failures int, retryAfter time.Duration, r *rand.Rand) time.Duration {
	if failures < 1 {
		failures = 1
	}
	d := retrySchedule[min(failures, len(retrySchedule))-1]
	if r != nil {
		d = time.Duration(float64(d) * (0.8 + 0.4*r.Float64()))
	}
	return max(d, retryAfter)
}
