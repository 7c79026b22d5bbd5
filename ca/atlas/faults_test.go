package atlas_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/certd/certd/ca/atlas"
	"github.com/certd/certd/ca/atlas/atlassim"
)

// What stands in front of the API fails too. An HTML page with 502 or
// 200 answering POST /certificates is an ambiguous error (the order may
// be committed behind it: N1) that never quotes the page; the same page
// or a cut body answering the certificate's status is an error, not a
// certificate.
func TestHTMLAndTruncatedAnswers(t *testing.T) {
	e := newEnv(t, nil)
	e.verifiedClaim(t, "example.com")
	pol, err := e.client.ValidationPolicy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	newRequest := func(name string) *atlas.CertRequest {
		req, err := atlas.BuildRequest(pol, atlas.RequestSpec{Domains: []string{name}, Key: newKey(t), NotBefore: e.clk.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return req
	}
	markup := func(err error) bool {
		return strings.Contains(strings.ToLower(err.Error()), "<html") || strings.Contains(err.Error(), "</")
	}
	for _, tc := range []struct {
		name      string
		fault     atlassim.Fault
		ambiguous bool
	}{
		{"html 502", atlassim.Fault{HTML: true, Status: 502}, true},
		{"html 200", atlassim.Fault{HTML: true}, true},
	} {
		t.Run("order "+tc.name, func(t *testing.T) {
			e.sim.InjectFault("POST /certificates", tc.fault)
			_, err := e.client.CreateCertificate(ctx, newRequest(strings.ReplaceAll(tc.name, " ", "-")+".example.com"))
			if err == nil || markup(err) {
				t.Fatalf("%v, want an error that does not quote the page", err)
			}
			if tc.ambiguous != errors.Is(err, atlas.ErrAmbiguous) {
				t.Errorf("%v: ambiguous %v, want %v", err, !tc.ambiguous, tc.ambiguous)
			}
		})
	}
	serial, err := e.client.CreateCertificate(ctx, newRequest("status.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []atlassim.Fault{{HTML: true}, {HTML: true, Status: 502}, {Truncate: true}} {
		e.sim.InjectFault("GET /certificates/{serial}", f)
		info, err := e.client.Certificate(ctx, serial)
		if err == nil || markup(err) {
			t.Errorf("%+v: %+v, %v, want an error that does not quote the page", f, info, err)
		}
	}
}
