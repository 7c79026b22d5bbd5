package sectigo_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/sectigo/sectigosim"
)

// What stands in front of the API fails too: an HTML page (a load
// balancer's 502, a proxy's 200) or a 2xx cut mid-answer to AutoApplySSL
// may follow a committed order, so it is ambiguous (N1), and an error
// never quotes the page's markup.
func TestHTMLAndTruncatedAnswersToTheOrder(t *testing.T) {
	e := newEnv(t, nil)
	is := e.issuer(t, 488, nil)
	for _, tc := range []struct {
		name  string
		fault sectigosim.Fault
		html  bool
	}{
		{"html 502", sectigosim.Fault{HTML: true, Status: 502}, true},
		{"html 200", sectigosim.Fault{HTML: true}, true},
		{"truncated 200", sectigosim.Fault{Truncate: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.sim.InjectFault("AutoApplySSL", tc.fault)
			_, err := is.Submit(ctx, request(t, strings.ReplaceAll(tc.name, " ", "-")+".example.com"))
			if !errors.Is(err, ca.ErrAmbiguous) {
				t.Fatalf("%v, want ambiguous", err)
			}
			if tc.html && (strings.Contains(strings.ToLower(err.Error()), "<html") || strings.Contains(err.Error(), "</") || !strings.Contains(err.Error(), "HTML page")) {
				t.Errorf("the error quotes the page instead of naming it: %v", err)
			}
		})
	}
}
