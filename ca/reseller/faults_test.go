package reseller_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/reseller"
	"github.com/certd/certd/ca/reseller/resellersim"
)

// What stands in front of the API fails too: an HTML page (a load
// balancer's 502, a proxy's 200) or a 2xx cut mid-JSON answering the
// order may follow a committed order, so it is ambiguous (N1), and an
// error never quotes the page's markup.
func TestHTMLAndTruncatedAnswersToTheOrder(t *testing.T) {
	e := newEnv(t, nil)
	iss := e.issuer(t, reseller.IssuerOptions{Roots: e.roots})
	for _, tc := range []struct {
		name  string
		fault resellersim.Fault
		html  bool
	}{
		{"html 502", resellersim.Fault{HTML: true, Status: 502}, true},
		{"html 200", resellersim.Fault{HTML: true}, true},
		{"truncated 201", resellersim.Fault{Truncate: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.sim.InjectFault("POST /ssl-certificate", tc.fault)
			_, err := iss.Submit(ctx, request(t, strings.ReplaceAll(tc.name, " ", "-")+".example.com"))
			if !errors.Is(err, ca.ErrAmbiguous) {
				t.Fatalf("%v, want ambiguous", err)
			}
			if tc.html && (strings.Contains(strings.ToLower(err.Error()), "<html") || strings.Contains(err.Error(), "</") || !strings.Contains(err.Error(), "HTML page")) {
				t.Errorf("the error quotes the page instead of naming it: %v", err)
			}
		})
	}
}

// A read retried after a transport failure (the API hung past the
// request timeout, or cut its answer) is logged like a retried 503, not
// retried silently.
func TestReadRetriedAfterHangOrTruncationIsLogged(t *testing.T) {
	e := newEnv(t, nil)
	log, logs := observed()
	iss := e.issuer(t, reseller.IssuerOptions{Roots: e.roots})
	o, err := iss.Submit(ctx, request(t, "retried.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	c := e.client(t, log, func(o *reseller.ClientOptions) { o.Timeout = time.Second })
	for _, f := range []resellersim.Fault{{Hang: true}, {Truncate: true}} {
		before := len(logs.FilterMessage("reseller: retrying").All())
		e.sim.InjectFault("GET /ssl-certificate/{id}", f)
		if _, err := c.Get(ctx, o.Ref); err != nil {
			t.Fatalf("%+v: %v, want the retry to succeed", f, err)
		}
		if len(logs.FilterMessage("reseller: retrying").All()) == before {
			t.Errorf("%+v: retried without a word:\n%s", f, logText(logs))
		}
	}
}
