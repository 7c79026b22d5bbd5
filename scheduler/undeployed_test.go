package scheduler_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/certd/certd/scheduler"
)

// A renewal whose deploy failed (a full deploy directory) is deployed on
// the retry, not bought again, also when the CA gave it the same NotAfter
// as the certificate it replaces (issued within the same second, or a
// CA that caps lifetimes at a fixed date).
func TestFailedDeployWithTheSameNotAfterIsNotBoughtAgain(t *testing.T) {
	w := newWorld(t)
	c := w.due(t)
	x := w.issuing(w.st)
	// A frozen clock: both orders ask for the same validity, so both
	// certificates end at the same second.
	now := time.Now().Truncate(time.Second)
	x.Now = func() time.Time { return now }
	if err := x.Work(ctx, c); err != nil {
		t.Fatal(err)
	}
	first, _ := w.st.GetCertificate(ctx, "www")

	// The renewal is ordered and issued, and its deploy fails: the live
	// path is, for now, something certd refuses to replace.
	live := filepath.Join(w.dir, "live", "www")
	target, err := os.Readlink(live)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(live); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(live, []byte("in the way"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, _ = w.st.GetCertificate(ctx, "www")
	c.NextAction, c.NextActionAt = scheduler.ActionRenew, now
	if err := w.st.SaveCertificate(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := x.Work(ctx, c); err == nil {
		t.Fatal("the deploy onto a file in the way succeeded")
	}
	if n := len(w.sim.Ledger()); n != 2 {
		t.Fatalf("ledger %d after the renewal, want 2", n)
	}
	vs, _ := w.st.ListVersions(ctx, "www")
	if len(vs) != 2 || !vs[0].NotAfter.Equal(first.Current.NotAfter) {
		t.Fatalf("the test needs two stored versions ending at the same second: %+v", vs)
	}

	// The way is clear again: the retry deploys the stored renewal.
	if err := os.Remove(live); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, live); err != nil {
		t.Fatal(err)
	}
	c, _ = w.st.GetCertificate(ctx, "www")
	if err := x.Work(ctx, c); err != nil {
		t.Fatal(err)
	}
	if n := len(w.sim.Ledger()); n != 2 {
		t.Fatalf("ledger %d after the retried deploy, want 2: the stored renewal was bought again (N1)", n)
	}
	c, _ = w.st.GetCertificate(ctx, "www")
	if c.Current == nil || c.Current.Serial != vs[0].Serial || c.Current.Serial == first.Current.Serial {
		t.Fatalf("live after the retry: %+v, want the stored renewal %s", c.Current, vs[0].Serial)
	}
}
