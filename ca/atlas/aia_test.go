package atlas_test

import (
	"bytes"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/atlas"
	"github.com/certd/certd/ca/atlas/atlassim"
)

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A certificate issued before the issuing CA rotated, fetched by a fresh
// issuer (a restart forgot the chains seen): /trustchain names only the
// new issuing CA, so the old one is fetched from the leaf's AIA and
// joined to the root the current chain ends in. What the AIA serves is
// trusted only if it signed the leaf and a served chain signed it.
func TestChainOfACertificateIssuedBeforeARotationComesFromItsAIA(t *testing.T) {
	var aia http.Handler
	aiaSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { aia.ServeHTTP(w, r) }))
	t.Cleanup(aiaSrv.Close)
	e := newEnv(t, func(o *atlassim.Options) { o.RotateEvery = 1; o.AIABaseURL = aiaSrv.URL + "/aia" })
	aia = e.sim.AIAHandler()
	e.verifiedClaim(t, "example.com")

	first, firstSerial := issue(t, e, "a.example.com")
	second, secondSerial := issue(t, e, "b.example.com") // the issuing CA rotates
	if bytes.Equal(first.AuthorityKeyId, second.AuthorityKeyId) {
		t.Fatal("the issuing CA did not rotate between the two certificates")
	}
	if len(first.IssuingCertificateURL) != 1 {
		t.Fatalf("leaf AIA caIssuers %v, want one URL", first.IssuingCertificateURL)
	}
	order := ca.Order{Ref: firstSerial}

	// A fresh issuer: only the current chain is known.
	iss := atlas.NewIssuer(e.client, atlas.IssuerOptions{})
	res, err := iss.Fetch(ctx, order, ca.Request{})
	if err != nil {
		t.Fatalf("fetch after rotation: %v", err)
	}
	inter, roots := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range res.Chain {
		inter.AddCert(c)
	}
	for _, c := range res.Roots {
		roots.AddCert(c)
	}
	if _, err := res.Leaf.Verify(x509.VerifyOptions{Intermediates: inter, Roots: roots, CurrentTime: e.clk.Now()}); err != nil {
		t.Fatalf("the joined chain does not verify: %v", err)
	}
	if !bytes.Equal(res.Chain[0].SubjectKeyId, first.AuthorityKeyId) {
		t.Fatalf("chain starts with %s, not the leaf's issuer", res.Chain[0].Subject)
	}
	// The current certificate still gets the current chain.
	if res, err := iss.Fetch(ctx, ca.Order{Ref: secondSerial}, ca.Request{}); err != nil || !bytes.Equal(res.Chain[0].SubjectKeyId, second.AuthorityKeyId) {
		t.Fatalf("current certificate: %v", err)
	}

	// AIA turned off: the order waits, as before.
	off := atlas.NewIssuer(e.client, atlas.IssuerOptions{DisableAIA: true})
	if _, err := off.Fetch(ctx, order, ca.Request{}); !errors.Is(err, atlas.ErrChainUnavailable) {
		t.Fatalf("AIA off: %v, want ErrChainUnavailable", err)
	}

	// An AIA answer that did not sign the leaf is refused: here the
	// current issuing CA, which signed only the second certificate.
	res2, err := atlas.NewIssuer(e.client, atlas.IssuerOptions{}).Fetch(ctx, ca.Order{Ref: secondSerial}, ca.Request{})
	if err != nil {
		t.Fatal(err)
	}
	wrong := &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Body: io.NopCloser(bytes.NewReader(res2.Chain[0].Raw)), Header: http.Header{}, Request: r}, nil
	})}
	if _, err := atlas.NewIssuer(e.client, atlas.IssuerOptions{AIA: wrong}).Fetch(ctx, order, ca.Request{}); !errors.Is(err, atlas.ErrChainUnavailable) {
		t.Fatalf("an AIA CA that did not sign the leaf: %v, want ErrChainUnavailable", err)
	}
}
