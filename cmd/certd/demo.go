package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/certd/certd/ca/atlas/atlassim"
	"github.com/certd/certd/ca/markmonitor/mmsim"
	"github.com/certd/certd/ca/reseller/resellersim"
	"github.com/certd/certd/ca/sectigo/sectigosim"
	"github.com/certd/certd/internal/authdns"
	"github.com/certd/certd/internal/pemutil"
	"github.com/certd/certd/store"
)

// demoNames are the demo's certificates.
var demoNames = []string{"www", "shop", "blog", "store", "api", "mail"}

// demoStateFile keeps the Atlas simulator's trust material, claims and
// certificates between runs, so that a second run is the same CA; the
// other simulators keep theirs in demoStateFiles.
const demoStateFile = "atlas-sim.json"

// demoStateFiles are the simulators' saved states, by CA.
var demoStateFiles = map[string]string{"atlas": demoStateFile, "sectigo": "sectigo-sim.json", "reseller": "reseller-sim.json", "markmonitor": "markmonitor-sim.json"}

// demoSim is what the demo needs of a simulator.
type demoSim interface {
	Save(w io.Writer) error
	RootPEM() []byte
	APICAPEM() []byte
	Serve(ctx context.Context, ln net.Listener) error
}

// cmdDemo runs certd's whole lifecycle on loopback with nothing installed:
// the bundled Atlas simulator, an in-process DNS server taking RFC 2136
// updates, the built-in HTTP responder, and the real daemon between them.
// It can be run again in the same folder: the simulator's state is kept
// there.
func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("demo", stderr)
	dir := fs.String("dir", "certd-demo", "folder for the demo's store, configuration, simulator state and deployed certificates")
	once := fs.Bool("once", false, "exit 0 as soon as every certificate is deployed and verifies")
	lifetime := fs.Duration("lifetime", 5*time.Minute, "lifetime of the demo certificates")
	renewAfter := fs.Duration("renew-after", 40*time.Second, "renew each certificate this long after it was issued (renew.before is the rest of its lifetime)")
	wait := fs.Duration("timeout", 90*time.Second, "with -once: give up after this long")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *lifetime < time.Minute || *renewAfter <= 0 || *renewAfter > *lifetime*9/10 {
		fmt.Fprintln(stderr, "certd demo: -lifetime must be at least 1m, and -renew-after more than 0 and at most 9/10 of it")
		return exitUsage
	}
	d, err := filepath.Abs(*dir)
	if err == nil {
		err = os.MkdirAll(d, 0o700)
	}
	if err != nil {
		fmt.Fprintf(stderr, "certd demo: %v\n", err)
		return exitFailure
	}
	if pid, held := store.LockHolder(filepath.Join(d, "certd.db")); held {
		fmt.Fprintf(stderr, "certd demo: another certd (pid %d) is running on %s; stop it first\n", pid, d)
		return exitStore
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := startDemoWorld(ctx, d, *lifetime, *renewAfter, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "certd demo: %v\n", err)
		return exitFailure
	}
	// The simulator's state is saved as it changes and at the end, so a
	// later run (even after a kill) is the same CA.
	saveDone := make(chan struct{})
	go func() {
		defer close(saveDone)
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = w.save()
			}
		}
	}()
	defer func() {
		cancel()
		<-saveDone
		if err := w.save(); err != nil {
			fmt.Fprintf(stderr, "certd demo: saving the simulator's state: %v\n", err)
		}
	}()

	sigs := make(chan os.Signal, 4)
	userSigs := make(chan os.Signal, 4)
	signal.Notify(userSigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(userSigs)
	code := make(chan int, 1)
	go func() { code <- runDaemon(w.cfgPath, stderr, sigs, false) }()

	deadline := time.After(*wait)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var serials map[string]string // once every certificate verified: the serials shown
	for {
		select {
		case c := <-code:
			return c
		case s := <-userSigs:
			sigs <- s
		case <-deadline:
			if *once && serials == nil {
				fmt.Fprintf(stdout, "\ncertd demo: not every certificate was deployed and verified within %s:\n", *wait)
				printDemoState(stdout, w)
				sigs <- syscall.SIGTERM
				<-code
				return exitFailure
			}
		case <-tick.C:
			now := time.Now()
			live, ok := w.verified(now)
			if serials == nil {
				if !ok {
					continue
				}
				serials = live
				fmt.Fprintf(stdout, "\ncertd demo: every certificate is deployed under %s/live/ and verifies against its CA's root (%s/sim-root.pem for Atlas, %s/<ca>-root.pem for the others)\n", d, d, d)
				printDemoState(stdout, w)
				w.printNext(stdout, now)
				if *once {
					sigs <- syscall.SIGTERM
					return <-code
				}
				fmt.Fprintf(stdout, "\ncertd demo: running on; each renewal is shown here as it happens. Ctrl-C stops (the state is kept for the next run).\n\n")
				continue
			}
			for _, name := range demoNames {
				if s, ok := live[name]; ok && s != serials[name] {
					fmt.Fprintf(stdout, "certd demo: %s renewed: serial %s -> %s, deployed and verified against its CA's root%s\n", name, serials[name], s, w.nextOf(name, now))
					serials[name] = s
				}
			}
		}
	}
}

// demoWorld is what the demo started around the daemon.
type demoWorld struct {
	dir        string
	cfgPath    string
	sim        *atlassim.Server
	sims       map[string]demoSim // every simulator, by CA (atlas included)
	roots      *x509.CertPool
	lifetime   time.Duration
	renewAfter time.Duration
}

// startDemoWorld starts the DNS server and the Atlas simulator (loaded
// from the demo folder when an earlier run left its state there), writes
// the credentials and the configuration.
func startDemoWorld(ctx context.Context, d string, lifetime, renewAfter time.Duration, out io.Writer) (*demoWorld, error) {
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	tsig := base64.StdEncoding.EncodeToString(secret)
	dnsSrv, err := authdns.New("certd-demo", tsig, map[string][]string{
		"example.com": {"_acme-challenge.shop 60 IN CNAME shop.example.com.validation.example.net."},
		"example.net": nil,
	})
	if err != nil {
		return nil, err
	}
	if err := dnsSrv.Start(ctx, "127.0.0.1:0"); err != nil {
		return nil, err
	}
	// The responder's port: chosen now, opened by the daemon.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	webAddr := l.Addr().String()
	l.Close()

	pol := atlassim.DefaultPolicy()
	pol.Validity.SecondsMin = 60
	apiSecret := base64.RawURLEncoding.EncodeToString(secret[:18])
	opts := atlassim.Options{APIKey: "demo-api-key", APISecret: apiSecret, DNSServer: dnsSrv.Addr, HTTPAddr: webAddr, RotateEvery: 2, Policy: &pol}
	sim, err := openDemoSim(d, opts, out)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() { _ = sim.Serve(ctx, ln) }()
	certPEM, keyPEM, err := sim.ClientCredentials("certd-demo")
	if err != nil {
		return nil, err
	}
	// The three per-order CAs: Sectigo checks a CSR-hash file on the
	// responder, the reseller (DigiCert behind it) and Markmonitor a TXT
	// token in the DNS server.
	sims := map[string]demoSim{"atlas": sim}
	addrs := map[string]string{}
	loaders := map[string]func(r io.Reader) (demoSim, error){
		"sectigo": func(r io.Reader) (demoSim, error) {
			o := sectigosim.Options{LoginName: "demo", LoginPassword: apiSecret, HTTPAddr: webAddr, DNSServer: dnsSrv.Addr, IssueDelay: time.Second}
			if r == nil {
				return sectigosim.New(o)
			}
			return sectigosim.Load(r, o)
		},
		"reseller": func(r io.Reader) (demoSim, error) {
			o := resellersim.Options{Username: "demo", APIKey: apiSecret, DNSServer: dnsSrv.Addr, HTTPAddr: webAddr, IssueDelay: time.Second}
			if r == nil {
				return resellersim.New(o)
			}
			return resellersim.Load(r, o)
		},
		"markmonitor": func(r io.Reader) (demoSim, error) {
			o := mmsim.Options{APIKey: "demo-mm-key", Username: "demo", Password: apiSecret, DNSServer: dnsSrv.Addr, HTTPAddr: webAddr, IssueDelay: time.Second}
			if r == nil {
				return mmsim.New(o)
			}
			return mmsim.Load(r, o)
		},
	}
	for _, name := range []string{"sectigo", "reseller", "markmonitor"} {
		other, err := openDemoOther(d, name, loaders[name])
		if err != nil {
			return nil, err
		}
		oln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		go func() { _ = other.Serve(ctx, oln) }()
		sims[name], addrs[name] = other, oln.Addr().String()
		for file, data := range map[string][]byte{name + "-api-ca.pem": other.APICAPEM(), name + "-root.pem": other.RootPEM()} {
			if err := writePrivate(filepath.Join(d, file), data); err != nil {
				return nil, err
			}
		}
	}
	files := map[string][]byte{
		"atlas-client.pem": certPEM, "atlas-client.key": keyPEM, "atlas-api-key": []byte("demo-api-key\n"),
		"atlas-api-secret": []byte(apiSecret + "\n"), "atlas-api-ca.pem": sim.APICAPEM(), "tsig.key": []byte(tsig + "\n"),
		"sim-root.pem": sim.RootPEM(), "ca-password": []byte(apiSecret + "\n"), "mm-api-key": []byte("demo-mm-key\n"),
	}
	for name, data := range files {
		if err := writePrivate(filepath.Join(d, name), data); err != nil {
			return nil, err
		}
	}
	before := lifetime - renewAfter
	cfg := fmt.Sprintf(`# Generated by certd demo. Every service here runs on loopback.
schedule: "@every 10s"
store: {sqlite: %[1]s/certd.db}
log: {level: info, format: console}
dcv:
  resolvers: [%[2]q]
  check_servers: {demo-dns: [%[2]q]}
  http_check_address: %[3]q
  timeout: 30s
accounts:
  atlas:
    type: globalsign-atlas
    url: https://%[4]s/v2
    api_key: file:atlas-api-key
    api_secret: file:atlas-api-secret
    client_cert: %[1]s/atlas-client.pem
    client_key: file:atlas-client.key
    ca: %[1]s/atlas-api-ca.pem
  sectigo:
    type: sectigo
    url: https://%[8]s
    login_name: demo
    login_password: file:ca-password
    product: 488
    days: 90
    dcv_method: HTTP_CSR_HASH
    ca: %[1]s/sectigo-api-ca.pem
    roots: %[1]s/sectigo-root.pem
    poll_interval: 1s
    recheck_interval: 2s
  reseller:
    type: reseller
    url: https://%[9]s
    username: demo
    api_key: file:ca-password
    plan: %[11]s
    ca: %[1]s/reseller-api-ca.pem
    roots: %[1]s/reseller-root.pem
    poll_interval: 1s
  markmonitor:
    type: markmonitor
    url: https://%[10]s/cert/v1
    auth_url: https://%[10]s/auth/v1
    api_key: file:mm-api-key
    username: demo
    password: file:ca-password
    certificate_type: SSL_DV_GEOTRUST
    organization: {name: Demo Corp, address: 1 Main Street, city: Boise, state: ID, country: US, zip: "83702", phone: "+1.2085550100",
      contacts: [{first_name: Jane, last_name: Doe, job_title: CTO, email: jane@example.com, phone: "+1.2085550101", types: [ORGANIZATION_CONTACT]}]}
    ca: %[1]s/markmonitor-api-ca.pem
    roots: %[1]s/markmonitor-root.pem
    poll_interval: 1s
    recheck_interval: 2s
dns:
  demo-dns: {type: rfc2136, server: %[2]q, key_name: certd-demo, key: file:tsig.key}
http:
  demo-web: {type: responder, listen: %[3]q}
defaults:
  account: atlas
  # Renewed %[7]s after issuance, so that renewals happen while you watch
  # (a real fleet keeps the default: renew with a third of the lifetime left).
  renew: {before: %[6]s}
  deploy:
    dir: %[1]s/live
    keep: 2
    reload: [[echo, "certd demo: a reload hook would reload nginx here"]]
certificates:
  - name: www      # proved by a DNS TXT record, published over RFC 2136
    domains: [www.example.com]
    dcv: {method: dns, provider: demo-dns}
    lifetime: %[5]s
  - name: shop     # proved through a CNAME delegation into example.net
    domains: [shop.example.com]
    dcv: {method: dns-delegated, delegate: shop.example.com.validation.example.net, provider: demo-dns}
    lifetime: %[5]s
  - name: blog     # proved by /.well-known/pki-validation/gsdv.txt
    domains: [blog.example.com]
    dcv: {method: http, target: demo-web}
    lifetime: %[5]s
  # The per-order CAs: each order's proof is published for it, kept until
  # it issues, then removed. Their certificates last for days.
  - name: store    # Sectigo: the CSR-hash file /.well-known/pki-validation/<MD5>.txt, published before the order
    account: sectigo
    domains: [store.example.com]
    dcv: {method: http, target: demo-web}
  - name: api      # the reseller API (DigiCert behind it): a TXT token read from validation-details
    account: reseller
    domains: [api.example.com]
    dcv: {method: dns, provider: demo-dns}
  - name: mail     # Markmonitor (DigiCert): the order's TXT token
    account: markmonitor
    domains: [mail.example.com]
    dcv: {method: dns, provider: demo-dns}
`, d, dnsSrv.Addr, webAddr, ln.Addr().String(), fmtDuration(lifetime), fmtDuration(before), fmtDuration(renewAfter),
		addrs["sectigo"], addrs["reseller"], addrs["markmonitor"], resellersim.DigiCertDVPlan)
	path := filepath.Join(d, "certd.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	for _, s := range sims {
		roots.AppendCertsFromPEM(s.RootPEM())
	}
	fmt.Fprintf(out, `certd demo
  Sectigo simulator         https://%s
  reseller API simulator    https://%s
  Markmonitor simulator     https://%s
  Atlas simulator (mTLS)    https://%s/v2
  DNS server (RFC 2136)     %s  zones example.com, example.net
  HTTP responder            http://%s/.well-known/pki-validation/
  configuration             %s
  simulator root            %s
  simulator state           %s
  deployed certificates     %s/live/<name>/

`, addrs["sectigo"], addrs["reseller"], addrs["markmonitor"], ln.Addr(), dnsSrv.Addr, webAddr, path, filepath.Join(d, "sim-root.pem"), filepath.Join(d, demoStateFile), d)
	return &demoWorld{dir: d, cfgPath: path, sim: sim, sims: sims, roots: roots, lifetime: lifetime, renewAfter: renewAfter}, nil
}

// openDemoSim loads the simulator an earlier run saved in d. Without a
// saved state, or with one that cannot be read, it starts a new one, and
// clears what an earlier run deployed (chained to a root that is gone),
// saying so.
func openDemoSim(d string, opts atlassim.Options, out io.Writer) (*atlassim.Server, error) {
	statePath := filepath.Join(d, demoStateFile)
	data, err := os.ReadFile(statePath)
	switch {
	case err == nil:
		sim, lerr := atlassim.Load(bytes.NewReader(data), opts)
		if lerr == nil {
			fmt.Fprintf(out, "certd demo: the simulator of the earlier run is back (root, claims and certificates from %s): what it issued still verifies\n", statePath)
			return sim, nil
		}
		fmt.Fprintf(out, "certd demo: %s cannot be read (%v): starting clean\n", statePath, lerr)
		if err := clearDemo(d); err != nil {
			return nil, err
		}
	case errors.Is(err, os.ErrNotExist):
		if _, serr := os.Stat(filepath.Join(d, "certd.db")); serr == nil {
			fmt.Fprintf(out, "certd demo: %s holds a store but no simulator state (%s): what it deployed chains to a root that is gone; starting clean\n", d, demoStateFile)
			if err := clearDemo(d); err != nil {
				return nil, err
			}
		}
	default:
		return nil, err
	}
	return atlassim.New(opts)
}

// openDemoOther loads the named simulator an earlier run saved in d, or
// starts a new one when there is none (openDemoSim, which runs first,
// has cleared an earlier run that cannot be continued). A saved state that
// cannot be read is an error naming it: the demo is run again with a clean
// folder.
func openDemoOther(d, name string, load func(io.Reader) (demoSim, error)) (demoSim, error) {
	statePath := filepath.Join(d, demoStateFiles[name])
	data, err := os.ReadFile(statePath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return load(nil)
	case err != nil:
		return nil, err
	}
	sim, err := load(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("the %s simulator's state %s cannot be read (%w); remove the folder %s to start clean", name, statePath, err, d)
	}
	return sim, nil
}

// clearDemo removes what a demo run left: the store, the deployed files
// and the simulators' states.
func clearDemo(d string) error {
	for _, name := range []string{"certd.db", "certd.db-wal", "certd.db-shm", "certd.db.lock", demoStateFile, "live",
		demoStateFiles["sectigo"], demoStateFiles["reseller"], demoStateFiles["markmonitor"]} {
		if err := os.RemoveAll(filepath.Join(d, name)); err != nil {
			return err
		}
	}
	return nil
}

// save writes the simulator's state (with its CA keys: 0600) beside the
// demo's store, replacing the last one in one rename.
func (w *demoWorld) save() error {
	var errs []error
	for name, sim := range w.sims {
		var b bytes.Buffer
		if err := sim.Save(&b); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		file := demoStateFiles[name]
		tmp := filepath.Join(w.dir, "."+file+".tmp")
		if err := writePrivate(tmp, b.Bytes()); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Rename(tmp, filepath.Join(w.dir, file)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// verified reads each demo certificate's live set and returns the serials
// when every one verifies now against the simulator's root, for its name.
func (w *demoWorld) verified(now time.Time) (map[string]string, bool) {
	out := map[string]string{}
	for _, name := range demoNames {
		live := filepath.Join(w.dir, "live", name)
		certPEM, err1 := os.ReadFile(filepath.Join(live, "cert.pem"))
		chainPEM, err2 := os.ReadFile(filepath.Join(live, "chain.pem"))
		if err1 != nil || err2 != nil {
			return out, false
		}
		certs, err := pemutil.Certificates(certPEM)
		if err != nil {
			return out, false
		}
		inter := x509.NewCertPool()
		inter.AppendCertsFromPEM(chainPEM)
		if _, err := certs[0].Verify(x509.VerifyOptions{DNSName: name + ".example.com", Roots: w.roots, Intermediates: inter, CurrentTime: now}); err != nil {
			return out, false
		}
		out[name] = fmt.Sprintf("%X", certs[0].SerialNumber)
	}
	return out, true
}

// printNext says when each certificate is renewed next, and why then.
func (w *demoWorld) printNext(out io.Writer, now time.Time) {
	fmt.Fprintf(out, "certd demo: next renewals: each certificate is renewed at most %s after it is issued (the demo sets renew.before to %s of its %s lifetime; "+
		"certd moves each renewal a little earlier at random, so that a fleet does not renew all at once):\n",
		fmtDuration(w.renewAfter), fmtDuration(w.lifetime-w.renewAfter), fmtDuration(w.lifetime))
	for _, c := range w.stored() {
		if c.Current == nil || c.NextActionAt.IsZero() {
			continue
		}
		at := c.NextActionAt
		fmt.Fprintf(out, "  %-5s serial %s valid until %s: %s at %s (%s)\n", c.Name, c.Current.Serial, demoTime(c.Current.NotAfter, now),
			c.NextAction, demoTime(at, now), relative(&at, now))
	}
}

// demoTime is t's time of day, with its date when it is not within a day.
func demoTime(t, now time.Time) string {
	if d := t.Sub(now); d > -24*time.Hour && d < 24*time.Hour {
		return t.UTC().Format(time.TimeOnly)
	}
	return t.UTC().Format(time.DateTime)
}

// nextOf is "; next renewal at ..." for one certificate.
func (w *demoWorld) nextOf(name string, now time.Time) string {
	for _, c := range w.stored() {
		if c.Name == name && !c.NextActionAt.IsZero() {
			at := c.NextActionAt
			return fmt.Sprintf("; next %s at %s (%s)", c.NextAction, at.UTC().Format(time.TimeOnly), relative(&at, now))
		}
	}
	return ""
}

// stored reads the demo's certificates from its store, by name.
func (w *demoWorld) stored() []store.Certificate {
	st, err := store.Open(context.Background(), filepath.Join(w.dir, "certd.db"), store.Options{})
	if err != nil {
		return nil
	}
	defer st.Close()
	certs, _ := st.ListCertificates(context.Background())
	sort.Slice(certs, func(i, j int) bool { return certs[i].Name < certs[j].Name })
	return certs
}

func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	if s == "" {
		return "0s"
	}
	return s
}

func writePrivate(path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return err
	}
	return os.Chmod(path, 0o600)
}

// printDemoState prints certd status for the demo.
func printDemoState(w io.Writer, dw *demoWorld) {
	cfg, err := loadConfig(dw.cfgPath)
	if err != nil {
		fmt.Fprintf(w, "  (configuration unreadable: %v)\n", err)
		return
	}
	st, err := store.Open(context.Background(), cfg.Store.SQLite, store.Options{})
	if err != nil {
		fmt.Fprintf(w, "  (store unreadable: %v)\n", err)
		return
	}
	defer st.Close()
	rep, err := collectStatus(context.Background(), cfg, st, time.Now(), true)
	if err != nil {
		fmt.Fprintf(w, "  (store unreadable: %v)\n", err)
		return
	}
	printStatus(w, rep, time.Now())
}
