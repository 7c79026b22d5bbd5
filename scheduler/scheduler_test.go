package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

var ctx = context.Background()

// clock is a settable fake clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newStore(t *testing.T, now func() time.Time) *store.SQLite {
	t.Helper()
	s, err := store.Open(ctx, filepath.Join(t.TempDir(), "certd.db"), store.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newScheduler(t *testing.T, st *store.SQLite, clk *clock, work scheduler.Work) *scheduler.Scheduler {
	t.Helper()
	s, err := scheduler.New(scheduler.Options{Store: st, Work: work, Schedule: "@every 1h", Now: clk.Now, Rand: rand.New(rand.NewPCG(1, 2))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func spec(name string, domains ...string) scheduler.CertSpec {
	return scheduler.CertSpec{Name: name, Account: "atlas", Domains: domains, KeyType: "ecdsa-p256"}
}

func TestApplyReconcilesConfigWithStore(t *testing.T) {
	clk := &clock{t: t0}
	st := newStore(t, clk.Now)
	s := newScheduler(t, st, clk, func(context.Context, store.Certificate) error { return nil })

	if err := s.Apply(ctx, []scheduler.CertSpec{spec("a", "a.example"), spec("b", "b.example")}); err != nil {
		t.Fatal(err)
	}
	a, err := st.GetCertificate(ctx, "a")
	if err != nil || a.State != store.StatePending || a.NextAction != scheduler.ActionIssue || !a.NextActionAt.Equal(t0) {
		t.Fatalf("new certificate not due for issue now: %+v %v", a, err)
	}

	// Pretend a is issued, then change its names: it becomes due for reissue.
	a.State, a.CurrentVersion, a.NextAction, a.NextActionAt = store.StateValid, 7, "", time.Time{}
	if err := st.SaveCertificate(ctx, a); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour)
	if err := s.Apply(ctx, []scheduler.CertSpec{spec("a", "a.example", "www.a.example")}); err != nil {
		t.Fatal(err)
	}
	a, _ = st.GetCertificate(ctx, "a")
	if a.NextAction != scheduler.ActionReissue || !a.NextActionAt.Equal(clk.Now()) || len(a.Domains) != 2 {
		t.Fatalf("changed certificate: %+v", a)
	}
	b, _ := st.GetCertificate(ctx, "b")
	if b.State != store.StateRetired || !b.NextActionAt.IsZero() {
		t.Fatalf("removed certificate not retired: %+v", b)
	}
	// Applying the same config again changes nothing and logs nothing new.
	before, _ := st.ListEvents(ctx, store.EventFilter{})
	if err := s.Apply(ctx, []scheduler.CertSpec{spec("a", "a.example", "www.a.example")}); err != nil {
		t.Fatal(err)
	}
	after, _ := st.ListEvents(ctx, store.EventFilter{})
	if len(after) != len(before) {
		t.Errorf("idempotent apply added %d events", len(after)-len(before))
	}
	kinds := map[string]bool{}
	for _, e := range after {
		kinds[e.Kind] = true
	}
	for _, k := range []string{"configured", "changed", "retired"} {
		if !kinds[k] {
			t.Errorf("no %q event", k)
		}
	}
}

type retryErr struct{ d time.Duration }

func (e retryErr) Error() string             { return "rate limited" }
func (e retryErr) RetryAfter() time.Duration { return e.d }
func TestFailuresArePersistedWithBackoff(t *testing.T) {
	clk := &clock{t: t0}
	st := newStore(t, clk.Now)
	var calls atomic.Int32
	s := newScheduler(t, st, clk, func(_ context.Context, c store.Certificate) error {
		calls.Add(1)
		switch c.Name {
		case "panics":
			panic("boom")
		case "limited":
			return retryErr{d: 3 * time.Hour}
		}
		return errors.New("CA unreachable")
	})
	if err := s.Apply(ctx, []scheduler.CertSpec{spec("fails", "f.example"), spec("panics", "p.example"), spec("limited", "l.example")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 3 {
		t.Fatalf("work called %d times, want 3", calls.Load())
	}
	for name, want := range map[string]struct {
		min, max time.Duration
		msg      string
	}{
		"fails":   {48 * time.Second, 72 * time.Second, "CA unreachable"},
		"panics":  {48 * time.Second, 72 * time.Second, "panic"},
		"limited": {3 * time.Hour, 3 * time.Hour, "rate limited"},
	} {
		c, err := st.GetCertificate(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		delay := c.NextActionAt.Sub(t0)
		if c.State != store.StateFailing || c.Failures != 1 || !strings.Contains(c.LastError, want.msg) || delay < want.min || delay > want.max {
			t.Errorf("%s: state %s failures %d error %q retry in %v (want %v..%v)", name, c.State, c.Failures, c.LastError, delay, want.min, want.max)
		}
	}
	c, _ := st.GetCertificate(ctx, "limited")
	if !c.RetryAfter.Equal(t0.Add(3 * time.Hour)) {
		t.Errorf("Retry-After not persisted: %v", c.RetryAfter)
	}
	// Nothing is due until the backoff passes; then it is worked again.
	if err := s.Pass(ctx); err != nil || calls.Load() != 3 {
		t.Fatalf("worked before its retry time: %d calls", calls.Load())
	}
	clk.Add(2 * time.Minute)
	if err := s.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 5 {
		t.Fatalf("after backoff: %d calls, want 5 (limited still waits)", calls.Load())
	}
	f, _ := st.GetCertificate(ctx, "fails")
	if f.Failures != 2 || f.NextActionAt.Sub(clk.Now()) < 8*time.Minute {
		t.Errorf("second failure: %d failures, retry in %v (want ~10m)", f.Failures, f.NextActionAt.Sub(clk.Now()))
	}
	// Every failure left an event.
	ev, _ := st.ListEvents(ctx, store.EventFilter{})
	failed := 0
	for _, e := range ev {
		if e.Kind == "failed" && e.Level == "error" {
			failed++
		}
	}
	if failed != 5 {
		t.Errorf("%d failure events, want 5", failed)
	}
}

func TestPassBoundsConcurrency(t *testing.T) {
	clk := &clock{t: t0}
	st := newStore(t, clk.Now)
	var running, peak atomic.Int32
	s, err := scheduler.New(scheduler.Options{Store: st, Schedule: "@every 1h", Now: clk.Now, Workers: 3,
		Work: func(_ context.Context, c store.Certificate) error {
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(5 * time.Millisecond)
			running.Add(-1)
			c.NextAction, c.NextActionAt, c.State = "", time.Time{}, store.StateValid
			return st.SaveCertificate(ctx, c)
		}})
	if err != nil {
		t.Fatal(err)
	}
	var specs []scheduler.CertSpec
	for i := range 20 {
		specs = append(specs, spec(string(rune('a'+i)), "x.example"))
	}
	if err := s.Apply(ctx, specs); err != nil {
		t.Fatal(err)
	}
	if err := s.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if p := peak.Load(); p > 3 || p < 2 {
		t.Errorf("peak concurrency %d, want 2..3 with 3 workers", p)
	}
	due, _ := st.DueCertificates(ctx, clk.Now(), 100)
	if len(due) != 0 {
		t.Errorf("%d still due after the pass", len(due))
	}
}

func TestStopWaitsForRunningJobThenCancels(t *testing.T) {
	clk := &clock{t: t0}
	st := newStore(t, clk.Now)
	started := make(chan struct{})
	var sawCancel atomic.Bool
	s := newScheduler(t, st, clk, func(ctx context.Context, c store.Certificate) error {
		close(started)
		<-ctx.Done() // a job stuck in a step
		sawCancel.Store(true)
		return ctx.Err()
	})
	if err := s.Apply(ctx, []scheduler.CertSpec{spec("slow", "s.example")}); err != nil {
		t.Fatal(err)
	}
	s.Start()
	<-started
	s.Stop(50 * time.Millisecond)
	if !sawCancel.Load() {
		t.Fatal("Stop returned before the job saw its cancellation")
	}
	// Interrupted by shutdown is not a failure: it stays due.
	c, _ := st.GetCertificate(ctx, "slow")
	if c.State == store.StateFailing || c.NextActionAt.IsZero() {
		t.Errorf("interrupted job recorded as failure or lost its due time: %+v", c)
	}
}

func TestBackoffSchedule(t *testing.T) {
	want := []time.Duration{time.Minute, 10 * time.Minute, 100 * time.Minute, 6 * time.Hour, 6 * time.Hour, 6 * time.Hour}
	for i, w := range want {
		if got := scheduler.Backoff(i+1, 0, nil); got != w {
			t.Errorf("failure %d: %v, want %v", i+1, got, w)
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 1000 {
		d := scheduler.Backoff(2, 0, r)
		if d < 8*time.Minute || d > 12*time.Minute {
			t.Fatalf("jitter out of ±20%%: %v", d)
		}
	}
	if got := scheduler.Backoff(1, 2*time.Hour, r); got != 2*time.Hour {
		t.Errorf("Retry-After not honoured: %v", got)
	}
}

func TestRenewalTimeProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	lifetimes := []time.Duration{398 * 24 * time.Hour, 200 * 24 * time.Hour, 100 * 24 * time.Hour, 47 * 24 * time.Hour, 6 * 24 * time.Hour, 10 * time.Minute}
	for i := range 20000 {
		life := lifetimes[i%len(lifetimes)]
		if i%3 == 0 {
			life = time.Duration(r.Int64N(int64(400*24*time.Hour))) + time.Minute
		}
		nb := t0.Add(-time.Duration(r.Int64N(int64(life))))
		na := nb.Add(life)
		p := scheduler.Policy{RemainingFraction: 0.06 + r.Float64()*0.9}
		if i%2 == 0 {
			p = scheduler.Policy{Before: time.Duration(r.Int64N(int64(500 * 24 * time.Hour)))}
		}
		at := scheduler.RenewalTime(nb, na, p, r.Float64())
		em := scheduler.EmergencyTime(nb, na)
		if at.Before(nb) || at.After(em) {
			t.Fatalf("life %v policy %+v: renewal %v outside [%v, %v]", life, p, at, nb, em)
		}
	}
	// The default third, for the lifetimes the CA/B Forum is moving to.
	for _, days := range []int{398, 200, 100, 47} {
		life := time.Duration(days) * 24 * time.Hour
		at := scheduler.RenewalTime(t0, t0.Add(life), scheduler.Policy{RemainingFraction: 1.0 / 3}, 0)
		if left := t0.Add(life).Sub(at); left != life/3 {
			t.Errorf("%d days: renews with %v left, want %v", days, left, life/3)
		}
	}
	if !scheduler.InEmergency(t0, t0.Add(100*time.Hour), t0.Add(96*time.Hour)) || scheduler.InEmergency(t0, t0.Add(100*time.Hour), t0.Add(94*time.Hour)) {
		t.Error("emergency window is not the last 1/20")
	}
}

func TestPerAccountConcurrency(t *testing.T) {
	clk := &clock{t: t0}
	st := newStore(t, clk.Now)
	var mu sync.Mutex
	running, peak := map[string]int{}, map[string]int{}
	s, err := scheduler.New(scheduler.Options{Store: st, Schedule: "@every 1h", Now: clk.Now, Workers: 8,
		AccountLimit: func(a string) int { return map[string]int{"slow-ca": 1, "fast-ca": 3}[a] },
		Work: func(_ context.Context, c store.Certificate) error {
			mu.Lock()
			running[c.Account]++
			peak[c.Account] = max(peak[c.Account], running[c.Account])
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
			mu.Lock()
			running[c.Account]--
			mu.Unlock()
			c.NextAction, c.NextActionAt, c.State = "", time.Time{}, store.StateValid
			return st.SaveCertificate(ctx, c)
		}})
	if err != nil {
		t.Fatal(err)
	}
	var specs []scheduler.CertSpec
	for i := range 10 {
		specs = append(specs, scheduler.CertSpec{Name: fmt.Sprintf("s%d", i), Account: "slow-ca", Domains: []string{"a.example"}},
			scheduler.CertSpec{Name: fmt.Sprintf("f%d", i), Account: "fast-ca", Domains: []string{"a.example"}})
	}
	if err := s.Apply(ctx, specs); err != nil {
		t.Fatal(err)
	}
	if err := s.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if peak["slow-ca"] != 1 || peak["fast-ca"] > 3 || peak["fast-ca"] < 2 {
		t.Fatalf("peak concurrency per account: %v", peak)
	}
}

func TestRetryAfterSurvivesARestart(t *testing.T) {
	clk := &clock{t: t0}
	path := filepath.Join(t.TempDir(), "certd.db")
	st, err := store.Open(ctx, path, store.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	work := func(context.Context, store.Certificate) error { calls.Add(1); return retryErr{d: 3 * time.Hour} }
	s, _ := scheduler.New(scheduler.Options{Store: st, Work: work, Schedule: "@every 1h", Now: clk.Now})
	if err := s.Apply(ctx, []scheduler.CertSpec{spec("www", "www.example.com")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	st.Close()
	// Restart: a new store handle and scheduler, two hours later.
	clk.Add(2 * time.Hour)
	st2, err := store.Open(ctx, path, store.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	s2, _ := scheduler.New(scheduler.Options{Store: st2, Work: work, Schedule: "@every 1h", Now: clk.Now})
	if err := s2.Apply(ctx, []scheduler.CertSpec{spec("www", "www.example.com")}); err != nil {
		t.Fatal(err)
	}
	if err := s2.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1 {
		t.Fatalf("worked again %v after a Retry-After of 3h", 2*time.Hour)
	}
	clk.Add(61 * time.Minute)
	if err := s2.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 2 {
		t.Fatalf("not worked after the Retry-After passed: %d calls", calls.Load())
	}
}
