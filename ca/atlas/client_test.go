package atlas_test

import (
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/atlas"
	"github.com/certd/certd/ca/atlas/atlassim"
	"github.com/certd/certd/internal/ratelimit"
)

func TestMTLSIsRequired(t *testing.T) {
	e := newEnv(t, nil)
	// A client without a certificate cannot even complete the handshake.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.roots}}}
	resp, err := hc.Post(e.url+"/login", "application/json;charset=utf-8", strings.NewReader(`{"api_key":"test-key","api_secret":"test-secret"}`))
	if err == nil {
		resp.Body.Close()
		t.Fatal("login without a client certificate succeeded")
	}
	// NewClient refuses to build one without a certificate.
	if _, err := atlas.NewClient(atlas.ClientOptions{URL: e.url, APIKey: "k", APISecret: "s"}); err == nil {
		t.Fatal("client without mTLS certificate accepted")
	}
}

func TestSimulatorIsStrictAboutContent(t *testing.T) {
	e := newEnv(t, nil)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.roots, Certificates: []tls.Certificate{e.cert}}}}
	cases := []struct {
		name, ctype, body string
		want              int
	}{
		{"plain json", "application/json", `{"api_key":"test-key","api_secret":"test-secret"}`, 415},
		{"no charset space allowed", "application/json; charset=utf-8", `{"api_key":"test-key","api_secret":"test-secret"}`, 415},
		{"unknown field", "application/json;charset=utf-8", `{"key":"test-key","secret":"test-secret"}`, 400},
		{"bad credentials", "application/json;charset=utf-8", `{"api_key":"test-key","api_secret":"nope"}`, 401},
		{"ok", "application/json;charset=utf-8", `{"api_key":"test-key","api_secret":"test-secret"}`, 200},
	}
	for _, c := range cases {
		resp, err := hc.Post(e.url+"/login", c.ctype, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d, want %d", c.name, resp.StatusCode, c.want)
		}
		if c.want >= 400 && resp.Header.Get("Content-Type") != "application/problem+json;charset=utf-8" {
			t.Errorf("%s: error content type %q", c.name, resp.Header.Get("Content-Type"))
		}
	}
	// A streamed body (no Content-Length) is refused with 411.
	req, _ := http.NewRequest(http.MethodPost, e.url+"/login", struct{ *strings.Reader }{strings.NewReader(`{}`)})
	req.Header.Set("Content-Type", "application/json;charset=utf-8")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusLengthRequired {
		t.Errorf("chunked body: %d, want 411", resp.StatusCode)
	}
}

func TestTokenLifetimeAndRelogin(t *testing.T) {
	e := newEnv(t, nil)
	if _, err := e.client.Quota(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.sim.Requests("POST /login"); n != 1 {
		t.Fatalf("logins: %d", n)
	}
	// Within 9 minutes the token is reused.
	e.clk.Add(8 * time.Minute)
	if _, err := e.client.Quota(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.sim.Requests("POST /login"); n != 1 {
		t.Fatalf("token not reused: %d logins", n)
	}
	// Past 9 minutes the client logs in again before the token dies.
	e.clk.Add(90 * time.Second)
	if _, err := e.client.Quota(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.sim.Requests("POST /login"); n != 2 {
		t.Fatalf("no proactive re-login: %d logins", n)
	}
	if n := e.sim.Requests("GET /quotas/issuance"); n != 3 {
		t.Fatalf("quota calls: %d (a 401 leaked through?)", n)
	}
}

func TestReloginOnceOn401(t *testing.T) {
	e := newEnv(t, nil)
	if _, err := e.client.Quota(ctx); err != nil {
		t.Fatal(err)
	}
	// The server forgets the token (as after its own restart): one 401,
	// one login, then success.
	e.sim.InjectFault("GET /quotas/issuance", atlassim.Fault{Status: 401})
	if _, err := e.client.Quota(ctx); err != nil {
		t.Fatalf("after a 401: %v", err)
	}
	if n := e.sim.Requests("POST /login"); n != 2 {
		t.Fatalf("logins: %d, want 2", n)
	}
	// Two 401s in a row: the second is returned, not looped on.
	e.sim.InjectFault("GET /quotas/issuance", atlassim.Fault{Status: 401})
	e.sim.InjectFault("GET /quotas/issuance", atlassim.Fault{Status: 401})
	_, err := e.client.Quota(ctx)
	if !atlas.IsStatus(err, 401) {
		t.Fatalf("persistent 401: %v", err)
	}
	// Bad credentials are an error naming the call, without the secret.
	bad := e.newClient(t, "test-key", "wrong-secret-CANARY")
	_, err = bad.Quota(ctx)
	if !atlas.IsStatus(err, 401) || strings.Contains(err.Error(), "CANARY") {
		t.Fatalf("bad credentials: %v", err)
	}
}

func TestLoginsAreSerialised(t *testing.T) {
	e := newEnv(t, func(o *atlassim.Options) { o.Latency = 20 * time.Millisecond })
	errs := make(chan error, 20)
	for range 20 {
		go func() { _, err := e.client.Quota(ctx); errs <- err }()
	}
	for range 20 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := e.sim.Requests("POST /login"); n != 1 {
		t.Fatalf("%d logins for 20 concurrent calls, want 1", n)
	}
}

func TestRetries429And503(t *testing.T) {
	e := newEnv(t, nil)
	e.sim.InjectFault("GET /validationpolicy", atlassim.Fault{Status: 429, RetryAfter: 4 * time.Second})
	e.sim.InjectFault("GET /validationpolicy", atlassim.Fault{Status: 503})
	if _, err := e.client.ValidationPolicy(ctx); err != nil {
		t.Fatal(err)
	}
	if len(e.sleeps) != 2 || e.sleeps[0] < 4*time.Second {
		t.Fatalf("sleeps %v: want Retry-After 4s honoured, then a backoff", e.sleeps)
	}
	// The policy is cached: no second fetch.
	if _, err := e.client.ValidationPolicy(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.sim.Requests("GET /validationpolicy"); n != 3 {
		t.Fatalf("policy fetched %d times, want 3 (2 faults + 1)", n)
	}
	// Retries are bounded, and the last error is typed with its Retry-After.
	for range 10 {
		e.sim.InjectFault("GET /quotas/issuance", atlassim.Fault{Status: 429, RetryAfter: time.Second})
	}
	_, err := e.client.Quota(ctx)
	var ae *atlas.Error
	if !errors.As(err, &ae) || ae.Status != 429 || ae.RetryAfter() != time.Second || !ae.Temporary() {
		t.Fatalf("exhausted retries: %v", err)
	}
}

func TestClaimsPaging(t *testing.T) {
	e := newEnv(t, nil)
	for i := range 250 {
		if _, err := e.client.CreateClaim(ctx, fmt.Sprintf("d%03d.example.com", i)); err != nil {
			t.Fatal(err)
		}
	}
	before := e.sim.Requests("GET /claims/domains")
	all, err := e.client.Claims(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 250 {
		t.Fatalf("%d claims, want 250", len(all))
	}
	if n := e.sim.Requests("GET /claims/domains") - before; n != 3 {
		t.Fatalf("%d pages fetched, want 3", n)
	}
	seen := map[string]bool{}
	for _, c := range all {
		if seen[c.ID] || len(c.ID) != 32 || !strings.HasSuffix(c.Domain, ".") {
			t.Fatalf("claim %+v: duplicate, bad id or no trailing dot", c)
		}
		seen[c.ID] = true
	}
	verified, err := e.client.Claims(ctx, "VERIFIED")
	if err != nil || len(verified) != 0 {
		t.Fatalf("verified: %d %v", len(verified), err)
	}
}

func TestClaimByDNSThroughCNAMEDelegation(t *testing.T) {
	e := newEnv(t, nil)
	tok, err := e.client.CreateClaim(ctx, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	// _acme-challenge.example.com CNAME → the delegated zone, TXT there.
	e.zone.setCNAME("_acme-challenge.example.com", "example.com.validation.example.net")
	e.zone.setTXT("example.com.validation.example.net", "unrelated", tok.Token)
	res, err := e.client.VerifyDNS(ctx, tok.ID, "_acme-challenge.example.com")
	if err != nil || res != atlas.Verified {
		t.Fatalf("delegated verify: %v %v", res, err)
	}
	c, err := e.client.Claim(ctx, tok.ID)
	if err != nil || c.Status != "VERIFIED" || c.Name() != "example.com" || c.ExpiresAt <= e.clk.Now().Unix() {
		t.Fatalf("claim: %+v %v", c, err)
	}
	// An authorization domain that is not the domain or an _-label of it is refused.
	tok2, _ := e.client.CreateClaim(ctx, "example.org")
	if _, err := e.client.VerifyDNS(ctx, tok2.ID, "evil.example.net"); !atlas.IsStatus(err, 422) {
		t.Fatalf("foreign ADN: %v", err)
	}
}

func TestClaimVerificationJobAndReassert(t *testing.T) {
	e := newEnv(t, nil)
	tok, err := e.client.CreateClaim(ctx, "late.example.com")
	if err != nil {
		t.Fatal(err)
	}
	// Not published yet: a job starts; while it runs, another request is 202.
	if res, err := e.client.VerifyDNS(ctx, tok.ID, ""); err != nil || res != atlas.Started {
		t.Fatalf("first verify: %v %v", res, err)
	}
	if res, err := e.client.VerifyDNS(ctx, tok.ID, ""); err != nil || res != atlas.Pending {
		t.Fatalf("second verify: %v %v", res, err)
	}
	// A CNAME loop does not verify (and does not hang the simulator).
	e.zone.setCNAME("late.example.com", "loop.example.com")
	e.zone.setCNAME("loop.example.com", "late.example.com")
	if c, _ := e.client.Claim(ctx, tok.ID); c.Status != "PENDING" {
		t.Fatalf("verified through a CNAME loop")
	}
	e.zone.setCNAME("late.example.com", "")
	e.zone.mu.Lock()
	delete(e.zone.cname, "late.example.com.")
	delete(e.zone.cname, "loop.example.com.")
	e.zone.mu.Unlock()
	// Published later: the job finds it when the claim is looked at.
	e.zone.setTXT("late.example.com", tok.Token)
	c, err := e.client.Claim(ctx, tok.ID)
	if err != nil || c.Status != "VERIFIED" {
		t.Fatalf("job did not verify: %+v %v", c, err)
	}
	// After assert_by, verification needs a reassert (424), which issues a
	// new token while the claim stays verified.
	e.clk.Add(31 * 24 * time.Hour)
	if _, err := e.client.VerifyDNS(ctx, tok.ID, ""); !atlas.IsStatus(err, 424) {
		t.Fatalf("after assert_by: %v, want 424", err)
	}
	re, err := e.client.Reassert(ctx, tok.ID)
	if err != nil || re.Token == tok.Token || re.ID != tok.ID {
		t.Fatalf("reassert: %+v %v", re, err)
	}
	if c, _ := e.client.Claim(ctx, tok.ID); c.Status != "VERIFIED" {
		t.Fatalf("claim not verified during reassertion")
	}
	e.zone.setTXT("late.example.com", re.Token)
	if res, err := e.client.VerifyDNS(ctx, tok.ID, ""); err != nil || res != atlas.Verified {
		t.Fatalf("verify after reassert: %v %v", res, err)
	}
	if err := e.client.DeleteClaim(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Claim(ctx, tok.ID); !atlas.IsStatus(err, 404) {
		t.Fatalf("deleted claim: %v", err)
	}
}

func TestClaimByHTTPNoRedirectNoWildcard(t *testing.T) {
	var token string
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Host == "redirect.example.com":
			http.Redirect(w, r, "http://ok.example.com/.well-known/pki-validation/gsdv.txt", http.StatusMovedPermanently)
		case r.URL.Path == "/.well-known/pki-validation/gsdv.txt" && r.Host == "ok.example.com":
			fmt.Fprint(w, token)
		default:
			http.NotFound(w, r)
		}
	}))
	defer site.Close()
	e := newEnv(t, func(o *atlassim.Options) { o.HTTPAddr = strings.TrimPrefix(site.URL, "http://") })
	ok, err := e.client.CreateClaim(ctx, "ok.example.com")
	if err != nil {
		t.Fatal(err)
	}
	token = ok.Token
	if res, err := e.client.VerifyHTTP(ctx, ok.ID, "ok.example.com", "http"); err != nil || res != atlas.Verified {
		t.Fatalf("gsdv.txt: %v %v", res, err)
	}
	red, _ := e.client.CreateClaim(ctx, "redirect.example.com")
	token = red.Token
	if res, err := e.client.VerifyHTTP(ctx, red.ID, "redirect.example.com", "http"); err != nil || res != atlas.Started {
		t.Fatalf("redirect must not verify: %v %v", res, err)
	}
	e.clk.Add(11 * time.Minute) // the job gives up
	c, _ := e.client.Claim(ctx, red.ID)
	if c.Status != "PENDING" || !strings.Contains(c.Log[len(c.Log)-1].Description, "not 200: 301") || c.Log[len(c.Log)-1].Status != "ERROR" {
		t.Fatalf("redirect claim: %+v", c)
	}
	if _, err := e.client.VerifyHTTP(ctx, ok.ID, "*.ok.example.com", "http"); !atlas.IsStatus(err, 422) {
		t.Fatalf("wildcard over HTTP: %v", err)
	}
}

func TestClaimByEmail(t *testing.T) {
	e := newEnv(t, nil)
	tok, _ := e.client.CreateClaim(ctx, "mail.example.com")
	addrs, err := e.client.EmailAddresses(ctx, tok.ID)
	if err != nil || len(addrs) == 0 || addrs[0] != "admin@mail.example.com" {
		t.Fatalf("addresses: %v %v", addrs, err)
	}
	if _, err := e.client.SendEmail(ctx, tok.ID, "root@evil.example"); !atlas.IsStatus(err, 422) {
		t.Fatalf("foreign address: %v", err)
	}
	if res, err := e.client.SendEmail(ctx, tok.ID, "hostmaster@mail.example.com"); err != nil || res != atlas.Started {
		t.Fatalf("send: %v %v", res, err)
	}
	if err := e.sim.ClickEmailLink(tok.ID); err != nil {
		t.Fatal(err)
	}
	if c, _ := e.client.Claim(ctx, tok.ID); c.Status != "VERIFIED" {
		t.Fatalf("email claim: %+v", c)
	}
}

// issue runs the whole issuance against verified claims and verifies the
// leaf against the simulator's root with crypto/x509.
func issue(t *testing.T, e *env, domains ...string) (*x509.Certificate, string) {
	t.Helper()
	key := newKey(t)
	pol, err := e.client.ValidationPolicy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req, err := atlas.BuildRequest(pol, atlas.RequestSpec{Domains: domains, Key: key, NotBefore: e.clk.Now()})
	if err != nil {
		t.Fatal(err)
	}
	serial, err := e.client.CreateCertificate(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	info, err := e.client.WaitCertificate(ctx, serial, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := e.client.TrustChain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leaf := parsePEM(t, info.PEM)
	inter, roots := x509.NewCertPool(), x509.NewCertPool()
	for _, p := range chain[:len(chain)-1] {
		inter.AddCert(parsePEM(t, p))
	}
	roots.AppendCertsFromPEM(e.sim.RootPEM())
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: domains[0], Intermediates: inter, Roots: roots, CurrentTime: e.clk.Now()}); err != nil {
		t.Fatalf("leaf %s does not verify to the simulator root: %v", serial, err)
	}
	if fmt.Sprintf("%X", leaf.SerialNumber) != serial {
		t.Fatalf("serial %X != %s", leaf.SerialNumber, serial)
	}
	if !key.PublicKey.Equal(leaf.PublicKey) {
		t.Fatal("issued for another key")
	}
	return leaf, serial
}

func parsePEM(t *testing.T, s string) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		t.Fatalf("no PEM in %q", s)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestIssuanceRotationRevokeRekeyAndReports(t *testing.T) {
	e := newEnv(t, func(o *atlassim.Options) { o.RotateEvery = 2; o.IssueDelay = 2 * time.Second })
	e.verifiedClaim(t, "example.com")
	issuers := map[string]bool{}
	var serials []string
	for i := range 5 {
		leaf, serial := issue(t, e, fmt.Sprintf("h%d.example.com", i), "*.example.com")
		issuers[leaf.Issuer.CommonName] = true
		serials = append(serials, serial)
	}
	if len(issuers) != 3 {
		t.Errorf("%d issuing CAs over 5 issuances rotating every 2, want 3: %v", len(issuers), issuers)
	}
	// Reports.
	if n, err := e.client.Counter(ctx, "issued"); err != nil || n != 5 {
		t.Errorf("issued counter: %d %v", n, err)
	}
	stats, err := e.client.Stats(ctx, "issued", e.clk.Now().Add(-time.Hour), e.clk.Now())
	if err != nil || len(stats) != 5 {
		t.Errorf("stats: %d %v", len(stats), err)
	}
	// Revoke, twice.
	if err := e.client.Revoke(ctx, serials[0], atlas.ReasonSuperseded, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Revoke(ctx, serials[0], atlas.ReasonSuperseded, time.Time{}); !atlas.IsStatus(err, 409) {
		t.Fatalf("second revoke: %v", err)
	}
	if info, _ := e.client.Certificate(ctx, serials[0]); info.Status != "REVOKED" {
		t.Fatalf("status %s", info.Status)
	}
	if n, _ := e.client.Counter(ctx, "revoked"); n != 1 {
		t.Errorf("revoked counter %d", n)
	}
	// Rekey: same names and expiry, new key.
	k2 := newKey(t)
	pol, _ := e.client.ValidationPolicy(ctx)
	req, err := atlas.BuildRequest(pol, atlas.RequestSpec{Domains: []string{"x.example.com"}, Key: k2, NotBefore: e.clk.Now()})
	if err != nil {
		t.Fatal(err)
	}
	newSerial, err := e.client.Rekey(ctx, serials[1], req.PublicKey, req.PublicKeySignature)
	if err != nil {
		t.Fatal(err)
	}
	e.clk.Add(3 * time.Second)
	info, err := e.client.Certificate(ctx, newSerial)
	if err != nil {
		t.Fatal(err)
	}
	old, _ := e.client.Certificate(ctx, serials[1])
	a, b := parsePEM(t, info.PEM), parsePEM(t, old.PEM)
	if !k2.PublicKey.Equal(a.PublicKey) || !a.NotAfter.Equal(b.NotAfter) || strings.Join(a.DNSNames, ",") != strings.Join(b.DNSNames, ",") {
		t.Errorf("rekeyed certificate differs: %v %v", a.DNSNames, a.NotAfter)
	}
	if l := e.sim.Ledger(); len(l) != 6 || !l[5].Rekey || l[0].ClientCert != "certd-test" {
		t.Errorf("ledger: %+v", l)
	}
}

func TestIssuanceNeedsVerifiedUnexpiredClaims(t *testing.T) {
	e := newEnv(t, func(o *atlassim.Options) { o.StaticPolicyList = true })
	e.verifiedClaim(t, "example.com")
	pol, _ := e.client.ValidationPolicy(ctx)
	key := newKey(t)
	req, _ := atlas.BuildRequest(pol, atlas.RequestSpec{Domains: []string{"www.example.org"}, Key: key, NotBefore: e.clk.Now()})
	_, err := e.client.CreateCertificate(ctx, req)
	var ae *atlas.Error
	if !errors.As(err, &ae) || ae.Status != 422 || !strings.Contains(ae.Errors["san.dns_names[0]"], "not covered") {
		t.Fatalf("unclaimed name: %v", err)
	}
	e.clk.Add(366 * 24 * time.Hour) // the claim lapses
	req, _ = atlas.BuildRequest(pol, atlas.RequestSpec{Domains: []string{"www.example.com"}, Key: key, NotBefore: e.clk.Now()})
	if _, err := e.client.CreateCertificate(ctx, req); !atlas.IsStatus(err, 422) {
		t.Fatalf("expired claim: %v", err)
	}
	if len(e.sim.Ledger()) != 0 {
		t.Fatal("a refused request reached the ledger")
	}
}

func TestPolicyIsCheckedBeforeSending(t *testing.T) {
	e := newEnv(t, func(o *atlassim.Options) {
		p := atlassim.DefaultPolicy()
		p.SAN.DNSNames.MaxCount = 2
		p.SAN.DNSNames.List = []string{`\.example\.com$`}
		p.SubjectDN["organization"] = atlassim.StringPolicy{Presence: "FORBIDDEN"}
		o.Policy = &p
		o.StaticPolicyList = true
	})
	pol, err := e.client.ValidationPolicy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(randReader{}, 2048)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		spec  atlas.RequestSpec
		field string
	}{
		{"rsa key on an ECDSA policy", atlas.RequestSpec{Domains: []string{"a.example.com"}, Key: rsaKey}, "public_key"},
		{"too many names", atlas.RequestSpec{Domains: []string{"a.example.com", "b.example.com", "c.example.com"}, Key: newKey(t)}, "san.dns_names"},
		{"name outside the list", atlas.RequestSpec{Domains: []string{"a.example.com", "a.example.org"}, Key: newKey(t)}, "san.dns_names[1]"},
		{"lifetime beyond max", atlas.RequestSpec{Domains: []string{"a.example.com"}, Key: newKey(t), NotAfter: e.clk.Now().Add(500 * 24 * time.Hour)}, "validity.not_after"},
	}
	for _, c := range cases {
		c.spec.NotBefore = e.clk.Now()
		_, err := atlas.BuildRequest(pol, c.spec)
		var pe *atlas.PolicyError
		if !errors.As(err, &pe) || pe.Field != c.field {
			t.Errorf("%s: %v, want a PolicyError on %s", c.name, err, c.field)
		}
	}
	// A REQUIRED attribute certd cannot fill is named too.
	strict := *pol
	strict.SubjectDN = map[string]json.RawMessage{
		"common_name":  json.RawMessage(`{"presence":"REQUIRED"}`),
		"organization": json.RawMessage(`{"presence":"REQUIRED"}`),
	}
	_, err = atlas.BuildRequest(&strict, atlas.RequestSpec{Domains: []string{"a.example.com"}, Key: newKey(t), NotBefore: e.clk.Now()})
	var pe *atlas.PolicyError
	if !errors.As(err, &pe) || pe.Field != "subject_dn.organization" {
		t.Errorf("REQUIRED organization: %v", err)
	}
	if req, err := atlas.BuildRequest(pol, atlas.RequestSpec{Domains: []string{"a.example.com"}, Key: newKey(t), NotBefore: e.clk.Now()}); err != nil {
		t.Fatalf("valid request refused: %v", err)
	} else if _, sent := req.SubjectDN["organization"]; sent || req.SubjectDN["common_name"] != "a.example.com" {
		t.Errorf("subject: %v (FORBIDDEN sent or CN missing)", req.SubjectDN)
	}
	if n := e.sim.Requests("POST /certificates"); n != 0 {
		t.Errorf("%d requests reached Atlas", n)
	}
}

func TestQuotaIsTerminal(t *testing.T) {
	e := newEnv(t, func(o *atlassim.Options) { o.Quota = 1 })
	e.verifiedClaim(t, "example.com")
	issue(t, e, "a.example.com")
	pol, _ := e.client.ValidationPolicy(ctx)
	req, _ := atlas.BuildRequest(pol, atlas.RequestSpec{Domains: []string{"b.example.com"}, Key: newKey(t), NotBefore: e.clk.Now()})
	_, err := e.client.CreateCertificate(ctx, req)
	var ae *atlas.Error
	if !errors.Is(err, atlas.ErrQuota) || !errors.As(err, &ae) || ae.Status != 402 || ae.Temporary() {
		t.Fatalf("quota: %v", err)
	}
	if n := e.sim.Requests("POST /certificates"); n != 2 {
		t.Fatalf("402 was retried: %d requests", n)
	}
}

func TestAmbiguousCreateIsReconciledNotResent(t *testing.T) {
	e := newEnv(t, nil)
	e.verifiedClaim(t, "example.com")
	pol, _ := e.client.ValidationPolicy(ctx)
	key := newKey(t)
	req, _ := atlas.BuildRequest(pol, atlas.RequestSpec{Domains: []string{"a.example.com"}, Key: key, NotBefore: e.clk.Now()})
	e.sim.InjectFault("POST /certificates", atlassim.Fault{DropAfterCommit: true})
	start := e.clk.Now()
	_, err := e.client.CreateCertificate(ctx, req)
	if !errors.Is(err, atlas.ErrAmbiguous) {
		t.Fatalf("dropped connection: %v, want ErrAmbiguous", err)
	}
	if n := e.sim.Requests("POST /certificates"); n != 1 {
		t.Fatalf("the client resent an ambiguous request: %d", n)
	}
	spki, _ := x509.MarshalPKIXPublicKey(key.Public())
	serial, found, err := e.client.FindIssued(ctx, spki, start)
	if err != nil || !found {
		t.Fatalf("reconcile: %v %v", found, err)
	}
	led := e.sim.Ledger()
	if len(led) != 1 || led[0].Serial != serial {
		t.Fatalf("ledger %+v, found %s", led, serial)
	}
	// A key that was never submitted is not found.
	other, _ := x509.MarshalPKIXPublicKey(newKey(t).Public())
	if _, found, err := e.client.FindIssued(ctx, other, start); err != nil || found {
		t.Fatalf("phantom: %v %v", found, err)
	}
	// A 503 on POST is ambiguous too, and not retried.
	e.sim.InjectFault("POST /certificates", atlassim.Fault{Status: 503})
	if _, err := e.client.CreateCertificate(ctx, req); !errors.Is(err, atlas.ErrAmbiguous) {
		t.Fatalf("503 on POST: %v", err)
	}
	if n := e.sim.Requests("POST /certificates"); n != 2 {
		t.Fatalf("503 on POST was retried: %d", n)
	}
}

// Atlas reports list a certificate only once it is issued: while it is
// issuing, "not listed" must never be read as "never sent" (that bought
// certificates twice). Reconcile answers ErrUndetermined until the
// issuance window has passed since the request was sent.
func TestReconcileNeverReadsIssuingAsAbsent(t *testing.T) {
	e := newEnv(t, func(o *atlassim.Options) { o.IssueDelay = time.Minute })
	e.verifiedClaim(t, "example.com")
	iss := atlas.NewIssuer(e.client, atlas.IssuerOptions{IssuanceWindow: 10 * time.Minute})
	key := newKey(t)
	csr, _ := x509.CreateCertificateRequest(randReader{}, &x509.CertificateRequest{DNSNames: []string{"a.example.com"}}, key)
	req := ca.Request{Domains: []string{"a.example.com"}, Key: key, CSR: csr, Since: e.clk.Now(), SentAt: e.clk.Now()}
	if _, err := iss.Submit(ctx, req); err != nil {
		t.Fatal(err)
	}
	spki, _ := x509.MarshalPKIXPublicKey(key.Public())
	if _, found, err := e.client.FindIssued(ctx, spki, req.Since); err != nil || found {
		t.Fatalf("reports while issuing: found=%v err=%v (the simulator lists only issued certificates)", found, err)
	}
	if _, found, err := iss.Reconcile(ctx, req); !errors.Is(err, ca.ErrUndetermined) || found {
		t.Fatalf("while issuing: found=%v err=%v; 'not found' would let a caller buy twice", found, err)
	}
	e.clk.Add(2 * time.Minute)
	if o, found, err := iss.Reconcile(ctx, req); err != nil || !found || o.Ref == "" {
		t.Fatalf("after issuance: %v %v %v", o, found, err)
	}
	// A request sent but never committed: absent only after the window.
	other := newKey(t)
	req2 := ca.Request{Domains: []string{"b.example.com"}, Key: other, Since: e.clk.Now(), SentAt: e.clk.Now()}
	if _, _, err := iss.Reconcile(ctx, req2); !errors.Is(err, ca.ErrUndetermined) {
		t.Fatalf("inside the window: %v", err)
	}
	e.clk.Add(11 * time.Minute)
	if _, found, err := iss.Reconcile(ctx, req2); err != nil || found {
		t.Fatalf("after the window: found=%v err=%v, want a definite absence", found, err)
	}
	// Never sent: absent at once.
	req3 := ca.Request{Domains: []string{"c.example.com"}, Key: newKey(t), Since: e.clk.Now()}
	if _, found, err := iss.Reconcile(ctx, req3); err != nil || found {
		t.Fatalf("never sent: found=%v err=%v", found, err)
	}
}

// A Retry-After longer than the client waits out itself ends the call with
// the typed error at once: the scheduler stores when to come back.
func TestLongRetryAfterIsReturnedNotSlept(t *testing.T) {
	e := newEnv(t, nil)
	e.sim.InjectFault("GET /quotas/issuance", atlassim.Fault{Status: 429, RetryAfter: 300 * time.Second})
	_, err := e.client.Quota(ctx)
	if !atlas.IsStatus(err, 429) || len(e.sleeps) != 0 {
		t.Fatalf("err %v, sleeps %v: want the 429 returned without sleeping", err, e.sleeps)
	}
	iss := atlas.NewIssuer(e.client, atlas.IssuerOptions{})
	e.verifiedClaim(t, "example.com")
	e.sim.InjectFault("POST /certificates", atlassim.Fault{Status: 429, RetryAfter: 300 * time.Second})
	key := newKey(t)
	_, err = iss.Submit(ctx, ca.Request{Domains: []string{"a.example.com"}, Key: key})
	ce, ok := ca.AsError(err)
	if !ok || ce.Status != 429 || ce.RetryAfter() != 300*time.Second || ce.Ambiguous || ce.Permanent {
		t.Fatalf("submit under a 429: %#v", err)
	}
}

func TestClaimDomainIsEscaped(t *testing.T) {
	e := newEnv(t, nil)
	if _, err := e.client.CreateClaim(ctx, "bad domain/../x"); !atlas.IsStatus(err, 422) && !atlas.IsStatus(err, 404) {
		t.Fatalf("odd domain: %v", err)
	}
	if _, err := e.client.CreateClaim(ctx, "blocked.invalid"); !atlas.IsStatus(err, 422) {
		t.Fatalf("blacklisted: %v", err)
	} else {
		var ae *atlas.Error
		errors.As(err, &ae)
		if ae.Errors["blacklist"] == "" {
			t.Errorf("errors map lost: %+v", ae)
		}
	}
}

func TestRateLimitIsHonoured(t *testing.T) {
	e := newEnv(t, func(o *atlassim.Options) { o.RateLimit = 1 }) // burst 2, then one a second
	for range 6 {
		if _, err := e.client.Quota(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if len(e.sleeps) == 0 {
		t.Fatal("six calls at a limit of one a second never waited")
	}
	for _, d := range e.sleeps {
		if d < 800*time.Millisecond {
			t.Errorf("waited %v; a Retry-After of at least 1s was sent", d)
		}
	}
}

func TestClientIsPacedByItsAccountBucket(t *testing.T) {
	e := newEnv(t, nil)
	c, err := atlas.NewClient(atlas.ClientOptions{URL: e.url, APIKey: "test-key", APISecret: "test-secret", Certificate: e.cert, RootCAs: e.roots,
		Now: e.clk.Now, RateLimit: ratelimit.New(5, 1, e.clk.Now, func(_ context.Context, d time.Duration) error {
			e.mu.Lock()
			e.sleeps = append(e.sleeps, d)
			e.mu.Unlock()
			e.clk.Add(d)
			return nil
		})})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := c.Quota(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var total time.Duration
	for _, d := range e.sleeps {
		total += d
	}
	// 6 requests (a login and 5 calls) at 5 a second with a burst of 1.
	if total < 990*time.Millisecond {
		t.Fatalf("waited %v for 6 requests at 5/s, want about 1s", total)
	}
}
