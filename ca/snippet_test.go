package ca

import (
	"strings"
	"testing"
)

func TestSnippet(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		n          int
		want       string
	}{
		{"nginx 502", "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n<body><center><h1>502 Bad Gateway</h1></center></body></html>\n", 200, "an HTML page (502 Bad Gateway)"},
		{"no title", "<html><body>oops</body></html>", 200, "an HTML page"},
		{"escaped title", "<HTML><HEAD><TITLE>Service &amp; Maintenance\n</TITLE></HEAD></HTML>", 200, "an HTML page (Service & Maintenance)"},
		{"cut page", "<!doctype html><html><head><title>503 Service Unavail", 200, "an HTML page"},
		{"text", "  Internal\nServer\tError \x00 ", 200, "Internal Server Error"},
		{"json", `{"detail": "nope"}`, 200, `{"detail": "nope"}`},
		{"long", strings.Repeat("é", 30), 10, strings.Repeat("é", 10) + "…"},
		{"empty", "", 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Snippet([]byte(tc.body), tc.n); got != tc.want {
				t.Errorf("Snippet(%q, %d) = %q, want %q", tc.body, tc.n, got, tc.want)
			}
		})
	}
}
