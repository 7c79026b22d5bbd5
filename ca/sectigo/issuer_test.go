package sectigo_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/sectigo"
	"github.com/certd/certd/ca/sectigo/sectigosim"
	"github.com/certd/certd/dcv"
)

func orderNumber(t *testing.T, o ca.Order) string {
	t.Helper()
	num, certID, err := sectigo.ParseRef(o.Ref)
	if err != nil || certID == "" {
		t.Fatalf("reference %q: %v (want orderNumber/certificateID)", o.Ref, err)
	}
	return num
}

// An HTTP_CSR_HASH order: placed before its file is served, it reads as
// pending (Sectigo's check found nothing); once the file is served and
// Sectigo is asked to check again, it is issued for the request's key and
// names, with a chain to the simulator's root.
func TestHTTPOrderPendingThenIssued(t *testing.T) {
	e := newEnv(t, nil)
	is := e.issuer(t, 488, func(o *sectigo.IssuerOptions) { o.PollInterval = 2 * time.Minute })
	req := request(t, "www.example.com")
	how := map[string]ca.Proof{"www.example.com": {Method: dcv.HTTPFile}}
	chs, err := is.ChallengesBefore(req, how)
	if err != nil {
		t.Fatal(err)
	}
	req.SentAt = time.Now()
	o, err := is.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	num := orderNumber(t, o)

	_, err = is.Fetch(ctx, o, req)
	if !errors.Is(err, ca.ErrPending) || ca.RetryAfterOf(err) != 2*time.Minute || ca.IsPermanent(err) {
		t.Fatalf("fetch before the file is served: %v, want ca.ErrPending with the poll interval", err)
	}
	st, err := e.sim.Status(num)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != "pending" || st.Methods[0] != "HTTP_CSR_HASH" || !strings.Contains(st.LastCheck[0], "404") {
		t.Fatalf("simulator: %+v, want a failed HTTP check", st)
	}

	auths, err := is.Authorizations(ctx, o, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(auths) != 1 || auths[0].Status != ca.AuthPending || auths[0].Domain != "www.example.com" || auths[0].Challenges[0] != chs[0] {
		t.Fatalf("authorizations %+v, want one pending, offering the published file first", auths)
	}

	e.publish(t, chs)
	if _, err := is.Fetch(ctx, o, req); !errors.Is(err, ca.ErrPending) {
		t.Fatalf("fetch before Sectigo checks again: %v", err)
	}
	start := time.Now()
	a, err := is.Respond(ctx, auths[0], auths[0].Challenges[0])
	if err != nil || a.Status != ca.AuthPending {
		t.Fatalf("respond: %+v %v, want pending at once", a, err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatal("Respond waited")
	}
	if n := e.sim.Requests("AutoUpdateDCV"); n != 1 {
		t.Fatalf("AutoUpdateDCV called %d times, want 1", n)
	}
	res := fetchUntil(t, is, o, req)
	e.verify(t, res, req)
	if n := e.sim.OrdersFor(req.Domains); n != 1 {
		t.Fatalf("ledger: %d orders, want 1", n)
	}
	// A restarted certd reads the order as validated.
	auths, err = e.issuer(t, 488, nil).Authorizations(ctx, o, req)
	if err != nil || len(auths) != 1 || auths[0].Status != ca.AuthValid {
		t.Fatalf("authorizations after issuance: %+v %v", auths, err)
	}
	e.logsClean(t)
}

// A wildcard proved by CNAME_CSR_HASH, published before the order as
// certd does: the CNAME is found at the wildcard's base name over real DNS.
func TestCNAMEWildcardOrder(t *testing.T) {
	e := newEnv(t, nil)
	is := e.issuer(t, 489, func(o *sectigo.IssuerOptions) { o.DCVMethod = sectigo.MethodCNAME })
	req := request(t, "*.example.org")
	chs, err := is.ChallengesBefore(req, map[string]ca.Proof{"*.example.org": {Method: dcv.DNSCNAME}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(chs[0].RecordName, "_") || !strings.HasSuffix(chs[0].RecordName, ".example.org") || strings.Contains(chs[0].RecordName, "*") {
		t.Fatalf("record %s", chs[0].RecordName)
	}
	e.publish(t, chs)
	req.SentAt = time.Now()
	o, err := is.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	res := fetchUntil(t, is, o, req)
	e.verify(t, res, req)
	st, _ := e.sim.Status(orderNumber(t, o))
	if st.Methods[0] != "CNAME_CSR_HASH" || st.State != "issued" {
		t.Fatalf("simulator: %+v", st)
	}
}

// A multi-domain order with three methods: placed with the primary
// domain's method, the others set at once with AutoUpdateDCV (space- and
// comma-separated lists, which the simulator checks), the approver
// address listed first; issued once the email is approved.
func TestMultiDomainWithSeveralMethods(t *testing.T) {
	e := newEnv(t, nil)
	is := e.issuer(t, 492, func(o *sectigo.IssuerOptions) { o.MultiDomain = true })
	req := request(t, "a.example.com", "b.example.net", "c.example.org", "d.example.net")
	how := map[string]ca.Proof{
		"a.example.com": {Method: dcv.HTTPFile},
		"b.example.net": {Method: dcv.DNSCNAME},
		"c.example.org": {Method: dcv.Email, Email: "hostmaster@example.org"},
		"d.example.net": {Method: dcv.DNSCNAME},
	}
	chs, err := is.ChallengesBefore(req, how)
	if err != nil {
		t.Fatal(err)
	}
	e.publish(t, chs)
	req.SentAt = time.Now()
	o, err := is.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	num := orderNumber(t, o)
	st, _ := e.sim.Status(num)
	if got := strings.Join(st.Methods, " "); got != "HTTP_CSR_HASH CNAME_CSR_HASH EMAIL CNAME_CSR_HASH" {
		t.Fatalf("methods at Sectigo: %s", got)
	}
	if n := e.sim.Requests("AutoUpdateDCV"); n != 2 {
		t.Fatalf("AutoUpdateDCV called %d times, want 2 (the non-email domains, then the email one)", n)
	}
	if em := e.sim.Emails(); len(em) != 1 || em[0].Address != "hostmaster@example.org" || em[0].Domain != "c.example.org" {
		t.Fatalf("emails %+v", em)
	}
	if _, err := is.Fetch(ctx, o, req); !errors.Is(err, ca.ErrPending) {
		t.Fatalf("fetch before the email is approved: %v", err)
	}
	if err := e.sim.ClickEmailLink(num, "c.example.org"); err != nil {
		t.Fatal(err)
	}
	e.verify(t, fetchUntil(t, is, o, req), req)
}

// Error -42 is a *ca.Error with the configured Retry-After and status 429
// (so certd pauses the account), neither permanent nor ambiguous, and
// commits nothing.
func TestCallLimit(t *testing.T) {
	e := newEnv(t, func(o *sectigosim.Options) { o.CallLimit = 2 })
	c := e.client(t, password, func(o *sectigo.ClientOptions) { o.CallLimitRetry = 90 * time.Second })
	for range 2 {
		if _, err := c.DCVEmailAddresses(ctx, "example.com"); err != nil {
			t.Fatal(err)
		}
	}
	is, err := sectigo.NewIssuer(c, sectigo.IssuerOptions{Product: 488})
	if err != nil {
		t.Fatal(err)
	}
	req := request(t, "limited.example.com")
	req.SentAt = time.Now()
	_, err = is.Submit(ctx, req)
	ce, ok := ca.AsError(err)
	if !ok || ce.Code != "-42" || ce.Status != http.StatusTooManyRequests || ce.Retry != 90*time.Second || ce.Permanent || ce.Ambiguous ||
		errors.Is(err, ca.ErrAmbiguous) || ce.CA != "sectigo" || !strings.Contains(ce.Op, "AutoApplySSL") {
		t.Fatalf("call limit: %#v", err)
	}
	if n := e.sim.OrdersFor(req.Domains); n != 0 {
		t.Fatalf("%d orders committed under the call limit", n)
	}
	noSecret(t, "the call-limit error", err.Error())
}

// Credentials refused (-16) are permanent; neither the error nor the logs
// carry the password, even when the CA echoes it.
func TestCredentialsAndSecrets(t *testing.T) {
	e := newEnv(t, nil)
	const wrong = "wrong-canary-Zq81x"
	c := e.client(t, wrong, nil)
	is, err := sectigo.NewIssuer(c, sectigo.IssuerOptions{Product: 488})
	if err != nil {
		t.Fatal(err)
	}
	req := request(t, "creds.example.com")
	req.SentAt = time.Now()
	_, err = is.Submit(ctx, req)
	ce, ok := ca.AsError(err)
	if !ok || ce.Code != "-16" || !ce.Permanent || ce.Ambiguous {
		t.Fatalf("bad credentials: %v, want a permanent -16", err)
	}
	if strings.Contains(err.Error(), wrong) {
		t.Fatalf("the error discloses the password: %s", err)
	}

	// The right password, echoed back by the CA in an error message.
	e.sim.InjectFault("CollectSSL", sectigosim.Fault{Code: -4, Message: "The value of the loginPassword argument is invalid: " + password})
	is = e.issuer(t, 488, nil)
	_, err = is.Fetch(ctx, ca.Order{Ref: "3040824/1"}, req)
	if err == nil {
		t.Fatal("no error")
	}
	noSecret(t, "an error echoing the password", err.Error())
	if !strings.Contains(err.Error(), "[REDACTED]") {
		t.Fatalf("error %q: want the echoed password redacted", err)
	}
	_, err = is.Fetch(ctx, ca.Order{Ref: "999999/5"}, req) // unknown order: -4
	noSecret(t, "an error", err.Error())
	e.logsClean(t)
}

// Bad, missing or unknown parameters (-4, -3, -2) and a product without a
// price (-115) are permanent, naming the parameter.
func TestParameterErrorsArePermanent(t *testing.T) {
	e := newEnv(t, nil)
	c := e.client(t, password, nil)
	req := request(t, "param.example.com")
	cases := []struct {
		name   string
		fault  *sectigosim.Fault
		apply  sectigo.ApplyRequest
		code   string
		detail string
	}{
		{"invalid value", nil, sectigo.ApplyRequest{Product: 488, Days: 365, CSR: req.CSR, DCVMethod: sectigo.MethodCNAME, UniqueValue: strings.Repeat("A", 21)},
			"-4", "(parameter uniqueValue)"},
		{"no price", nil, sectigo.ApplyRequest{Product: 488, Days: 17, CSR: req.CSR, DCVMethod: sectigo.MethodCNAME}, "-115", "no price"},
		{"unknown product", nil, sectigo.ApplyRequest{Product: 999, Days: 365, CSR: req.CSR, DCVMethod: sectigo.MethodCNAME}, "-115", "product 999"},
		{"missing", &sectigosim.Fault{Code: -3, Message: "The csr argument is missing"}, sectigo.ApplyRequest{Product: 488, Days: 365, CSR: req.CSR},
			"-3", "(parameter csr)"},
		{"unrecognised", &sectigosim.Fault{Code: -2, Message: "dcvMethod is an unrecognised argument"}, sectigo.ApplyRequest{Product: 488, Days: 365, CSR: req.CSR, DCVMethod: sectigo.MethodCNAME},
			"-2", "(parameter dcvMethod)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fault != nil {
				e.sim.InjectFault("AutoApplySSL", *tc.fault)
			}
			_, err := c.Apply(ctx, tc.apply)
			ce, ok := ca.AsError(err)
			if !ok || ce.Code != tc.code || !ce.Permanent || ce.Ambiguous || !strings.Contains(ce.Error(), tc.detail) {
				t.Fatalf("got %v, want a permanent %s naming %q", err, tc.code, tc.detail)
			}
		})
	}
	if n := len(e.sim.Ledger()); n != 0 {
		t.Fatalf("%d orders committed", n)
	}
}

// A lost answer to AutoApplySSL (the order committed, the connection
// dropped), and a 5xx after it was sent, are ambiguous. Reconcile then
// never says "not found": it leaves the order to a person with what
// identifies it. A request never sent is absent.
func TestLostAnswerIsAmbiguousAndNeedsAnOperator(t *testing.T) {
	e := newEnv(t, nil)
	is := e.issuer(t, 488, nil)
	req := request(t, "lost.example.com")
	if _, found, err := is.Reconcile(ctx, req); found || err != nil {
		t.Fatalf("never sent: found=%v err=%v, want a definite absence", found, err)
	}
	e.sim.InjectFault("AutoApplySSL", sectigosim.Fault{DropAfterCommit: true})
	req.SentAt = time.Now()
	_, err := is.Submit(ctx, req)
	ce, ok := ca.AsError(err)
	if !errors.Is(err, ca.ErrAmbiguous) || !ok || !ce.Ambiguous || ce.Permanent {
		t.Fatalf("dropped answer: %v, want ambiguous", err)
	}
	if n := e.sim.OrdersFor(req.Domains); n != 1 {
		t.Fatalf("ledger: %d, want the 1 committed order", n)
	}
	for _, iss := range []*sectigo.Issuer{is, e.issuer(t, 488, nil)} {
		o, found, err := iss.Reconcile(ctx, req)
		if found || o.Ref != "" || err == nil || !errors.Is(err, ca.ErrUndetermined) || !ca.IsPermanent(err) {
			t.Fatalf("reconcile after a send: found=%v err=%v, want a permanent ca.ErrUndetermined", found, err)
		}
		uv, _ := sectigo.UniqueValue(req.ClientRef)
		h, _ := sectigo.HashCSR(req.CSR)
		for _, want := range []string{uv, h.MD5, "lost.example.com", req.SentAt.UTC().Format(time.RFC3339), "operator"} {
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("reconcile detail %q lacks %q", err, want)
			}
		}
	}

	e.sim.InjectFault("AutoApplySSL", sectigosim.Fault{Status: http.StatusInternalServerError})
	req2 := request(t, "five.example.com")
	if _, err := is.Submit(ctx, req2); !errors.Is(err, ca.ErrAmbiguous) {
		t.Fatalf("500 after the order was sent: %v, want ambiguous", err)
	}
	// A 503 to a read is not ambiguous, nor permanent.
	e.sim.InjectFault("CollectSSL", sectigosim.Fault{Status: http.StatusServiceUnavailable})
	_, err = is.Fetch(ctx, ca.Order{Ref: "3040824/1"}, req)
	ce, ok = ca.AsError(err)
	if !ok || ce.Status != 503 || ce.Ambiguous || ce.Permanent || errors.Is(err, ca.ErrPending) {
		t.Fatalf("503 on CollectSSL: %v", err)
	}
}

// An order Sectigo rejected, one cancelled (-20) and one revoked before
// issuance are ca.ErrRejected; a rejected order has nothing left to prove.
func TestRejectedOrders(t *testing.T) {
	e := newEnv(t, nil)
	is := e.issuer(t, 488, nil)
	place := func(name string) (ca.Order, ca.Request) {
		req := request(t, name)
		req.SentAt = time.Now()
		o, err := is.Submit(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return o, req
	}
	o1, r1 := place("rejected.example.com")
	if err := e.sim.Reject(orderNumber(t, o1)); err != nil {
		t.Fatal(err)
	}
	o2, r2 := place("cancelled.example.com")
	if err := e.sim.Cancel(orderNumber(t, o2)); err != nil {
		t.Fatal(err)
	}
	o3, r3 := place("revoked.example.com")
	if err := is.RevokeRef(ctx, o3.Ref, sectigo.RevokeCessationOfOperation, "not wanted"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		o   ca.Order
		req ca.Request
	}{{o1, r1}, {o2, r2}, {o3, r3}} {
		_, err := is.Fetch(ctx, c.o, c.req)
		if !errors.Is(err, ca.ErrRejected) || errors.Is(err, ca.ErrPending) {
			t.Fatalf("%s: %v, want ca.ErrRejected", c.req.Domains[0], err)
		}
		auths, err := is.Authorizations(ctx, c.o, c.req)
		if err != nil || len(auths) != 0 {
			t.Fatalf("%s: authorizations %+v %v, want none", c.req.Domains[0], auths, err)
		}
	}
}

// Reissue (AutoReplaceSSL) issues for a new key within the same order,
// without a purchase; Revoke (AutoRevokeSSL) of the old certificate makes
// it read as rejected.
func TestReissueAndRevoke(t *testing.T) {
	e := newEnv(t, nil)
	is := e.issuer(t, 488, func(o *sectigo.IssuerOptions) { o.DCVMethod = sectigo.MethodHTTP })
	req := request(t, "re.example.com")
	chs, err := is.ChallengesBefore(req, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.publish(t, chs)
	o, err := is.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	e.verify(t, fetchUntil(t, is, o, req), req)

	req2 := request(t, "re.example.com")
	chs2, err := is.ChallengesBefore(req2, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.publish(t, chs2)
	o2, err := is.ReissueWith(ctx, o.Ref, req2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if orderNumber(t, o2) != orderNumber(t, o) || o2.Ref == o.Ref {
		t.Fatalf("reissue %s of %s: want the same order, another certificate", o2.Ref, o.Ref)
	}
	e.verify(t, fetchUntil(t, is, o2, req2), req2)
	if n, all := e.sim.OrdersFor(req.Domains), len(e.sim.Ledger()); n != 1 || all != 2 {
		t.Fatalf("ledger: %d purchases, %d entries; want 1 and 2", n, all)
	}
	if err := is.Revoke(ctx, o, nil, ca.ReasonSuperseded); err != nil {
		t.Fatal(err)
	}
	if _, err := is.Fetch(ctx, o, req); !errors.Is(err, ca.ErrRejected) {
		t.Fatalf("revoked: %v, want ca.ErrRejected", err)
	}
	if _, err := is.Fetch(ctx, o2, req2); err != nil {
		t.Fatalf("the reissued certificate: %v", err)
	}
}

// manualClock is a settable clock.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *manualClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// Status reads are spaced by the poll interval and check requests by the
// recheck interval, counted from the submission: Sectigo asks for sparse
// polling and checks a new order by itself.
func TestPollingAndRecheckAreSpaced(t *testing.T) {
	e := newEnv(t, nil)
	clk := &manualClock{t: time.Now()}
	is := e.issuer(t, 488, func(o *sectigo.IssuerOptions) {
		o.PollInterval, o.RecheckInterval, o.Now = time.Hour, 6*time.Hour, clk.Now
	})
	req := request(t, "spaced.example.com")
	o, err := is.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var auths []ca.OrderAuthorization
	for range 3 {
		if auths, err = is.Authorizations(ctx, o, req); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.sim.Requests("CollectSSL"); n != 1 {
		t.Fatalf("CollectSSL called %d times within the poll interval, want 1", n)
	}
	if _, err := is.Respond(ctx, auths[0], auths[0].Challenges[0]); err != nil {
		t.Fatal(err)
	}
	if n := e.sim.Requests("AutoUpdateDCV"); n != 0 {
		t.Fatalf("asked to check again right after the order (%d calls)", n)
	}
	clk.Add(6*time.Hour + time.Second)
	if auths, err = is.Authorizations(ctx, o, req); err != nil {
		t.Fatal(err)
	}
	if n := e.sim.Requests("CollectSSL"); n != 2 {
		t.Fatalf("CollectSSL called %d times, want 2 after the poll interval", n)
	}
	for range 2 {
		if _, err := is.Respond(ctx, auths[0], auths[0].Challenges[0]); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.sim.Requests("AutoUpdateDCV"); n != 1 {
		t.Fatalf("AutoUpdateDCV called %d times, want 1 per recheck interval", n)
	}
}

// recheck: resend asks with ResendDCVEmail, once per order.
func TestRecheckByResend(t *testing.T) {
	e := newEnv(t, nil)
	is := e.issuer(t, 492, func(o *sectigo.IssuerOptions) { o.MultiDomain, o.Recheck = true, "resend" })
	req := request(t, "r1.example.com", "r2.example.com")
	chs, err := is.ChallengesBefore(req, nil)
	if err != nil {
		t.Fatal(err)
	}
	o, err := is.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	auths, err := is.Authorizations(ctx, o, req) // Sectigo's first check finds nothing
	if err != nil {
		t.Fatal(err)
	}
	e.publish(t, chs)
	is2 := e.issuer(t, 492, func(o *sectigo.IssuerOptions) {
		o.MultiDomain, o.Recheck, o.RecheckInterval = true, "resend", time.Hour
	})
	for _, a := range auths {
		if _, err := is2.Respond(ctx, a, a.Challenges[0]); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.sim.Requests("ResendDCVEmail"); n != 1 {
		t.Fatalf("ResendDCVEmail called %d times, want once for the order", n)
	}
	e.verify(t, fetchUntil(t, is, o, req), req)
}

// Sectigo's HTTP check follows no redirect: an order whose file answers
// with one stays pending.
func TestRedirectIsNotFollowed(t *testing.T) {
	e := newEnv(t, nil)
	is := e.issuer(t, 488, func(o *sectigo.IssuerOptions) { o.DCVMethod = sectigo.MethodHTTP })
	req := request(t, "moved.example.com")
	chs, _ := is.ChallengesBefore(req, nil)
	e.publish(t, chs)
	e.site.redirect.Store(true)
	o, err := is.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := is.Fetch(ctx, o, req); !errors.Is(err, ca.ErrPending) {
		t.Fatalf("fetch: %v", err)
	}
	st, _ := e.sim.Status(orderNumber(t, o))
	if st.Validated[0] || !strings.Contains(st.LastCheck[0], "redirect") {
		t.Fatalf("simulator: %+v, want the redirect refused", st)
	}
}

// http_scheme https: the file is checked over HTTPS only
// (HTTPS_CSR_HASH), and the order issues.
func TestHTTPSScheme(t *testing.T) {
	e := newEnv(t, nil)
	is := e.issuer(t, 488, func(o *sectigo.IssuerOptions) { o.HTTPScheme = "https" })
	req := request(t, "tls.example.com")
	chs, err := is.ChallengesBefore(req, map[string]ca.Proof{"tls.example.com": {Method: dcv.HTTPFile}})
	if err != nil {
		t.Fatal(err)
	}
	e.publish(t, chs)
	o, err := is.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	e.verify(t, fetchUntil(t, is, o, req), req)
	if st, _ := e.sim.Status(orderNumber(t, o)); st.Methods[0] != "HTTPS_CSR_HASH" {
		t.Fatalf("method at Sectigo: %v", st.Methods)
	}
}

// When setting the per-domain methods fails after the order was placed,
// the order stands (it was paid) and Respond sets the method, even with
// recheck: resend.
func TestMethodSetLaterWhenUpdateFails(t *testing.T) {
	e := newEnv(t, nil)
	is := e.issuer(t, 492, func(o *sectigo.IssuerOptions) {
		o.MultiDomain, o.Recheck, o.RecheckInterval = true, "resend", time.Hour
	})
	req := request(t, "m1.example.com", "m2.example.com")
	how := map[string]ca.Proof{"m1.example.com": {Method: dcv.HTTPFile}, "m2.example.com": {Method: dcv.DNSCNAME}}
	chs, err := is.ChallengesBefore(req, how)
	if err != nil {
		t.Fatal(err)
	}
	e.publish(t, chs)
	e.sim.InjectFault("AutoUpdateDCV", sectigosim.Fault{Status: http.StatusServiceUnavailable})
	o, err := is.Submit(ctx, req)
	if err != nil {
		t.Fatalf("the order was placed; a failed method update must not fail Submit: %v", err)
	}
	st, _ := e.sim.Status(orderNumber(t, o))
	if st.Methods[1] != "HTTP_CSR_HASH" {
		t.Fatalf("methods %v: the update was expected to fail", st.Methods)
	}
	auths, err := is.Authorizations(ctx, o, req)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range auths {
		if _, err := is.Respond(ctx, a, a.Challenges[0]); err != nil {
			t.Fatal(err)
		}
	}
	st, _ = e.sim.Status(orderNumber(t, o))
	if st.Methods[1] != "CNAME_CSR_HASH" || e.sim.Requests("ResendDCVEmail") != 0 {
		t.Fatalf("methods %v, resend calls %d: want the CNAME set by AutoUpdateDCV", st.Methods, e.sim.Requests("ResendDCVEmail"))
	}
	e.verify(t, fetchUntil(t, is, o, req), req)
}

// An IP address (Sectigo validates it only by the HTTP CSR-hash file):
// ordered with its IP SAN, the file checked at the address, issued with
// the address as an IP SAN; any other method is refused before anything
// is sent.
func TestIPAddressOverTheHTTPFile(t *testing.T) {
	e := newEnv(t, nil)
	is := e.issuer(t, 488, nil)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}, key)
	if err != nil {
		t.Fatal(err)
	}
	req := ca.Request{CertName: "ip", Domains: []string{"127.0.0.1"}, Key: key, CSR: csr, ClientRef: "ip-order-1", Since: time.Now()}
	if _, err := is.ChallengesBefore(req, map[string]ca.Proof{"127.0.0.1": {Method: dcv.DNSTXT}}); !ca.IsPermanent(err) {
		t.Fatalf("an IP address by a CNAME: %v, want a permanent refusal", err)
	}
	how := map[string]ca.Proof{"127.0.0.1": {Method: dcv.HTTPFile}}
	chs, err := is.ChallengesBefore(req, how)
	if err != nil || len(chs) != 1 || chs[0].Method != dcv.HTTPFile {
		t.Fatalf("challenges %+v %v", chs, err)
	}
	e.publish(t, chs)
	req.SentAt = time.Now()
	o, err := is.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	res := fetchUntil(t, is, o, req)
	if len(res.Leaf.IPAddresses) != 1 || !res.Leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) || len(res.Leaf.DNSNames) != 0 {
		t.Fatalf("the leaf names %v and %v, want the IP SAN 127.0.0.1 only", res.Leaf.DNSNames, res.Leaf.IPAddresses)
	}
}
