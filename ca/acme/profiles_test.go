package acme

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/mholt/acmez/v3/acme"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/dcv"
)

func TestProfileChoice(t *testing.T) {
	offered := acme.Directory{Meta: &acme.DirectoryMeta{Profiles: map[string]string{"classic": "", "shortlived": "6 days"}}}
	cases := []struct {
		name     string
		dir      acme.Directory
		profile  string
		required bool
		want     string
		err      string
	}{
		{"none configured", offered, "", true, "", ""},
		{"offered", offered, "shortlived", true, "shortlived", ""},
		{"unknown required", offered, "tlsserver", true, "", `certificate www: profile "tlsserver" is not offered by https://ca.example/dir (it offers classic, shortlived)`},
		{"unknown preferred", offered, "tlsserver", false, "", ""},
		{"no profiles required", acme.Directory{}, "shortlived", true, "", "the CA advertises no profiles"},
		{"no profiles preferred", acme.Directory{}, "shortlived", false, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			i, err := New(Options{Name: "le", Directory: "https://ca.example/dir", Accounts: nopAccounts{}, Profile: tc.profile, ProfileRequired: tc.required})
			if err != nil {
				t.Fatal(err)
			}
			got, err := i.profile(tc.dir, "certificate www")
			if tc.err != "" {
				var e *ca.Error
				if !errors.As(err, &e) || !e.Permanent || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %q %v, want a permanent error with %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q %v, want %q", got, err, tc.want)
			}
		})
	}
}

// The certificate's own profile wins over the account's, with its own
// required-or-preferred choice.
func TestProfileOfTheCertificate(t *testing.T) {
	offered := acme.Directory{Meta: &acme.DirectoryMeta{Profiles: map[string]string{"classic": "", "shortlived": "6 days"}}}
	i, err := New(Options{Name: "le", Directory: "https://ca.example/dir", Accounts: nopAccounts{}, Profile: "classic", ProfileRequired: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := i.profileFor(offered, ca.Request{CertName: "www", Profile: "shortlived", ProfileRequired: true}); err != nil || got != "shortlived" {
		t.Fatalf("the certificate's profile: %q %v", got, err)
	}
	if got, err := i.profileFor(offered, ca.Request{CertName: "www"}); err != nil || got != "classic" {
		t.Fatalf("the account's profile: %q %v", got, err)
	}
	if got, err := i.profileFor(offered, ca.Request{CertName: "www", Profile: "tlsserver"}); err != nil || got != "" {
		t.Fatalf("a preferred certificate profile the CA lacks: %q %v", got, err)
	}
	if _, err := i.profileFor(offered, ca.Request{CertName: "api", Profile: "tlsserver", ProfileRequired: true}); !ca.IsPermanent(err) || !strings.Contains(err.Error(), "certificate api") {
		t.Fatalf("a required certificate profile the CA lacks: %v", err)
	}
}

type nopAccounts struct{}

func (nopAccounts) LoadAccount(context.Context, string, string) (AccountRecord, bool, error) {
	return AccountRecord{}, false, nil
}

func (nopAccounts) SaveAccount(context.Context, AccountRecord) error { return nil }

func TestIdentifiersAndLocateForIPAddresses(t *testing.T) {
	got := identifiers([]string{"www.example.com", "192.0.2.1", "2001:db8::1", "*.example.com"})
	want := []acme.Identifier{{Type: "dns", Value: "www.example.com"}, {Type: "ip", Value: "192.0.2.1"},
		{Type: "ip", Value: "2001:db8::1"}, {Type: "dns", Value: "*.example.com"}}
	if !slices.Equal(got, want) {
		t.Fatalf("identifiers %v, want %v", got, want)
	}
	i := &Issuer{}
	if _, ok := i.Locate("192.0.2.1", ca.Proof{Method: dcv.DNSTXT}, "v"); ok {
		t.Error("dns-01 located for an IP address")
	}
	if ch, ok := i.Locate("2001:db8::1", ca.Proof{Method: dcv.HTTPFile}, "tok"); !ok || ch.Path != "/.well-known/acme-challenge/tok" || ch.Domain != "2001:db8::1" {
		t.Errorf("http-01 for an IPv6 address: %+v %v", ch, ok)
	}
}

// A CSR that lists IP addresses as DNS names is written again with them
// as IP SANs, signed by the order's key; any other CSR is sent as it is.
func TestCSRCarriesIPAddresses(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(names ...string) []byte {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: names[0]}, DNSNames: names}, key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	plain := mk("www.example.com")
	if got, err := csrFor(ca.Request{CSR: plain, Key: key}); err != nil || string(got) != string(plain) {
		t.Fatalf("a DNS-only CSR was rewritten: %v", err)
	}
	der, err := csrFor(ca.Request{CSR: mk("192.0.2.1", "www.example.com", "2001:db8::1"), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil || csr.CheckSignature() != nil {
		t.Fatalf("rewritten CSR: %v", err)
	}
	if !slices.Equal(csr.DNSNames, []string{"www.example.com"}) || csr.Subject.CommonName != "www.example.com" || len(csr.IPAddresses) != 2 ||
		!csr.IPAddresses[0].Equal(net.ParseIP("192.0.2.1")) || !csr.IPAddresses[1].Equal(net.ParseIP("2001:db8::1")) {
		t.Fatalf("CSR: CN %q DNS %v IP %v", csr.Subject.CommonName, csr.DNSNames, csr.IPAddresses)
	}
	if pub, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(key.Public()) {
		t.Fatal("the rewritten CSR is not for the order's key")
	}
	if _, err := csrFor(ca.Request{CSR: mk("192.0.2.1")}); err == nil {
		t.Fatal("a CSR with an IP address and no key at hand must fail")
	}
}
