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
	"github.com/certd/certd/ca/markmonitor"
	"github.com/certd/certd/ca/markmonitor/mmsim"
	"github.com/certd/certd/config"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/deploy"
	"github.com/certd/certd/internal/pemutil"
	"github.com/certd/certd/internal/testenv"
	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

// BenchmarkMarkmonitor100 issues and deploys 100 certificates in one
// pass against the Markmonitor simulator, whose request limit binds: the
// simulator and the client both allow 6,000 requests a minute (the real
// 100 a minute, sixty times faster, so the benchmark takes seconds, not
// minutes). The floor is the requests made divided by that rate: what the
// limit allows at best. At the real 100 a minute the floor, and certd's
// time, are sixty times longer.
func BenchmarkMarkmonitor100(b *testing.B) {
	k := testenv.StartKnot(b, map[string]string{"example.com": testenv.Zone("example.com")})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const perMinute, workers = 6000, 8
	sim, err := mmsim.New(mmsim.Options{APIKey: "bench-key", Username: "bench", Password: "bench-pw", DNSServer: k.Addr, RateLimit: perMinute})
	if err != nil {
		b.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = sim.Serve(ctx, ln) }()
	apiRoots := x509.NewCertPool()
	apiRoots.AppendCertsFromPEM(sim.APICAPEM())
	client, err := markmonitor.NewClient(markmonitor.ClientOptions{URL: "https://" + ln.Addr().String() + "/cert/v1", AuthURL: "https://" + ln.Addr().String() + "/auth/v1",
		APIKey: config.NewSecretValue("bench-key"), Username: "bench", Password: config.NewSecretValue("bench-pw"), RootCAs: apiRoots, RequestsPerMinute: perMinute})
	if err != nil {
		b.Fatal(err)
	}
	roots, _ := pemutil.Certificates(sim.RootPEM())
	issuer, err := markmonitor.NewIssuer(client, markmonitor.IssuerOptions{CertificateType: "SSL_DV_GEOTRUST", Roots: roots,
		Organization: &markmonitor.OrganizationConfig{Name: "Bench Corp", Address: "1 Main Street", City: "Boise", State: "ID", Country: "US", Zip: "83702",
			Phone: "+1.2085550100", Contacts: []markmonitor.ContactConfig{{FirstName: "Jane", LastName: "Doe", JobTitle: "CTO", Email: "jane@example.com",
				Phone: "+1.2085550101", Types: []string{markmonitor.ContactOrganization}}}},
		PollInterval: 50 * time.Millisecond, RecheckInterval: 200 * time.Millisecond})
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
			name := fmt.Sprintf("m%d-%03d", i, n)
			domain := name + ".example.com"
			spec := scheduler.CertSpec{Name: name, Account: "markmonitor", Domains: []string{domain}, KeyType: "ecdsa-p256"}
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
		reqs0 := mmRequests(sim)
		b.StartTimer()
		start, c0 := time.Now(), cpuTime()
		if err := s.Pass(ctx); err != nil {
			b.Fatal(err)
		}
		wall += time.Since(start)
		cpu += cpuTime() - c0
		floor += time.Duration(mmRequests(sim)-reqs0) * time.Minute / perMinute
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

func mmRequests(sim *mmsim.Server) int {
	n := 0
	for _, r := range []string{mmsim.RouteAuthenticate, mmsim.RouteRefresh, mmsim.RouteCreateOrg, mmsim.RouteListOrgs, mmsim.RouteGetOrg,
		mmsim.RouteCreateContact, mmsim.RouteListContacts, mmsim.RouteGetContact, mmsim.RouteCreateOrder, mmsim.RouteSearchOrders,
		mmsim.RouteGetOrder, mmsim.RouteDownload, mmsim.RouteValidate} {
		n += sim.Requests(r)
	}
	return n
}
