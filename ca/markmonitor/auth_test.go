package markmonitor_test

import (
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/markmonitor"
	"github.com/certd/certd/ca/markmonitor/mmsim"
	"github.com/certd/certd/config"
)

// The JWT runs out in the middle of the work (on the simulator's clock,
// which the client shares) and the work goes on: a token with less than
// refresh_before left is refreshed before it is used, a token past its
// end is replaced by a new login, and a token the API refuses (401) is
// replaced by a new login and the refused request sent again; the order
// placed before is collected, and nothing is ordered twice.
func TestJWTExpiresMidRun(t *testing.T) {
	clk := newClock()
	e := newEnv(t, func(o *mmsim.Options) { o.Now = clk.Now; o.StatusDelay = 0 })
	e.clock = clk
	is := e.issuer(t, nil)
	req := request(t, nil, freshNames()...)
	o := place(t, is, &req)
	if n := e.sim.Requests(mmsim.RouteAuthenticate); n != 1 {
		t.Fatalf("%d logins, want 1", n)
	}

	// 85 minutes on: 5 minutes left, less than refresh_before (10m).
	clk.Advance(85 * time.Minute)
	e.prove(t, is, o, req)
	if a, r := e.sim.Requests(mmsim.RouteAuthenticate), e.sim.Requests(mmsim.RouteRefresh); a != 1 || r != 1 {
		t.Fatalf("after 85 minutes: %d logins and %d refreshes, want 1 and 1", a, r)
	}

	// The refreshed token runs out unused: a new login, not a refresh.
	clk.Advance(91 * time.Minute)
	if _, err := is.Fetch(ctx, o, req); err != nil && !errors.Is(err, ca.ErrPending) {
		t.Fatal(err)
	}
	if a, r := e.sim.Requests(mmsim.RouteAuthenticate), e.sim.Requests(mmsim.RouteRefresh); a != 2 || r != 1 {
		t.Fatalf("after the token ran out: %d logins and %d refreshes, want 2 and 1", a, r)
	}

	// The API drops every token it issued: the next call is refused
	// (401), certd logs in again and sends the call again.
	e.sim.ExpireTokens()
	res := fetchUntil(t, is, o, req)
	e.verify(t, res, req)
	if a := e.sim.Requests(mmsim.RouteAuthenticate); a != 3 {
		t.Fatalf("after the tokens were dropped: %d logins, want 3", a)
	}
	if n := e.sim.OrdersFor(req.Domains); n != 1 {
		t.Fatalf("%d orders, want 1", n)
	}
	e.logsClean(t)
}

// Concurrent callers share one login: twenty calls of a fresh client
// start together and the simulator sees one authenticate; after the API
// drops the token, the callers that are refused share one new login.
func TestLoginsSerialised(t *testing.T) {
	e := newEnv(t, nil)
	is := e.issuer(t, nil)
	id, err := is.EnsureOrganization(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := e.client(t, nil)
	calls := func() {
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := c.Organization(ctx, id); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	before := e.sim.Requests(mmsim.RouteAuthenticate)
	calls()
	if n := e.sim.Requests(mmsim.RouteAuthenticate) - before; n != 1 {
		t.Fatalf("%d logins for 20 concurrent calls, want 1", n)
	}
	e.sim.ExpireTokens()
	calls()
	if n := e.sim.Requests(mmsim.RouteAuthenticate) - before; n != 2 {
		t.Fatalf("%d logins after the token was dropped, want 2 in all", n)
	}
}

// Refused credentials are Permanent and say which: a wrong password is a
// 401 of the login, a wrong API key a 403; a 401 that a new login does not
// cure is Permanent. Neither discloses a secret.
func TestCredentialsRefused(t *testing.T) {
	e := newEnv(t, nil)
	cases := []struct {
		name   string
		mod    func(*markmonitor.ClientOptions)
		status int
	}{
		{"password", func(o *markmonitor.ClientOptions) { o.Password = config.NewSecretValue("wrong-" + password) }, http.StatusUnauthorized},
		{"api key", func(o *markmonitor.ClientOptions) { o.APIKey = config.NewSecretValue("wrong-" + apiKey) }, http.StatusForbidden},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := e.client(t, c.mod).Login(ctx)
			ce, ok := ca.AsError(err)
			if !ok || !ce.Permanent || ce.Status != c.status || ce.Ambiguous {
				t.Fatalf("login: %v, want a Permanent *ca.Error with status %d", err, c.status)
			}
			noSecret(t, "the error", err.Error())
		})
	}
	t.Run("401 after a new login", func(t *testing.T) {
		c := e.client(t, nil)
		if err := c.Login(ctx); err != nil {
			t.Fatal(err)
		}
		before := e.sim.Requests(mmsim.RouteAuthenticate)
		e.sim.InjectFault(mmsim.RouteListOrgs, mmsim.Fault{Status: 401})
		e.sim.InjectFault(mmsim.RouteListOrgs, mmsim.Fault{Status: 401})
		_, err := c.FindOrganizations(ctx, orgName)
		ce, ok := ca.AsError(err)
		if !ok || !ce.Permanent || ce.Status != 401 {
			t.Fatalf("%v, want a Permanent 401", err)
		}
		if n := e.sim.Requests(mmsim.RouteAuthenticate) - before; n != 1 {
			t.Fatalf("%d logins after the 401, want 1", n)
		}
	})
	e.logsClean(t)
}
