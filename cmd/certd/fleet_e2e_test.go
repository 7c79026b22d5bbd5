package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certd/certd/deploy"
	"github.com/certd/certd/internal/failpoint"
	"github.com/certd/certd/internal/pemutil"
	"github.com/certd/certd/internal/pgtest"
	"github.com/certd/certd/store"
)

// Fleet mode end to end: several `certd run` daemons, each with its own
// configuration file (its fleet.host) and deploy directory, on one real
// PostgreSQL, against the Atlas and Sectigo simulators, real Knot and
// nginx.

type fleet struct {
	w      *chaosWorld
	pg     *pgtest.Server
	dsn    string
	key    string // the encryption key, base64
	logs   map[string]*syncBuffer
	cmds   map[string]*exec.Cmd
	exited map[string]chan struct{} // closed when the host's daemon has exited
	env    []string                 // extra environment of the next daemon started
}

func newFleet(t testing.TB, pg *pgtest.Server, delay time.Duration) *fleet {
	t.Helper()
	f := &fleet{w: newChaosWorld(t, delay), pg: pg, key: store.NewEncryptionKey(), logs: map[string]*syncBuffer{}, cmds: map[string]*exec.Cmd{},
		exited: map[string]chan struct{}{}}
	f.dsn = pg.NewDatabase(t)
	writeFileMode(t, filepath.Join(f.w.dir, "fleet.key"), f.key+"\n", 0o600)
	t.Cleanup(func() {
		for h, c := range f.cmds {
			_ = c.Process.Signal(syscall.SIGCONT)
			_ = c.Process.Kill()
			<-f.exited[h]
		}
	})
	return f
}

func writeFileMode(t testing.TB, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

// names are the fleet's certificates: n each at Atlas and Sectigo.
func fleetNames(atlas, sectigo int) []string {
	var out []string
	for i := range atlas {
		out = append(out, fmt.Sprintf("atlas%d", i))
	}
	for i := range sectigo {
		out = append(out, fmt.Sprintf("sectigo%d", i))
	}
	return out
}

// config is host's configuration: the same accounts and certificates as
// every other host, its own name and deploy directory.
func (f *fleet) config(t testing.TB, host string, names []string, lease, requestTimeout time.Duration) string {
	t.Helper()
	w := f.w
	var b strings.Builder
	fmt.Fprintf(&b, `
schedule: "@every 1m"
store: {postgres: env:CERTD_FLEET_DSN}
fleet: {host: %[10]s, encryption_key: file:fleet.key, lease: %[11]s, sync_interval: 1s}
workers: 8
log: {level: info, format: json}
dcv:
  resolvers: [%[1]q]
  check_servers: {knot: [%[1]q]}
  timeout: 30s
accounts:
  atlas:
    type: globalsign-atlas
    url: https://%[3]s/v2
    api_key: file:atlas-key
    api_secret: file:secret
    client_cert: %[5]s/atlas-client.pem
    client_key: file:atlas-client.key
    ca: %[5]s/atlas-api-ca.pem
    claim_domains: [example.com]
    issuance_window: 10s
    order_wait: 3s
    max_concurrent: 8
    request_timeout: %[12]s
  sectigo:
    type: sectigo
    url: https://%[4]s
    login_name: chaos
    login_password: file:secret
    product: 488
    days: 90
    ca: %[5]s/sectigo-api-ca.pem
    roots: %[5]s/sectigo-root.pem
    poll_interval: 1s
    recheck_interval: 1s
    order_wait: 3s
    max_concurrent: 8
    request_timeout: %[12]s
dns:
  knot: {type: rfc2136, server: %[1]q, key_name: %[6]s, key: file:tsig}
defaults:
  dcv: {method: dns, provider: knot}
  deploy: {dir: %[5]s/%[10]s/live, keep: 2}
certificates:
`, w.knot.Addr, w.web, w.urls["atlas"], w.urls["sectigo"], w.dir, w.knot.KeyName, "", "", "", host, lease, requestTimeout)
	for _, n := range names {
		acct := strings.TrimRight(n, "0123456789")
		fmt.Fprintf(&b, "  - {name: %s, account: %s, domains: [%s.example.com]}\n", n, acct, n)
	}
	path := filepath.Join(w.dir, host+".yaml")
	writeFile(t, path, b.String())
	return path
}

// start runs `certd run` for host.
func (f *fleet) start(t testing.TB, host, cfg string) {
	t.Helper()
	f.launch(t, host, cfg)
	f.logs[host].waitFor(t, "certd started")
}

// launch starts `certd run` for host without waiting for it.
func (f *fleet) launch(t testing.TB, host, cfg string) {
	t.Helper()
	cmd := exec.Command(binary(t), "run", "-config", cfg)
	cmd.Env = append(append(os.Environ(), "CERTD_FLEET_DSN="+f.dsn), f.env...)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.cmds[host], f.logs[host] = cmd, logs
	done := make(chan struct{})
	f.exited[host] = done
	go func() { _ = cmd.Wait(); close(done) }()
}

// running reports whether host's daemon is still running.
func (f *fleet) running(host string) bool {
	select {
	case <-f.exited[host]:
		return false
	default:
		return true
	}
}

// kill SIGKILLs host's daemon and waits for it.
func (f *fleet) kill(host string) {
	_ = f.cmds[host].Process.Signal(syscall.SIGKILL)
	<-f.exited[host]
	delete(f.cmds, host)
}

func (f *fleet) stop(t testing.TB, host string) {
	t.Helper()
	cmd := f.cmds[host]
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-f.exited[host]:
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("host %s exited %d\n%s", host, code, tailString(f.logs[host].String(), 4000))
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-f.exited[host]
		t.Errorf("host %s did not stop within 60s", host)
	}
	delete(f.cmds, host)
}

// open opens the fleet's store as a host would.
func (f *fleet) open(t testing.TB) *store.Postgres {
	t.Helper()
	k, err := store.ParseEncryptionKey(f.key)
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := store.NewAESGCM(k)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenPostgres(context.Background(), f.dsn, store.Options{Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// servedEverywhere reports what is not yet served on every host: each
// host's live set of each certificate must be the store's current version.
func (f *fleet) notServed(st store.Store, hosts, names []string) []string {
	var missing []string
	for _, n := range names {
		c, err := st.GetCertificate(context.Background(), n)
		if err != nil || c.Current == nil || c.State != store.StateValid {
			missing = append(missing, n+"(store)")
			continue
		}
		for _, h := range hosts {
			live := deploy.Inspect(deploy.Spec{Dir: filepath.Join(f.w.dir, h, "live"), Name: n})
			if live.Missing || live.Fingerprint != c.Current.Fingerprint {
				missing = append(missing, n+"@"+h)
			}
		}
	}
	return missing
}

func (f *fleet) waitServed(t testing.TB, st store.Store, hosts, names []string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		missing := f.notServed(st, hosts, names)
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var logs strings.Builder
			for h, l := range f.logs {
				fmt.Fprintf(&logs, "--- %s\n%s\n", h, tailString(l.String(), 3000))
			}
			t.Fatalf("not served everywhere after %s (%d): %v\n%s", timeout, len(missing), missing[:min(len(missing), 20)], logs.String())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// checkSets: every host's live set of every certificate is one complete
// version: the key matches, the chain verifies to the CA's root, the
// names are the certificate's.
func (f *fleet) checkSets(t testing.TB, hosts, names []string) {
	t.Helper()
	for _, h := range hosts {
		for _, n := range names {
			dir := filepath.Join(f.w.dir, h, "live", n)
			full, err := os.ReadFile(filepath.Join(dir, "fullchain.pem"))
			if err != nil {
				t.Fatalf("%s on %s: %v", n, h, err)
			}
			key, err := os.ReadFile(filepath.Join(dir, "privkey.pem"))
			if err != nil {
				t.Fatalf("%s on %s: %v", n, h, err)
			}
			certs, err := pemutil.Certificates(full)
			if err != nil {
				t.Fatalf("%s on %s: %v", n, h, err)
			}
			k, err := pemutil.Key(key)
			if err != nil {
				t.Fatalf("%s on %s: %v", n, h, err)
			}
			if pub, ok := certs[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(k.Public()) {
				t.Errorf("%s on %s: the key does not match the certificate", n, h)
			}
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			if _, err := certs[0].Verify(x509.VerifyOptions{Roots: f.w.roots, Intermediates: inter, DNSName: n + ".example.com"}); err != nil {
				t.Errorf("%s on %s: %v", n, h, err)
			}
		}
	}
}

// paidOrders is the number of paid orders per certificate at both CAs.
func (f *fleet) paidOrders() map[string]int {
	per, _ := f.w.orders()
	out := map[string]int{}
	for name, k := range per {
		out[strings.TrimSuffix(name, ".example.com")] = k
	}
	return out
}

// reissues counts the reissues for another key, which cost nothing:
// Atlas rekeys and Sectigo's AutoReplaceSSL.
func (f *fleet) reissues() int {
	n := 0
	for _, e := range f.w.atlas.Ledger() {
		if e.Rekey {
			n++
		}
	}
	for _, e := range f.w.sectigo.Ledger() {
		if e.Replace {
			n++
		}
	}
	return n
}

func (f *fleet) checkOnePaidOrderEach(t testing.TB, names []string) {
	t.Helper()
	per := f.paidOrders()
	for _, n := range names {
		if per[n] != 1 {
			t.Errorf("%s: %d paid orders at its CA, want exactly 1", n, per[n])
		}
	}
	if len(per) != len(names) {
		t.Errorf("paid orders for %d names, want %d", len(per), len(names))
	}
}

func fleetSize(def int) int {
	if v, _ := strconv.Atoi(os.Getenv("CERTD_FLEET_CERTS")); v > 0 {
		return v
	}
	return def
}

// Three daemons, 200 certificates (100 at Atlas, 100 at Sectigo): one paid
// order per certificate, every host serves every certificate, each set
// verifies, and each host recorded its own deploys.
func TestFleetThreeDaemonsOnePostgres(t *testing.T) {
	pg := pgtest.Shared(t)
	f := newFleet(t, pg, 0)
	n := fleetSize(200)
	names := fleetNames(n/2, n-n/2)
	hosts := []string{"web1", "web2", "web3"}
	start := time.Now()
	cfgs := map[string]string{}
	for _, h := range hosts {
		cfgs[h] = f.config(t, h, names, 2*time.Minute, time.Minute)
	}
	for _, h := range hosts { // at once, as a fleet restarted together would
		f.launch(t, h, cfgs[h])
	}
	st := f.open(t)
	f.waitServed(t, st, hosts, names, 4*time.Minute)
	took := time.Since(start)
	f.checkOnePaidOrderEach(t, names)
	f.checkSets(t, hosts, names)
	// Every host deployed every certificate itself, and issuance was
	// shared: no host placed every order.
	issuedBy := map[string]int{}
	for _, name := range names {
		deps, err := st.ListDeployments(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		live := map[string]bool{}
		for _, d := range deps {
			if d.State == "live" {
				live[d.Host] = true
			}
		}
		for _, h := range hosts {
			if !live[h] {
				t.Errorf("%s: no live deployment recorded by %s", name, h)
			}
		}
		if len(deps) > 0 {
			issuedBy[deps[len(deps)-1].Host]++ // the first deploy is the issuing host's
		}
	}
	if len(names) >= 50 && len(issuedBy) < 2 {
		t.Errorf("one host did all the work: %v", issuedBy)
	}
	// No order left open, no lease left held once the work is done.
	open, err := st.OpenOrders(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 0 {
		t.Errorf("%d orders still open", len(open))
	}
	// status on one host shows every host up and every host's deploy.
	cmd := exec.Command(binary(t), "status", "-json", "-config", filepath.Join(f.w.dir, "web2.yaml"))
	cmd.Env = append(os.Environ(), "CERTD_FLEET_DSN="+f.dsn)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	var rep statusReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Hosts) != 3 || !rep.Healthy {
		t.Errorf("status: hosts %+v, healthy %v, unhealthy %d", rep.Hosts, rep.Healthy, rep.Unhealthy)
	}
	for _, c := range rep.Certificates {
		if len(c.Hosts) != 3 {
			t.Errorf("status of %s: %d hosts' deploys, want 3", c.Name, len(c.Hosts))
			break
		}
	}
	// A host's files removed behind its back are put back by that host.
	if err := os.RemoveAll(filepath.Join(f.w.dir, "web2", "live", names[0])); err != nil {
		t.Fatal(err)
	}
	f.waitServed(t, st, hosts, names, time.Minute)
	for _, h := range hosts {
		f.stop(t, h)
		if c := f.w.canaryIn(f.logs[h].String()); c != "" {
			t.Errorf("a configured secret in %s's output", h)
		}
		if strings.Contains(f.logs[h].String(), pg.Password()) || strings.Contains(f.logs[h].String(), f.key) {
			t.Errorf("the database password or the encryption key in %s's output", h)
		}
	}
	t.Logf("fleet: hosts=3 certificates=%d took=%s issued_by=%v", len(names), took.Round(time.Millisecond), issuedBy)
}

// The host working a certificate is SIGSTOPped while its order is in
// flight at the CA and stays stopped past its lease; another host takes
// the certificate over, finds the order and finishes it; the first host
// is then SIGCONTed: it places no second order, its late writes are
// refused (its lease is gone), and both hosts end up serving the one
// certificate.
func TestFleetHostPausedPastItsLeaseBuysNothing(t *testing.T) {
	pg := pgtest.Shared(t)
	const issueDelay = 8 * time.Second
	f := newFleet(t, pg, issueDelay)
	names := []string{"atlas0", "sectigo0"}
	const lease = 12 * time.Second // the shortest a 2s request timeout allows
	cfgA := f.config(t, "hosta", names, lease, 2*time.Second)
	cfgB := f.config(t, "hostb", names, lease, 2*time.Second)
	// Host A's lease renewal is stalled (as if starved): when it wakes,
	// nothing has told it that its lease is gone, and only the store's
	// fencing stands between its late writes and the store.
	f.env = []string{"CERTD_FAILPOINT=lease-keeper-stalled"}
	f.start(t, "hosta", cfgA)
	f.env = nil
	// Wait until host A has placed both orders: they are in flight (the
	// CA issues after 8s).
	deadline := time.Now().Add(60 * time.Second)
	for len(f.paidOrders()) < len(names) {
		if time.Now().After(deadline) {
			t.Fatalf("host A placed no orders:\n%s", tailString(f.logs["hosta"].String(), 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	a := f.cmds["hosta"]
	if err := a.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	st := f.open(t)
	leases, err := st.ListLeases(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	heldByA := 0
	for _, l := range leases {
		if strings.HasPrefix(l.Holder, "hosta/") && strings.HasPrefix(l.Resource, "cert:") {
			heldByA++
		}
	}
	if heldByA == 0 {
		t.Fatalf("host A holds no certificate lease while its orders are in flight: %+v", leases)
	}
	f.start(t, "hostb", cfgB)
	// B takes over only once A's leases have expired, then collects the
	// orders A placed.
	f.waitServed(t, st, []string{"hostb"}, names, 90*time.Second)
	if waited := time.Since(stoppedAt); waited < lease-time.Second {
		t.Errorf("host B finished after %s, before host A's %s lease could have expired", waited, lease)
	}
	versions := map[string]int{}
	for _, n := range names {
		vs, err := st.ListVersions(context.Background(), n)
		if err != nil {
			t.Fatal(err)
		}
		versions[n] = len(vs)
	}
	if err := a.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// A wakes up with stale state and goes on with its order: its writes
	// are refused, and then it deploys the version B stored.
	f.logs["hosta"].waitFor(t, "is no longer hosta/")
	f.waitServed(t, st, []string{"hosta", "hostb"}, names, 60*time.Second)
	time.Sleep(3 * time.Second) // let any late step of A's old jobs play out
	f.checkOnePaidOrderEach(t, names)
	for _, n := range names {
		vs, err := st.ListVersions(context.Background(), n)
		if err != nil {
			t.Fatal(err)
		}
		if len(vs) != 1 || versions[n] != 1 {
			t.Errorf("%s: %d stored versions (%d when A woke up), want 1", n, len(vs), versions[n])
		}
		o, err := st.LatestOrder(context.Background(), n)
		if err != nil {
			t.Fatal(err)
		}
		if o.Generation != 1 || o.State != store.OrderIssued {
			t.Errorf("%s: latest order generation %d state %s, want generation 1 issued", n, o.Generation, o.State)
		}
		c, err := st.GetCertificate(context.Background(), n)
		if err != nil {
			t.Fatal(err)
		}
		if c.State != store.StateValid || c.Failures != 0 {
			t.Errorf("%s: %s with %d failures after A woke up (its stale writes must not land)", n, c.State, c.Failures)
		}
	}
	f.checkSets(t, []string{"hosta", "hostb"}, names)
	f.stop(t, "hosta")
	f.stop(t, "hostb")
	t.Logf("paused host: lease=%s stopped_for=%s", lease, time.Since(stoppedAt).Round(time.Second))
	if os.Getenv("CERTD_SHOW_LOGS") != "" {
		t.Logf("host A:\n%s", f.logs["hosta"].String())
	}
}

// PostgreSQL is restarted while two hosts work: they report it, keep
// running, resume when it is back, and finish with one paid order per
// certificate, every host serving every certificate.
func TestFleetSurvivesPostgresRestart(t *testing.T) {
	pg := pgtest.New(t)
	f := newFleet(t, pg, time.Second)
	names := fleetNames(15, 15)
	hosts := []string{"web1", "web2"}
	for _, h := range hosts {
		f.start(t, h, f.config(t, h, names, 30*time.Second, 10*time.Second))
	}
	// Stop the database once some, not all, orders are placed.
	deadline := time.Now().Add(60 * time.Second)
	for len(f.paidOrders()) < 5 {
		if time.Now().After(deadline) {
			t.Fatal("no orders placed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	pg.Stop()
	down := time.Now()
	// status says the store cannot be reached (exit 3), without the
	// DSN's password.
	cmd := exec.Command(binary(t), "status", "-config", filepath.Join(f.w.dir, "web1.yaml"))
	cmd.Env = append(os.Environ(), "CERTD_FLEET_DSN="+f.dsn)
	out, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != exitStore || strings.Contains(string(out), pg.Password()) {
		t.Errorf("status with the database down: exit %d (want %d), password shown: %v\n%s", code, exitStore, strings.Contains(string(out), pg.Password()), out)
	}
	time.Sleep(5 * time.Second)
	for _, h := range hosts {
		if !f.running(h) {
			t.Fatalf("host %s exited while the database was down:\n%s", h, tailString(f.logs[h].String(), 3000))
		}
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("database down for %s", time.Since(down).Round(time.Millisecond))
	st := f.open(t)
	f.waitServed(t, st, hosts, names, 3*time.Minute)
	f.checkOnePaidOrderEach(t, names)
	f.checkSets(t, hosts, names)
	reported := false
	for _, h := range hosts {
		l := f.logs[h].String()
		if strings.Contains(l, `"level":"error"`) || strings.Contains(l, `"level":"warn"`) {
			reported = true
		}
		f.stop(t, h)
	}
	if !reported {
		t.Error("neither host logged a warning or an error while the database was down")
	}
}

// A host moves from SQLite to the fleet: `certd store migrate` copies its
// store into PostgreSQL, and the fleet's daemons (the old host and a new
// one) serve the certificates it had without ordering anything again.
func TestFleetMigrateFromSQLiteBuysNothing(t *testing.T) {
	pg := pgtest.Shared(t)
	f := newFleet(t, pg, 0)
	names := fleetNames(3, 2)
	fleetCfg := f.config(t, "web1", names, 2*time.Minute, time.Minute)
	data, err := os.ReadFile(fleetCfg)
	if err != nil {
		t.Fatal(err)
	}
	single := strings.Replace(string(data), "store: {postgres: env:CERTD_FLEET_DSN}", "store: {sqlite: state/certd.db}", 1)
	single = regexpLine("fleet: ").ReplaceAllString(single, "")
	singleCfg := filepath.Join(f.w.dir, "single.yaml")
	writeFile(t, singleCfg, single)
	if code, out, _ := runOnceBin(t, singleCfg); code != 0 {
		t.Fatalf("single host run: exit %d\n%s", code, tailString(out, 4000))
	}
	before := f.paidOrders()
	serials := map[string]string{}
	for _, n := range names {
		serials[n] = fmt.Sprintf("%X", readCert(t, filepath.Join(f.w.dir, "web1", "live", n, "cert.pem")).SerialNumber)
	}
	migrate := func() (int, string) {
		cmd := exec.Command(binary(t), "store", "migrate", "-config", fleetCfg, "-from", filepath.Join(f.w.dir, "state", "certd.db"))
		cmd.Env = append(os.Environ(), "CERTD_FLEET_DSN="+f.dsn)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, string(out)
	}
	if code, out := migrate(); code != 0 || !strings.Contains(out, "certificates 5") {
		t.Fatalf("migrate: exit %d\n%s", code, out)
	}
	if code, out := migrate(); code != exitStore || !strings.Contains(out, "empty database") {
		t.Errorf("a second migrate into the same database: exit %d, want %d and a refusal\n%s", code, exitStore, out)
	}
	st := f.open(t)
	for _, n := range names {
		c, err := st.GetCertificate(context.Background(), n)
		if err != nil || c.Current == nil || c.Current.Serial != serials[n] {
			t.Fatalf("%s after the copy: %+v, %v; want serial %s", n, c.Current, err, serials[n])
		}
	}
	f.start(t, "web1", fleetCfg)
	f.start(t, "web2", f.config(t, "web2", names, 2*time.Minute, time.Minute))
	f.waitServed(t, st, []string{"web1", "web2"}, names, 2*time.Minute)
	time.Sleep(2 * time.Second) // a pass or two more: nothing is ordered
	after := f.paidOrders()
	for _, n := range names {
		if before[n] != 1 || after[n] != 1 {
			t.Errorf("%s: %d paid orders before the move, %d after; want 1 and 1", n, before[n], after[n])
		}
		got := fmt.Sprintf("%X", readCert(t, filepath.Join(f.w.dir, "web2", "live", n, "cert.pem")).SerialNumber)
		if got != serials[n] {
			t.Errorf("%s on web2: serial %s, want the migrated %s", n, got, serials[n])
		}
	}
	f.checkSets(t, []string{"web1", "web2"}, names)
	f.stop(t, "web1")
	f.stop(t, "web2")
}

func regexpLine(prefix string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(prefix) + `.*\n`)
}

// Per-host keys (Atlas): the fleet buys one certificate per name, every
// host has it reissued (rekeyed, no purchase) for a private key that never
// leaves the host; a renewal of the fleet's certificate is bought once and
// reissued on every host again.
func TestFleetPerHostKeysNeverLeaveTheirHost(t *testing.T) {
	pg := pgtest.Shared(t)
	f := newFleet(t, pg, 0)
	names := fleetNames(2, 1)
	hosts := []string{"web1", "web2"}
	for _, h := range hosts {
		cfg := f.config(t, h, names, 2*time.Minute, time.Minute)
		data, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.Replace(string(data), "    type: globalsign-atlas\n", "    type: globalsign-atlas\n    per_host_keys: true\n", 1)
		text = strings.Replace(text, "    type: sectigo\n", "    type: sectigo\n    per_host_keys: true\n", 1)
		text = strings.Replace(text, "sync_interval: 1s}", fmt.Sprintf("sync_interval: 1s, key_dir: %s/keys}", h), 1)
		writeFile(t, cfg, text)
		f.launch(t, h, cfg)
	}
	st := f.open(t)
	ctx := context.Background()
	// servedOwn: every host serves, for every name, a certificate of its
	// own reissued from the fleet's current one.
	servedOwn := func() []string {
		var missing []string
		for _, n := range names {
			base, err := st.GetCertificate(ctx, n)
			if err != nil || base.Current == nil {
				missing = append(missing, n)
				continue
			}
			for _, h := range hosts {
				own, err := st.GetCertificate(ctx, n+"@"+h)
				live := deploy.Inspect(deploy.Spec{Dir: filepath.Join(f.w.dir, h, "live"), Name: n})
				if err != nil || own.Current == nil || own.State != store.StateValid || live.Missing || live.Fingerprint != own.Current.Fingerprint ||
					own.Current.NotAfter.Before(base.Current.NotAfter) {
					missing = append(missing, n+"@"+h)
				}
			}
		}
		return missing
	}
	waitOwn := func(what string) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			missing := servedOwn()
			if len(missing) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not served with each host's own key: %v\n%s\n%s", what, missing,
					tailString(f.logs["web1"].String(), 3000), tailString(f.logs["web2"].String(), 3000))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitOwn("first issuance")
	check := func(paidPerName int) {
		t.Helper()
		per := f.paidOrders()
		for _, n := range names {
			if per[n] != paidPerName {
				t.Errorf("%s: %d paid orders, want %d (a host's own key is a rekey, never a purchase)", n, per[n], paidPerName)
			}
		}
		rekeys := f.reissues()
		if rekeys < len(names)*len(hosts)*paidPerName {
			t.Errorf("%d rekeys, want at least %d (one per name, host and purchase)", rekeys, len(names)*len(hosts)*paidPerName)
		}
		for _, n := range names {
			base, _ := st.GetCertificate(ctx, n)
			keys := map[string]string{}
			for _, h := range hosts {
				own, _ := st.GetCertificate(ctx, n+"@"+h)
				v, err := st.GetVersion(ctx, own.CurrentVersion)
				if err != nil {
					t.Fatal(err)
				}
				k, err := st.GetKey(ctx, v.KeyID)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(string(k.PEM), "host-local:") || strings.Contains(string(k.PEM), "PRIVATE KEY") {
					t.Errorf("%s on %s: the store holds the private key, not only where it is", n, h)
				}
				file := filepath.Join(f.w.dir, h, "keys", k.PublicSHA+".pem")
				fi, err := os.Stat(file)
				if err != nil || fi.Mode().Perm() != 0o600 {
					t.Errorf("%s on %s: key file %s: %v %v", n, h, file, err, fi)
				}
				for _, other := range hosts {
					if other != h {
						if _, err := os.Stat(filepath.Join(f.w.dir, other, "keys", k.PublicSHA+".pem")); err == nil {
							t.Errorf("%s: %s's key is on %s too", n, h, other)
						}
					}
				}
				live, _ := os.ReadFile(filepath.Join(f.w.dir, h, "live", n, "privkey.pem"))
				keys[h] = string(live)
				if own.Current.Fingerprint == base.Current.Fingerprint {
					t.Errorf("%s on %s serves the fleet's certificate, not its own", n, h)
				}
			}
			if keys["web1"] == keys["web2"] {
				t.Errorf("%s: both hosts serve the same private key", n)
			}
		}
		f.checkSets(t, hosts, names)
	}
	check(1)
	// The fleet's certificates are renewed: bought once more each, and
	// every host has the new ones reissued for a new key of its own.
	for _, n := range names {
		if err := st.UpdateCertificate(ctx, n, func(c *store.Certificate) error {
			c.NextActionAt = time.Now()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		per := f.paidOrders()
		done := true
		for _, n := range names {
			done = done && per[n] == 2
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fleet's certificates were not renewed: %v", per)
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitOwn("renewal")
	time.Sleep(2 * time.Second) // a pass more: nothing else is bought
	check(2)
	rekeys := f.reissues()
	t.Logf("per-host keys: hosts=%d names=%d paid=%v rekeys=%d", len(hosts), len(names), f.paidOrders(), rekeys)
	// status shows each name with each host's own deploy, current.
	cmd := exec.Command(binary(t), "status", "-json", "-config", filepath.Join(f.w.dir, "web1.yaml"))
	cmd.Env = append(os.Environ(), "CERTD_FLEET_DSN="+f.dsn)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	var rep statusReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Certificates) != len(names) {
		t.Errorf("status lists %d certificates, want %d (hosts' own ones under their name)", len(rep.Certificates), len(names))
	}
	for _, c := range rep.Certificates {
		if len(c.Hosts) != len(hosts) {
			t.Errorf("status of %s: %d hosts' deploys, want %d", c.Name, len(c.Hosts), len(hosts))
		}
		for _, h := range c.Hosts {
			if !h.Current || h.State != "live" {
				t.Errorf("status of %s on %s: %+v, want live and current", c.Name, h.Host, h)
			}
		}
	}
	for _, h := range hosts {
		f.stop(t, h)
	}
}

// Hosts of a fleet SIGKILLed at random instants, and at every failpoint,
// and started again, while they order from Atlas and Sectigo (slow
// issuance): after every kill no certificate has two paid orders (N1),
// and at the end every host serves every certificate, each bought once.
// CERTD_FLEET_KILLS sets the number of kills.
func TestFleetHostsKilledAtRandomNeverBuyTwice(t *testing.T) {
	pg := pgtest.Shared(t)
	f := newFleet(t, pg, 2*time.Second)
	names := fleetNames(10, 10)
	hosts := []string{"web1", "web2", "web3"}
	cfgs := map[string]string{}
	for _, h := range hosts {
		cfgs[h] = f.config(t, h, names, 12*time.Second, 2*time.Second)
		f.launch(t, h, cfgs[h])
	}
	kills := 12
	if v, _ := strconv.Atoi(os.Getenv("CERTD_FLEET_KILLS")); v > 0 {
		kills = v
	}
	seed := uint64(time.Now().UnixNano())
	rnd := rand.New(rand.NewPCG(seed, 23))
	points := failpoint.Points()
	st := f.open(t)
	start := time.Now()
	armed := map[string]bool{} // started with a failpoint
	for k := range kills {
		h := hosts[rnd.IntN(len(hosts))]
		time.Sleep(time.Duration(rnd.Int64N(int64(1500 * time.Millisecond))))
		f.kill(h)
		// Every other restart dies at a failpoint of its own.
		armed[h] = k%2 == 1
		if armed[h] {
			f.env = []string{"CERTD_FAILPOINT=" + points[(k/2)%len(points)]}
		}
		f.launch(t, h, cfgs[h])
		f.env = nil
		for name, n := range f.paidOrders() {
			if n > 1 {
				t.Fatalf("after kill %d (%s): %s has %d paid orders (N1, seed %d)", k, h, name, n, seed)
			}
		}
	}
	// For the end, every host runs without a failpoint (one still armed
	// would die later at it).
	for _, h := range hosts {
		if armed[h] || !f.running(h) {
			f.kill(h)
			f.launch(t, h, cfgs[h])
		}
	}
	f.waitServed(t, st, hosts, names, 3*time.Minute)
	f.checkOnePaidOrderEach(t, names)
	f.checkSets(t, hosts, names)
	open, err := st.OpenOrders(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 0 {
		t.Errorf("%d orders left open", len(open))
	}
	t.Logf("fleet kills: hosts=3 kills=%d certificates=%d max_paid_orders=1 took=%s seed=%d", kills, len(names), time.Since(start).Round(time.Second), seed)
	for _, h := range hosts {
		f.stop(t, h)
	}
}
