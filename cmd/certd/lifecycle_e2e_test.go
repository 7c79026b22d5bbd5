package main

import (
	"context"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certd/certd/ca/atlas/atlassim"
	"github.com/certd/certd/internal/failpoint"
	"github.com/certd/certd/store"
)

// The order lifecycle through the real binary against the Atlas
// simulator, which lists certificates in its reports only once they are
// issued (as Atlas does): the findings of the independent checks, each a
// test that failed before the lifecycle was rebuilt.

// lifecycleConfig is an Atlas account with n certificates c0..c(n-1)
// under example.com (one claim), proved through Knot; extra goes into the
// account block.
func (w *atlasWorld) lifecycleConfig(schedule, extra string, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `
schedule: %q
store: {sqlite: state/certd.db}
log: {level: debug, format: json}
dcv:
  resolvers: [%[2]q]
  check_servers: {knot: [%[2]q]}
  timeout: 20s
accounts:
  atlas:
    type: globalsign-atlas
    url: %[3]s
    api_key: file:api-key
    api_secret: file:api-secret
    client_cert: %[4]s/client.pem
    client_key: file:client.key
    ca: %[4]s/api-ca.pem
    claim_domains: [example.com]
%[6]s
dns:
  knot: {type: rfc2136, server: %[2]q, key_name: %[5]s, key: file:tsig}
defaults:
  account: atlas
  dcv: {method: dns, provider: knot}
  deploy: {dir: %[4]s/live, keep: 2}
certificates:
`, schedule, w.knot.Addr, w.url, w.dir, w.knot.KeyName, extra)
	for i := range n {
		fmt.Fprintf(&b, "  - {name: c%d, domains: [c%d.example.com]}\n", i, i)
	}
	return b.String()
}

func (w *atlasWorld) writeConfig(t *testing.T, cfg string) string {
	t.Helper()
	p := filepath.Join(w.dir, "certd.yaml")
	writeFile(t, p, cfg)
	return p
}

// runOnce runs `certd run -once` and returns its exit code, log and how
// long it took.
func runOnceBin(t *testing.T, cfgPath string) (int, string, time.Duration) {
	t.Helper()
	start := time.Now()
	out, err := exec.Command(binary(t), "run", "-once", "-config", cfgPath).CombinedOutput()
	return exitCode(err), string(out), time.Since(start)
}

// verifyLive checks that the deployed set of name verifies to the
// simulator's root for host.
func (w *atlasWorld) verifyLive(t *testing.T, name, host string) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(w.sim.RootPEM())
	live := filepath.Join(w.dir, "live", name)
	leaf := readCert(t, filepath.Join(live, "cert.pem"))
	inter := x509.NewCertPool()
	chainPEM, _ := os.ReadFile(filepath.Join(live, "chain.pem"))
	inter.AppendCertsFromPEM(chainPEM)
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter}); err != nil {
		t.Errorf("%s: the deployed set does not verify: %v", name, err)
	}
}

// Finding 1, without a crash: the answer to POST /certificates is lost
// after Atlas recorded the order, and issuance takes longer than certd's
// first look. Not yet listed in /stats/issued is not "never sent": exactly
// one order, deployed once Atlas issues it.
func TestAtlasLostAnswerIsNeverOrderedTwice(t *testing.T) {
	t.Parallel()
	w := newAtlasWorld(t, func(o *atlassim.Options) { o.IssueDelay = 4 * time.Second })
	w.sim.InjectFault("POST /certificates", atlassim.Fault{DropAfterCommit: true})
	cfg := w.writeConfig(t, w.lifecycleConfig("@every 1h", "    issuance_window: 2m\n    order_wait: 1s", 1))
	// The daemon looks again on its own (order_wait is shorter than the
	// issuance, so the first pass leaves the order ambiguous).
	logs := runUntil(t, cfg, "c0")
	if n := w.sim.OrdersFor([]string{"c0.example.com"}); n != 1 {
		t.Fatalf("%d orders accepted for c0, want 1 (N1)\n%s", n, logs)
	}
	if !strings.Contains(logs, "order found at the CA") {
		t.Errorf("the lost order was not found by lookup:\n%s", logs)
	}
	w.verifyLive(t, "c0", "c0.example.com")
}

// Finding 5: an order Atlas issues after 2 s is finished by one
// `run -once` (exit 0), not six.
func TestAtlasRunOnceWaitsForSlowIssuance(t *testing.T) {
	t.Parallel()
	w := newAtlasWorld(t, func(o *atlassim.Options) { o.IssueDelay = 2 * time.Second })
	cfg := w.writeConfig(t, w.lifecycleConfig("@every 1h", "", 2))
	code, out, took := runOnceBin(t, cfg)
	if code != exitOK {
		t.Fatalf("run -once: exit %d after %s\n%s", code, took, out)
	}
	for i := range 2 {
		w.verifyLive(t, fmt.Sprintf("c%d", i), fmt.Sprintf("c%d.example.com", i))
	}
	if l := len(w.sim.Ledger()); l != 2 {
		t.Fatalf("ledger %d, want 2", l)
	}
}

// Finding 2: a claim Atlas dropped (portal deletion) or invalidated
// (CA-side revalidation) before certd's stored expiry is read again, marked
// unverified and proved again within the same pass, loudly.
func TestAtlasClaimDroppedAtTheCAIsProvedAgain(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		drop func(*atlassim.Server) error
	}{
		{"deleted", func(s *atlassim.Server) error { return s.DropClaim("example.com") }},
		{"invalidated", func(s *atlassim.Server) error { return s.InvalidateClaim("example.com") }},
		{"expired", func(s *atlassim.Server) error { return s.ExpireClaim("example.com") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newAtlasWorld(t)
			cfg := w.writeConfig(t, w.lifecycleConfig("@every 1h", "", 1))
			if code, out, _ := runOnceBin(t, cfg); code != exitOK {
				t.Fatalf("first run: %d\n%s", code, out)
			}
			if err := tc.drop(w.sim); err != nil {
				t.Fatal(err)
			}
			var out, errb strings.Builder
			if code := run([]string{"renew", "-config", cfg, "-force", "c0"}, &out, &errb); code != exitOK {
				t.Fatalf("renew after the claim was %s at the CA: exit %d\n%s\n%s", tc.name, code, out.String(), errb.String())
			}
			if n := w.sim.OrdersFor([]string{"c0.example.com"}); n != 2 {
				t.Fatalf("%d orders, want 2 (the first issuance and the forced renewal)", n)
			}
			st, err := store.Open(context.Background(), filepath.Join(w.dir, "state", "certd.db"), store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			c, _ := st.GetClaim(context.Background(), "atlas", "example.com")
			if c.Status != "VERIFIED" || !c.ExpiresAt.After(time.Now().Add(300*24*time.Hour)) {
				t.Fatalf("claim after the renewal: %+v", c)
			}
			evs, _ := st.ListEvents(context.Background(), store.EventFilter{})
			seen := false
			for _, e := range evs {
				seen = seen || e.Kind == "claim_dropped" && e.Level == "warn"
			}
			if !seen {
				t.Error("no claim_dropped warning event")
			}
			w.verifyLive(t, "c0", "c0.example.com")
		})
	}
}

// Finding 3: Atlas lists verified claims in the validation policy, so a
// policy read before a claim was verified refuses its names. Two
// certificates under two claims, worked one after the other: the second
// order must not be refused from the policy the first one read.
func TestAtlasPolicyRefreshedAfterNewClaim(t *testing.T) {
	t.Parallel()
	w := newAtlasWorld(t)
	cfg := w.lifecycleConfig("@every 1h", "    max_concurrent: 1", 1) + "  - {name: net, domains: [www.example.net]}\n"
	cfgPath := w.writeConfig(t, cfg)
	if code, out, _ := runOnceBin(t, cfgPath); code != exitOK {
		t.Fatalf("run -once: %d\n%s", code, out)
	}
	if n := w.sim.OrdersFor([]string{"www.example.net"}); n != 1 {
		t.Fatalf("%d orders for the name under the second claim", n)
	}
	w.verifyLive(t, "c0", "c0.example.com")
	w.verifyLive(t, "net", "www.example.net")
}

func waitValid(t *testing.T, dbPath string, logs *syncBuffer, names ...string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !allValid(dbPath, names) {
		if time.Now().After(deadline) {
			t.Fatalf("%v not valid in time; log:\n%s", names, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Finding 4: a 429 with Retry-After 300 on POST /certificates ends the job
// at once (no 300 s sleep inside it), pauses the whole account, is shown in
// status and honoured by the next run: no request reaches the CA before
// then.
func TestAtlasRetryAfterPausesTheAccountAcrossRuns(t *testing.T) {
	t.Parallel()
	w := newAtlasWorld(t)
	w.sim.InjectFault("POST /certificates", atlassim.Fault{Status: 429, RetryAfter: 300 * time.Second})
	cfg := w.writeConfig(t, w.lifecycleConfig("@every 1h", "    max_concurrent: 1", 3))
	code, out, took := runOnceBin(t, cfg)
	if code != exitFailure || took > 30*time.Second {
		t.Fatalf("run -once under a 429: exit %d after %s\n%s", code, took, out)
	}
	posts := w.sim.Requests("POST /certificates")
	if posts != 1 {
		t.Fatalf("%d POST /certificates, want 1: the other certificates must wait with the account", posts)
	}
	var so, se strings.Builder
	if c := run([]string{"status", "-config", cfg, "-json"}, &so, &se); c != exitFailure && c != exitOK {
		t.Fatalf("status: %d %s", c, se.String())
	}
	var rep statusReport
	if err := json.Unmarshal([]byte(so.String()), &rep); err != nil {
		t.Fatalf("%v\n%s", err, so.String())
	}
	if len(rep.Accounts) != 1 || rep.Accounts[0].Account != "atlas" || rep.Accounts[0].PausedUntil.Before(time.Now().Add(250*time.Second)) {
		t.Fatalf("status does not show the account paused for the Retry-After: %+v", rep.Accounts)
	}
	for _, c := range rep.Certificates {
		if c.NextActionAt == nil || c.NextActionAt.Before(time.Now().Add(250*time.Second)) {
			t.Errorf("%s is due at %v, before the account's Retry-After", c.Name, c.NextActionAt)
		}
	}
	// A second run honours the stored pause: nothing sent, quickly.
	code, out, took = runOnceBin(t, cfg)
	if w.sim.Requests("POST /certificates") != posts || took > 20*time.Second {
		t.Fatalf("the next run called the CA within its Retry-After (exit %d, %s)\n%s", code, took, out)
	}
}

// Finding 1, with crashes: certd SIGKILLed at random instants while it
// orders from an Atlas that issues slowly and lists only issued
// certificates. Every certificate ends with exactly one accepted order,
// every accepted order is journaled, every set verifies.
func TestAtlasKilledAtRandomInstantsNeverOrdersTwice(t *testing.T) {
	t.Parallel()
	certs, kills, delay := 6, 8, 3*time.Second
	if v, _ := strconv.Atoi(os.Getenv("CERTD_CHAOS_CERTS")); v > 0 {
		certs = v
	}
	if v, _ := strconv.Atoi(os.Getenv("CERTD_CHAOS_KILLS")); v > 0 {
		kills = v
	}
	if v, err := time.ParseDuration(os.Getenv("CERTD_CHAOS_DELAY")); err == nil {
		delay = v
	}
	atlasKillCampaign(t, certs, kills, delay)
}

func atlasKillCampaign(t *testing.T, certs, kills int, delay time.Duration) {
	// No issuing-CA rotation here: /trustchain names only the current one,
	// so a certificate issued before a rotation and fetched after a crash
	// has no chain to deploy with (a limit noted in ca/atlas's doc).
	w := newAtlasWorld(t, func(o *atlassim.Options) { o.IssueDelay, o.RotateEvery = delay, 0 })
	// The issuance window is what a crash between "about to send" and
	// "sent" costs: that order is resent only once it can no longer appear.
	cfg := w.writeConfig(t, w.lifecycleConfig("@every 1s", fmt.Sprintf("    issuance_window: %s\n    order_wait: 2s", 3*delay+5*time.Second), certs))
	seed := uint64(time.Now().UnixNano())
	rnd := rand.New(rand.NewPCG(seed, 11))
	start := time.Now()
	for k := range kills {
		cmd := exec.Command(binary(t), "run", "-config", cfg)
		var logs syncBuffer
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Uniform over the first few seconds of a run: start-up, claims,
		// submits, the waits for issuance, deploys.
		time.Sleep(time.Duration(rnd.Int64N(int64(2*delay + time.Second))))
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		_ = k
	}
	// Then a daemon runs until every certificate is valid.
	var names []string
	for i := range certs {
		names = append(names, fmt.Sprintf("c%d", i))
	}
	cmd := exec.Command(binary(t), "run", "-config", cfg)
	var logs syncBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	dbPath := filepath.Join(w.dir, "state", "certd.db")
	deadline := time.Now().Add(3*delay + 90*time.Second)
	for !allValid(dbPath, names) {
		if time.Now().After(deadline) {
			t.Fatalf("not every certificate valid in time (seed %d); log:\n%s", seed, logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()

	// N1: one accepted order per certificate.
	maxOrders, dup := 0, 0
	for i := range certs {
		n := w.sim.OrdersFor([]string{fmt.Sprintf("c%d.example.com", i)})
		maxOrders = max(maxOrders, n)
		if n != 1 {
			dup++
			t.Errorf("c%d: %d accepted orders, want 1 (N1, seed %d)", i, n, seed)
		}
	}
	// N2: every accepted order is in the store.
	db, err := sql.Open("sqlite", "file:"+dbPath+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	journaled := map[string]bool{}
	rows, err := db.Query("SELECT ca_ref FROM orders WHERE ca_ref != ''")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var ref string
		_ = rows.Scan(&ref)
		journaled[strings.ToUpper(ref)] = true
	}
	rows.Close()
	orphans := 0
	for _, e := range w.sim.Ledger() {
		if !journaled[strings.ToUpper(e.Serial)] {
			orphans++
			t.Errorf("order %s for %v is not in the store (N2)", e.Serial, e.DNSNames)
		}
	}
	for i := range certs {
		w.verifyLive(t, fmt.Sprintf("c%d", i), fmt.Sprintf("c%d.example.com", i))
	}
	st, err := store.Open(context.Background(), dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	live, _ := st.LiveArtefacts(context.Background())
	// The figure, one line, for `make chaos-atlas`.
	t.Logf("atlas kill campaign: kills=%d certificates=%d issue_delay=%s ledger=%d max_orders_per_certificate=%d duplicates=%d orphans=%d live_artefacts=%d took=%s seed=%d",
		kills, certs, delay, len(w.sim.Ledger()), maxOrders, dup, orphans, len(live), time.Since(start).Round(time.Second), seed)
}

// A certificate removed from the configuration and put back, unchanged,
// adopts its stored version: nothing is ordered.
func TestAtlasRestoredCertificateIsNotBoughtAgain(t *testing.T) {
	t.Parallel()
	w := newAtlasWorld(t)
	full := w.lifecycleConfig("@every 1h", "", 2)
	cfg := w.writeConfig(t, full)
	if code, out, _ := runOnceBin(t, cfg); code != exitOK {
		t.Fatalf("first run: %d\n%s", code, out)
	}
	serial := readCert(t, filepath.Join(w.dir, "live", "c1", "cert.pem")).SerialNumber
	writeFile(t, cfg, w.lifecycleConfig("@every 1h", "", 1)) // c1 retired
	if code, out, _ := runOnceBin(t, cfg); code != exitOK {
		t.Fatalf("run without c1: %d\n%s", code, out)
	}
	writeFile(t, cfg, full) // and back
	if code, out, _ := runOnceBin(t, cfg); code != exitOK {
		t.Fatalf("run with c1 back: %d\n%s", code, out)
	}
	if n := w.sim.OrdersFor([]string{"c1.example.com"}); n != 1 {
		t.Fatalf("%d orders for c1: a restored certificate was bought again", n)
	}
	if got := readCert(t, filepath.Join(w.dir, "live", "c1", "cert.pem")).SerialNumber; got.Cmp(serial) != 0 {
		t.Fatalf("live serial %X, want the stored %X", got, serial)
	}
}

// A forced renewal that fails in the foreground (no daemon) is recorded
// as a pass records it; a failure retrying cannot fix is needs-operator.
func TestAtlasFailingRenewIsRecordedAndNeedsOperator(t *testing.T) {
	t.Parallel()
	w := newAtlasWorld(t)
	cfg := w.writeConfig(t, w.lifecycleConfig("@every 1h", "", 1))
	if code, out, _ := runOnceBin(t, cfg); code != exitOK {
		t.Fatalf("first run: %d\n%s", code, out)
	}
	w.sim.InjectFault("POST /certificates", atlassim.Fault{Status: 402})
	var out, errb strings.Builder
	if code := run([]string{"renew", "-config", cfg, "-force", "c0"}, &out, &errb); code != exitFailure {
		t.Fatalf("renew under a 402: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	st, err := store.Open(context.Background(), filepath.Join(w.dir, "state", "certd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, _ := st.GetCertificate(context.Background(), "c0")
	if c.State != store.StateNeedsOperator || c.Failures != 1 || !strings.Contains(c.LastError, "quota") || c.NextActionAt.Before(time.Now().Add(6*time.Hour)) {
		t.Fatalf("after the failed renewal: %+v", c)
	}
	out.Reset()
	if code := run([]string{"status", "-config", cfg}, &out, &errb); code != exitFailure || !strings.Contains(out.String(), "needs-operator") {
		t.Fatalf("status with a certificate that needs an operator: exit %d\n%s", code, out.String())
	}
}

// certd revoke: the CA revokes the deployed certificate, and the next run
// replaces it.
func TestAtlasRevokeThenReplace(t *testing.T) {
	t.Parallel()
	w := newAtlasWorld(t)
	cfg := w.writeConfig(t, w.lifecycleConfig("@every 1h", "", 1))
	if code, out, _ := runOnceBin(t, cfg); code != exitOK {
		t.Fatalf("first run: %d\n%s", code, out)
	}
	old := readCert(t, filepath.Join(w.dir, "live", "c0", "cert.pem")).SerialNumber
	var out, errb strings.Builder
	if code := run([]string{"revoke", "-config", cfg, "-reason", "bogus", "c0"}, &out, &errb); code != exitUsage {
		t.Fatalf("an unknown reason: exit %d", code)
	}
	if code := run([]string{"revoke", "-config", cfg, "-reason", "superseded", "c0"}, &out, &errb); code != exitOK {
		t.Fatalf("revoke: %d\n%s\n%s", code, out.String(), errb.String())
	}
	if w.sim.Requests("PATCH /certificates/{serial}") != 1 {
		t.Fatal("the CA was not asked to revoke")
	}
	if code, out, _ := runOnceBin(t, cfg); code != exitOK {
		t.Fatalf("run after the revocation: %d\n%s", code, out)
	}
	if n := w.sim.OrdersFor([]string{"c0.example.com"}); n != 2 {
		t.Fatalf("%d orders, want 2 (the revoked certificate replaced)", n)
	}
	if now := readCert(t, filepath.Join(w.dir, "live", "c0", "cert.pem")).SerialNumber; now.Cmp(old) == 0 {
		t.Fatal("the revoked certificate is still deployed")
	}
}

// Atlas rotated its issuing CA between the order and certd's fetch, and
// certd was killed in between, so the chain it saw before is forgotten:
// /trustchain names only the new issuing CA. The old one is read from
// the leaf's AIA and the deployed set verifies; with fetch_issuer off the
// certificate cannot be deployed. Either way nothing is bought twice.
func TestAtlasCertificateIssuedBeforeARotationDeploysWithItsChain(t *testing.T) {
	t.Parallel()
	for _, fetch := range []bool{true, false} {
		t.Run(fmt.Sprintf("fetch_issuer=%v", fetch), func(t *testing.T) {
			var aia http.Handler
			aiaSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { aia.ServeHTTP(w, r) }))
			t.Cleanup(aiaSrv.Close)
			w := newAtlasWorld(t, func(o *atlassim.Options) { o.RotateEvery = 0; o.AIABaseURL = aiaSrv.URL + "/aia" })
			aia = w.sim.AIAHandler()
			cfg := w.writeConfig(t, w.lifecycleConfig("@every 1h", fmt.Sprintf("    fetch_issuer: %v\n    order_wait: 1s", fetch), 1))
			cmd := exec.Command(binary(t), "run", "-once", "-config", cfg)
			cmd.Env = append(os.Environ(), "CERTD_FAILPOINT="+failpoint.OrderAfterSubmit)
			out, err := cmd.CombinedOutput()
			if code := exitCode(err); code != -1 { // -1: killed by a signal
				t.Fatalf("the failpoint did not kill certd (exit %d, %v):\n%s", code, err, out)
			}
			if err := w.sim.RotateIssuingCA(); err != nil {
				t.Fatal(err)
			}
			code, logs, _ := runOnceBin(t, cfg)
			if n := w.sim.OrdersFor([]string{"c0.example.com"}); n != 1 {
				t.Fatalf("%d orders for c0, want 1 (N1)\n%s", n, logs)
			}
			if !fetch {
				if code == exitOK || !strings.Contains(logs, "no known trust chain") {
					t.Fatalf("fetch_issuer off: exit %d, want a failure naming the missing chain\n%s", code, logs)
				}
				return
			}
			if code != exitOK {
				t.Fatalf("run -once after the rotation: exit %d\n%s", code, logs)
			}
			w.verifyLive(t, "c0", "c0.example.com")
		})
	}
}
