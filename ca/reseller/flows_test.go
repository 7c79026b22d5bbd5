package reseller_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/reseller"
	"github.com/certd/certd/ca/reseller/resellersim"
	"github.com/certd/certd/config"
	"github.com/certd/certd/dcv"
)

// collect fetches until issued (the simulator issues at once once proved).
func collect(t *testing.T, iss ca.Issuer, o ca.Order, req ca.Request) *ca.Result {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := iss.Fetch(ctx, o, req)
		if err == nil {
			return res
		}
		if !errors.Is(err, ca.ErrPending) || time.Now().After(deadline) {
			t.Fatalf("fetching %s: %v", o.Ref, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func verify(t *testing.T, res *ca.Result, extraRoots []*x509.Certificate, req ca.Request) {
	t.Helper()
	if !pubEqual(req.Key.Public(), res.Leaf.PublicKey) {
		t.Fatal("the certificate is not for the request's key")
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range append(slices.Clone(res.Roots), extraRoots...) {
		roots.AddCert(r)
	}
	for _, c := range res.Chain {
		inter.AddCert(c)
	}
	if _, err := res.Leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
		t.Fatalf("chain: %v", err)
	}
}

// A wildcard and its base name are proved by DNS with what the answer
// says (Sectigo: one CNAME per name, DigiCert: one TXT), the chain comes
// with its root from the CA bundle.
func TestWildcardByDNS(t *testing.T) {
	for _, p := range []string{resellersim.SectigoDVPlan, resellersim.DigiCertDVPlan} {
		e := newEnv(t, nil)
		iss := e.issuer(t, reseller.IssuerOptions{Plan: p})
		req := request(t, "w.example.com", "*.w.example.com")
		o, err := iss.Submit(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		auths, err := iss.Authorizations(ctx, o, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range auths {
			if a.Status != ca.AuthPending || len(a.Challenges) != 1 || a.Challenges[0].Method == dcv.HTTPFile || a.Ref != o.Ref {
				t.Fatalf("%s: %+v", p, a)
			}
		}
		e.publish(t, auths)
		res := collect(t, iss, o, req)
		if len(res.Roots) != 1 || !res.Roots[0].Equal(e.roots[0]) || len(res.Chain) != 1 {
			t.Errorf("roots %d chain %d", len(res.Roots), len(res.Chain))
		}
		verify(t, res, nil, req)
		auths, err = iss.Authorizations(ctx, o, req)
		if err != nil || auths[0].Status != ca.AuthValid || auths[1].Status != ca.AuthValid {
			t.Errorf("after issuance: %+v %v", auths, err)
		}
	}
}

// EMAIL: the approver address comes with the challenge, Respond asks for
// the email again, and the order issues once the approver clicks.
func TestEmailValidation(t *testing.T) {
	e := newEnv(t, nil)
	iss := e.issuer(t, reseller.IssuerOptions{DCVType: "EMAIL", Contact: reseller.Contact{ApproverEmailAddress: "admin@mail.example.com"}})
	req := request(t, "mail.example.com")
	o, err := iss.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	auths, err := iss.Authorizations(ctx, o, req)
	if err != nil {
		t.Fatal(err)
	}
	ch := auths[0].Challenges
	if len(ch) != 1 || ch[0].Method != dcv.Email || ch[0].EmailAddress != "admin@mail.example.com" {
		t.Fatalf("%+v", auths)
	}
	if a, err := iss.Respond(ctx, auths[0], ch[0]); err != nil || a.Status != ca.AuthPending {
		t.Fatalf("respond: %+v %v", a, err)
	}
	if n := len(e.sim.Emails()); n != 2 {
		t.Errorf("%d emails sent, want the order's and the one asked again", n)
	}
	if _, err := iss.Fetch(ctx, o, req); !errors.Is(err, ca.ErrPending) {
		t.Fatalf("before approval: %v", err)
	}
	if err := e.sim.ApproveEmail(o.Ref, "mail.example.com"); err != nil {
		t.Fatal(err)
	}
	verify(t, collect(t, iss, o, req), nil, req)
}

// A failed check is asked again within the same order, and Respond says
// at once what the CA then says; an already valid name is not asked.
func TestRespondAsksAgain(t *testing.T) {
	e := newEnv(t, nil)
	iss := e.issuer(t, reseller.IssuerOptions{Plan: resellersim.DigiCertDVPlan})
	req := request(t, "again.example.com")
	o, err := iss.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.sim.FailNextCheck(o.Ref); err != nil {
		t.Fatal(err)
	}
	auths, err := iss.Authorizations(ctx, o, req) // the CA's check fails: nothing is published yet
	if err != nil {
		t.Fatal(err)
	}
	if auths[0].Status != ca.AuthPending || auths[0].Detail == "" {
		t.Fatalf("%+v", auths[0])
	}
	e.publish(t, auths)
	if _, err := iss.Fetch(ctx, o, req); !errors.Is(err, ca.ErrPending) {
		t.Fatalf("the CA stopped checking after the failure: %v", err)
	}
	a, err := iss.Respond(ctx, auths[0], auths[0].Challenges[0])
	if err != nil || a.Status != ca.AuthValid {
		t.Fatalf("respond: %+v %v", a, err)
	}
	verify(t, collect(t, iss, o, req), e.roots, req)
	before := e.sim.Requests("POST /ssl-certificate/{id}/validate")
	if _, err := iss.Respond(ctx, a, a.Challenges[0]); err != nil || e.sim.Requests("POST /ssl-certificate/{id}/validate") != before {
		t.Errorf("a valid authorization was asked again: %v", err)
	}
	if n := e.sim.OrdersFor(req.Domains); n != 1 {
		t.Errorf("%d orders", n)
	}
}

// Reissue (no purchase) and renew (paid, same object), then delete with a
// refund inside the grace period.
func TestReissueRenewDelete(t *testing.T) {
	e := newEnv(t, nil)
	iss := e.issuer(t, reseller.IssuerOptions{Roots: nil})
	req := request(t, "life.example.com")
	o, err := iss.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.prove(iss, o, req.Domains); err != nil {
		t.Fatal(err)
	}
	first := collect(t, iss, o, req)

	re := request(t, "life.example.com")
	ro, err := iss.Reissue(ctx, o, re)
	if err != nil || ro.Ref != o.Ref {
		t.Fatalf("reissue: %+v %v", ro, err)
	}
	second := collect(t, iss, o, re)
	if second.Leaf.Equal(first.Leaf) || len(e.sim.Ledger()) != 1 {
		t.Errorf("reissue: same leaf or charged (%d charges)", len(e.sim.Ledger()))
	}
	// The old key's certificate is gone: Fetch for it says so.
	if _, err := iss.Fetch(ctx, o, req); err == nil || errors.Is(err, ca.ErrPending) {
		t.Errorf("fetch for the replaced key: %v", err)
	}

	nx := request(t, "life.example.com")
	nx.ClientRef = "renewal-2"
	rn, err := iss.Renew(ctx, o, nx)
	if err != nil || rn.Ref != o.Ref {
		t.Fatalf("renew: %+v %v", rn, err)
	}
	if _, err := iss.Fetch(ctx, o, nx); !errors.Is(err, ca.ErrPending) {
		t.Fatalf("renewed order: %v, want pending", err)
	}
	if found, ok, err := iss.Reconcile(ctx, nx); err != nil || !ok || found.Ref != o.Ref {
		t.Errorf("the renewal is found by its client reference: %+v %v %v", found, ok, err)
	}
	if err := e.prove(iss, o, nx.Domains); err != nil {
		t.Fatal(err)
	}
	verify(t, collect(t, iss, o, nx), nil, nx)
	led := e.sim.Ledger()
	if len(led) != 2 || led[1].Kind != "renew" || e.sim.OrdersFor(req.Domains) != 1 {
		t.Errorf("ledger %+v", led)
	}

	refund, err := iss.Delete(ctx, o.Ref)
	if err != nil || refund != reseller.Refunded {
		t.Fatalf("delete: %v %v", refund, err)
	}
	if _, err := iss.Fetch(ctx, o, nx); !errors.Is(err, ca.ErrRejected) {
		t.Errorf("a deleted order: %v, want rejected", err)
	}
	// Outside the grace period: no refund.
	e2 := newEnv(t, func(o *resellersim.Options) { o.RefundWindow = time.Nanosecond })
	iss2 := e2.issuer(t, reseller.IssuerOptions{})
	o2, err := iss2.Submit(ctx, request(t, "late.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if refund, err := iss2.Delete(ctx, o2.Ref); err != nil || refund != reseller.NotRefunded {
		t.Errorf("late delete: %v %v", refund, err)
	}
}

// When crt/ca cannot be downloaded the PKCS #7 form is used; configured
// roots replace those the CA sends.
func TestFetchPKCS7AndRoots(t *testing.T) {
	e := newEnv(t, nil)
	iss := e.issuer(t, reseller.IssuerOptions{Roots: e.roots})
	req := request(t, "p7.example.com")
	o, err := iss.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.prove(iss, o, req.Domains); err != nil {
		t.Fatal(err)
	}
	e.sim.InjectFault("GET /ssl-certificate/{id}/download-ca", resellersim.Fault{Status: 404})
	res := collect(t, iss, o, req)
	if e.sim.Requests("GET /ssl-certificate/{id}/download-pkcs7") != 1 {
		t.Error("the PKCS #7 form was not used")
	}
	if len(res.Roots) != 1 || !res.Roots[0].Equal(e.roots[0]) || len(res.Chain) != 1 || res.Chain[0].IsCA != true {
		t.Errorf("roots %v chain %v", len(res.Roots), len(res.Chain))
	}
	verify(t, res, nil, req)
	for _, f := range []string{"zip", "csr"} {
		if b, err := iss.Client().Download(ctx, o.Ref, f); err != nil || len(b) == 0 {
			t.Errorf("download-%s: %v", f, err)
		}
	}
}

// What the API refuses comes back permanent and names why: a small RSA
// key, a balance used up, wrong credentials.
func TestRefusals(t *testing.T) {
	e := newEnv(t, func(o *resellersim.Options) { o.Quota = 1 })
	iss := e.issuer(t, reseller.IssuerOptions{})

	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "rsa.example.com"}, DNSNames: []string{"rsa.example.com"}}, small)
	if err != nil {
		t.Fatal(err)
	}
	req := request(t, "rsa.example.com")
	req.CSR, req.Key = csr, small
	_, err = iss.Submit(ctx, req)
	if e, ok := ca.AsError(err); !ok || !e.Permanent || e.Code != "invalid:csr" || !strings.Contains(e.Detail, "2048") {
		t.Errorf("a 1024-bit key: %v", err)
	}

	if _, err := iss.Submit(ctx, request(t, "paid.example.com")); err != nil {
		t.Fatal(err)
	}
	_, err = iss.Submit(ctx, request(t, "broke.example.com"))
	if e, ok := ca.AsError(err); !ok || !e.Permanent || e.Code != "quota" {
		t.Errorf("no balance left: %v", err)
	}

	bad, err := reseller.NewIssuer(e.client(t, zap.NewNop(), func(o *reseller.ClientOptions) { o.APIKey = "wrong-key" }), reseller.IssuerOptions{Plan: resellersim.SectigoDVPlan})
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.Submit(ctx, request(t, "auth.example.com"))
	if e, ok := ca.AsError(err); !ok || !e.Permanent || e.Status != 401 {
		t.Errorf("wrong key: %v", err)
	}
}

// The account block decodes strictly, and Kind builds a working issuer
// from it (secret resolved, trust files read).
func TestKindFromConfig(t *testing.T) {
	e := newEnv(t, nil)
	dir := t.TempDir()
	caFile, rootsFile := filepath.Join(dir, "api-ca.pem"), filepath.Join(dir, "roots.pem")
	if err := os.WriteFile(caFile, e.sim.APICAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rootsFile, e.sim.RootPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CERTD_TEST_RESELLER_KEY", testKey)
	block := "url: " + e.url + "\nusername: " + testUser + "\napi_key: env:CERTD_TEST_RESELLER_KEY\nplan: " + resellersim.SectigoDVPlan +
		"\ndcv_type: dns\npoll_interval: 2m\nca: " + caFile + "\nroots: " + rootsFile
	settings, err := parseBlock(t, block)
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	iss, err := reseller.Kind().New(ca.Env{Name: "r", Settings: settings, Logger: zap.NewNop(),
		Observe: func(route string, _ int, _ time.Duration) { seen = append(seen, route) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := iss.(ca.Coster); ok {
		t.Error("the issuer is paid at submit: it must not implement ca.Coster")
	}
	req := request(t, "kind.example.com")
	o, err := iss.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	_, err = iss.Fetch(ctx, o, req)
	if e, ok := ca.AsError(err); !errors.Is(err, ca.ErrPending) || !ok || e.Retry != 2*time.Minute {
		t.Errorf("fetch: %v", err)
	}
	if len(seen) == 0 || seen[0] != "POST /ssl-certificate" {
		t.Errorf("observed %v", seen)
	}
	// An unset secret fails the build, naming it, without the value.
	for _, unset := range []func(){func() { t.Setenv("CERTD_TEST_RESELLER_KEY", "") }, func() { os.Unsetenv("CERTD_TEST_RESELLER_KEY") }} {
		unset()
		if _, err := reseller.Kind().New(ca.Env{Settings: settings}); err == nil || !strings.Contains(err.Error(), "CERTD_TEST_RESELLER_KEY") {
			t.Errorf("unset secret: %v", err)
		}
	}
}

func TestDecodeConfigErrors(t *testing.T) {
	base := "url: https://api.example.net/v1\nusername: u\napi_key: env:K\nplan: " + resellersim.SectigoDVPlan + "\n"
	cases := []struct {
		name, block, path string
	}{
		{"dcv_type", base + "dcv_type: carrier-pigeon", "dcv_type"},
		{"email without approver", base + "dcv_type: EMAIL", "approver_email_address"},
		{"bad approver", base + "approver_email_address: not-an-address", "approver_email_address"},
		{"ov without organisation", base + "validation: ov\nchamber_of_commerce: '1'\ndepartment: d\napprover_first_name: J", "approver_last_name"},
		{"validation", base + "validation: xv", "validation"},
		{"credentials in the url", strings.Replace(base, "https://", "https://u:CANARY-api-key-7f3a9c@", 1), "url"},
		{"plain http", strings.Replace(base, "https://", "http://", 1), "url"},
		{"plan", strings.Replace(base, resellersim.SectigoDVPlan, "premium", 1), "plan"},
		{"poll_interval", base + "poll_interval: 10ms", "poll_interval"},
		{"rejected_statuses", base + "rejected_statuses: [active]", "rejected_statuses"},
		{"inline secret", strings.Replace(base, "env:K", "CANARY-api-key-7f3a9c", 1), "api_key"},
		{"unknown key", base + "colour: blue", "colour"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseBlock(t, c.block)
			var errs config.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("want config.Errors, got %v", err)
			}
			found := false
			for _, e := range errs {
				found = found || strings.HasSuffix(e.Pos.Path, "."+c.path)
			}
			if !found || strings.Contains(err.Error(), testKey) {
				t.Errorf("%v (want an error at %s, and no secret)", err, c.path)
			}
		})
	}
	// Defaults: DNS, dv, the poll interval.
	settings, err := parseBlock(t, base)
	if err != nil {
		t.Fatal(err)
	}
	c := settings.(*reseller.Config)
	if c.DCVType != "DNS" || c.Validation != "dv" || c.PollInterval.D() != reseller.DefaultPollInterval {
		t.Errorf("defaults %+v", c)
	}
}

// parseBlock decodes one account block through the real loader.
func parseBlock(t *testing.T, body string) (any, error) {
	t.Helper()
	indented := "    " + strings.ReplaceAll(strings.TrimSpace(body), "\n", "\n    ")
	data := "accounts:\n  r:\n    type: reseller\n" + indented + "\n"
	cfg, err := config.Parse("certd.yaml", []byte(data), config.Options{Accounts: map[string]config.Decoder{"reseller": reseller.DecodeConfig}})
	if err != nil {
		return nil, err
	}
	return cfg.Accounts["r"].Settings, nil
}

// A certificate proved by a file is renewed and reissued with dcv_type
// FILE, as configured for it, not with the account's default (DNS): the
// API takes dcv_type on renew and reissue too, and a renewal asked as DNS
// offers no file to publish.
func TestRenewAndReissueKeepTheCertificatesDCVType(t *testing.T) {
	e := newEnv(t, nil)
	iss := e.issuer(t, reseller.IssuerOptions{}) // account default: DNS
	byFile := func(req ca.Request) ca.Request {
		req.Proofs = map[string]ca.Proof{req.Domains[0]: {Method: dcv.HTTPFile}}
		return req
	}
	offersFile := func(op string, o ca.Order, req ca.Request) {
		t.Helper()
		auths, err := iss.Authorizations(ctx, o, req)
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		for _, a := range auths {
			if a.Status == ca.AuthValid {
				continue
			}
			if !slices.ContainsFunc(a.Challenges, func(c dcv.Challenge) bool { return c.Method == dcv.HTTPFile }) {
				t.Fatalf("%s: no file to publish for %s: %+v", op, a.Domain, a.Challenges)
			}
		}
	}
	req := byFile(request(t, "file.example.com"))
	o, err := iss.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	offersFile("submit", o, req)
	if err := e.prove(iss, o, req.Domains); err != nil {
		t.Fatal(err)
	}
	collect(t, iss, o, req)
	nx := byFile(request(t, "file.example.com"))
	nx.ClientRef = "renewal-file"
	if _, err := iss.Renew(ctx, o, nx); err != nil {
		t.Fatal(err)
	}
	offersFile("renew", o, nx)
	if err := e.prove(iss, o, nx.Domains); err != nil {
		t.Fatal(err)
	}
	collect(t, iss, o, nx)
	re := byFile(request(t, "file.example.com"))
	if _, err := iss.Reissue(ctx, o, re); err != nil {
		t.Fatal(err)
	}
	offersFile("reissue", o, re)
}
