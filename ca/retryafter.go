package ca

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ParseRetryAfter reads a Retry-After header value (RFC 9110 section
// 10.2.3): delay-seconds or an HTTP date, relative to now. It returns 0
// for an empty, unreadable, negative or past value, and is never negative:
// a delay too long for a time.Duration is the longest one, not a product
// that overflowed into a small or negative wait (found by the CA fuzz
// targets).
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil || errorsIsRange(err) && !strings.HasPrefix(v, "-") {
		switch {
		case secs < 0:
			return 0
		case err != nil || secs > math.MaxInt64/int64(time.Second):
			return math.MaxInt64
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func errorsIsRange(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}
