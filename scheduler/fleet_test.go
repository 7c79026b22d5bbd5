package scheduler_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

func fleetScheduler(t *testing.T, st *store.SQLite, clk *clock, host string, work scheduler.Work) *scheduler.Scheduler {
	t.Helper()
	now := time.Now
	if clk != nil {
		now = clk.Now
	}
	s, err := scheduler.New(scheduler.Options{Store: st, Work: work, Schedule: "@every 1h", Now: now,
		Fleet: &scheduler.Fleet{Store: st, Host: host, Holder: host + "/1", TTL: 900 * time.Millisecond, HostStale: 10 * time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A host whose configuration asks for other names than a live host's does
// not change the stored spec: the change waits until every live host asks
// for it (else each host would order its own, in turn, each paid).
func TestFleetSpecChangeWaitsForEveryLiveHost(t *testing.T) {
	clk := &clock{t: t0}
	st := newStore(t, clk.Now)
	noWork := func(context.Context, store.Certificate) error { return nil }
	a := fleetScheduler(t, st, clk, "web1", noWork)
	b := fleetScheduler(t, st, clk, "web2", noWork)
	old, changed := spec("www", "www.example.com"), spec("www", "www.example.com", "api.example.com")
	if err := a.Apply(ctx, []scheduler.CertSpec{old}); err != nil {
		t.Fatal(err)
	}
	if err := b.Apply(ctx, []scheduler.CertSpec{old}); err != nil {
		t.Fatal(err)
	}
	// Issued: a current version, renewal far away.
	if err := st.UpdateCertificate(ctx, "www", func(c *store.Certificate) error {
		c.State, c.CurrentVersion, c.NextAction, c.NextActionAt = store.StateValid, 1, scheduler.ActionRenew, t0.Add(60*24*time.Hour)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"web1", "web2"} {
		if err := st.RecordPass(ctx, store.Pass{Host: h, FinishedAt: clk.Now(), PID: 1}); err != nil {
			t.Fatal(err)
		}
	}
	// web1 gets the new configuration first: nothing changes.
	if err := a.Apply(ctx, []scheduler.CertSpec{changed}); err != nil {
		t.Fatal(err)
	}
	c, err := st.GetCertificate(ctx, "www")
	if err != nil {
		t.Fatal(err)
	}
	if c.SpecHash != old.Hash() || c.NextAction != scheduler.ActionRenew {
		t.Fatalf("one host's new configuration changed the fleet's certificate: spec %s, next %s", c.SpecHash[:8], c.NextAction)
	}
	evs, _ := st.ListEvents(ctx, store.EventFilter{CertName: "www"})
	if evs[len(evs)-1].Kind != "spec_disagreement" {
		t.Fatalf("no spec_disagreement event: %+v", evs[len(evs)-1])
	}
	// Due now, web1 (other spec) claims nothing; web2 (the stored spec) does.
	if err := st.UpdateCertificate(ctx, "www", func(c *store.Certificate) error { c.NextActionAt = clk.Now(); return nil }); err != nil {
		t.Fatal(err)
	}
	if got, err := st.ClaimDueCertificates(ctx, "web1", "web1/1", clk.Now(), time.Minute, 10); err != nil || len(got) != 0 {
		t.Fatalf("the host with the other spec claimed %d (%v)", len(got), err)
	}
	// web2 gets it too: now every live host agrees, and the reissue is due.
	if err := b.Apply(ctx, []scheduler.CertSpec{changed}); err != nil {
		t.Fatal(err)
	}
	if c, _ = st.GetCertificate(ctx, "www"); c.SpecHash != changed.Hash() || c.NextAction != scheduler.ActionReissue {
		t.Fatalf("with every host agreeing: spec changed %v, next %s", c.SpecHash == changed.Hash(), c.NextAction)
	}
	// A host that is down does not hold a change back.
	clk.Add(time.Hour)
	if err := st.RecordPass(ctx, store.Pass{Host: "web1", FinishedAt: clk.Now(), PID: 1}); err != nil {
		t.Fatal(err)
	}
	third := spec("www", "www.example.com", "api.example.com", "cdn.example.com")
	if err := a.Apply(ctx, []scheduler.CertSpec{third}); err != nil {
		t.Fatal(err)
	}
	if c, _ = st.GetCertificate(ctx, "www"); c.SpecHash != third.Hash() {
		t.Fatal("a host down for an hour held a change back")
	}
}

// A certificate one host drops stays while another lists it; it is
// retired when no host does.
func TestFleetRetiresOnlyWhatNoHostLists(t *testing.T) {
	clk := &clock{t: t0}
	st := newStore(t, clk.Now)
	noWork := func(context.Context, store.Certificate) error { return nil }
	a := fleetScheduler(t, st, clk, "web1", noWork)
	b := fleetScheduler(t, st, clk, "web2", noWork)
	x, y := spec("x", "x.example.com"), spec("y", "y.example.com")
	if err := a.Apply(ctx, []scheduler.CertSpec{x, y}); err != nil {
		t.Fatal(err)
	}
	if err := b.Apply(ctx, []scheduler.CertSpec{x}); err != nil {
		t.Fatal(err)
	}
	if c, _ := st.GetCertificate(ctx, "y"); c.State == store.StateRetired {
		t.Fatal("web2 retired a certificate web1 lists")
	}
	if err := a.Apply(ctx, []scheduler.CertSpec{x}); err != nil {
		t.Fatal(err)
	}
	if c, _ := st.GetCertificate(ctx, "y"); c.State != store.StateRetired {
		t.Fatalf("y is %s once no host lists it, want retired", c.State)
	}
}

// A job whose lease is taken over stops (its context is cancelled) and its
// failure is not recorded: the host that holds the lease now records what
// happens.
func TestFleetJobThatLosesItsLeaseStopsAndWritesNothing(t *testing.T) {
	st := newStore(t, nil)
	var started, stopped atomic.Bool
	work := func(ctx context.Context, c store.Certificate) error {
		started.Store(true)
		<-ctx.Done()
		stopped.Store(true)
		// A write after the loss is refused by the store.
		err := st.UpdateCertificate(context.WithoutCancel(ctx), c.Name, func(c *store.Certificate) error { c.LastError = "stale"; return nil })
		if !errors.Is(err, store.ErrLeaseLost) {
			t.Errorf("a write after the lease was lost: %v, want ErrLeaseLost", err)
		}
		return errors.New("interrupted")
	}
	s := fleetScheduler(t, st, nil, "web1", work)
	if err := s.Apply(ctx, []scheduler.CertSpec{spec("www", "www.example.com")}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Pass(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	var held store.Lease
	for held.Token == 0 {
		ls, _ := st.ListLeases(ctx)
		for _, l := range ls {
			if l.Resource == store.CertificateResource("www") {
				held = l
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no lease taken")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Another host takes it over (as after a pause past the lease).
	if err := st.ReleaseLease(ctx, held); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AcquireLease(ctx, store.CertificateResource("www"), "web2/1", time.Minute); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the job did not stop after losing its lease")
	}
	if !started.Load() || !stopped.Load() {
		t.Fatal("the job did not run and stop")
	}
	c, err := st.GetCertificate(ctx, "www")
	if err != nil {
		t.Fatal(err)
	}
	if c.Failures != 0 || c.LastError != "" || c.State != store.StatePending {
		t.Fatalf("a job that lost its lease recorded a failure: %+v", c)
	}
}
