package config_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/certd/certd/config"
)

func TestNormalizeIdentifier(t *testing.T) {
	cases := []struct {
		in, want string
		ip       bool
		err      string
	}{
		{"192.0.2.1", "192.0.2.1", true, ""},
		{" 2001:DB8::0:1 ", "2001:db8::1", true, ""},
		{"::ffff:192.0.2.1", "192.0.2.1", true, ""},
		{"::1", "::1", true, ""},
		{"fe80::1%eth0", "", true, "zone"},
		{"192.0.2.0/24", "", false, "not a valid host name"},
		{"Example.COM.", "example.com", false, ""},
		{"*.example.com", "*.example.com", false, ""},
	}
	for _, c := range cases {
		got, ip, err := config.NormalizeIdentifier(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: want error %q, got %q %v", c.in, c.err, got, err)
			}
			continue
		}
		if err != nil || got != c.want || ip != c.ip {
			t.Errorf("%q: got %q ip=%v %v, want %q ip=%v", c.in, got, ip, err, c.want, c.ip)
		}
	}
	if !config.IsIPAddress("2001:db8::1") || config.IsIPAddress("www.example.com") {
		t.Error("IsIPAddress")
	}
}

// IP addresses (IPv4 and IPv6) load for an ACME account proved over
// http, normalised, with their domain_dcv keys.
func TestIPAddressesLoadForACMEOverHTTP(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "certd.yaml")
	if err := os.WriteFile(main, []byte(`
accounts:
  le: {type: acme, directory: letsencrypt, profile: shortlived, profile_required: false}
dns:
  primary: {type: rfc2136, server: "127.0.0.1:53", key_name: k, key: env:T}
http:
  web: {type: webroot, root: /tmp}
certificates:
  - name: addr
    account: le
    dcv: {method: dns, provider: primary}
    domain_dcv:
      "2001:DB8::0:1": {method: http, target: web}
      192.0.2.1: {method: http, target: web}
    domains: [www.example.com, 192.0.2.1, "2001:DB8::0:1"]
    deploy: {dir: /srv/tls}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(main, opts())
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Certificates[0]
	if want := []string{"www.example.com", "192.0.2.1", "2001:db8::1"}; !slices.Equal(c.Domains, want) {
		t.Fatalf("domains %v, want %v", c.Domains, want)
	}
	for _, ip := range c.Domains[1:] {
		if m := c.DCVFor(ip); m == nil || m.Method != config.MethodHTTP {
			t.Fatalf("%s: method %+v, want http", ip, m)
		}
	}
}
