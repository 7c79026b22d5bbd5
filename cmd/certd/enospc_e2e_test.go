package main

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/certd/certd/deploy"
)

// ENOSPC (issue 18): the store (which is also where certd keeps private
// keys: the private_keys table, nowhere else) and the deploy directory
// each run out of space at the moment certd writes there, through the real
// binary. The mechanism is a small tmpfs mounted over the directory and a
// filler file that exhausts it right before the step: true ENOSPC from the
// kernel, no fault injection inside certd.

// tmpfsAt mounts a tmpfs of size bytes at dir (made if needed) and
// unmounts it when the test ends. Mounting needs root: without it the
// test is skipped, except under CI=true, where a skip would hide the
// test and is a failure.
func tmpfsAt(t *testing.T, dir string, size int64) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("ENOSPC tests mount a tmpfs and need root; CI=true must run them as root")
		}
		t.Skip("mounting a tmpfs needs root")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount tmpfs at %s: %v: %s", dir, err, out)
		}
		t.Skipf("mount tmpfs at %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			// Something still holds it (a child we started that has not
			// exited yet): detach it so the temporary directory goes.
			t.Errorf("umount %s: %v: %s", dir, err, out)
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
}

// fill writes a filler file into dir until the file system is full,
// leaving about leave bytes free (in whole pages), and returns a function
// that removes it.
func fill(t *testing.T, dir string, leave int64) func() {
	t.Helper()
	path := filepath.Join(dir, ".enospc-filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		_, err = f.Write(chunk)
		if err != nil {
			break
		}
	}
	if !errors.Is(err, syscall.ENOSPC) {
		f.Close()
		t.Fatalf("filling %s: %v, want ENOSPC", dir, err)
	}
	if leave > 0 {
		fi, _ := f.Stat()
		if err := f.Truncate(max(fi.Size()-leave, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatal(err)
	}
	return func() {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
}

// liveSet is the bytes of a live set, read through its link.
type liveSet struct{ cert, key, chain []byte }

func readLiveSet(t *testing.T, dir, name string) liveSet {
	t.Helper()
	live := filepath.Join(dir, "live", name)
	var s liveSet
	var err error
	if s.cert, err = os.ReadFile(filepath.Join(live, "cert.pem")); err != nil {
		t.Fatalf("live set of %s: %v", name, err)
	}
	if s.key, err = os.ReadFile(filepath.Join(live, "privkey.pem")); err != nil {
		t.Fatalf("live set of %s: %v", name, err)
	}
	if s.chain, err = os.ReadFile(filepath.Join(live, "chain.pem")); err != nil {
		t.Fatalf("live set of %s: %v", name, err)
	}
	return s
}

// checkLiveIntact: the live set is byte for byte the one before, its key
// matches its certificate, and it verifies.
func (w *atlasWorld) checkLiveIntact(t *testing.T, name, host string, before liveSet) {
	t.Helper()
	now := readLiveSet(t, w.dir, name)
	if !bytes.Equal(now.cert, before.cert) || !bytes.Equal(now.key, before.key) || !bytes.Equal(now.chain, before.chain) {
		t.Errorf("%s: the live set changed although the step failed", name)
	}
	st := deploy.Inspect(deploy.Spec{Name: name, Dir: filepath.Join(w.dir, "live")})
	if st.Missing || !st.KeyMatches {
		t.Errorf("%s: live set %+v: missing or key does not match the certificate", name, st)
	}
	w.verifyLive(t, name, host)
}

// checkKeysBeforeOrders (N3): every order the CA committed for host has its
// private key in the store, and an order row that names it.
func (w *atlasWorld) checkKeysBeforeOrders(t *testing.T, host string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(w.dir, "state", "certd.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	keys := map[string]bool{}
	rows, err := db.Query("SELECT public_sha FROM private_keys")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		_ = rows.Scan(&s)
		keys[s] = true
	}
	rows.Close()
	for _, e := range w.sim.Ledger() {
		if len(e.DNSNames) != 1 || e.DNSNames[0] != host {
			continue
		}
		spki := e.PublicKey
		sum := sha256.Sum256(spki)
		if !keys[hex.EncodeToString(sum[:])] {
			t.Errorf("order %s for %s: its private key is not in the store (N3: no order without a durable key)", e.Serial, host)
		}
	}
}

// renewBin runs `certd renew -force name` through the binary.
func renewBin(t *testing.T, cfg, name string) (int, string) {
	t.Helper()
	out, err := exec.Command(binary(t), "renew", "-force", name, "-config", cfg).CombinedOutput()
	return exitCode(err), string(out)
}

// The store is full when a forced renewal starts: certd says so and
// exits non-zero, orders nothing, the old set stays served; once space
// is back, the next renewal orders exactly once.
func TestENOSPCStoreFullOrdersNothing(t *testing.T) {
	t.Parallel()
	w := newAtlasWorld(t)
	state := filepath.Join(w.dir, "state")
	tmpfsAt(t, state, 8<<20)
	cfg := w.writeConfig(t, w.lifecycleConfig("@every 1h", "", 1))
	if code, out, _ := runOnceBin(t, cfg); code != exitOK {
		t.Fatalf("first run: %d\n%s", code, out)
	}
	before := readLiveSet(t, w.dir, "c0")
	free := fill(t, state, 0)
	code, out := renewBin(t, cfg, "c0")
	if code == exitOK {
		t.Fatalf("renew with a full store: exit 0\n%s", out)
	}
	if !strings.Contains(out, "disk is full") && !strings.Contains(out, "no space left on device") {
		t.Errorf("the error does not say the disk is full:\n%s", out)
	}
	if !strings.Contains(out, state) {
		t.Errorf("the error does not name the store's path %s:\n%s", state, out)
	}
	if n := w.sim.OrdersFor([]string{"c0.example.com"}); n != 1 {
		t.Fatalf("%d orders after a renewal on a full store, want 1 (the first issuance only)\n%s", n, out)
	}
	w.checkLiveIntact(t, "c0", "c0.example.com", before)

	free()
	if code, out := renewBin(t, cfg, "c0"); code != exitOK {
		t.Fatalf("renew once space is back: %d\n%s", code, out)
	}
	if n := w.sim.OrdersFor([]string{"c0.example.com"}); n != 2 {
		t.Fatalf("%d orders, want 2: one per generation (N1)", n)
	}
	if bytes.Equal(readLiveSet(t, w.dir, "c0").cert, before.cert) {
		t.Error("the renewal did not deploy a new certificate")
	}
	w.verifyLive(t, "c0", "c0.example.com")
	w.checkKeysBeforeOrders(t, "c0.example.com")
}

// The store (and with it the key storage) runs out of space part-way
// through a renewal: swept over how much room is left, so the ENOSPC falls
// on different writes, the key and order's transaction among them. At
// every step: an order the CA committed has its key durably in the store
// (N3), no certificate is ordered twice per generation (N1), the live set
// is a whole one that verifies (N4), a failure is a non-zero exit.
func TestENOSPCKeyStorageNoOrderWithoutDurableKey(t *testing.T) {
	t.Parallel()
	w := newAtlasWorld(t)
	state := filepath.Join(w.dir, "state")
	tmpfsAt(t, state, 8<<20)
	cfg := w.writeConfig(t, w.lifecycleConfig("@every 1h", "", 1))
	if code, out, _ := runOnceBin(t, cfg); code != exitOK {
		t.Fatalf("first run: %d\n%s", code, out)
	}
	failures, atKey := 0, 0
	var leaves []int64
	for l := int64(0); l <= 160<<10; l += 4 << 10 {
		leaves = append(leaves, l)
	}
	for _, leave := range leaves {
		before := readLiveSet(t, w.dir, "c0")
		ordersBefore := w.sim.OrdersFor([]string{"c0.example.com"})
		free := fill(t, state, leave)
		code, out := renewBin(t, cfg, "c0")
		free()
		orders := w.sim.OrdersFor([]string{"c0.example.com"})
		msg := renewError(out)
		t.Logf("leave %6d bytes: exit %d, orders %d: %s", leave, code, orders, msg)
		// One forced renewal buys at most once, whatever failed (N1).
		if orders > ordersBefore+1 {
			t.Fatalf("leave %d: %d orders placed by one renewal (N1)\n%s", leave, orders-ordersBefore, out)
		}
		if code != exitOK {
			failures++
			if !strings.Contains(out, "disk is full") && !strings.Contains(out, "no space left on device") {
				t.Errorf("leave %d: exit %d without saying the disk is full:\n%s", leave, code, out)
			}
			if !strings.Contains(msg, state) {
				t.Errorf("leave %d: exit %d and the error does not name the store's path %s:\n%s", leave, code, state, out)
			}
		}
		if strings.Contains(msg, "storing key for c0") || strings.Contains(msg, "order for c0") {
			// ENOSPC in the transaction that stores the key and the
			// order's intent: nothing may have been sent.
			atKey++
			if orders != ordersBefore {
				t.Errorf("leave %d: the key could not be stored, yet an order was placed (N3)\n%s", leave, out)
			}
		}
		if code != exitOK && !strings.Contains(out, "deployed files switched") {
			// Failed before a deploy (finishing an order an earlier
			// step left open may deploy): the old set is served,
			// untouched.
			w.checkLiveIntact(t, "c0", "c0.example.com", before)
		}
		// Old or new, the live set is whole and verifies (N4).
		if st := deploy.Inspect(deploy.Spec{Name: "c0", Dir: filepath.Join(w.dir, "live")}); st.Missing || !st.KeyMatches {
			t.Errorf("leave %d: live set %+v", leave, st)
		}
		w.verifyLive(t, "c0", "c0.example.com")
		w.checkKeysBeforeOrders(t, "c0.example.com")
	}
	if failures == 0 || atKey == 0 {
		t.Fatalf("%d steps of the sweep ran out of space, %d of them storing the key: the test proves nothing", failures, atKey)
	}
	// With room again: whatever was left open is finished, then one more
	// forced renewal buys exactly once more.
	if code, out := renewBin(t, cfg, "c0"); code != exitOK {
		t.Fatalf("renew with room: %d\n%s", code, out)
	}
	n := w.sim.OrdersFor([]string{"c0.example.com"})
	if code, out := renewBin(t, cfg, "c0"); code != exitOK {
		t.Fatalf("renew with room: %d\n%s", code, out)
	}
	if got := w.sim.OrdersFor([]string{"c0.example.com"}); got != n+1 {
		t.Fatalf("%d orders after a forced renewal with room, want %d (N1)", got, n+1)
	}
	w.verifyLive(t, "c0", "c0.example.com")
	w.checkKeysBeforeOrders(t, "c0.example.com")
	w.checkOnePerGeneration(t, "c0.example.com")
}

// checkOnePerGeneration (N1, N2): every order the CA committed for host is
// journaled in the store, each generation at most once.
func (w *atlasWorld) checkOnePerGeneration(t *testing.T, host string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(w.dir, "state", "certd.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	gen := map[string]int{}
	rows, err := db.Query("SELECT generation, ca_ref FROM orders WHERE ca_ref != ''")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var g int
		var ref string
		_ = rows.Scan(&g, &ref)
		gen[strings.ToUpper(ref)] = g
	}
	rows.Close()
	seen := map[int]string{}
	for _, e := range w.sim.Ledger() {
		if len(e.DNSNames) != 1 || e.DNSNames[0] != host {
			continue
		}
		g, ok := gen[strings.ToUpper(e.Serial)]
		if !ok {
			t.Errorf("order %s is not journaled in the store (N2)", e.Serial)
			continue
		}
		if prev, dup := seen[g]; dup {
			t.Errorf("generation %d bought twice: %s and %s (N1)", g, prev, e.Serial)
		}
		seen[g] = e.Serial
	}
}

// The deploy directory runs out of space while certd writes the new
// version: swept so the ENOSPC falls on each file of the set. The order
// was placed (its key is stored, which is the store's business), the
// deploy fails loudly naming the path, the old set stays live and whole,
// no half-written version is left where a rollback would switch to it,
// and with room again the stored certificate is deployed without a second
// order.
func TestENOSPCDeployDirKeepsTheOldSet(t *testing.T) {
	t.Parallel()
	for _, leave := range []int64{0, 4 << 10, 8 << 10, 12 << 10} {
		t.Run(fmt.Sprintf("leave=%dK", leave>>10), func(t *testing.T) {
			t.Parallel()
			w := newAtlasWorld(t)
			live := filepath.Join(w.dir, "live")
			tmpfsAt(t, live, 1<<20)
			cfg := w.writeConfig(t, w.lifecycleConfig("@every 1h", "", 1))
			if code, out, _ := runOnceBin(t, cfg); code != exitOK {
				t.Fatalf("first run: %d\n%s", code, out)
			}
			before := readLiveSet(t, w.dir, "c0")
			versions := filepath.Join(live, ".certd-versions", "c0")
			vers0, _ := os.ReadDir(versions)
			free := fill(t, live, leave)
			code, out := renewBin(t, cfg, "c0")
			if code == exitOK {
				t.Fatalf("renew onto a full deploy directory: exit 0\n%s", out)
			}
			if !strings.Contains(out, "no space left on device") {
				t.Errorf("the error does not say the disk is full:\n%s", out)
			}
			if !strings.Contains(out, live) {
				t.Errorf("the error does not name the deploy path %s:\n%s", live, out)
			}
			if n := w.sim.OrdersFor([]string{"c0.example.com"}); n != 2 {
				t.Fatalf("%d orders, want 2 (the first and the renewal's)", n)
			}
			w.checkKeysBeforeOrders(t, "c0.example.com")
			w.checkLiveIntact(t, "c0", "c0.example.com", before)
			vers1, _ := os.ReadDir(versions)
			if len(vers1) != len(vers0) {
				var names []string
				for _, e := range vers1 {
					names = append(names, e.Name())
				}
				t.Errorf("a failed deploy left a version behind: %v (was %d)", names, len(vers0))
			}

			// The failure is scheduled for a retry with backoff (N8):
			// `certd renew` (not forced) takes it now, deploying the
			// stored version.
			free()
			if o, err := exec.Command(binary(t), "status", "-config", cfg).CombinedOutput(); err == nil || !strings.Contains(string(o), "c0: failing") || !strings.Contains(string(o), "deploy c0: writing") {
				t.Errorf("status after the failed deploy does not show it failing on the full disk (%v):\n%s", err, o)
			}
			out2, err := exec.Command(binary(t), "renew", "c0", "-config", cfg).CombinedOutput()
			if code := exitCode(err); code != exitOK {
				t.Fatalf("renew once space is back: %d\n%s", code, out2)
			}
			out = string(out2)
			if n := w.sim.OrdersFor([]string{"c0.example.com"}); n != 2 {
				t.Fatalf("%d orders after the retried deploy, want 2 (N1)", n)
			}
			if bytes.Equal(readLiveSet(t, w.dir, "c0").cert, before.cert) {
				t.Fatalf("the stored renewal was not deployed once space was back\n%s", out)
			}
			w.verifyLive(t, "c0", "c0.example.com")
			// A rollback goes to the old, whole set.
			var so, se strings.Builder
			if c := run([]string{"rollback", "-config", cfg, "c0"}, &so, &se); c != exitOK {
				t.Fatalf("rollback: %d %s", c, se.String())
			}
			w.checkLiveIntact(t, "c0", "c0.example.com", before)
		})
	}
}

// renewError is the line where `certd renew` says why it failed.
func renewError(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "certd renew: ") || strings.HasPrefix(l, "certd: ") {
			return l
		}
	}
	return ""
}
