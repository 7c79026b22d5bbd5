package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"database/sql"
	"fmt"
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
	return w
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
  deploy: {dir: %[7]s/live, keep: 2}
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
	start := time.Now()
	violations, atPoints, atRandom, secretsSeen, silent := 0, 0, 0, 0, 0
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
		}
		select {
		case <-exited:
			atPoints++
		case <-time.After(wait):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-exited
			atRandom++
		}
		// N1 after every restart: never two paid orders for one name.
		perName, _ := w.orders()
		for name, n := range perName {
			if n > 1 {
				violations++
				t.Errorf("after kill %d (%s): %s has %d paid orders (N1, seed %d)", k, mode, name, n, seed)
			}
		}
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
	_, refs := w.orders()
	byName := map[string]string{}
	for ref, name := range refs {
		if ca, r, _ := strings.Cut(ref, ":"); ca == "sectigo" {
			byName[name] = r
		}
	}
	dbPath := filepath.Join(w.dir, "state", "certd.db")
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
	for !allValid(dbPath, names) {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("not every certificate valid in time (seed %d); log tail:\n%s", seed, tailString(logs.String(), 4000))
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

	// N1: exactly one paid order per certificate.
	perName, refs := w.orders()
	maxOrders := 0
	for _, n := range names {
		c := perName[n+".example.com"]
		maxOrders = max(maxOrders, c)
		if c != 1 {
			violations++
			t.Errorf("%s: %d paid orders, want 1 (N1, seed %d)", n, c, seed)
		}
	}
	// N2: every order a CA committed is journaled.
	db, err := sql.Open("sqlite", "file:"+dbPath+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	journaled := map[string]bool{}
	rows, err := db.Query("SELECT account, ca_ref FROM orders WHERE ca_ref != ''")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var acct, ref string
		_ = rows.Scan(&acct, &ref)
		if acct == "sectigo" {
			ref, _, _ = strings.Cut(ref, "/") // orderNumber/certificateID
		}
		if acct == "atlas" {
			ref = strings.ToUpper(ref)
		}
		journaled[acct+":"+ref] = true
	}
	rows.Close()
	db.Close()
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
	t.Logf("chaos campaign: N1 max_orders_per_certificate_generation=%d (each certificate's first issuance; want 1)", maxOrders)
	t.Logf("chaos campaign: N2 orders_not_journaled=%d", orphans)
	t.Logf("chaos campaign: N3 live_keys_not_the_stored_key=%d", lostKeys)
	t.Logf("chaos campaign: N4 live_reads=%d mixed_reads_seen=%d", reads, mixed)
	t.Logf("chaos campaign: N5 secrets_seen=%d", secretsSeen)
	t.Logf("chaos campaign: N6 leftover_artefacts=%d", leftovers)
	t.Logf("chaos campaign: N8 restarts_with_a_certificate_without_next_attempt=%d", silent)
	t.Logf("chaos campaign: lost_answers_resolved_by_operator=%d", operator)
	t.Logf("chaos campaign: violations=%d took=%s", violations, time.Since(start).Round(time.Second))
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
