package markmonitor_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/markmonitor"
	"github.com/certd/certd/ca/markmonitor/mmsim"
)

// The limit of 100 requests a minute holds across all the account's work:
// 250 requests from 25 goroutines (window shortened to 2s on both sides)
// never put more than 100 in any window at the simulator, which never
// has to refuse one.
func TestRequestLimitNeverExceeded(t *testing.T) {
	const window = 2 * time.Second
	e := newEnv(t, func(o *mmsim.Options) { o.RateLimit, o.RateWindow = 100, window })
	is := e.issuerWith(t, func(o *markmonitor.ClientOptions) {
		o.RequestsPerMinute, o.RateWindow, o.RateMargin = 100, window, 100*time.Millisecond
	}, nil)
	id, err := is.EnsureOrganization(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := is.Client()
	var wg sync.WaitGroup
	var failed atomic.Int64
	start := time.Now()
	for range 25 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				if _, err := c.Organization(ctx, id); err != nil {
					failed.Add(1)
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.FailNow()
	}
	if n := e.sim.Limited(); n != 0 {
		t.Fatalf("the simulator refused %d requests over the limit", n)
	}
	if p := e.sim.Peak(); p > 100 {
		t.Fatalf("%d requests in one window, want at most 100", p)
	}
	// 253 requests at 100 per 2.1s: the limit was waited for.
	if took := time.Since(start); took < window {
		t.Fatalf("250 requests took %s: the limit was not waited for", took)
	}
}

// Every documented status maps to the one typed error: 400, 403 and 404
// are Permanent; 409 is retried; 429 carries its Retry-After (or 60s);
// a 5xx is retried, and Ambiguous for a POST (the order may be placed)
// but not for a GET. The answer lost after a POST was written is
// Ambiguous (the conformance suite shows it).
func TestStatusMapping(t *testing.T) {
	e := newEnv(t, nil)
	is := e.issuer(t, nil)
	if _, err := is.EnsureOrganization(ctx); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		status     int
		retry      time.Duration
		permanent  bool
		ambiguous  bool // for the POST
		wantRetry  time.Duration
		permanentG bool
	}{
		{400, 0, true, false, 0, true},
		{403, 0, true, false, 0, true},
		{404, 0, true, false, 0, true},
		{409, 0, false, false, 0, false},
		{429, 42 * time.Second, false, false, 42 * time.Second, false},
		{429, 0, false, false, markmonitor.DefaultRateLimitRetry, false},
		{500, 0, false, true, 0, false},
		{502, 0, false, true, 0, false},
		{503, 30 * time.Second, false, true, 30 * time.Second, false},
		{504, 0, false, true, 0, false},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.status, "/", c.retry), func(t *testing.T) {
			req := request(t, nil, freshNames()...)
			e.sim.InjectFault(mmsim.RouteCreateOrder, mmsim.Fault{Status: c.status, RetryAfter: c.retry})
			req.SentAt = time.Now()
			_, err := is.Submit(ctx, req)
			ce, ok := ca.AsError(err)
			if !ok || ce.CA != "markmonitor" || ce.Status != c.status || ce.Permanent != c.permanent || ce.Ambiguous != c.ambiguous ||
				ce.Retry != c.wantRetry || errors.Is(err, ca.ErrAmbiguous) != c.ambiguous {
				t.Fatalf("POST /order answered %d: %#v", c.status, ce)
			}
			if ce.Code == "" || ce.Op != "submit (POST /order)" {
				t.Fatalf("code %q, op %q", ce.Code, ce.Op)
			}
			e.sim.InjectFault(mmsim.RouteSearchOrders, mmsim.Fault{Status: c.status, RetryAfter: c.retry})
			_, _, err = is.Client().SearchOrders(ctx, markmonitor.OrderQuery{CommonNames: req.Domains[:1]})
			ce, ok = ca.AsError(err)
			if !ok || ce.Status != c.status || ce.Permanent != c.permanentG || ce.Ambiguous || ce.Retry != c.wantRetry {
				t.Fatalf("GET /order answered %d: %#v", c.status, ce)
			}
			if n := e.sim.OrdersFor(req.Domains); n != 0 {
				t.Fatalf("%d orders", n)
			}
		})
	}
}

// After a lost answer, an order that does not show in the search reads
// "cannot tell yet" until search_window has passed since it was sent,
// then as absent; one that shows is found by its CSR.
func TestReconcileSearchWindow(t *testing.T) {
	e := newEnv(t, func(o *mmsim.Options) { o.SearchLag = time.Hour })
	is := e.issuer(t, func(o *markmonitor.IssuerOptions) { o.SearchWindow = time.Minute })
	req := request(t, nil, freshNames()...)
	e.sim.InjectFault(mmsim.RouteCreateOrder, mmsim.Fault{DropAfterCommit: true})
	req.SentAt = time.Now()
	if _, err := is.Submit(ctx, req); !errors.Is(err, ca.ErrAmbiguous) {
		t.Fatalf("lost answer: %v", err)
	}
	_, found, err := is.Reconcile(ctx, req)
	if found || !errors.Is(err, ca.ErrUndetermined) || ca.IsPermanent(err) || ca.RetryAfterOf(err) <= 0 {
		t.Fatalf("an order hidden by the search's lag: found=%v err=%v, want ErrUndetermined with a Retry-After", found, err)
	}
	// Never committed, sent two minutes ago: absent.
	other := request(t, nil, freshNames()...)
	other.SentAt = time.Now().Add(-2 * time.Minute)
	if _, found, err := is.Reconcile(ctx, other); found || err != nil {
		t.Fatalf("an order never placed, past the window: found=%v err=%v, want a definite absence", found, err)
	}

	// Without the lag the lost order is found, by its CSR, and issued once.
	e2 := newEnv(t, nil)
	is2 := e2.issuer(t, nil)
	e2.sim.InjectFault(mmsim.RouteCreateOrder, mmsim.Fault{DropAfterCommit: true})
	req2 := request(t, nil, freshNames()...)
	req2.SentAt = time.Now()
	if _, err := is2.Submit(ctx, req2); !errors.Is(err, ca.ErrAmbiguous) {
		t.Fatalf("lost answer: %v", err)
	}
	o, found, err := is2.Reconcile(ctx, req2)
	if !found || err != nil {
		t.Fatalf("found=%v err=%v", found, err)
	}
	e2.prove(t, is2, o, req2)
	e2.verify(t, fetchUntil(t, is2, o, req2), req2)
	if n := e2.sim.OrdersFor(req2.Domains); n != 1 {
		t.Fatalf("%d orders, want 1", n)
	}
}
