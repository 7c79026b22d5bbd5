package main

// What an operator sees must be true (issue 16): the dry run, status, a
// reload that retires certificates, rollback and forced renewal,
// check-config, a certificate's deploy block, notifications. Each test
// runs the real binary (or run() in-process, as the other tests do) and
// fails on a certd that says "all is well" when it is not.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/certd/certd/ca/atlas/atlassim"
	"github.com/certd/certd/internal/testenv"
	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

// surfaceDaemon starts `certd run` on cfgPath and waits until it runs.
func surfaceDaemon(t *testing.T, cfgPath string, env ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	cmd := exec.Command(binary(t), "run", "-config", cfgPath)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	logs.waitFor(t, "certd started")
	return cmd, logs
}

// stopDaemon stops it with SIGTERM and waits for exit 0.
func stopDaemon(t *testing.T, cmd *exec.Cmd, logs *syncBuffer) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("daemon exit: %v\n%s", err, logs.String())
	}
}

// inProcess runs a certd command line and returns its exit code and output.
func inProcess(args ...string) (int, string, string) {
	var out, errb strings.Builder
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func openStore(t *testing.T, w *atlasWorld) *store.SQLite {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(w.dir, "state", "certd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// Item 1: the dry run talks to the CA and says no whenever the real run
// would fail: a wrong API secret, a claim the CA dropped, an unreachable
// DNS server, a stopped CA; with everything right it exits 0, and it never
// places an order.
func TestDryRunAtlasSaysNoWhenTheRenewalWouldFail(t *testing.T) {
	t.Parallel()
	w := newAtlasWorld(t)
	good := w.lifecycleConfig("@every 1h", "", 1)
	cfg := w.writeConfig(t, good)
	dry := func(cfgPath string) (int, string) {
		t.Helper()
		code, out, errb := inProcess("renew", "-dry-run", "-config", cfgPath, "c0")
		return code, out + errb
	}
	expect := func(what string, code int, out string, wantCode int, wants ...string) {
		t.Helper()
		if code != wantCode {
			t.Errorf("%s: exit %d, want %d\n%s", what, code, wantCode, out)
		}
		for _, want := range wants {
			if !strings.Contains(out, want) {
				t.Errorf("%s: the output does not say %q:\n%s", what, want, out)
			}
		}
	}

	// Never issued: the CA and the proofs are checked; the claim is not
	// verified yet, which a renewal proves first (not a failure).
	code, out := dry(cfg)
	expect("before the first issuance", code, out, exitOK, "dry run: CA log in: ok", "dry run: CA validation policy: ok", "dry run: CA quota: ok",
		"dry run: claim example.com: not checked", "every challenge visible", "dry run: not checked (see above)", "no order was placed")
	if n := len(w.sim.Ledger()); n != 0 {
		t.Fatalf("the dry run placed %d orders", n)
	}
	if code, out, _ := runOnceBin(t, cfg); code != exitOK {
		t.Fatalf("run -once: %d\n%s", code, out)
	}
	// Everything right: 0, and nothing ordered.
	code, out = dry(cfg)
	expect("everything right", code, out, exitOK, "dry run: claim example.com: ok: verified at the CA until", "would renew cleanly")
	t.Logf("the dry run with everything right:\n%s", out)
	if got := w.knot.TXT(t, "example.com"); len(got) != 1 || got[0] != "v=spf1 -all" {
		t.Errorf("the dry run left TXT records: %v", got)
	}

	// A wrong API secret: the login is refused.
	if err := os.WriteFile(filepath.Join(w.dir, "wrong-secret"), []byte("not-the-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(w.dir, "wrong.yaml")
	writeFile(t, wrong, strings.Replace(good, "api_secret: file:api-secret", "api_secret: file:wrong-secret", 1))
	code, out = dry(wrong)
	expect("wrong API secret", code, out, exitFailure, "dry run: CA log in: FAILED", "HTTP 401", "FAILED at CA log in", "claim example.com: not checked: the CA could not be asked")

	// An unreachable DNS server: the throwaway record cannot be published.
	unreachable := filepath.Join(w.dir, "unreachable.yaml")
	writeFile(t, unreachable, strings.Replace(good, fmt.Sprintf("server: %q", w.knot.Addr), fmt.Sprintf("server: \"127.0.0.1:%d\"", testenv.FreePort(t)), 1))
	code, out = dry(unreachable)
	expect("unreachable DNS server", code, out, exitFailure, "dry run: publish c0.example.com: FAILED", "FAILED at publish c0.example.com")

	// A claim the CA dropped (deleted in its portal): the store still
	// holds it as verified.
	if err := w.sim.DropClaim("example.com"); err != nil {
		t.Fatal(err)
	}
	code, out = dry(cfg)
	expect("claim dropped at the CA", code, out, exitFailure, "dry run: claim example.com: FAILED", "the CA has no such claim", "FAILED at claim example.com")

	// The CA stopped.
	w.stopSim()
	code, out = dry(cfg)
	expect("simulator stopped", code, out, exitFailure, "dry run: CA log in: FAILED", "connection refused")

	if n := len(w.sim.Ledger()); n != 1 {
		t.Fatalf("ledger %d, want the 1 order of run -once: a dry run ordered", n)
	}
}

// Item 1: a dry run while the daemon runs does not fail on the address of
// the built-in responder the daemon holds: it asks the daemon's responder
// and says what it could not publish.
func TestDryRunWhileTheDaemonRuns(t *testing.T) {
	t.Parallel()
	web := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	w := newAtlasWorld(t, func(o *atlassim.Options) { o.HTTPAddr = web })
	cfg := w.lifecycleConfig("@every 1h", "", 1)
	cfg = strings.Replace(cfg, "  timeout: 20s\n", fmt.Sprintf("  timeout: 20s\n  http_check_address: %q\n", web), 1)
	cfg = strings.Replace(cfg, "defaults:\n", fmt.Sprintf("http:\n  web: {type: responder, listen: %q}\ndefaults:\n", web), 1)
	cfg += "  - {name: web, domains: [web.example.net], dcv: {method: http, target: web}}\n"
	cfgPath := w.writeConfig(t, cfg)
	cmd, logs := surfaceDaemon(t, cfgPath)
	waitValid(t, filepath.Join(w.dir, "state", "certd.db"), logs, "c0", "web")

	code, out, errb := inProcess("renew", "-dry-run", "-config", cfgPath, "web")
	if code != exitOK || !strings.Contains(out, fmt.Sprintf("dry run: responder %s: ok: held by the running daemon (pid %d)", web, cmd.Process.Pid)) ||
		!strings.Contains(out, "dry run: publish web.example.net: not checked: the running daemon") || strings.Contains(out+errb, "address already in use") {
		t.Fatalf("dry run while the daemon runs: exit %d\n%s\n%s", code, out, errb)
	}
	if code, out, errb := inProcess("renew", "-dry-run", "-config", cfgPath, "c0"); code != exitOK {
		t.Fatalf("dry run of a DNS-proved certificate while the daemon runs: exit %d\n%s\n%s", code, out, errb)
	}
	stopDaemon(t, cmd, logs)
	// With the daemon stopped, the dry run serves the responder itself.
	code, out, errb = inProcess("renew", "-dry-run", "-config", cfgPath, "web")
	if code != exitOK || !strings.Contains(out, "dry run: publish web.example.net: ok: published http-file at /.well-known/pki-validation/certd-dry-run-") {
		t.Fatalf("dry run with the daemon stopped: exit %d\n%s\n%s", code, out, errb)
	}
	if n := len(w.sim.Ledger()); n != 2 {
		t.Fatalf("ledger %d, want 2: a dry run ordered", n)
	}
}

// Item 2: `certd status` exits non-zero whenever something needs a
// person, over a certificate's whole life: never issued (no daemon),
// pending within its grace, valid, failing, in its emergency window, and
// with the daemon stopped. The metrics tell the last pass and the build,
// and export their counters at zero from the start.
func TestStatusExitCodesOverTheLifecycle(t *testing.T) {
	t.Parallel()
	w := newAtlasWorld(t, func(o *atlassim.Options) {
		o.IssueDelay = 5 * time.Second
		pol := atlassim.DefaultPolicy()
		pol.Validity.SecondsMin = 10
		o.Policy = &pol
	})
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	base := w.lifecycleConfig("@every 1h", "", 1)
	base = strings.Replace(base, "  - {name: c0, domains: [c0.example.com]}", "  - {name: c0, domains: [c0.example.com], lifetime: 30s}", 1)
	base = fmt.Sprintf("metrics: {listen: %q}\npending_grace: 1h\n", metricsAddr) + base
	cfg := w.writeConfig(t, base)
	status := func(what string, wantCode int, args ...string) statusReport {
		t.Helper()
		code, out, errb := inProcess(append([]string{"status", "-config", cfg, "-json"}, args...)...)
		var rep statusReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%s: %v\n%s%s", what, err, out, errb)
		}
		if code != wantCode {
			t.Fatalf("%s: status exit %d, want %d\n%s", what, code, wantCode, out)
		}
		if len(rep.Certificates) != 1 || rep.Certificates[0].Name != "c0" || !rep.Certificates[0].Configured {
			t.Fatalf("%s: certificates %+v", what, rep.Certificates)
		}
		return rep
	}

	// Never issued, no daemon: listed as pending, and 1 (nothing works it).
	rep := status("never issued", exitFailure)
	if c := rep.Certificates[0]; c.State != store.StatePending || c.PendingSince == nil || c.Problem != "" || rep.Daemon.Running ||
		!strings.Contains(rep.Daemon.Problem, "no certd daemon") {
		t.Fatalf("never issued: %+v %+v", c, rep.Daemon)
	}
	status("never issued, -no-daemon, within its grace", exitOK, "-no-daemon")
	writeFile(t, cfg, strings.Replace(base, "pending_grace: 1h", "pending_grace: 1s", 1))
	time.Sleep(1200 * time.Millisecond)
	if c := status("never issued, past pending_grace", exitFailure, "-no-daemon").Certificates[0]; !strings.Contains(c.Problem, "no certificate deployed") {
		t.Fatalf("past pending_grace: %+v", c)
	}
	writeFile(t, cfg, base)

	// The daemon runs; the first issuance takes 5 s at the CA.
	cmd, logs := surfaceDaemon(t, cfg)
	fams := scrape(t, metricsAddr)
	for _, m := range []struct {
		name   string
		labels map[string]string
	}{
		{"certd_renewals_total", map[string]string{"account": "atlas"}},
		{"certd_failures_total", map[string]string{"account": "atlas", "reason": "quota"}},
		{"certd_deploys_total", map[string]string{"cert": "c0", "result": "failure"}},
	} {
		if v, ok := value(fams, m.name, m.labels); !ok || v != 0 {
			t.Errorf("%s%v at start: %v %v, want an exported 0", m.name, m.labels, v, ok)
		}
	}
	if v, ok := value(fams, "certd_build_info", map[string]string{"goversion": "go" + strings.TrimPrefix(testGoVersion(), "go")}); !ok || v != 1 {
		t.Errorf("certd_build_info: %v %v", v, ok)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		rep = status("pending", exitOK)
		if rep.Certificates[0].State == store.StateIssuing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("c0 never seen pending at the CA: %+v\n%s", rep.Certificates[0], logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if c := rep.Certificates[0]; c.NotAfter != nil || c.PendingSince == nil || !rep.Daemon.Running || rep.Daemon.PID != cmd.Process.Pid {
		t.Fatalf("pending: %+v daemon %+v", c, rep.Daemon)
	}

	// Valid.
	for deadline = time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if rep = status("valid", exitOK); rep.Certificates[0].State == store.StateValid && rep.Daemon.LastPass != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not valid in time: %+v\n%s", rep.Certificates[0], logs.String())
		}
	}
	c := rep.Certificates[0]
	if c.Serial == "" || c.NotAfter == nil || c.Path != filepath.Join(w.dir, "live", "c0") || !c.FilesDeployed || c.KeyType != "ecdsa-p256" ||
		c.Issuer != "globalsign-atlas" || c.Account != "atlas" {
		t.Fatalf("valid: %+v", c)
	}
	_, text, _ := inProcess("status", "-config", cfg)
	if !strings.Contains(text, c.NotAfter.UTC().Format(time.RFC3339)) || !strings.Contains(text, fmt.Sprintf("daemon: running (pid %d)", cmd.Process.Pid)) ||
		!strings.Contains(text, "last pass "+rep.Daemon.LastPass.UTC().Format(time.RFC3339)) {
		t.Errorf("status lacks the absolute expiry, the daemon or its last pass:\n%s", text)
	}
	if code, one, _ := inProcess("status", "-config", cfg, "c0"); code != exitOK || !strings.Contains(one, c.Path+" (files in place)") ||
		!strings.Contains(one, "atlas (globalsign-atlas)") || !strings.Contains(one, c.NotAfter.UTC().Format(time.RFC3339)) {
		t.Errorf("status c0: exit %d\n%s", code, one)
	}
	code, claimsOut, _ := inProcess("claims", "list", "-config", cfg, "-json")
	var claims []claimStatus
	if err := json.Unmarshal([]byte(claimsOut), &claims); code != exitOK || err != nil || len(claims) != 1 || claims[0].Domain != "example.com" || claims[0].Status != "VERIFIED" {
		t.Errorf("claims list -json: exit %d %v\n%s", code, err, claimsOut)
	}
	fams = scrape(t, metricsAddr)
	if v, ok := value(fams, "certd_last_pass_timestamp_seconds", nil); !ok || int64(v) != rep.Daemon.LastPass.Unix() {
		t.Errorf("certd_last_pass_timestamp_seconds %v %v, want %d", v, ok, rep.Daemon.LastPass.Unix())
	}

	// Failing: a forced renewal whose deploy check fails.
	writeFile(t, cfg, strings.Replace(base, "keep: 2}", "keep: 2, check: [\"false\"]}", 1))
	code, out, errb := inProcess("renew", "-config", cfg, "-force", "c0")
	if code != exitOK || !strings.Contains(out, "c0: placing a new order with account atlas (globalsign-atlas charges for each order)") {
		t.Fatalf("renew -force with the daemon running: exit %d\n%s%s", code, out, errb)
	}
	for deadline = time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, out, _ := inProcess("status", "-config", cfg, "-json")
		_ = json.Unmarshal([]byte(out), &rep)
		if rep.Certificates[0].State == store.StateFailing {
			if code != exitFailure || !strings.Contains(rep.Certificates[0].Problem, "failing (1 attempts in a row)") {
				t.Fatalf("failing: exit %d %+v", code, rep.Certificates[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the renewal did not fail: %+v\n%s", rep.Certificates[0], logs.String())
		}
	}

	// Emergency: the deployed certificate enters the last 1/20 of its life.
	c = rep.Certificates[0]
	time.Sleep(time.Until(scheduler.EmergencyTime(*c.NotBefore, *c.NotAfter).Add(200 * time.Millisecond)))
	if rep = status("emergency", exitFailure); !rep.Certificates[0].Emergency {
		t.Fatalf("emergency: %+v", rep.Certificates[0])
	}
	if _, text, _ := inProcess("status", "-config", cfg); !strings.Contains(text, "(EMERGENCY)") || !strings.Contains(text, "UNHEALTHY:") {
		t.Errorf("status text in the emergency window:\n%s", text)
	}

	// The daemon stopped.
	stopDaemon(t, cmd, logs)
	if rep = status("daemon stopped", exitFailure); rep.Daemon.Running || !strings.Contains(rep.Daemon.Problem, "no certd daemon is running") {
		t.Fatalf("daemon stopped: %+v", rep.Daemon)
	}
	if n := w.sim.OrdersFor([]string{"c0.example.com"}); n != 2 {
		t.Errorf("%d orders, want 2 (the issuance and the forced renewal)", n)
	}
}

func testGoVersion() string {
	out, _ := exec.Command("go", "env", "GOVERSION").Output()
	return strings.TrimSpace(string(out))
}

// Item 3: a reload with a 0-byte configuration is refused; one that
// retires certificates says so loudly (a warning per certificate, a warn
// event, a notification), and status shows the retired certificate whose
// files are still deployed, exiting 1.
func TestReloadThatRetiresIsLoud(t *testing.T) {
	t.Parallel()
	w := newAtlasWorld(t)
	var mu sync.Mutex
	var hooks []map[string]any
	hookSrv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		hooks = append(hooks, body)
		mu.Unlock()
	}))
	defer hookSrv.Close()
	if err := os.WriteFile(filepath.Join(w.dir, "webhook-url"), []byte(hookSrv.URL+"/hook\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	notifyBlock := "notify:\n  webhook: {url: file:webhook-url}\n"
	cfg := w.writeConfig(t, notifyBlock+w.lifecycleConfig("@every 1h", "", 2))
	cmd, logs := surfaceDaemon(t, cfg)
	waitValid(t, filepath.Join(w.dir, "state", "certd.db"), logs, "c0", "c1")

	// A 0-byte file: check-config and the reload both refuse it.
	writeFile(t, cfg, "")
	if code, _, errb := inProcess("check-config", cfg); code != exitUsage || !strings.Contains(errb, "no certificate is configured") {
		t.Fatalf("check-config of a 0-byte file: exit %d\n%s", code, errb)
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	logs.waitFor(t, "reload refused")
	st := openStore(t, w)
	for _, n := range []string{"c0", "c1"} {
		if c, _ := st.GetCertificate(context.Background(), n); c.State != store.StateValid {
			t.Fatalf("%s after the refused reload: %s", n, c.State)
		}
	}

	// A truncated file that lost c1.
	writeFile(t, cfg, notifyBlock+w.lifecycleConfig("@every 1h", "", 1))
	_ = cmd.Process.Signal(syscall.SIGHUP)
	logs.waitFor(t, `"msg":"certificate retired: it is no longer in the configuration`)
	if !strings.Contains(logs.String(), `"level":"warn"`) || !strings.Contains(logs.String(), `"cert":"c1","account":"atlas"`) {
		t.Errorf("the retirement is not a warning naming c1:\n%s", logs.String())
	}
	evs, _ := st.ListEvents(context.Background(), store.EventFilter{CertName: "c1"})
	retiredEvent := false
	for _, e := range evs {
		retiredEvent = retiredEvent || e.Kind == "retired" && e.Level == "warn" && strings.Contains(e.Message, "no longer renewed")
	}
	if !retiredEvent {
		t.Errorf("no warn event for c1's retirement: %+v", evs)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		got := false
		for _, h := range hooks {
			got = got || h["kind"] == "retired" && h["certificate"] == "c1"
		}
		mu.Unlock()
		if got {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no notification of c1's retirement: %v", hooks)
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, out, _ := inProcess("status", "-config", cfg, "-json")
	var rep statusReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	var c1 *certStatus
	for i := range rep.Certificates {
		if rep.Certificates[i].Name == "c1" {
			c1 = &rep.Certificates[i]
		}
	}
	if code != exitFailure || c1 == nil || c1.Configured || c1.State != store.StateRetired || !c1.FilesDeployed ||
		!strings.Contains(c1.Problem, "files are still deployed at "+filepath.Join(w.dir, "live", "c1")) {
		t.Fatalf("status after c1 was retired: exit %d %+v", code, c1)
	}
	if _, text, _ := inProcess("status", "-config", cfg); !strings.Contains(text, "retired (FILES STILL DEPLOYED)") {
		t.Errorf("status text:\n%s", text)
	}
	stopDaemon(t, cmd, logs)
}

// Item 5: a rollback holds until the next real issuance, and `renew
// -force` always places a new order (saying so first); a forced renewal
// whose deploy failed deploys what it bought on the retry, never buys
// again.
func TestRollbackHoldsAndForceAlwaysOrders(t *testing.T) {
	t.Parallel()
	w := newAtlasWorld(t)
	good := w.lifecycleConfig("@every 1h", "", 1)
	cfg := w.writeConfig(t, good)
	if code, out, _ := runOnceBin(t, cfg); code != exitOK {
		t.Fatalf("run -once: %d\n%s", code, out)
	}
	live := func() string {
		return fmt.Sprintf("%X", readCert(t, filepath.Join(w.dir, "live", "c0", "cert.pem")).SerialNumber)
	}
	s1 := live()
	force := func(wantCode int) string {
		t.Helper()
		code, out, errb := inProcess("renew", "-config", cfg, "-force", "c0")
		if code != wantCode || !strings.Contains(out, "c0: placing a new order with account atlas (globalsign-atlas charges for each order)") {
			t.Fatalf("renew -force: exit %d, want %d\n%s\n%s", code, wantCode, out, errb)
		}
		return out
	}
	force(exitOK)
	s2 := live()
	if code, out, errb := inProcess("rollback", "-config", cfg, "c0"); code != exitOK || !strings.Contains(out, "places a new order") {
		t.Fatalf("rollback: %d\n%s%s", code, out, errb)
	}
	if live() != s1 {
		t.Fatalf("after the rollback %s is live, want %s", live(), s1)
	}
	st := openStore(t, w)
	if c, _ := st.GetCertificate(context.Background(), "c0"); c.NextAction != scheduler.ActionReissue || c.Current == nil || c.Current.Serial != s1 {
		t.Fatalf("the store after the rollback: next %q, current %+v", c.NextAction, c.Current)
	}
	force(exitOK)
	s3 := live()
	if s3 == s1 || s3 == s2 || len(w.sim.Ledger()) != 3 {
		t.Fatalf("renew -force after a rollback: live %s (was %s, rolled back from %s), ledger %d: the version rolled back from came back",
			s3, s1, s2, len(w.sim.Ledger()))
	}

	// A forced renewal whose deploy fails: the retry deploys it. (A stored
	// version is deployed when it expires later than the live one: let a
	// second pass, the resolution of the validity dates.)
	time.Sleep(1100 * time.Millisecond)
	writeFile(t, cfg, strings.Replace(good, "keep: 2}", "keep: 2, check: [\"false\"]}", 1))
	force(exitFailure)
	if live() != s3 || len(w.sim.Ledger()) != 4 {
		t.Fatalf("after the failed deploy: live %s, ledger %d", live(), len(w.sim.Ledger()))
	}
	writeFile(t, cfg, good)
	if code, out, errb := inProcess("renew", "-config", cfg, "c0"); code != exitOK {
		t.Fatalf("renew after the deploy was fixed: %d\n%s%s", code, out, errb)
	}
	if n := len(w.sim.Ledger()); n != 4 || live() == s3 {
		t.Fatalf("the retry after a failed deploy: ledger %d (want 4: nothing bought again), live %s", n, live())
	}
}

// Item 6: check-config checks what a start needs (env: and credential:
// secrets, the client certificate file), so that it passes exactly the
// configurations `certd run` starts with.
func TestCheckConfigPassesWhatRunStarts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "client"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "client.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))
	must(os.WriteFile(filepath.Join(dir, "api-secret"), []byte("s\n"), 0o600))
	creds := filepath.Join(dir, "creds")
	must(os.MkdirAll(creds, 0o700))
	must(os.WriteFile(filepath.Join(creds, "tsig"), []byte("c2VjcmV0\n"), 0o600))
	cfg := filepath.Join(dir, "certd.yaml")
	writeFile(t, cfg, fmt.Sprintf(`
schedule: "@every 1h"
store: {sqlite: state/certd.db}
log: {level: info, format: json}
accounts:
  atlas:
    type: globalsign-atlas
    url: https://127.0.0.1:9/v2
    api_key: env:CERTD_SURFACE_API_KEY
    api_secret: file:api-secret
    client_cert: %[1]s/client.pem
    client_key: file:client.key
dns:
  zone: {type: rfc2136, server: "127.0.0.1:9", key_name: k, key: credential:tsig}
certificates:
  - {name: www, domains: [www.example.com], account: atlas, dcv: {method: dns, provider: zone}, deploy: {dir: %[1]s/live}}
`, dir))
	certd := func(env []string, args ...string) (int, string) {
		cmd := exec.Command(binary(t), args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return exitCode(err), string(out)
	}
	for _, tc := range []struct {
		name      string
		env       []string
		setup     func()
		check     []string // extra check-config flags
		checkCode int
		runCode   int // the exit of `run -once`: 2 is "would not start"
		wants     []string
	}{
		{"nothing there", []string{"CREDENTIALS_DIRECTORY="}, func() {}, nil, exitUsage, exitUsage,
			[]string{"accounts.atlas.client_cert: open " + dir + "/client.pem", "accounts.atlas.api_key: environment variable CERTD_SURFACE_API_KEY is not set",
				"dns.zone.key: credential tsig: $CREDENTIALS_DIRECTORY is not set", "3 problems: certd would not start"}},
		{"credential missing", []string{"CERTD_SURFACE_API_KEY=k", "CREDENTIALS_DIRECTORY="},
			func() {
				must(os.WriteFile(filepath.Join(dir, "client.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
			},
			nil, exitUsage, exitUsage, []string{"dns.zone.key: credential tsig"}},
		{"credential skipped", []string{"CERTD_SURFACE_API_KEY=k", "CREDENTIALS_DIRECTORY="}, func() {}, []string{"-skip-credentials"}, exitOK, exitUsage,
			[]string{"not checked (-skip-credentials): credential:tsig"}},
		{"everything there", []string{"CERTD_SURFACE_API_KEY=k", "CREDENTIALS_DIRECTORY=" + creds}, func() {}, nil, exitOK, exitFailure,
			[]string{": ok (1 files, 1 certificates, 1 accounts, 1 DNS providers, 0 HTTP targets)"}},
	} {
		tc.setup()
		code, out := certd(tc.env, append(append([]string{"check-config"}, tc.check...), cfg)...)
		if code != tc.checkCode {
			t.Errorf("%s: check-config exit %d, want %d\n%s", tc.name, code, tc.checkCode, out)
		}
		for _, want := range tc.wants {
			if !strings.Contains(out, want) {
				t.Errorf("%s: check-config does not say %q:\n%s", tc.name, want, out)
			}
		}
		// What check-config passes (without skipping), run starts; what it
		// refuses, run refuses.
		if rc, rout := certd(tc.env, "run", "-once", "-config", cfg); rc != tc.runCode {
			t.Errorf("%s: run -once exit %d, want %d\n%s", tc.name, rc, tc.runCode, rout)
		}
	}
}

// Item 7: a certificate's own deploy block is merged with defaults.deploy:
// it keeps the default reload hook.
func TestCertificateDeployBlockKeepsTheDefaultReload(t *testing.T) {
	t.Parallel()
	w := newAtlasWorld(t)
	marker := filepath.Join(w.dir, "reloaded")
	cfg := w.lifecycleConfig("@every 1h", "", 1)
	cfg = strings.Replace(cfg, "keep: 2}", fmt.Sprintf("keep: 2, reload: [[touch, %q]]}", marker), 1)
	cfg = strings.Replace(cfg, "  - {name: c0, domains: [c0.example.com]}", "  - {name: c0, domains: [c0.example.com], deploy: {combined: true}}", 1)
	cfgPath := w.writeConfig(t, cfg)
	if code, out, _ := runOnceBin(t, cfgPath); code != exitOK {
		t.Fatalf("run -once: %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(w.dir, "live", "c0", "combined.pem")); err != nil {
		t.Errorf("the certificate's own key was not applied: %v", err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the default reload hook did not run for a certificate with its own deploy block: %v", err)
	}
}

// Item 9: with no channel configured, certd says at start that nobody will
// be told, and never logs "notification sent"; with one, it logs the send
// once it happened (also at the end of `run -once`).
func TestNotificationsAreLoggedOnlyWhenSent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "certd.yaml")
	base := "notify: {after_failures: 1}\n" + goodConfig
	writeFile(t, cfg, base)
	runOnce := func() string {
		cmd := exec.Command(binary(t), "run", "-once", "-config", cfg)
		cmd.Env = append(os.Environ(), "TSIG=c2VjcmV0")
		out, err := cmd.CombinedOutput()
		if exitCode(err) != exitFailure {
			t.Fatalf("run -once: %v\n%s", err, out)
		}
		return string(out)
	}
	out := runOnce()
	if !regexp.MustCompile(`"level":"warn"[^\n]*"msg":"no notification channel is configured`).MatchString(out) || strings.Contains(out, "notification sent") {
		t.Fatalf("without a channel:\n%s", out)
	}
	var mu sync.Mutex
	got := 0
	// A slow channel: `run -once` must wait for the send before it exits.
	hookSrv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		time.Sleep(500 * time.Millisecond)
		mu.Lock()
		got++
		mu.Unlock()
	}))
	defer hookSrv.Close()
	if err := os.WriteFile(filepath.Join(dir, "hook"), []byte(hookSrv.URL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A fresh store, so that the certificate is due again.
	writeFile(t, cfg, "notify: {after_failures: 1, webhook: {url: file:hook}}\n"+strings.Replace(goodConfig, "sqlite: state/certd.db", "sqlite: state2/certd.db", 1))
	out = runOnce()
	mu.Lock()
	defer mu.Unlock()
	if got != 1 || !strings.Contains(out, `"msg":"notification sent"`) || !strings.Contains(out, `"channels":"webhook"`) ||
		strings.Contains(out, "no notification channel") {
		t.Fatalf("with a webhook: %d received\n%s", got, out)
	}
}

// Item 1, ACME: the dry run reads the directory and the account (never
// registering one), and the authorizations of an order it never
// finalizes; nothing is issued.
func TestDryRunACMEReadsTheAccountAndAuthorizations(t *testing.T) {
	t.Parallel()
	w := newACMEE2E(t, 0)
	cfgPath := filepath.Join(w.dir, "certd.yaml")
	writeFile(t, cfgPath, w.config("@every 1h"))
	dbPath := filepath.Join(w.dir, "state", "certd.db")
	code, out, errb := inProcess("renew", "-dry-run", "-config", cfgPath, "www")
	if code != exitOK || !strings.Contains(out, "dry run: CA directory: ok") || !strings.Contains(out, "dry run: CA account: not checked: not registered yet") {
		t.Fatalf("dry run before the account exists: exit %d\n%s\n%s", code, out, errb)
	}
	st, err := store.Open(context.Background(), dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetCAAccount(context.Background(), "pebble", w.pebble.Directory); err == nil {
		t.Fatal("the dry run registered the account")
	}
	st.Close()
	if code, out, _ := runOnceBin(t, cfgPath); code != exitOK {
		t.Fatalf("run -once: %d\n%s", code, out)
	}
	for name, how := range map[string]string{"www": "dns-txt", "app": "http-file"} {
		code, out, errb := inProcess("renew", "-dry-run", "-config", cfgPath, name)
		if code != exitOK || !strings.Contains(out, "dry run: CA account: ok") || !strings.Contains(out, "dry run: CA order: ok") ||
			!strings.Contains(out, "dry run: CA authorization "+name+".example.com: ok") || !strings.Contains(out, how) {
			t.Fatalf("dry run of %s: exit %d\n%s\n%s", name, code, out, errb)
		}
	}
	if n, m := versionCount(t, dbPath, "www"), versionCount(t, dbPath, "app"); n != 1 || m != 1 {
		t.Fatalf("a dry run issued: %d and %d versions", n, m)
	}
}

// Item 1: an Atlas account without issuances left fails the dry run at the
// quota (the order would be refused with 402).
func TestDryRunAtlasQuotaUsedUp(t *testing.T) {
	t.Parallel()
	w := newAtlasWorld(t, func(o *atlassim.Options) { o.Quota = 1 })
	cfg := w.writeConfig(t, w.lifecycleConfig("@every 1h", "", 1))
	if code, out, _ := runOnceBin(t, cfg); code != exitOK {
		t.Fatalf("run -once: %d\n%s", code, out)
	}
	code, out, errb := inProcess("renew", "-dry-run", "-config", cfg, "c0")
	if code != exitFailure || !strings.Contains(out, "dry run: CA quota: FAILED: the account has no issuance left") {
		t.Fatalf("dry run with the quota used up: exit %d\n%s\n%s", code, out, errb)
	}
}

// Item 2: a daemon that holds the store but completes no pass is reported
// as stalled, and status exits 1.
func TestStatusSaysWhenTheDaemonStalls(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "certd.yaml")
	writeFile(t, cfg, "schedule: \"@every 5m\"\nstore: {sqlite: certd.db}\nallow_empty: true\n")
	db := filepath.Join(dir, "certd.db")
	// This test holds the store as a daemon does.
	st, err := store.Open(context.Background(), db, store.Options{Exclusive: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	long := time.Now().Add(-3 * time.Hour)
	if err := st.RecordPass(context.Background(), store.Pass{FinishedAt: long, PID: os.Getpid()}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(db+".lock", long, long); err != nil {
		t.Fatal(err)
	}
	code, out, _ := inProcess("status", "-config", cfg)
	if code != exitFailure || !strings.Contains(out, fmt.Sprintf("daemon: STALLED (pid %d): the daemon (pid %d) has completed no pass since %s", os.Getpid(), os.Getpid(), long.UTC().Format(time.RFC3339))) {
		t.Fatalf("a daemon with no pass for 3 hours on a 5-minute schedule: exit %d\n%s", code, out)
	}
	if err := st.RecordPass(context.Background(), store.Pass{FinishedAt: time.Now(), PID: os.Getpid()}); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := inProcess("status", "-config", cfg); code != exitOK || !strings.Contains(out, fmt.Sprintf("daemon: running (pid %d), last pass", os.Getpid())) {
		t.Fatalf("after a pass: exit %d\n%s", code, out)
	}
}
