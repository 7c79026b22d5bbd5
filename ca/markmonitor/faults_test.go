package markmonitor_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/markmonitor/mmsim"
)

// What stands in front of the API fails too: an HTML page (a load
// balancer's 502, a proxy's 200) or a 2xx cut mid-JSON answering POST
// /order may follow a committed order, so it is ambiguous (N1), and an
// error never quotes the page's markup.
func TestHTMLAndTruncatedAnswersToTheOrder(t *testing.T) {
	e := newEnv(t, nil)
	is := e.issuer(t, nil)
	for _, tc := range []struct {
		name  string
		fault mmsim.Fault
		html  bool
	}{
		{"html 502", mmsim.Fault{HTML: true, Status: 502}, true},
		{"html 200", mmsim.Fault{HTML: true}, true},
		{"truncated 201", mmsim.Fault{Truncate: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.sim.InjectFault(mmsim.RouteCreateOrder, tc.fault)
			req := request(t, nil, freshNames()...)
			_, err := is.Submit(ctx, req)
			if !errors.Is(err, ca.ErrAmbiguous) {
				t.Fatalf("%v, want ambiguous", err)
			}
			if tc.html && (strings.Contains(strings.ToLower(err.Error()), "<html") || strings.Contains(err.Error(), "</") || !strings.Contains(err.Error(), "HTML page")) {
				t.Errorf("the error quotes the page instead of naming it: %v", err)
			}
		})
	}
}
