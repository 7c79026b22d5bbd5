package scheduler_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/libdns/rfc2136"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/ca/reseller"
	"github.com/certd/certd/ca/reseller/resellersim"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/deploy"
	"github.com/certd/certd/internal/pemutil"
	"github.com/certd/certd/internal/testenv"
	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

// BenchmarkReseller100 issues and deploys 100 certificates in one pass
// against the reseller /ssl-certificate simulator (DigiCert-style TXT
// tokens read from validation-details) with 20 ms of latency per call,
// each token published through a real Knot. The floor is the simulator's
// latency times the calls made, spread over the workers.
func BenchmarkReseller100(b *testing.B) {
	k := testenv.StartKnot(b, map[string]string{"example.com": testenv.Zone("example.com")})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const latency, workers = 20 * time.Millisecond, 8
	sim, err := resellersim.New(resellersim.Options{Username: "bench", APIKey: "bench-key", DNSServer: k.Addr, Latency: latency})
	if err != nil {
		b.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = sim.Serve(ctx, ln) }()
	apiRoots := x509.NewCertPool()
	apiRoots.AppendCertsFromPEM(sim.APICAPEM())
	client, err := reseller.NewClient(reseller.ClientOptions{URL: "https://" + ln.Addr().String(), Username: "bench", APIKey: "bench-key", RootCAs: apiRoots})
	if err != nil {
		b.Fatal(err)
	}
	roots, _ := pemutil.Certificates(sim.RootPEM())
	issuer, err := reseller.NewIssuer(client, reseller.IssuerOptions{Plan: resellersim.DigiCertDVPlan, PollInterval: 50 * time.Millisecond, Roots: roots})
	if err != nil {
		b.Fatal(err)
	}
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
			name := fmt.Sprintf("r%d-%03d", i, n)
			domain := name + ".example.com"
			spec := scheduler.CertSpec{Name: name, Account: "reseller", Domains: []string{domain}, KeyType: "ecdsa-p256"}
			specs = append(specs, spec)
			plans[name] = scheduler.Plan{Spec: spec, Issuer: issuer, Engine: engine, Policy: scheduler.Policy{RemainingFraction: 1.0 / 3},
				Deploy:    deploy.Spec{Name: name, Dir: filepath.Join(dir, "live"), CertMode: 0o644, KeyMode: 0o600, Keep: 1},
				Proofs:    map[string]scheduler.Proof{domain: {CA: ca.Proof{Method: dcv.DNSTXT}, Target: dcv.Target{DNS: "knot"}}},
				OrderWait: time.Minute}
		}
		issuing := &scheduler.Issuing{Store: st, Plans: func(n string) (scheduler.Plan, error) { return plans[n], nil }, Deployer: &deploy.Deployer{}}
		s, err := scheduler.New(scheduler.Options{Store: st, Work: issuing.Work, Schedule: "@every 1h", Workers: workers})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Apply(ctx, specs); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		reqs0 := resellerRequests(sim)
		b.StartTimer()
		start, c0 := time.Now(), cpuTime()
		if err := s.Pass(ctx); err != nil {
			b.Fatal(err)
		}
		wall += time.Since(start)
		cpu += cpuTime() - c0
		floor += time.Duration(resellerRequests(sim)-reqs0) * latency / workers
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
	b.ReportMetric(float64(len(sim.Ledger()))/float64(b.N), "orders/100certs")
}

func resellerRequests(sim *resellersim.Server) int {
	n := 0
	for _, r := range []string{"POST /ssl-certificate", "GET /ssl-certificate", "GET /ssl-certificate/{id}", "GET /ssl-certificate/{id}/validation-details",
		"POST /ssl-certificate/{id}/validate", "GET /ssl-certificate/{id}/download-crt", "GET /ssl-certificate/{id}/download-ca"} {
		n += sim.Requests(r)
	}
	return n
}
