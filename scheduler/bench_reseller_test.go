package scheduler_test

import (
	"context"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/certd/certd/ca/reseller"
	"github.com/certd/certd/ca/reseller/resellersim"
	"github.com/certd/certd/internal/pemutil"
	"github.com/certd/certd/internal/testenv"
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
	perOrderBench{account: "reseller", issuer: issuer, workers: workers, requests: func() int { return resellerRequests(sim) },
		perRequest: latency, spread: true, ledger: func() int { return len(sim.Ledger()) }}.run(b, k)
}

func resellerRequests(sim *resellersim.Server) int {
	n := 0
	for _, r := range []string{"POST /ssl-certificate", "GET /ssl-certificate", "GET /ssl-certificate/{id}", "GET /ssl-certificate/{id}/validation-details",
		"POST /ssl-certificate/{id}/validate", "GET /ssl-certificate/{id}/download-crt", "GET /ssl-certificate/{id}/download-ca"} {
		n += sim.Requests(r)
	}
	return n
}
