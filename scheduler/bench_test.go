package scheduler_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libdns/rfc2136"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/atlas"
	"github.com/certd/certd/ca/atlas/atlassim"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/deploy"
	"github.com/certd/certd/internal/testenv"
	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func maxRSSMiB() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Maxrss) / 1024 // kilobytes on Linux
}

// BenchmarkRenew100 issues and deploys 100 certificates in one pass
// (4 workers) against the Atlas simulator, with their claim proved by
// DNS through a real Knot server, and reports wall time, CPU time and
// peak RSS per 100. The floor is the simulator's configured latency:
// zero here, so wall time is certd's own cost plus the real servers'.
func BenchmarkRenew100(b *testing.B) {
	k := testenv.StartKnot(b, map[string]string{"example.com": testenv.Zone("example.com")})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const latency, workers = 2 * time.Millisecond, 4
	sim, err := atlassim.New(atlassim.Options{APIKey: "k", APISecret: "s", DNSServer: k.Addr, RotateEvery: 25, Latency: latency})
	if err != nil {
		b.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = sim.Serve(ctx, ln) }()
	certPEM, keyPEM, _ := sim.ClientCredentials("bench")
	pair, _ := tls.X509KeyPair(certPEM, keyPEM)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(sim.APICAPEM())
	client, err := atlas.NewClient(atlas.ClientOptions{URL: "https://" + ln.Addr().String() + "/v2", APIKey: "k", APISecret: "s", Certificate: pair, RootCAs: roots})
	if err != nil {
		b.Fatal(err)
	}
	issuer := atlas.NewIssuer(client, atlas.IssuerOptions{})
	prov := &rfc2136.Provider{Server: k.Addr, KeyName: k.KeyName, KeyAlg: k.KeyAlg, Key: k.Secret}
	var wall, cpu, floor time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		st, err := store.Open(ctx, filepath.Join(dir, "certd.db"), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		engine, _ := dcv.NewEngine(dcv.Options{DNS: map[string]dcv.DNSProvider{"knot": prov}, Journal: journal{st},
			Resolvers: []string{k.Addr}, AuthServers: map[string][]string{"knot": {k.Addr}}})
		plans := map[string]scheduler.Plan{}
		var specs []scheduler.CertSpec
		for n := range 100 {
			name := fmt.Sprintf("c%03d", n)
			domain := name + ".example.com"
			spec := scheduler.CertSpec{Name: name, Account: "atlas", Domains: []string{domain}, KeyType: "ecdsa-p256"}
			specs = append(specs, spec)
			plans[name] = scheduler.Plan{Spec: spec, Issuer: issuer, Engine: engine, Policy: scheduler.Policy{RemainingFraction: 1.0 / 3},
				Deploy:      deploy.Spec{Name: name, Dir: filepath.Join(dir, "live"), CertMode: 0o644, KeyMode: 0o600, Keep: 1},
				Proofs:      map[string]scheduler.Proof{domain: {CA: ca.Proof{Method: dcv.DNSTXT}, Target: dcv.Target{DNS: "knot"}}},
				ClaimDomain: func(string) string { return "example.com" }}
		}
		issuing := &scheduler.Issuing{Store: st, Plans: func(n string) (scheduler.Plan, error) { return plans[n], nil },
			Claims: &scheduler.Claims{Store: st}, Deployer: &deploy.Deployer{}}
		s, err := scheduler.New(scheduler.Options{Store: st, Work: issuing.Work, Schedule: "@every 1h", Workers: workers})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Apply(ctx, specs); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		reqs0 := totalRequests(sim)
		b.StartTimer()
		start, c0 := time.Now(), cpuTime()
		if err := s.Pass(ctx); err != nil {
			b.Fatal(err)
		}
		wall += time.Since(start)
		cpu += cpuTime() - c0
		// The floor: every request's simulated latency, spread over the
		// workers; what no client could beat at this concurrency.
		floor += time.Duration(totalRequests(sim)-reqs0) * latency / workers
		b.StopTimer()
		valid := 0
		certs, _ := st.ListCertificates(ctx)
		for _, c := range certs {
			if c.State == store.StateValid {
				valid++
			}
		}
		if valid != 100 {
			b.Fatalf("%d of 100 certificates valid", valid)
		}
		st.Close()
	}
	b.ReportMetric(wall.Seconds()/float64(b.N), "wall-s/100certs")
	b.ReportMetric(floor.Seconds()/float64(b.N), "floor-s/100certs")
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/100certs")
	b.ReportMetric(maxRSSMiB(), "peak-RSS-MiB")
}

func totalRequests(sim *atlassim.Server) int {
	n := 0
	for _, r := range []string{"POST /login", "GET /validationpolicy", "POST /certificates", "GET /certificates/{serial}", "GET /trustchain",
		"GET /claims/domains", "POST /claims/domains/{domain}", "GET /claims/domains/{id}", "POST /claims/domains/{id}/dns"} {
		n += sim.Requests(r)
	}
	return n
}

// BenchmarkIdleDaemon10k holds 10,000 valid certificates, none due, and
// measures what the scheduler costs while idle: a pass every second for
// the benchmark's duration, CPU per pass, and the heap and RSS it keeps.
func BenchmarkIdleDaemon10k(b *testing.B) {
	dir := b.TempDir()
	ctx := context.Background()
	path := filepath.Join(dir, "certd.db")
	st, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	fillValid(b, path, 10_000)
	s, err := scheduler.New(scheduler.Options{Store: st, Work: func(context.Context, store.Certificate) error {
		b.Error("a certificate that is not due was worked")
		return nil
	}, Schedule: "@every 1h"})
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	b.ResetTimer()
	c0 := cpuTime()
	for i := 0; i < b.N; i++ {
		if err := s.Pass(ctx); err != nil {
			b.Fatal(err)
		}
	}
	cpu := cpuTime() - c0
	b.StopTimer()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/pass")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
	b.ReportMetric(rssMiB(), "RSS-MiB")
}

func rssMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return float64(kb) / 1024
		}
	}
	return 0
}

// fillValid inserts n valid certificates due in 30-90 days.
func fillValid(b *testing.B, path string, n int) {
	st, err := store.Open(context.Background(), path, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	// One transaction through the public API would be n fsyncs; the store
	// is the same file, so write through SQL once.
	db := openRaw(b, path)
	defer db.Close()
	tx, _ := db.Begin()
	stmt, err := tx.Prepare(`INSERT INTO certificates (name, account, domains, key_type, spec_hash, state, next_action, next_action_at, created_at, updated_at)
		VALUES (?, 'atlas', ?, 'ecdsa-p256', 'h', 'valid', 'renew', ?, 0, 0)`)
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		at := now.Add(30*24*time.Hour + time.Duration(i)*time.Minute)
		if _, err := stmt.Exec(fmt.Sprintf("c%05d", i), fmt.Sprintf(`["c%d.example.com"]`, i), at.UnixMilli()); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkACMEHundredInARow issues a hundred certificates one after the
// other against Pebble (DNS-01 through Knot, with certd's propagation
// check); any failure fails the benchmark. Pebble runs without validation
// sleeps, but keeps rejecting nonces and reusing authorizations.
func BenchmarkACMEHundredInARow(b *testing.B) {
	w := newACMEWorld(b, acmeOpts{env: []string{"PEBBLE_VA_NOSLEEP=1"}})
	x := w.issuing(w.st, w.issuer(b))
	c := w.due(b)
	b.ResetTimer()
	for range b.N {
		for n := range 100 {
			if err := x.Work(ctx, c); err != nil {
				b.Fatalf("issuance %d failed: %v", n+1, err)
			}
			c = w.setDue(b, scheduler.ActionRenew)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(100*b.N), "ms/issuance")
}
