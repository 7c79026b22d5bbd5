package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certd/certd/deploy"
)

// The ENOSPC tests' variant without a mount (issue 18): certd runs under
// `prlimit --fsize`, so every write that would take a file past the limit
// fails with EFBIG (Go ignores SIGXFSZ, so it is an error, not a signal).
// The limit is per file: the store's WAL and database, where the keys are
// kept, meet it first, and the deploy's files when it is smaller than a
// certificate. Swept over the limit so the failure falls on different
// writes: an order the CA committed has its key durably in the store
// (N3), a renewal buys at most once (N1), a failure is a non-zero exit
// that names it, and the old set stays served, whole (N4).

// prlimitFsize runs `certd args...` with RLIMIT_FSIZE at limit bytes.
func prlimitFsize(t *testing.T, limit int64, args ...string) (int, string) {
	t.Helper()
	if _, err := exec.LookPath("prlimit"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("prlimit (util-linux) is not installed; CI=true must run the EFBIG tests")
		}
		t.Skip("prlimit (util-linux) is not installed")
	}
	argv := append([]string{fmt.Sprintf("--fsize=%d", limit), "--", binary(t)}, args...)
	out, err := exec.Command("prlimit", argv...).CombinedOutput()
	return exitCode(err), string(out)
}

// fileTooLarge reports whether out says a write failed on the size limit.
// SQLite reports EFBIG as SQLITE_IOERR_WRITE ("disk I/O error (778)"),
// the first write of a connection as "(4874)": certd adds the store's
// path and names the process's file size limit.
func fileTooLarge(out string) bool {
	for _, s := range []string{"file too large", "file size limit", "disk is full", "no space left on device"} {
		if strings.Contains(out, s) {
			return true
		}
	}
	return false
}

func TestEFBIGFileSizeLimitNoOrderWithoutDurableKey(t *testing.T) {
	t.Parallel()
	w := newAtlasWorld(t)
	cfg := w.writeConfig(t, w.lifecycleConfig("@every 1h", "", 1))
	if code, out, _ := runOnceBin(t, cfg); code != exitOK {
		t.Fatalf("first run: %d\n%s", code, out)
	}
	state := filepath.Join(w.dir, "state")
	failures, atKey, atDeploy := 0, 0, 0
	var limits []int64
	// A forced renewal writes about 100 KiB of WAL: from below one page
	// to past all of it.
	for l := int64(1 << 10); l <= 160<<10; l += 6 << 10 {
		limits = append(limits, l)
	}
	for _, limit := range limits {
		before := readLiveSet(t, w.dir, "c0")
		ordersBefore := w.sim.OrdersFor([]string{"c0.example.com"})
		code, out := prlimitFsize(t, limit, "renew", "-force", "c0", "-config", cfg)
		orders := w.sim.OrdersFor([]string{"c0.example.com"})
		msg := renewError(out)
		t.Logf("fsize %6d bytes: exit %d, orders %d: %s", limit, code, orders, msg)
		if strings.Contains(out, "SIGXFSZ") || strings.Contains(out, "signal: file size limit exceeded") {
			t.Fatalf("fsize %d: certd was killed by SIGXFSZ instead of seeing EFBIG:\n%s", limit, out)
		}
		if orders > ordersBefore+1 {
			t.Fatalf("fsize %d: %d orders placed by one renewal (N1)\n%s", limit, orders-ordersBefore, out)
		}
		if code != exitOK {
			failures++
			if !fileTooLarge(out) {
				t.Errorf("fsize %d: exit %d without saying the write failed:\n%s", limit, code, out)
			}
			if !strings.Contains(msg, state) {
				t.Errorf("fsize %d: exit %d and the error does not name the store's path %s:\n%s", limit, code, state, out)
			}
		}
		if strings.Contains(msg, "storing key for c0") || strings.Contains(msg, "order for c0") {
			// The transaction that stores the key and the order's intent
			// failed: nothing may have been sent.
			atKey++
			if orders != ordersBefore {
				t.Errorf("fsize %d: the key could not be stored, yet an order was placed (N3)\n%s", limit, out)
			}
		}
		if strings.Contains(msg, "deploy c0") {
			atDeploy++
		}
		if code != exitOK && !strings.Contains(out, "deployed files switched") {
			// Failed before a switch: the old set is served, untouched.
			w.checkLiveIntact(t, "c0", "c0.example.com", before)
		}
		if st := deploy.Inspect(deploy.Spec{Name: "c0", Dir: filepath.Join(w.dir, "live")}); st.Missing || !st.KeyMatches {
			t.Errorf("fsize %d: live set %+v", limit, st)
		}
		w.verifyLive(t, "c0", "c0.example.com")
		w.checkKeysBeforeOrders(t, "c0.example.com")
	}
	if failures == 0 || atKey == 0 || failures == len(limits) {
		t.Fatalf("%d steps of the sweep met the size limit, %d of them storing the key: of %d: the sweep proves nothing", failures, atKey, len(limits))
	}
	// Without the limit: whatever was left open is finished, then one
	// more forced renewal buys exactly once more.
	if code, out := renewBin(t, cfg, "c0"); code != exitOK {
		t.Fatalf("renew without a limit: %d\n%s", code, out)
	}
	n := w.sim.OrdersFor([]string{"c0.example.com"})
	if code, out := renewBin(t, cfg, "c0"); code != exitOK {
		t.Fatalf("renew without a limit: %d\n%s", code, out)
	}
	if got := w.sim.OrdersFor([]string{"c0.example.com"}); got != n+1 {
		t.Fatalf("%d orders after a forced renewal without a limit, want %d (N1)", got, n+1)
	}
	w.verifyLive(t, "c0", "c0.example.com")
	w.checkKeysBeforeOrders(t, "c0.example.com")
	w.checkOnePerGeneration(t, "c0.example.com")
	t.Logf("EFBIG sweep: %d limits, %d failed, %d storing the key, %d deploying", len(limits), failures, atKey, atDeploy)
}
