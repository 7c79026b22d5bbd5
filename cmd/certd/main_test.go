package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/certd/certd/internal/pgtest"
	"github.com/certd/certd/store"
)

// certdBin builds the binary once per test run.
var certdBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "certd-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "certd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", &buildError{out: string(out), err: err}
	}
	return bin, nil
})

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

func binary(t testing.TB) string {
	t.Helper()
	bin, err := certdBin()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

const goodConfig = `
schedule: "@every 1h"
store:
  sqlite: state/certd.db
log: {level: debug, format: json}
accounts:
  le: {type: acme, directory: "https://127.0.0.1:9/directory"} # loopback only: nothing answers
dns:
  zone: {type: rfc2136, server: "127.0.0.1:5353", key_name: k, key: env:TSIG}
certificates:
  - name: www
    domains: [www.example.com]
    account: le
    dcv: {method: dns, provider: zone}
    deploy: {dir: /srv/tls}
`

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// notifySocket listens where the daemon sends sd_notify datagrams.
type notifySocket struct {
	conn *net.UnixConn
	path string
	msgs chan string
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifySocket{conn: conn, path: path, msgs: make(chan string, 64)}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				close(n.msgs)
				return
			}
			n.msgs <- string(buf[:k])
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return n
}

// expect waits for a datagram containing want.
func (n *notifySocket) expect(t *testing.T, want string) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok {
				t.Fatalf("notify socket closed before %q", want)
			}
			if strings.Contains(m, want) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %q from the daemon", want)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the daemon's stderr copier.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func (s *syncBuffer) waitFor(t testing.TB, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(s.String(), want) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("log never showed %q; log:\n%s", want, s.String())
}

func TestDaemonLifecycle(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "certd.yaml")
	writeFile(t, cfgPath, goodConfig)
	sock := newNotifySocket(t)

	var logs syncBuffer
	cmd := exec.Command(bin, "run", "-config", cfgPath)
	// WATCHDOG_USEC asks for keep-alives, as WatchdogSec= does.
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock.path, "WATCHDOG_USEC=200000", "TSIG=c2VjcmV0")
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	sock.expect(t, "READY=1")
	logs.waitFor(t, `"msg":"certd started"`)
	sock.expect(t, "WATCHDOG=1")

	// The due certificate fails loudly (no issuer in this release) and gets
	// a persisted retry: nothing waits in silence.
	logs.waitFor(t, `"msg":"job failed; retry scheduled"`)

	// A broken configuration on SIGHUP is refused; the daemon keeps running.
	writeFile(t, cfgPath, goodConfig+"  - name: www\n    domains: [bad domain]\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	sock.expect(t, "RELOADING=1")
	sock.expect(t, "READY=1")
	logs.waitFor(t, "reload refused: the new configuration is invalid; keeping the running one")
	logs.waitFor(t, `certd.yaml:17:`) // the error names file:line
	select {
	case err := <-exited:
		t.Fatalf("daemon exited after a bad reload: %v\n%s", err, logs.String())
	case <-time.After(200 * time.Millisecond):
	}

	// A good configuration is taken.
	writeFile(t, cfgPath, strings.Replace(goodConfig, "[www.example.com]", "[www.example.com, example.com]", 1))
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	logs.waitFor(t, `"msg":"configuration reloaded"`)

	// While it runs, a second daemon on the same store is refused.
	second := exec.Command(bin, "run", "-config", cfgPath)
	second.Env = append(os.Environ(), "TSIG=c2VjcmV0")
	var secondLog bytes.Buffer
	second.Stderr = &secondLog
	start := time.Now()
	err := second.Run()
	if code := exitCode(err); code != exitStore || time.Since(start) > 5*time.Second {
		t.Errorf("second daemon: exit %d after %v, want %d at once; log:\n%s", code, time.Since(start), exitStore, secondLog.String())
	}
	if !strings.Contains(secondLog.String(), "only one daemon may use a store") {
		t.Errorf("second daemon does not say why: %s", secondLog.String())
	}

	// SIGTERM: STOPPING, then exit 0.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sock.expect(t, "STOPPING=1")
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not stop on SIGTERM")
	}
	logs.waitFor(t, `"msg":"certd stopped"`)

	// What the daemon did is in the store: the reload, the refusal, the
	// failure with its retry time.
	st, err := store.Open(context.Background(), filepath.Join(dir, "state", "certd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := st.GetCertificate(context.Background(), "www")
	if err != nil || c.State != store.StateFailing || c.NextActionAt.IsZero() || len(c.Domains) != 2 {
		t.Errorf("certificate after run: %+v %v", c, err)
	}
	events, _ := st.ListEvents(context.Background(), store.EventFilter{})
	kinds := map[string]bool{}
	for _, e := range events {
		kinds[e.Kind] = true
	}
	for _, k := range []string{"configured", "failed", "reload_refused", "reloaded"} {
		if !kinds[k] {
			t.Errorf("no %q event in the log: %v", k, kinds)
		}
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

func TestCheckConfig(t *testing.T) {
	var out, errb bytes.Buffer
	// The example names files and systemd credentials this machine does
	// not have: check-config says so, as a start would fail on them.
	if code := run([]string{"check-config", "../../config.example.yaml"}, &out, &errb); code != exitUsage {
		t.Fatalf("example config: exit %d, want %d\n%s%s", code, exitUsage, out.String(), errb.String())
	}
	// Each problem is reported where it is written.
	line := 1 + strings.Count(strings.Split(readString(t, "../../config.example.yaml"), "client_cert: /etc/certd/atlas-client.pem")[0], "\n")
	for _, want := range []string{fmt.Sprintf("config.example.yaml:%d:5: accounts.atlas.client_cert: open /etc/certd/atlas-client.pem", line),
		"accounts.atlas.api_key: credential atlas-api-key: $CREDENTIALS_DIRECTORY is not set", "certd would not start"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("check-config of the example does not say %q:\n%s", want, errb.String())
		}
	}
	// Without the credentials, only the missing client certificate is left.
	out.Reset()
	errb.Reset()
	if code := run([]string{"check-config", "-skip-credentials", "../../config.example.yaml"}, &out, &errb); code != exitUsage ||
		strings.Contains(errb.String(), "CREDENTIALS_DIRECTORY") || !strings.Contains(errb.String(), "atlas-client.pem") {
		t.Fatalf("-skip-credentials: exit %d\n%s", code, errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"check-config", "../../config/testdata/bad/08-unknown-account.yaml"}, &out, &errb); code != exitUsage {
		t.Fatalf("bad config: exit %d, want %d", code, exitUsage)
	}
	if !strings.Contains(errb.String(), "08-unknown-account.yaml:11:") || !strings.Contains(errb.String(), "certificates[0].account") {
		t.Errorf("error does not name file:line and key: %s", errb.String())
	}
	if code := run([]string{"check-config", "a", "b"}, &out, &errb); code != exitUsage {
		t.Errorf("two files: exit %d", code)
	}
	if code := run([]string{"frobnicate"}, &out, &errb); code != exitUsage {
		t.Errorf("unknown command: exit %d", code)
	}
}

func TestStatusOnNewStore(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "certd.yaml")
	writeFile(t, cfgPath, "store: {sqlite: fresh/certd.db}\nallow_empty: true\n")
	var out, errb bytes.Buffer
	if code := run([]string{"status", "-config", cfgPath, "-no-daemon"}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "daemon: not running") || !strings.HasPrefix(lines[2], "CERTIFICATE") || !strings.HasPrefix(lines[4], "CLAIM") {
		t.Errorf("want the daemon line and two empty tables, got:\n%s", out.String())
	}
	out.Reset()
	if code := run([]string{"status", "-config", cfgPath, "-json", "-no-daemon"}, &out, &errb); code != exitOK {
		t.Fatalf("json: exit %d", code)
	}
	var rep statusReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep.Certificates == nil || len(rep.Certificates) != 0 || rep.Unhealthy != 0 || !rep.Healthy {
		t.Errorf("json: %+v %v\n%s", rep, err, out.String())
	}
	// Without -no-daemon, a store no daemon works is not healthy.
	out.Reset()
	if code := run([]string{"status", "-config", cfgPath}, &out, &errb); code != exitFailure || !strings.Contains(out.String(), "NOT RUNNING") {
		t.Errorf("no daemon: exit %d\n%s", code, out.String())
	}
}

func TestStatusReportsStoreAndExitsNonZeroWhenUnhealthy(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "certd.yaml")
	writeFile(t, cfgPath, `store: {sqlite: certd.db}
accounts:
  atlas: {type: globalsign-atlas, api_key: env:K, api_secret: env:S, client_cert: /c.pem, client_key: env:CK}
dns:
  zone: {type: rfc2136, server: "127.0.0.1:5353", key_name: k, key: env:TSIG}
defaults: {account: atlas, dcv: {method: dns, provider: zone}, deploy: {dir: /srv/tls}}
certificates:
  - {name: ok, domains: [a.example]}
`)
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(dir, "certd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.SaveCertificate(ctx, store.Certificate{Name: "ok", Account: "atlas", Domains: []string{"a.example"}, State: store.StateValid,
		NextAction: "renew", NextActionAt: now.Add(40 * 24 * time.Hour)}))
	must(st.SaveClaim(ctx, store.Claim{Account: "atlas", Domain: "a.example", Status: "VERIFIED", ExpiresAt: now.Add(300 * 24 * time.Hour)}))
	var out, errb bytes.Buffer
	if code := run([]string{"status", "-config", cfgPath, "-no-daemon"}, &out, &errb); code != exitOK {
		t.Fatalf("healthy store: exit %d %s\n%s", code, errb.String(), out.String())
	}
	if !strings.Contains(out.String(), "renew in 39d") || !strings.Contains(out.String(), "VERIFIED") || !strings.Contains(out.String(), "atlas (globalsign-atlas)") {
		t.Errorf("table:\n%s", out.String())
	}
	writeFile(t, cfgPath, strings.Replace(readString(t, cfgPath), "  - {name: ok", "  - {name: bad, domains: [b.example]}\n  - {name: ok", 1))
	must(st.SaveCertificate(ctx, store.Certificate{Name: "bad", Account: "atlas", Domains: []string{"b.example"}, State: store.StateFailing,
		NextAction: "issue", NextActionAt: now.Add(10 * time.Minute), Failures: 3, LastError: "atlas: 402 quota exhausted"}))
	st.Close()
	out.Reset()
	if code := run([]string{"status", "-config", cfgPath, "-json", "-no-daemon"}, &out, &errb); code != exitFailure {
		t.Fatalf("failing certificate: exit %d, want %d", code, exitFailure)
	}
	var rep statusReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Unhealthy != 1 || len(rep.Certificates) != 2 || rep.Certificates[0].Name != "bad" || rep.Certificates[0].Failures != 3 ||
		rep.Certificates[0].LastError != "atlas: 402 quota exhausted" || !strings.Contains(rep.Certificates[0].Problem, "failing (3 attempts") ||
		len(rep.Claims) != 1 || rep.Claims[0].ExpiresAt == nil || rep.Certificates[1].Path != "/srv/tls/ok" || rep.Certificates[1].KeyType != "ecdsa-p256" {
		t.Errorf("json report: %+v", rep)
	}
	// status NAME: one certificate, and its own exit code.
	out.Reset()
	if code := run([]string{"status", "-config", cfgPath, "-no-daemon", "ok"}, &out, &errb); code != exitOK ||
		!strings.Contains(out.String(), "deployed at") || !strings.Contains(out.String(), "/srv/tls/ok") {
		t.Errorf("status ok: exit %d\n%s", code, out.String())
	}
	if code := run([]string{"status", "-config", cfgPath, "-no-daemon", "bad"}, &out, &errb); code != exitFailure {
		t.Errorf("status bad: exit %d", code)
	}
	if code := run([]string{"status", "-config", cfgPath, "-no-daemon", "nosuch"}, &out, &errb); code != exitUsage {
		t.Errorf("status of an unknown certificate: exit %d", code)
	}
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestMain stops the shared PostgreSQL of the fleet tests (if one was
// started) when the tests end, and removes its files.
func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}
