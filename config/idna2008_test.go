package config_test

import (
	"strings"
	"testing"

	"github.com/certd/certd/config"
)

// TestNormalizeDomainFollowsIDNA2008: names UTS #46 keeps but IDNA2008
// (RFC 5892) forbids are refused, whether written in Unicode or as an
// A-label; the names IDNA2008 allows, context rules included, still pass.
func TestNormalizeDomainFollowsIDNA2008(t *testing.T) {
	cases := []struct{ in, want, err string }{
		{"i❤.example.com", "", "IDNA2008 does not allow U+2764"},
		{"😀.example.com", "", "IDNA2008 does not allow U+1F600"},
		{"xn--i-7iq.example.com", "", "IDNA2008 does not allow U+2764"},
		{"xn--ls8h.example.com", "", "IDNA2008 does not allow U+1F4A9"},
		{"a©.example", "", "IDNA2008 does not allow U+00A9"},
		{"a→b.example", "", "IDNA2008 does not allow U+2192"},
		{"x·y.example", "", "only in certain contexts"},
		{"a・b.example", "", "only in certain contexts"},
		{"ب٣۳.example", "", "not a valid host name"}, // the bidi rule refuses mixed digits first
		{"l·l.example", "xn--ll-0ea.example", ""},
		{"bücher.example", "xn--bcher-kva.example", ""},
		{"日本語.example", "xn--wgv71a119e.example", ""},
		{"ß.example", "xn--zca.example", ""},
		{"ς.example", "xn--3xa.example", ""},
		{"ア・イ.example", "xn--ccke4x.example", ""},
		{"*.bücher.example", "*.xn--bcher-kva.example", ""},
	}
	for _, c := range cases {
		got, err := config.NormalizeDomain(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: want error %q, got %q %v", c.in, c.err, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: got %q %v, want %q", c.in, got, err, c.want)
		}
	}
	if _, err := config.NormalizeDNSName("_acme-challenge.i❤.example.com"); err == nil || !strings.Contains(err.Error(), "IDNA2008") {
		t.Errorf("NormalizeDNSName accepted a symbol: %v", err)
	}
}
