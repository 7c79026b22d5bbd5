package scheduler

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/store"
)

// Nothing is sent to a CA under a lease with less time left than the
// request may take, and what is sent is cut off before the lease ends.
func TestSubmitOnlyUnderALeaseThatOutlastsTheRequest(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "certd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const ttl = 3 * time.Second
	l, err := st.AcquireLease(ctx, store.CertificateResource("www"), "web1/1", ttl)
	if err != nil {
		t.Fatal(err)
	}
	jctx, _, end := hold(ctx, st, l, ttl, zap.NewNop())
	defer end()
	if _, _, err := forSubmit(jctx, 5*time.Second); err == nil {
		t.Fatal("a 5s request was allowed under a 3s lease")
	}
	sctx, cancel, err := forSubmit(jctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	dl, ok := sctx.Deadline()
	if !ok || time.Until(dl) > ttl {
		t.Fatalf("the request's deadline %v is not within the lease", dl)
	}
	// Outside a fleet, nothing changes.
	if c, _, err := forSubmit(ctx, time.Hour); err != nil || c != ctx {
		t.Fatalf("outside a fleet: %v", err)
	}
	// A lost lease: nothing is sent.
	if err := st.ReleaseLease(ctx, l); err != nil {
		t.Fatal(err)
	}
	if _, _, err := forSubmit(jctx, time.Second); err == nil {
		t.Fatal("a request was allowed after the lease was lost")
	}
}
