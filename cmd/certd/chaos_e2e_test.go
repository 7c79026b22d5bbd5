package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certd/certd/ca/atlas/atlassim"
	"github.com/certd/certd/ca/markmonitor/mmsim"
	"github.com/certd/certd/ca/reseller/resellersim"
	"github.com/certd/certd/ca/sectigo/sectigosim"
	"github.com/certd/certd/internal/failpoint"
	"github.com/certd/certd/internal/pemutil"
	"github.com/certd/certd/internal/testenv"
	"github.com/certd/certd/store"
)

// The kill campaign (RELIABILITY.md N1–N8): certd run against every CA
// simulator at once, with real Knot and nginx, SIGKILLed at every
// failpoint in turn and at uniformly random instants, restarted each
// time. After every restart no certificate may have two paid orders; at
// the end every certificate is valid with exactly one, every order a CA
// committed is in the store, every live set verifies, and no DCV artefact
// is left; throughout, every read of a live set sees one complete
// version (liveChecker). `make chaos` runs it with 1,000 kills; the suite
// with 48.

type chaosWorld struct {
	dir, webroot, web string
	knot              *testenv.Knot
	atlas             *atlassim.Server
	sectigo           *sectigosim.Server
	reseller          *resellersim.Server
	mm                *mmsim.Server
	urls              map[string]string
	roots             *x509.CertPool
}

func serveSim(t testing.TB, serve func(context.Context, net.Listener) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

func newChaosWorld(t testing.TB, delay time.Duration) *chaosWorld {
	t.Helper()
	w := &chaosWorld{dir: t.TempDir(), urls: map[string]string{}, roots: x509.NewCertPool()}
	w.knot = testenv.StartKnot(t, map[string]string{"example.com": testenv.Zone("example.com", `@ TXT "v=spf1 -all"`)})
	w.webroot = filepath.Join(w.dir, "htdocs")
	if err := os.MkdirAll(w.webroot, 0o755); err != nil {
		t.Fatal(err)
	}
	w.web = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	testenv.StartNginx(t, fmt.Sprintf("server { listen %s; root %s; }", w.web, w.webroot))
	testenv.WaitListening(t, w.web)
	var err error
	if w.atlas, err = atlassim.New(atlassim.Options{APIKey: "k", APISecret: "chaos-secret", DNSServer: w.knot.Addr, IssueDelay: delay}); err != nil {
		t.Fatal(err)
	}
	if w.sectigo, err = sectigosim.New(sectigosim.Options{LoginName: "chaos", LoginPassword: "chaos-secret", DNSServer: w.knot.Addr, HTTPAddr: w.web,
		IssueDelay: delay}); err != nil {
		t.Fatal(err)
	}
	if w.reseller, err = resellersim.New(resellersim.Options{Username: "chaos", APIKey: "chaos-secret", DNSServer: w.knot.Addr, HTTPAddr: w.web,
		IssueDelay: delay}); err != nil {
		t.Fatal(err)
	}
	if w.mm, err = mmsim.New(mmsim.Options{APIKey: "chaos-key", Username: "chaos", Password: "chaos-secret", DNSServer: w.knot.Addr, HTTPAddr: w.web,
		IssueDelay: delay, RateLimit: 100000}); err != nil {
		t.Fatal(err)
	}
	w.urls["atlas"] = serveSim(t, w.atlas.Serve)
	w.urls["sectigo"] = serveSim(t, w.sectigo.Serve)
	w.urls["reseller"] = serveSim(t, w.reseller.Serve)
	w.urls["mm"] = serveSim(t, w.mm.Serve)
	certPEM, keyPEM, err := w.atlas.ClientCredentials("chaos")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"secret": []byte("chaos-secret\n"), "atlas-key": []byte("k\n"), "mm-key": []byte("chaos-key\n"), "tsig": []byte(w.knot.Secret + "\n"),
		"atlas-client.pem": certPEM, "atlas-client.key": keyPEM}
	for name, s := range map[string]interface {
		APICAPEM() []byte
		RootPEM() []byte
	}{"atlas": w.atlas, "sectigo": w.sectigo, "reseller": w.reseller, "mm": w.mm} {
		files[name+"-api-ca.pem"], files[name+"-root.pem"] = s.APICAPEM(), s.RootPEM()
		w.roots.AppendCertsFromPEM(s.RootPEM())
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(w.dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(w.dir, "reload.sh"), []byte(reloadScript), 0o700); err != nil {
		t.Fatal(err)
	}
	return w
}

// reloadScript is the chaos world's reload hook, run as argv with the
// records directory as $1. It stands in for a server's reload: it loads
// the set the live link names at that instant (a copy of its files) and
// records why it ran and the serial certd says is live, one line per
// reload, written after the copy is whole. A kill of certd does not kill
// a hook already running, so every reload started is recorded.
const reloadScript = `#!/bin/sh
set -e
v=$(readlink -f "$CERTD_LINEAGE")
d="$1/$CERTD_NAME.$(date +%s%N).$$"
mkdir -p "$d"
cp "$v/cert.pem" "$v/privkey.pem" "$v/chain.pem" "$d/"
printf '%s %s %s %s\n' "$CERTD_NAME" "$CERTD_ACTION" "$CERTD_SERIAL" "$d" >> "$1/reloads.log"
`

// reloadRecord is one line of reloads.log.
type reloadRecord struct{ name, action, serial, dir string }

// reloads are the reload hook's records from line from on.
func (w *chaosWorld) reloads(t *testing.T, from int) []reloadRecord {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(w.dir, "reloads", "reloads.log"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var recs []reloadRecord
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if i < from || len(f) != 4 {
			continue
		}
		recs = append(recs, reloadRecord{f[0], f[1], f[2], f[3]})
	}
	return recs
}

// checkReloaded (N7): what the service loaded at a reload is a whole set
// that works (key matches certificate, chain verifies to the CA's root for
// the name, now inside its validity) and is the version certd says it
// reloaded onto.
func (w *chaosWorld) checkReloaded(r reloadRecord, host string) error {
	certPEM, err := os.ReadFile(filepath.Join(r.dir, "cert.pem"))
	if err != nil {
		return err
	}
	keyPEM, err := os.ReadFile(filepath.Join(r.dir, "privkey.pem"))
	if err != nil {
		return err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("key and certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return err
	}
	if got := fmt.Sprintf("%X", leaf.SerialNumber); got != r.serial {
		return fmt.Errorf("the set live at the %s reload has serial %s, certd said %s", r.action, got, r.serial)
	}
	inter := x509.NewCertPool()
	chainPEM, _ := os.ReadFile(filepath.Join(r.dir, "chain.pem"))
	inter.AppendCertsFromPEM(chainPEM)
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: w.roots, Intermediates: inter}); err != nil {
		return fmt.Errorf("the set live at the %s reload does not verify: %w", r.action, err)
	}
	return nil
}

// chaosCAs are the accounts, the prefix of their certificates' names.
var chaosCAs = []string{"atlas", "sectigo", "reseller", "mm"}

func (w *chaosWorld) config(perCA int, window time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, `
schedule: "@every 1s"
store: {sqlite: state/certd.db}
log: {level: info, format: json}
dcv:
  resolvers: [%[1]q]
  check_servers: {knot: [%[1]q]}
  http_check_address: %[2]q
  timeout: 20s
accounts:
  atlas:
    type: globalsign-atlas
    url: https://%[3]s/v2
    api_key: file:atlas-key
    api_secret: file:secret
    client_cert: %[7]s/atlas-client.pem
    client_key: file:atlas-client.key
    ca: %[7]s/atlas-api-ca.pem
    claim_domains: [example.com]
    issuance_window: %[8]s
    order_wait: 2s
  sectigo:
    type: sectigo
    url: https://%[4]s
    login_name: chaos
    login_password: file:secret
    product: 488
    days: 90
    ca: %[7]s/sectigo-api-ca.pem
    roots: %[7]s/sectigo-root.pem
    poll_interval: 1s
    recheck_interval: 1s
    order_wait: 2s
  reseller:
    type: reseller
    url: https://%[5]s
    username: chaos
    api_key: file:secret
    plan: %[10]s
    ca: %[7]s/reseller-api-ca.pem
    roots: %[7]s/reseller-root.pem
    poll_interval: 1s
    order_wait: 2s
  mm:
    type: markmonitor
    url: https://%[6]s/cert/v1
    auth_url: https://%[6]s/auth/v1
    api_key: file:mm-key
    username: chaos
    password: file:secret
    certificate_type: SSL_DV_GEOTRUST
    organization: {name: Chaos Corp, address: 1 Main Street, city: Boise, state: ID, country: US, zip: "83702", phone: "+1.2085550100",
      contacts: [{first_name: Jane, last_name: Doe, job_title: CTO, email: jane@example.com, phone: "+1.2085550101", types: [ORGANIZATION_CONTACT]}]}
    ca: %[7]s/mm-api-ca.pem
    roots: %[7]s/mm-root.pem
    poll_interval: 1s
    recheck_interval: 1s
    search_window: %[8]s
    requests_per_minute: 100000
    order_wait: 2s
dns:
  knot: {type: rfc2136, server: %[1]q, key_name: %[9]s, key: file:tsig}
http:
  web: {type: webroot, root: %[11]s}
defaults:
  dcv: {method: dns, provider: knot}
  deploy: {dir: %[7]s/live, keep: 2, reload: [[%[7]s/reload.sh, %[7]s/reloads]]}
certificates:
`, w.knot.Addr, w.web, w.urls["atlas"], w.urls["sectigo"], w.urls["reseller"], w.urls["mm"], w.dir, window, w.knot.KeyName,
		resellersim.DigiCertDVPlan, w.webroot)
	for _, acct := range chaosCAs {
		for i := range perCA {
			dcvLine := ""
			if i == 0 && (acct == "sectigo" || acct == "reseller") {
				dcvLine = ", dcv: {method: http, target: web}" // one token file each, on a host-blind webroot
			}
			fmt.Fprintf(&b, "  - {name: %s%d, account: %s, domains: [%s%d.example.com]%s}\n", acct, i, acct, acct, i, dcvLine)
		}
	}
	return b.String()
}

// orders are the paid orders each CA committed, by name set (one name
// here), and their references as certd journals them.
func (w *chaosWorld) orders() (perName map[string]int, refs map[string]string) {
	perName, refs = map[string]int{}, map[string]string{}
	for _, e := range w.atlas.Ledger() {
		if !e.Rekey {
			perName[e.DNSNames[0]]++
			refs["atlas:"+strings.ToUpper(e.Serial)] = e.DNSNames[0]
		}
	}
	for _, e := range w.sectigo.Ledger() {
		if !e.Replace {
			perName[e.DNSNames[0]]++
			refs["sectigo:"+e.OrderNumber] = e.DNSNames[0]
		}
	}
	for _, e := range w.reseller.Ledger() {
		if e.Kind == "create" {
			perName[e.DNSNames[0]]++
			refs["reseller:"+e.ID] = e.DNSNames[0]
		}
	}
	for _, e := range w.mm.Ledger() {
		if !e.Reissue {
			perName[e.DNSNames[0]]++
			refs["mm:"+e.OrderID] = e.DNSNames[0]
		}
	}
	return perName, refs
}

// ordersPerGeneration (N1 over renewals) counts the paid orders of each
// certificate generation: a committed order journaled in the store counts
// toward its row's generation; one not (yet) journaled can only belong to
// the generation its certificate is working on, the newest, and counts
// there. gens is how many generations were started in all.
func (w *chaosWorld) ordersPerGeneration(t *testing.T, dbPath string) (perGen map[string]int, gens int) {
	t.Helper()
	_, refs := w.orders()
	perGen = map[string]int{}
	if _, err := os.Stat(dbPath); err != nil {
		for _, name := range refs {
			perGen[name+"#?"]++
		}
		return perGen, 0
	}
	db, err := sql.Open("sqlite", "file:"+dbPath+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	journaled := map[string]string{}
	newest := map[string]int{}
	rows, err := db.Query("SELECT cert_name, account, generation, ca_ref FROM orders")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name, acct, ref string
		var g int
		_ = rows.Scan(&name, &acct, &g, &ref)
		newest[name] = max(newest[name], g)
		if ref == "" {
			continue
		}
		if acct == "sectigo" {
			ref, _, _ = strings.Cut(ref, "/") // orderNumber/certificateID
		}
		if acct == "atlas" {
			ref = strings.ToUpper(ref)
		}
		journaled[acct+":"+ref] = fmt.Sprintf("%s#%d", name, g)
	}
	rows.Close()
	for _, g := range newest {
		gens += g
	}
	for ref, host := range refs {
		key, ok := journaled[ref]
		if !ok {
			name := strings.TrimSuffix(host, ".example.com")
			key = fmt.Sprintf("%s#%d", name, newest[name])
		}
		perGen[key]++
	}
	return perGen, gens
}

// paidInFlight counts, per certificate host name, the paid orders not
// yet issued: journaled as intent, ambiguous or pending, or not journaled
// at all.
func (w *chaosWorld) paidInFlight(t *testing.T, dbPath string) map[string]int {
	t.Helper()
	_, refs := w.orders()
	states := map[string]string{}
	if _, err := os.Stat(dbPath); err == nil {
		states = orderStates(t, dbPath)
	}
	n := map[string]int{}
	for ref, host := range refs {
		switch st, ok := states[ref]; {
		case !ok, st == store.OrderIntent, st == store.OrderAmbiguous, st == store.OrderPending:
			n[host]++
		}
	}
	return n
}

// forceRenewal asks the daemon with pid, once it holds the store, for a
// forced renewal of one valid certificate not in skip, as an operator
// would (`certd renew -force`: the certificate is due now and the daemon
// is sent SIGHUP). It returns the certificate, or "" when none was asked.
func forceRenewal(t *testing.T, cfg, dbPath string, pid int, rnd *rand.Rand, skip map[string]bool) string {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if holder, held := store.LockHolder(dbPath); held && holder == pid {
			break
		}
		if time.Now().After(deadline) {
			return ""
		}
	}
	st, err := store.Open(context.Background(), dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := st.ListCertificates(context.Background())
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	var valid []string
	for _, c := range cs {
		if c.State == store.StateValid && !skip[c.Name] {
			valid = append(valid, c.Name)
		}
	}
	if len(valid) == 0 {
		return ""
	}
	name := valid[rnd.IntN(len(valid))]
	var out, errb strings.Builder
	if code := run([]string{"renew", "-force", "-config", cfg, name}, &out, &errb); code != exitOK || !strings.Contains(out.String(), fmt.Sprintf("(pid %d)", pid)) {
		t.Fatalf("renew -force %s with the daemon (pid %d) running: exit %d\n%s%s", name, pid, code, out.String(), errb.String())
	}
	return name
}

func TestChaosEveryCAKilledAtEveryFailpointAndAtRandom(t *testing.T) {
	t.Parallel()
	perCA, kills := 3, 48
	if v, _ := strconv.Atoi(os.Getenv("CERTD_CHAOS_KILLS")); v > 0 {
		kills = v
	}
	if v, _ := strconv.Atoi(os.Getenv("CERTD_CHAOS_PER_CA")); v > 0 {
		perCA = v
	}
	const delay = 2 * time.Second
	w := newChaosWorld(t, delay)
	cfg := filepath.Join(w.dir, "certd.yaml")
	writeFile(t, cfg, w.config(perCA, 10*time.Second))
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("CERTD_CHAOS_SEED"), 10, 64); err == nil {
		seed = v
	}
	rnd := rand.New(rand.NewPCG(seed, 17))
	points := failpoint.Points()
	var names []string
	hosts := map[string]string{}
	for _, acct := range chaosCAs {
		for i := range perCA {
			n := fmt.Sprintf("%s%d", acct, i)
			names = append(names, n)
			hosts[n] = n + ".example.com"
		}
	}
	// N4, throughout: every live set read while certd deploys and is
	// killed is one complete, verifying version.
	checker := startLiveChecker(filepath.Join(w.dir, "live"), hosts, w.roots)
	// Every certificate may be renewed, those proved by a token file
	// included (a reseller renewal once asked for the account's DNS
	// validation instead of the certificate's file: seed
	// 1796050109041731552, fixed in ca/reseller).
	httpDCV := map[string]bool{}
	start := time.Now()
	dbPath := filepath.Join(w.dir, "state", "certd.db")
	violations, atPoints, atRandom, secretsSeen, silent := 0, 0, 0, 0, 0
	forced, reloadsSeen, badReloads := 0, 0, 0
	// N7: every reload the service was sent loaded a whole set that
	// works, the one certd meant.
	checkReloads := func(when string) {
		for _, r := range w.reloads(t, reloadsSeen) {
			reloadsSeen++
			if err := w.checkReloaded(r, hosts[r.name]); err != nil {
				badReloads++
				violations++
				t.Errorf("%s: %s: %v (N7, seed %d)", when, r.name, err, seed)
			}
		}
	}
	for k := range kills {
		cmd := exec.Command(binary(t), "run", "-config", cfg)
		var procLogs syncBuffer
		cmd.Stdout, cmd.Stderr = &procLogs, &procLogs
		mode := "random"
		// The first kills go through every failpoint (first, then later
		// hits); the rest land at uniformly random instants.
		if k < 2*len(points) {
			mode = fmt.Sprintf("%s:%d", points[k%len(points)], 1+k/len(points))
			cmd.Env = append(os.Environ(), "CERTD_FAILPOINT="+mode)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		wait := time.Duration(rnd.Int64N(int64(2*delay + time.Second)))
		if mode != "random" {
			wait = 2*delay + 2*time.Second // the failpoint kills it; else the time is up
		} else if k%2 == 0 {
			// Renewal churn: every other random kill lands on a daemon
			// that was just asked to renew a certificate, so later
			// generations meet kills too.
			if n := forceRenewal(t, cfg, dbPath, cmd.Process.Pid, rnd, httpDCV); n != "" {
				forced++
			}
		}
		select {
		case <-exited:
			atPoints++
		case <-time.After(wait):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-exited
			atRandom++
		}
		// N1 after every restart: never two paid orders for one
		// certificate generation.
		perGen, _ := w.ordersPerGeneration(t, dbPath)
		for gen, n := range perGen {
			if n > 1 {
				violations++
				t.Errorf("after kill %d (%s): %s has %d paid orders (N1, seed %d)", k, mode, gen, n, seed)
			}
		}
		// Nor two paid orders in flight for one certificate: a later
		// generation never orders while an earlier one's paid order is
		// still open.
		for name, n := range w.paidInFlight(t, dbPath) {
			if n > 1 {
				violations++
				t.Errorf("after kill %d (%s): %s has %d paid orders in flight (N1, seed %d)", k, mode, name, n, seed)
			}
		}
		checkReloads(fmt.Sprintf("after kill %d (%s)", k, mode))
		// N5: no secret in what the process printed.
		if c := w.canaryIn(procLogs.String()); c != "" {
			secretsSeen++
			violations++
			t.Errorf("after kill %d (%s): a configured secret (%s...) in certd's output (N5, seed %d)", k, mode, c[:4], seed)
		}
		// N8: every certificate not valid has its next attempt stored, or
		// is in a loud terminal state.
		if bad := silentCertificates(t, filepath.Join(w.dir, "state", "certd.db")); len(bad) > 0 {
			silent++
			violations++
			t.Errorf("after kill %d (%s): no next attempt stored for %v (N8, seed %d)", k, mode, bad, seed)
		}
	}
	// Orders certd will not settle alone (a lost Sectigo answer) are
	// resolved as an operator would, from the CA's ledger.
	_, _, _ = runOnceBin(t, cfg)
	// A name's Sectigo order the store does not know is the lost one (a
	// name has one order in flight at a time).
	_, refs := w.orders()
	known := journaledRefs(t, dbPath)
	byName := map[string]string{}
	for ref, name := range refs {
		if ca, r, _ := strings.Cut(ref, ":"); ca == "sectigo" && !known[ref] {
			byName[name] = r
		}
	}
	st, err := store.Open(context.Background(), dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	open, _ := st.OpenOrders(context.Background())
	st.Close()
	operator := 0
	for _, o := range open {
		if o.State != store.OrderAmbiguous || !strings.HasPrefix(o.CertName, "sectigo") {
			continue
		}
		args := []string{"orders", "absent", "-config", cfg, o.CertName}
		if ref, ok := byName[o.CertName+".example.com"]; ok {
			args = []string{"orders", "found", "-config", cfg, o.CertName, ref}
		}
		var out, errb strings.Builder
		if code := run(args, &out, &errb); code != exitOK {
			t.Fatalf("%v: %d %s", args, code, errb.String())
		}
		operator++
	}
	// Then the daemon runs until every certificate is valid.
	cmd := exec.Command(binary(t), "run", "-config", cfg)
	var logs syncBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for !settled(t, dbPath, names) {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("not every certificate valid and settled in time (seed %d): %v; open orders %v; log tail:\n%s", seed, notValid(t, dbPath, names),
				openOrderNames(dbPath), tailString(logs.String(), 4000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	reads, mixed, firstMixed := checker.Stop()
	if mixed > 0 {
		violations += mixed
		t.Errorf("%d of %d reads of a live set saw no complete verifying version (N4, seed %d): %v", mixed, reads, seed, firstMixed)
	}
	if reads == 0 {
		t.Error("the N4 checker read no live set")
	}

	// N7 at the end: every reload loaded a working set, and each
	// service was last reloaded onto the set live now (a kill between
	// the switch and the reload must not leave it on the old one).
	checkReloads("at the end")
	last := map[string]reloadRecord{}
	for _, r := range w.reloads(t, 0) {
		last[r.name] = r
	}
	staleServices := 0
	for _, n := range names {
		live := fmt.Sprintf("%X", readCert(t, filepath.Join(w.dir, "live", n, "cert.pem")).SerialNumber)
		loaded := ""
		if r, ok := last[n]; ok {
			if c, err := os.ReadFile(filepath.Join(r.dir, "cert.pem")); err == nil {
				if leaf, err := pemutil.Certificates(c); err == nil && len(leaf) > 0 {
					loaded = fmt.Sprintf("%X", leaf[0].SerialNumber)
				}
			}
		}
		if loaded != live {
			staleServices++
			violations++
			t.Errorf("%s: the service last loaded serial %q, the live set is %s (N7, seed %d)", n, loaded, live, seed)
		}
	}

	// N1: at most one paid order per certificate generation, at least
	// one per certificate.
	perGen, gens := w.ordersPerGeneration(t, dbPath)
	perName, refs := w.orders()
	maxOrders := 0
	for gen, c := range perGen {
		maxOrders = max(maxOrders, c)
		if c > 1 {
			violations++
			t.Errorf("%s: %d paid orders, want at most 1 (N1, seed %d)", gen, c, seed)
		}
	}
	paid := 0
	for _, n := range names {
		paid += perName[n+".example.com"]
		if perName[n+".example.com"] == 0 {
			violations++
			t.Errorf("%s: no paid order (seed %d)", n, seed)
		}
	}
	// N1 across generations: every paid order ended in a certificate;
	// none was left behind for a later generation to order again.
	states := orderStates(t, dbPath)
	paidNotIssued := 0
	for ref, host := range refs {
		if st, ok := states[ref]; ok && st != store.OrderIssued {
			paidNotIssued++
			violations++
			t.Errorf("order %s for %s was paid and left %s: a later generation ordered again (N1, seed %d)", ref, host, st, seed)
		}
	}
	// N2: every order a CA committed is journaled.
	journaled := journaledRefs(t, dbPath)
	orphans := 0
	for ref, name := range refs {
		if !journaled[ref] {
			orphans++
			violations++
			t.Errorf("order %s for %s is not in the store (N2, seed %d)", ref, name, seed)
		}
	}
	// N4: every live set verifies to its CA's root, for its name.
	for _, n := range names {
		live := filepath.Join(w.dir, "live", n)
		leaf := readCert(t, filepath.Join(live, "cert.pem"))
		inter := x509.NewCertPool()
		chainPEM, _ := os.ReadFile(filepath.Join(live, "chain.pem"))
		inter.AppendCertsFromPEM(chainPEM)
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: n + ".example.com", Roots: w.roots, Intermediates: inter}); err != nil {
			violations++
			t.Errorf("%s: the live set does not verify (N4): %v", n, err)
		}
	}
	// N3: every live certificate's key is the key the store holds for
	// its version (the key behind the CSR was stored, never regenerated).
	lostKeys := 0
	if st, err := store.Open(context.Background(), dbPath, store.Options{}); err != nil {
		t.Fatal(err)
	} else {
		for _, n := range names {
			leaf := readCert(t, filepath.Join(w.dir, "live", n, "cert.pem"))
			if err := storedKeyIs(st, n, leaf); err != nil {
				lostKeys++
				violations++
				t.Errorf("%s: %v (N3)", n, err)
			}
		}
		st.Close()
	}
	// N5: no secret in the final daemon's log, the store or the deploy
	// directories.
	if c := w.canaryIn(logs.String()); c != "" {
		secretsSeen++
		t.Errorf("a configured secret (%s...) in the daemon's log (N5)", c[:4])
	}
	for _, f := range append(mustGlob(t, dbPath+"*"), mustGlob(t, filepath.Join(w.dir, "live", "*", "*"))...) {
		b, _ := os.ReadFile(f)
		if c := w.canaryIn(string(b)); c != "" {
			secretsSeen++
			t.Errorf("a configured secret (%s...) in %s (N5)", c[:4], f)
		}
	}
	violations += secretsSeen
	// N6: nothing left published.
	st, err = store.Open(context.Background(), dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	liveArtefacts, _ := st.LiveArtefacts(context.Background())
	st.Close()
	files, _ := filepath.Glob(filepath.Join(w.webroot, ".well-known", "pki-validation", "*"))
	leftovers := len(liveArtefacts) + len(files)
	if txt := w.knot.TXT(t, "example.com"); len(txt) != 1 {
		leftovers++
	}
	if leftovers > 0 {
		violations++
		t.Errorf("DCV artefacts left (N6): journal %v, files %v", liveArtefacts, files)
	}
	// One line per invariant (make chaos prints these).
	t.Logf("chaos campaign: kills=%d at_failpoints=%d at_random=%d certificates=%d cas=%d seed=%d", kills, atPoints, atRandom, len(names), len(chaosCAs), seed)
	t.Logf("chaos campaign: N1 max_orders_per_certificate_generation=%d over generations=%d paid_orders=%d paid_orders_not_issued=%d forced_renewals=%d (want 1, 0)", maxOrders, gens, paid, paidNotIssued, forced)
	t.Logf("chaos campaign: N2 orders_not_journaled=%d", orphans)
	t.Logf("chaos campaign: N3 live_keys_not_the_stored_key=%d", lostKeys)
	t.Logf("chaos campaign: N4 live_reads=%d mixed_reads_seen=%d", reads, mixed)
	t.Logf("chaos campaign: N5 secrets_seen=%d", secretsSeen)
	t.Logf("chaos campaign: N6 leftover_artefacts=%d", leftovers)
	t.Logf("chaos campaign: N7 reloads=%d reloads_onto_a_broken_set=%d services_left_on_a_stale_set=%d", reloadsSeen, badReloads, staleServices)
	t.Logf("chaos campaign: N8 restarts_with_a_certificate_without_next_attempt=%d", silent)
	t.Logf("chaos campaign: lost_answers_resolved_by_operator=%d", operator)
	t.Logf("chaos campaign: violations=%d took=%s", violations, time.Since(start).Round(time.Second))
}

// journaledRefs are the CA references of the orders in the store, in
// orders()' terms.
func journaledRefs(t *testing.T, dbPath string) map[string]bool {
	t.Helper()
	refs := map[string]bool{}
	for ref := range orderStates(t, dbPath) {
		refs[ref] = true
	}
	return refs
}

// orderStates are the states of the store's orders, by CA reference in
// orders()' terms.
func orderStates(t *testing.T, dbPath string) map[string]string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+dbPath+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	journaled := map[string]string{}
	rows, err := db.Query("SELECT account, ca_ref, state FROM orders WHERE ca_ref != ''")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var acct, ref, state string
		_ = rows.Scan(&acct, &ref, &state)
		if acct == "sectigo" {
			ref, _, _ = strings.Cut(ref, "/") // orderNumber/certificateID
		}
		if acct == "atlas" {
			ref = strings.ToUpper(ref)
		}
		journaled[acct+":"+ref] = state
	}
	return journaled
}

// canaryIn returns the configured secret found in s, or "".
func (w *chaosWorld) canaryIn(s string) string {
	for _, c := range []string{"chaos-secret", "chaos-key", w.knot.Secret} {
		if strings.Contains(s, c) {
			return c
		}
	}
	return ""
}

// silentCertificates are the stored certificates that are neither valid
// nor in a loud terminal state and have no next attempt stored (N8).
func silentCertificates(t *testing.T, dbPath string) []string {
	t.Helper()
	if _, err := os.Stat(dbPath); err != nil {
		return nil // not started yet
	}
	st, err := store.Open(context.Background(), dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cs, err := st.ListCertificates(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	for _, c := range cs {
		switch c.State {
		case store.StateValid, store.StateRetired, store.StateNeedsOperator:
			continue
		}
		if c.NextActionAt.IsZero() {
			bad = append(bad, c.Name+" ("+c.State+")")
		}
	}
	return bad
}

// settled reports whether every certificate of names is valid, none is
// due, and no order is open: the end of a campaign, when a renewal asked
// for before the last kill has finished too.
func settled(t *testing.T, dbPath string, names []string) bool {
	t.Helper()
	if !allValid(dbPath, names) {
		return false
	}
	st, err := store.Open(context.Background(), dbPath, store.Options{})
	if err != nil {
		return false
	}
	defer st.Close()
	if open, err := st.OpenOrders(context.Background()); err != nil || len(open) > 0 {
		return false
	}
	for _, n := range names {
		if c, err := st.GetCertificate(context.Background(), n); err != nil || !c.NextActionAt.After(time.Now()) {
			return false
		}
	}
	return true
}

// openOrderNames describes the store's open orders.
func openOrderNames(dbPath string) []string {
	st, err := store.Open(context.Background(), dbPath, store.Options{})
	if err != nil {
		return []string{err.Error()}
	}
	defer st.Close()
	open, _ := st.OpenOrders(context.Background())
	var out []string
	for _, o := range open {
		out = append(out, fmt.Sprintf("%s gen %d %s %s", o.CertName, o.Generation, o.State, o.CARef))
	}
	return out
}

// notValid describes the certificates of names that are not valid.
func notValid(t *testing.T, dbPath string, names []string) []string {
	t.Helper()
	st, err := store.Open(context.Background(), dbPath, store.Options{})
	if err != nil {
		return []string{err.Error()}
	}
	defer st.Close()
	var bad []string
	for _, n := range names {
		c, err := st.GetCertificate(context.Background(), n)
		switch {
		case err != nil:
			bad = append(bad, fmt.Sprintf("%s: %v", n, err))
		case c.State != store.StateValid:
			bad = append(bad, fmt.Sprintf("%s: %s, %s at %s (in %s), failures %d: %s", n, c.State, c.NextAction,
				c.NextActionAt.UTC().Format(time.RFC3339), time.Until(c.NextActionAt).Round(time.Second), c.Failures, c.LastError))
			evs, _ := st.ListEvents(context.Background(), store.EventFilter{CertName: n, Limit: 20})
			for _, e := range evs {
				bad = append(bad, fmt.Sprintf("  %s %s %s: %s", e.At.UTC().Format(time.RFC3339), e.Level, e.Kind, e.Message))
			}
		}
	}
	return bad
}

// storedKeyIs checks that the store's key for name's current version is
// leaf's.
func storedKeyIs(st *store.SQLite, name string, leaf *x509.Certificate) error {
	ctx := context.Background()
	c, err := st.GetCertificate(ctx, name)
	if err != nil {
		return err
	}
	v, err := st.GetVersion(ctx, c.CurrentVersion)
	if err != nil {
		return err
	}
	if !bytes.Equal(v.CertPEM, pemutil.EncodeCertificates(leaf)) {
		return fmt.Errorf("the live certificate is not the store's current version %s", v.Serial)
	}
	k, err := st.GetKey(ctx, v.KeyID)
	if err != nil {
		return err
	}
	key, err := pemutil.Key(k.PEM)
	if err != nil {
		return err
	}
	if eq, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(key.Public()) {
		return fmt.Errorf("the stored key of version %s is not the certificate's", v.Serial)
	}
	return nil
}

func mustGlob(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
