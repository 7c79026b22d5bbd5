package scheduler_test

import (
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/acme"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/deploy"
	"github.com/certd/certd/internal/testenv"
	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

// Profiles, six-day certificates and IP identifiers (issue 19) against
// Pebble v2.10.3, which serves meta.profiles, "ip" identifiers and a real
// renewalInfo; Debian's Pebble 2.4 stands for a CA without profiles.

var quietPebble = []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0"}

// withProfile makes the world's issuer ask for profile.
func withProfile(profile string, required bool) func(*acme.Options) {
	return func(o *acme.Options) { o.Profile, o.ProfileRequired = profile, required }
}

// httpProofs proves every domain of the world over http-01 through the
// responder on Pebble's http port.
func (w *acmeWorld) httpProofs() {
	w.proofs = map[string]scheduler.Proof{}
	for _, d := range w.domains {
		w.proofs[d] = scheduler.Proof{CA: ca.Proof{Method: dcv.HTTPFile}, Target: dcv.Target{HTTP: "web"}}
	}
}

// A six-day certificate, compressed to seconds: the daemon (the
// scheduler's own loop, nothing kicked by the test) issues it and renews
// it several times, each renewal deployed before the previous
// certificate's emergency window, with no failure in between.
func TestACMEShortlivedRenewedByTheDaemon(t *testing.T) {
	t.Parallel()
	const life = 24 * time.Second // Pebble counts whole seconds
	w := newACMEWorld(t, acmeOpts{env: quietPebble, pebble210: true, profiles: map[string]testenv.PebbleProfile{
		"default":    testenv.Profile("ninety days, compressed", time.Hour),
		"shortlived": testenv.Profile("six days, compressed", life),
	}})
	w.httpProofs()
	w.tune = withProfile("shortlived", true)
	iss := w.issuer(t)
	x := w.issuing(w.st, iss)
	s, err := scheduler.New(scheduler.Options{Store: w.st, Work: x.Work, Schedule: "@every 1h"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, []scheduler.CertSpec{w.plan(nil).Spec}); err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer s.Stop(5 * time.Second)

	var leaves []*x509.Certificate
	deadline := time.Now().Add(4*life + 20*time.Second)
	for len(leaves) < 4 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		c, err := w.st.GetCertificate(ctx, "www")
		if err != nil {
			t.Fatal(err)
		}
		if c.Failures != 0 {
			t.Fatalf("attempt failed: %s\n%s", c.LastError, tail(w.pebble.Log()))
		}
		if c.CurrentVersion == 0 {
			continue
		}
		leaf := w.currentLeaf(t)
		if n := len(leaves); n == 0 || leaves[n-1].SerialNumber.Cmp(leaf.SerialNumber) != 0 {
			leaves = append(leaves, leaf)
		}
	}
	if len(leaves) < 4 {
		t.Fatalf("%d certificates within %s, want an issuance and 3 renewals by the daemon", len(leaves), 4*life+20*time.Second)
	}
	for k, l := range leaves {
		// The shortlived profile was sent and honoured (default: 1h).
		if got := l.NotAfter.Sub(l.NotBefore); got < life-2*time.Second || got > life {
			t.Fatalf("certificate %d lives %s, want the shortlived profile's %s", k, got, life)
		}
		if k == 0 {
			continue
		}
		prev := leaves[k-1]
		if em := scheduler.EmergencyTime(prev.NotBefore, prev.NotAfter); !l.NotBefore.Before(em) {
			t.Fatalf("renewal %d issued at %s, inside the predecessor's emergency window (from %s)", k, l.NotBefore, em)
		}
	}
	w.checkIssued(t)
}

// A profile the CA does not offer: required, the order fails at once,
// permanently, naming the certificate and what the CA offers, before any
// order is placed; preferred, the CA's default is used.
func TestACMEProfileRequiredOrPreferred(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		pebble210 bool // false: Debian's Pebble 2.4, which has no profiles
		profile   string
		required  bool
		wantErr   string // "": issued
	}{
		{"2.4 required", false, "shortlived", true, "the CA advertises no profiles"},
		{"2.4 preferred", false, "shortlived", false, ""},
		{"2.10 unknown name required", true, "nonesuch", true, "it offers default, shortlived"},
		{"2.10 unknown name preferred", true, "nonesuch", false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newACMEWorld(t, acmeOpts{env: quietPebble, pebble210: tc.pebble210})
			w.httpProofs()
			w.tune = withProfile(tc.profile, tc.required)
			iss := w.issuer(t)
			err := w.issuing(w.st, iss).Work(ctx, w.due(t))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("a preferred profile the CA lacks must fall back to its default: %v", err)
				}
				w.checkIssued(t)
				return
			}
			var ae *acme.Error
			if !errors.As(err, &ae) || !ae.Permanent || !ca.IsPermanent(err) {
				t.Fatalf("want a permanent ACME error, got %v", err)
			}
			for _, want := range []string{"certificate www", `profile "` + tc.profile + `"`, tc.wantErr} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q does not say %q", err, want)
				}
			}
			if n := orderCount(t, iss); n != 0 {
				t.Fatalf("Pebble lists %d orders; a refused profile must not be ordered", n)
			}
		})
	}
}

// An IP-address certificate (RFC 8738) next to a DNS name: the "ip"
// identifier proved over http-01 (Pebble's VA fetches the token from
// 127.0.0.1 itself, where the responder listens), the CSR and the leaf
// carry the address as an IP SAN, and the deployed set verifies.
func TestACMEIPAddressOverHTTP01(t *testing.T) {
	t.Parallel()
	w := newACMEWorld(t, acmeOpts{env: quietPebble, pebble210: true})
	w.domains = []string{"www.example.com", "127.0.0.1"}
	w.httpProofs()
	w.tune = withProfile("shortlived", true)
	iss := w.issuer(t)
	if err := w.issuing(w.st, iss).Work(ctx, w.due(t)); err != nil {
		t.Fatalf("%v\npebble log:\n%s", err, tail(w.pebble.Log()))
	}
	c, err := w.st.GetCertificate(ctx, "www")
	if err != nil || c.State != store.StateValid {
		t.Fatalf("certificate: %+v %v", c, err)
	}
	live := deploy.Inspect(w.plan(nil).Deploy)
	if live.Missing || !live.KeyMatches || live.Fingerprint != c.Current.Fingerprint {
		t.Fatalf("live set: %+v", live)
	}
	pemData, err := os.ReadFile(filepath.Join(w.plan(nil).Deploy.LivePath(), deploy.FullchainFile))
	if err != nil {
		t.Fatal(err)
	}
	chain, err := parseCerts(pemData)
	if err != nil || len(chain) < 2 {
		t.Fatalf("fullchain: %d certificates, %v", len(chain), err)
	}
	leaf := chain[0]
	if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) ||
		len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "www.example.com" {
		t.Fatalf("leaf SANs: DNS %v IP %v", leaf.DNSNames, leaf.IPAddresses)
	}
	rootsPEM, _ := os.ReadFile(w.pebble.RootsFile(t))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootsPEM)
	inter := x509.NewCertPool()
	for _, ic := range chain[1:] {
		inter.AddCert(ic)
	}
	for _, name := range []string{"127.0.0.1", "www.example.com"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter}); err != nil {
			t.Fatalf("the deployed leaf does not verify for %s: %v", name, err)
		}
	}
	db := openRaw(t, filepath.Join(w.dir, "certd.db"))
	defer db.Close()
	var files int
	if err := db.QueryRow("SELECT count(*) FROM dcv_artefacts WHERE kind = 'http-file' AND state = 'removed'").Scan(&files); err != nil || files != 2 {
		t.Fatalf("%d http-01 token files served and removed, want 2 (%v)", files, err)
	}
}

// ARI against Pebble 2.10.3's own renewalInfo (the proxy's tests cover
// the answers Pebble cannot be made to give), for a six-day certificate:
// after issuance certd reads the window and, as Pebble's Retry-After (6h)
// comes before it, asks again then; asked inside the window, it renews
// at once, naming its predecessor in "replaces", which Pebble checks and
// accepts.
func TestACMERenewalFollowsPebbleRenewalInfo(t *testing.T) {
	t.Parallel()
	w := newACMEWorld(t, acmeOpts{env: quietPebble, pebble210: true})
	w.tune = withProfile("shortlived", true)
	iss := w.issuer(t)
	x := w.issuing(w.st, iss)
	before := time.Now()
	if err := x.Work(ctx, w.due(t)); err != nil {
		t.Fatalf("%v\n%s", err, tail(w.pebble.Log()))
	}
	first := w.currentLeaf(t)
	if life := first.NotAfter.Sub(first.NotBefore); life < 6*24*time.Hour-time.Minute || life > 6*24*time.Hour {
		t.Fatalf("shortlived certificate lives %s, want six days", life)
	}
	win, err := iss.RenewalWindow(ctx, first)
	if err != nil {
		t.Fatalf("Pebble's renewalInfo: %v", err)
	}
	emergency := scheduler.EmergencyTime(first.NotBefore, first.NotAfter)
	if !win.Valid() || win.RetryAfter != 6*time.Hour || !win.Start.After(first.NotBefore) || !win.End.Before(emergency) {
		t.Fatalf("window %+v for a certificate valid %s to %s", win, first.NotBefore, first.NotAfter)
	}
	c, _ := w.st.GetCertificate(ctx, "www")
	if c.NextAction != scheduler.ActionARI || c.NextActionAt.Before(before.Add(6*time.Hour)) || c.NextActionAt.After(time.Now().Add(6*time.Hour)) {
		t.Fatalf("next %s at %s, want an ARI check after Pebble's Retry-After (6h)", c.NextAction, c.NextActionAt)
	}
	// Asked again inside the window (the issuing has no Rand: certd picks
	// the window's middle), it renews now.
	inside := win.Start.Add(win.End.Sub(win.Start)/2 + time.Minute)
	late := &scheduler.Issuing{Store: w.st, Plans: x.Plans, Deployer: x.Deployer, ARIMinRecheck: time.Second,
		Now: func() time.Time { return inside }}
	if err := late.Work(ctx, w.setDue(t, scheduler.ActionARI)); err != nil {
		t.Fatalf("renewal with replaces: %v\n%s", err, tail(w.pebble.Log()))
	}
	if second := w.currentLeaf(t); second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("an ARI check inside Pebble's window did not renew")
	}
	w.checkIssued(t)
}

// Backoff at a six-day lifetime: from the default renewal time, the retry
// schedule (at its slowest jitter) fits many attempts before the
// emergency window, and after two failures the certificate is still far
// from expiry.
func TestBackoffFitsASixDayLifetime(t *testing.T) {
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	na := nb.Add(6 * 24 * time.Hour)
	at := scheduler.RenewalTime(nb, na, scheduler.Policy{RemainingFraction: 1.0 / 3}, 0) // the latest jitter allows
	emergency := scheduler.EmergencyTime(nb, na)
	attempts := 1
	for n := 1; ; n++ {
		// The slowest jitter (+20%), as Backoff draws it at worst.
		next := at.Add(time.Duration(float64(scheduler.Backoff(n, 0, nil)) * 1.2))
		if !next.Before(emergency) {
			break
		}
		at = next
		attempts++
		if n == 2 && na.Sub(at) < 24*time.Hour {
			t.Fatalf("after two failures only %s are left", na.Sub(at))
		}
	}
	if attempts < 7 {
		t.Fatalf("only %d attempts fit before the emergency window of a six-day certificate", attempts)
	}
}

// A certificate's own profile is sent over its account's (here the
// account names none): its certificate has the profile's lifetime.
func TestACMECertificateProfileOverTheAccount(t *testing.T) {
	t.Parallel()
	w := newACMEWorld(t, acmeOpts{env: quietPebble, pebble210: true, profiles: map[string]testenv.PebbleProfile{
		"default":    testenv.Profile("ninety days, compressed", time.Hour),
		"shortlived": testenv.Profile("six days, compressed", 30*time.Second),
	}})
	w.httpProofs()
	iss := w.issuer(t)
	x := w.issuing(w.st, iss)
	x.Plans = func(string) (scheduler.Plan, error) {
		p := w.plan(iss)
		p.Profile, p.ProfileRequired = "shortlived", true
		return p, nil
	}
	if err := x.Work(ctx, w.due(t)); err != nil {
		t.Fatal(err)
	}
	leaf := w.currentLeaf(t)
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life > time.Minute {
		t.Fatalf("the certificate lives %s: the certificate's profile was not sent", life)
	}
}
