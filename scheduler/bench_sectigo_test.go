package scheduler_test

import (
	"context"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/certd/certd/ca/sectigo"
	"github.com/certd/certd/ca/sectigo/sectigosim"
	"github.com/certd/certd/config"
	"github.com/certd/certd/internal/pemutil"
	"github.com/certd/certd/internal/testenv"
)

// BenchmarkSectigo100 issues and deploys 100 certificates in one pass
// against the Sectigo simulator with 20 ms of latency per call: each
// CSR-hash CNAME is published through a real Knot before its order, the
// simulator checks it over DNS, certd collects and deploys. The floor is
// the simulator's latency times the calls made, spread over the workers:
// what no client could beat at this concurrency.
func BenchmarkSectigo100(b *testing.B) {
	k := testenv.StartKnot(b, map[string]string{"example.com": testenv.Zone("example.com")})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const latency, workers = 20 * time.Millisecond, 8
	sim, err := sectigosim.New(sectigosim.Options{LoginName: "bench", LoginPassword: "bench-pw", DNSServer: k.Addr, Latency: latency})
	if err != nil {
		b.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = sim.Serve(ctx, ln) }()
	apiRoots := x509.NewCertPool()
	apiRoots.AppendCertsFromPEM(sim.APICAPEM())
	client, err := sectigo.NewClient(sectigo.ClientOptions{URL: "https://" + ln.Addr().String(), LoginName: "bench",
		LoginPassword: config.NewSecretValue("bench-pw"), RootCAs: apiRoots})
	if err != nil {
		b.Fatal(err)
	}
	roots, _ := pemutil.Certificates(sim.RootPEM())
	issuer, err := sectigo.NewIssuer(client, sectigo.IssuerOptions{Product: 488, Days: 365, PollInterval: 50 * time.Millisecond,
		RecheckInterval: time.Second, Roots: roots})
	if err != nil {
		b.Fatal(err)
	}
	perOrderBench{account: "sectigo", issuer: issuer, workers: workers, requests: func() int { return sectigoRequests(sim) },
		perRequest: latency, spread: true, ledger: func() int { return len(sim.Ledger()) }}.run(b, k)
}

func sectigoRequests(sim *sectigosim.Server) int {
	n := 0
	for _, api := range []string{"AutoApplySSL", "CollectSSL", "AutoUpdateDCV", "ResendDCVEmail", "GetDCVEmailAddressList"} {
		n += sim.Requests(api)
	}
	return n
}
