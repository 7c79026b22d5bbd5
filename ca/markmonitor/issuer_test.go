package markmonitor_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/markmonitor"
	"github.com/certd/certd/ca/markmonitor/mmsim"
	"github.com/certd/certd/dcv"
)

// An OV order placed while the organisation is still being validated
// waits: Fetch says ca.ErrPending (not permanent, Retry = the poll
// interval) with a Detail naming the organisation's validation, even with
// every domain proved; once DigiCert validates the organisation the
// order issues. The organisation was created once, by the first issuer,
// and found by name by the second; one order is in the ledger.
func TestOVWaitsForTheOrganisation(t *testing.T) {
	e := newEnv(t, func(o *mmsim.Options) { o.OrgValidation = 1000 * time.Hour })
	ov := func(o *markmonitor.IssuerOptions) {
		o.CertificateType = "SSL_OV_BASIC"
		o.PollInterval = 3 * time.Minute
	}
	is := e.issuer(t, ov)
	req := request(t, nil, freshNames()...)
	o := place(t, is, &req)
	e.prove(t, is, o, req)

	is2 := e.issuer(t, ov) // a restart: the organisation is found by name
	for range 2 {
		_, err := is2.Fetch(ctx, o, req)
		ce, ok := ca.AsError(err)
		if !errors.Is(err, ca.ErrPending) || !ok || ce.Permanent || ce.Ambiguous || ce.Retry != 3*time.Minute {
			t.Fatalf("fetch while the organisation is validated: %v, want ca.ErrPending with the poll interval", err)
		}
		if !strings.Contains(ce.Detail, "validation of organisation") || !strings.Contains(ce.Detail, orgName) ||
			strings.Contains(ce.Detail, "domain control") {
			t.Fatalf("detail %q does not say it waits for the organisation (and only for it)", ce.Detail)
		}
	}
	orgs := e.sim.Organizations(orgName)
	id, err := is2.EnsureOrganization(ctx)
	if err != nil || len(orgs) != 1 || orgs[0] != id {
		t.Fatalf("organisations %v, the second issuer's %s (%v): want one, the same", orgs, id, err)
	}
	if err := e.sim.ValidateOrganization(id); err != nil {
		t.Fatal(err)
	}
	e.verify(t, fetchUntil(t, is2, o, req), req)
	if n := e.sim.OrdersFor(req.Domains); n != 1 {
		t.Fatalf("%d orders, want 1", n)
	}
	if n := e.sim.Requests(mmsim.RouteCreateOrg); n != 1 {
		t.Fatalf("%d organisations created, want 1", n)
	}
}

// An EV order waits for its approver (DIGI_NEEDS_APPROVAL): Fetch says
// ca.ErrPending naming the approver's address, then issues once approved.
func TestEVWaitsForItsApprover(t *testing.T) {
	e := newEnv(t, nil)
	is := e.issuer(t, func(o *markmonitor.IssuerOptions) { o.CertificateType = "SSL_EV_BASIC" })
	req := request(t, nil, freshNames()...)
	o := place(t, is, &req)
	e.prove(t, is, o, req)
	_, err := is.Fetch(ctx, o, req)
	ce, ok := ca.AsError(err)
	if !errors.Is(err, ca.ErrPending) || !ok || ce.Permanent || !strings.Contains(ce.Detail, "approve") ||
		!strings.Contains(ce.Detail, "jane.doe@example.com") || !strings.Contains(ce.Detail, mmsim.StatusNeedsApproval) {
		t.Fatalf("fetch of an EV order awaiting approval: %v", err)
	}
	if err := e.sim.Approve(o.Ref); err != nil {
		t.Fatal(err)
	}
	e.verify(t, fetchUntil(t, is, o, req), req)
}

// A key change on an issued order is a reissue: same order, no purchase.
// Until the new certificate is issued Fetch does not hand back the old
// one; then it delivers one for the new key. The ledger holds one
// purchase, and the order two certificates.
func TestKeyChangeIsAReissue(t *testing.T) {
	e := newEnv(t, func(o *mmsim.Options) { o.StatusDelay = 200 * time.Millisecond })
	is := e.issuer(t, nil)
	names := freshNames()
	req := request(t, nil, names...)
	o := place(t, is, &req)
	e.prove(t, is, o, req)
	e.verify(t, fetchUntil(t, is, o, req), req)

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	req2 := request(t, rsaKey, names...)
	o2, err := is.ReissueRef(ctx, o.Ref, req2.CSR)
	if err != nil {
		t.Fatal(err)
	}
	if o2.Ref != o.Ref {
		t.Fatalf("reissue reference %s, want the order's, %s", o2.Ref, o.Ref)
	}
	if _, err := is.Fetch(ctx, o2, req2); !errors.Is(err, ca.ErrPending) {
		t.Fatalf("fetch right after the reissue: %v, want ca.ErrPending (never the old certificate)", err)
	}
	res := fetchUntil(t, is, o2, req2) // the names were validated in this order: no new proof
	e.verify(t, res, req2)
	if n := e.sim.OrdersFor(names); n != 1 {
		t.Fatalf("%d purchases, want 1", n)
	}
	if n := e.sim.Certificates(o.Ref); n != 2 {
		t.Fatalf("%d certificates in the order, want 2", n)
	}
	led := e.sim.Ledger()
	if len(led) != 2 || led[0].Reissue || !led[1].Reissue || led[1].OrderID != o.Ref {
		t.Fatalf("ledger %+v, want the order then its reissue", led)
	}
	// A reissue of an order that is not issued is refused (409, retried
	// later), and the CN cannot change.
	other := request(t, nil, "cn-change.example.com")
	_, err = is.ReissueRef(ctx, o.Ref, other.CSR)
	if ce, ok := ca.AsError(err); !ok || ce.Status != 400 || !ce.Permanent {
		t.Fatalf("a reissue changing the common name: %v, want a Permanent 400", err)
	}
}

// A paid order whose check failed is asked again in the same order: the
// first check (injected failure) leaves the domain pending with
// DigiCert's words; asking again (validate domains) passes it. Respond
// asks at most once per recheck_interval.
func TestFailedCheckAskedAgain(t *testing.T) {
	e := newEnv(t, nil)
	is := e.issuer(t, func(o *markmonitor.IssuerOptions) { o.RecheckInterval = time.Hour })
	req := request(t, nil, freshNames()...)
	o := place(t, is, &req)
	if err := waitTokens(t, is, o, req); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.FailNextCheck(o.Ref); err != nil {
		t.Fatal(err)
	}
	e.prove(t, is, o, req) // publishes and asks: the check fails (injected)
	auths, err := is.Authorizations(ctx, o, req)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range auths {
		if a.Status != ca.AuthPending || !strings.Contains(a.Detail, "injected") {
			t.Fatalf("%s: %s %q, want pending with the failed check's words", a.Domain, a.Status, a.Detail)
		}
	}
	if _, err := is.Fetch(ctx, o, req); !errors.Is(err, ca.ErrPending) || !strings.Contains(err.Error(), "domain control validation") {
		t.Fatalf("fetch: %v", err)
	}
	before := e.sim.Requests(mmsim.RouteValidate)
	got, err := is.Respond(ctx, auths[0], auths[0].Challenges[0])
	if err != nil || got.Status != ca.AuthPending || e.sim.Requests(mmsim.RouteValidate) != before {
		t.Fatalf("respond within recheck_interval: %+v %v (%d requests), want pending without asking", got, err,
			e.sim.Requests(mmsim.RouteValidate)-before)
	}
	is2 := e.issuer(t, nil) // recheck_interval 1ns
	auths, err = is2.Authorizations(ctx, o, req)
	if err != nil {
		t.Fatal(err)
	}
	got, err = is2.Respond(ctx, auths[0], auths[0].Challenges[0])
	if err != nil || got.Status != ca.AuthValid {
		t.Fatalf("respond after the interval: %+v %v, want valid", got, err)
	}
	if n := e.sim.Requests(mmsim.RouteValidate) - before; n != 1 {
		t.Fatalf("%d validate requests, want 1 (every pending domain in one)", n)
	}
	e.verify(t, fetchUntil(t, is2, o, req), req)
	if n := e.sim.OrdersFor(req.Domains); n != 1 {
		t.Fatalf("%d orders, want 1", n)
	}
}

// waitTokens waits until the order shows its DCV tokens.
func waitTokens(t *testing.T, is *markmonitor.Issuer, o ca.Order, req ca.Request) error {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		auths, err := is.Authorizations(ctx, o, req)
		if err != nil || len(auths) == len(req.Domains) {
			return err
		}
		if time.Now().After(deadline) {
			return errors.New("no tokens")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Each DCV method is published where the simulator (DigiCert) looks and
// checked for real: a TXT at _dnsauth, a CNAME in either form (certd's
// dns proofs mapped to dns_method cname), the HTTP file (downloaded as
// p7b); an HTTP file behind a redirect is not accepted; HTTP_TOKEN for a
// wildcard is refused before anything is ordered.
func TestDCVMethods(t *testing.T) {
	e := newEnv(t, nil)
	cases := []struct {
		name string
		mod  func(*markmonitor.IssuerOptions)
		how  ca.Proof
		want dcv.Method
	}{
		{"txt-dnsauth", func(o *markmonitor.IssuerOptions) { o.TXTName = markmonitor.TXTAtDNSAuth }, ca.Proof{Method: dcv.DNSTXT}, dcv.DNSTXT},
		{"dns-as-cname", func(o *markmonitor.IssuerOptions) { o.DNSMethod = markmonitor.MethodDNSCNAME }, ca.Proof{Method: dcv.DNSTXT}, dcv.DNSCNAME},
		{"cname-dnsauth", func(o *markmonitor.IssuerOptions) { o.CNAMEForm = markmonitor.CNAMEAtDNSAuth }, ca.Proof{Method: dcv.DNSCNAME}, dcv.DNSCNAME},
		{"http-p7b", func(o *markmonitor.IssuerOptions) { o.DownloadFormat = markmonitor.FormatP7B }, ca.Proof{Method: dcv.HTTPFile}, dcv.HTTPFile},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			is := e.issuer(t, c.mod)
			req := request(t, nil, freshNames()...)
			req.SentAt = time.Now()
			how := map[string]ca.Proof{req.Domains[0]: c.how, req.Domains[1]: c.how}
			o, err := is.SubmitWith(ctx, req, how)
			if err != nil {
				t.Fatal(err)
			}
			if err := waitTokens(t, is, o, req); err != nil {
				t.Fatal(err)
			}
			auths, _ := is.Authorizations(ctx, o, req)
			for _, a := range auths {
				if len(a.Challenges) != 1 || a.Challenges[0].Method != c.want {
					t.Fatalf("%s: challenges %+v, want one %s", a.Domain, a.Challenges, c.want)
				}
			}
			e.prove(t, is, o, req)
			e.verify(t, fetchUntil(t, is, o, req), req)
		})
	}
	t.Run("redirect", func(t *testing.T) {
		is := e.issuer(t, func(o *markmonitor.IssuerOptions) { o.DCVMethod = markmonitor.MethodHTTP })
		req := request(t, nil, freshNames()...)
		o := place(t, is, &req)
		e.site.redirect.Store(true)
		defer e.site.redirect.Store(false)
		e.prove(t, is, o, req)
		st, err := e.sim.OrderStatus(o.Ref)
		if err != nil || st.Status != mmsim.StatusPending || !strings.Contains(st.LastCheck[0], "redirect") {
			t.Fatalf("an HTTP file behind a redirect: %+v %v, want a failed check", st, err)
		}
	})
	t.Run("wildcard-http", func(t *testing.T) {
		is := e.issuer(t, nil)
		n := freshNames()
		req := request(t, nil, n[0], "*."+n[0])
		req.SentAt = time.Now()
		before := e.sim.Requests(mmsim.RouteCreateOrder)
		_, err := is.SubmitWith(ctx, req, map[string]ca.Proof{n[0]: {Method: dcv.HTTPFile}})
		if !ca.IsPermanent(err) || !strings.Contains(err.Error(), "wildcard") {
			t.Fatalf("HTTP_TOKEN with a wildcard: %v, want a Permanent refusal", err)
		}
		if n := e.sim.Requests(mmsim.RouteCreateOrder) - before; n != 0 {
			t.Fatalf("%d orders sent, want none", n)
		}
	})
	t.Run("wildcard-txt", func(t *testing.T) {
		is := e.issuer(t, nil)
		n := freshNames()
		req := request(t, nil, n[0], "*."+n[0])
		o := place(t, is, &req)
		e.prove(t, is, o, req)
		e.verify(t, fetchUntil(t, is, o, req), req)
	})
	t.Run("mixed-methods", func(t *testing.T) {
		is := e.issuer(t, nil)
		req := request(t, nil, freshNames()...)
		_, err := is.SubmitWith(ctx, req, map[string]ca.Proof{req.Domains[0]: {Method: dcv.HTTPFile}, req.Domains[1]: {Method: dcv.DNSTXT}})
		if !ca.IsPermanent(err) || !strings.Contains(err.Error(), "one DCV method") {
			t.Fatalf("two methods in one order: %v", err)
		}
	})
}

// Where DigiCert looks, per setting, as ChallengeLocator says it (a dry
// run publishes there).
func TestLocate(t *testing.T) {
	e := newEnv(t, nil)
	const tok = "certd-dry-run-0123abcd"
	cases := []struct {
		name string
		mod  func(*markmonitor.IssuerOptions)
		how  ca.Proof
		d    string
		want dcv.Challenge
		ok   bool
	}{
		{"txt", nil, ca.Proof{Method: dcv.DNSTXT}, "*.a.example.com",
			dcv.Challenge{Domain: "*.a.example.com", Method: dcv.DNSTXT, RecordName: "a.example.com", Value: tok, CARef: markmonitor.MethodDNSTXT}, true},
		{"txt-dnsauth", func(o *markmonitor.IssuerOptions) { o.TXTName = markmonitor.TXTAtDNSAuth }, ca.Proof{Method: dcv.DNSTXT, Delegated: true}, "a.example.com",
			dcv.Challenge{Domain: "a.example.com", Method: dcv.DNSTXT, RecordName: "_dnsauth.a.example.com", Value: tok, CARef: markmonitor.MethodDNSTXT}, true},
		{"txt-delegated-at-apex", nil, ca.Proof{Method: dcv.DNSTXT, Delegated: true}, "a.example.com", dcv.Challenge{}, false},
		{"cname", nil, ca.Proof{Method: dcv.DNSCNAME}, "a.example.com",
			dcv.Challenge{Domain: "a.example.com", Method: dcv.DNSCNAME, RecordName: tok + ".a.example.com", Value: "dcv.digicert.com",
				CARef: markmonitor.MethodDNSCNAME}, true},
		{"cname-dnsauth", func(o *markmonitor.IssuerOptions) { o.CNAMEForm = markmonitor.CNAMEAtDNSAuth }, ca.Proof{Method: dcv.DNSCNAME}, "a.example.com",
			dcv.Challenge{Domain: "a.example.com", Method: dcv.DNSCNAME, RecordName: "_dnsauth.a.example.com", Value: tok + ".dcv.digicert.com",
				CARef: markmonitor.MethodDNSCNAME}, true},
		{"http", nil, ca.Proof{Method: dcv.HTTPFile}, "a.example.com",
			dcv.Challenge{Domain: "a.example.com", Method: dcv.HTTPFile, Path: "/.well-known/pki-validation/fileauth.txt", Content: tok,
				CARef: markmonitor.MethodHTTP}, true},
		{"http-wildcard", nil, ca.Proof{Method: dcv.HTTPFile}, "*.a.example.com", dcv.Challenge{}, false},
		{"email", nil, ca.Proof{Method: dcv.Email}, "a.example.com", dcv.Challenge{}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch, ok := e.issuer(t, c.mod).Locate(c.d, c.how, tok)
			if ok != c.ok || ch != c.want {
				t.Fatalf("Locate: %+v %v, want %+v %v", ch, ok, c.want, c.ok)
			}
		})
	}
}

// An RSA key is ordered as algorithmHash RSA; a key that is neither RSA
// nor ECC is refused before anything is sent.
func TestAlgorithmFromTheKey(t *testing.T) {
	e := newEnv(t, nil)
	is := e.issuer(t, nil)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	req := request(t, key, freshNames()...)
	o := place(t, is, &req)
	e.prove(t, is, o, req)
	res := fetchUntil(t, is, o, req)
	if res.Leaf.PublicKeyAlgorithm != x509.RSA {
		t.Fatalf("algorithm %s", res.Leaf.PublicKeyAlgorithm)
	}
	bad := req
	bad.CSR = []byte("not a CSR")
	if _, err := is.Submit(ctx, bad); !ca.IsPermanent(err) {
		t.Fatalf("a bad CSR: %v, want Permanent", err)
	}
}

// Cancel ends a pending order and Revoke an issued one: Fetch then says
// ca.ErrRejected (Permanent). An issued order cannot be cancelled (409:
// not Permanent, the order's state decides), and Authorizations of an
// order that is over offers nothing.
func TestCancelAndRevoke(t *testing.T) {
	e := newEnv(t, nil)
	is := e.issuer(t, nil)
	req := request(t, nil, freshNames()...)
	o := place(t, is, &req)
	if err := is.CancelRef(ctx, o.Ref); err != nil {
		t.Fatal(err)
	}
	if _, err := is.Fetch(ctx, o, req); !errors.Is(err, ca.ErrRejected) || !ca.IsPermanent(err) || !strings.Contains(err.Error(), mmsim.StatusCanceled) {
		t.Fatalf("fetch of a cancelled order: %v", err)
	}
	if auths, err := is.Authorizations(ctx, o, req); err != nil || len(auths) != 0 {
		t.Fatalf("authorizations of a cancelled order: %v %v", auths, err)
	}

	req2 := request(t, nil, freshNames()...)
	o2 := place(t, is, &req2)
	e.prove(t, is, o2, req2)
	fetchUntil(t, is, o2, req2)
	err := is.CancelRef(ctx, o2.Ref)
	if ce, ok := ca.AsError(err); !ok || ce.Status != 409 || ce.Permanent || ce.Ambiguous {
		t.Fatalf("cancelling an issued order: %v, want a 409 that is neither permanent nor ambiguous", err)
	}
	if err := is.RevokeRef(ctx, o2.Ref, "key compromise"); err != nil {
		t.Fatal(err)
	}
	if _, err := is.Fetch(ctx, o2, req2); !errors.Is(err, ca.ErrRejected) {
		t.Fatalf("fetch of a revoked order: %v", err)
	}
	if err := is.RevokeRef(ctx, "not/an/id", ""); !ca.IsPermanent(err) {
		t.Fatalf("a bad reference: %v", err)
	}
}
