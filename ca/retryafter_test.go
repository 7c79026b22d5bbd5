package ca_test

import (
	"math"
	"testing"
	"time"

	"github.com/certd/certd/ca"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2015, 10, 21, 7, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"120":                           2 * time.Minute,
		" 30 ":                          30 * time.Second,
		"-5":                            0,
		"soon":                          0,
		"Wed, 21 Oct 2015 07:28:00 GMT": 28 * time.Minute,
		"Wed, 21 Oct 2015 06:28:00 GMT": 0,
		"9223372036854775807":           math.MaxInt64,
		"18446744074":                   math.MaxInt64, // × 1e9 wraps to a few seconds
		"99999999999999999999999":       math.MaxInt64,
		"-99999999999999999999999":      0,
	} {
		if got := ca.ParseRetryAfter(in, now); got != want {
			t.Errorf("%q: got %v, want %v", in, got, want)
		}
	}
}
