package scheduler_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/libdns/rfc2136"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/deploy"
	"github.com/certd/certd/internal/testenv"
	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

// perOrderBench is one per-order CA's benchmark: 100 certificates issued
// and deployed in one pass, each proved by DNS through a real Knot.
type perOrderBench struct {
	account string
	issuer  ca.Issuer
	workers int
	// requests counts the simulator's requests so far; perRequest is what
	// one costs at best (its latency, or the rate limit's spacing), so the
	// floor is requests × perRequest, spread over the workers when the
	// cost is latency (spread is false for a rate limit, which binds the
	// account whatever the concurrency).
	requests   func() int
	perRequest time.Duration
	spread     bool
	ledger     func() int
}

// run does b.N passes of 100 certificates and reports wall time, the
// floor, CPU time and orders per 100 certificates.
func (p perOrderBench) run(b *testing.B, k *testenv.Knot) {
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
			name := fmt.Sprintf("%s%d-%03d", p.account[:1], i, n)
			domain := name + ".example.com"
			spec := scheduler.CertSpec{Name: name, Account: p.account, Domains: []string{domain}, KeyType: "ecdsa-p256"}
			specs = append(specs, spec)
			plans[name] = scheduler.Plan{Spec: spec, Issuer: p.issuer, Engine: engine, Policy: scheduler.Policy{RemainingFraction: 1.0 / 3},
				Deploy:    deploy.Spec{Name: name, Dir: filepath.Join(dir, "live"), CertMode: 0o644, KeyMode: 0o600, Keep: 1},
				Proofs:    map[string]scheduler.Proof{domain: {CA: ca.Proof{Method: dcv.DNSTXT}, Target: dcv.Target{DNS: "knot"}}},
				OrderWait: time.Minute}
		}
		issuing := &scheduler.Issuing{Store: st, Plans: func(n string) (scheduler.Plan, error) { return plans[n], nil }, Deployer: &deploy.Deployer{}}
		s, err := scheduler.New(scheduler.Options{Store: st, Work: issuing.Work, Schedule: "@every 1h", Workers: p.workers})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Apply(ctx, specs); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		reqs0 := p.requests()
		b.StartTimer()
		start, c0 := time.Now(), cpuTime()
		if err := s.Pass(context.Background()); err != nil {
			b.Fatal(err)
		}
		wall += time.Since(start)
		cpu += cpuTime() - c0
		f := time.Duration(p.requests()-reqs0) * p.perRequest
		if p.spread {
			f /= time.Duration(p.workers)
		}
		floor += f
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
	b.ReportMetric(float64(p.ledger())/float64(b.N), "orders/100certs")
}
