package scheduler_test

import (
	"context"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/certd/certd/ca/markmonitor"
	"github.com/certd/certd/ca/markmonitor/mmsim"
	"github.com/certd/certd/config"
	"github.com/certd/certd/internal/pemutil"
	"github.com/certd/certd/internal/testenv"
)

// BenchmarkMarkmonitor100 issues and deploys 100 certificates in one
// pass against the Markmonitor simulator, whose request limit binds: the
// simulator and the client both allow the documented 100 requests a
// window, with the minute scaled to a second so the benchmark takes
// seconds. The floor is the requests made at 100 a window (what the limit
// allows at best); at the real 100 a minute both are sixty times longer.
func BenchmarkMarkmonitor100(b *testing.B) {
	k := testenv.StartKnot(b, map[string]string{"example.com": testenv.Zone("example.com")})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The documented 100 requests a minute, with the minute scaled to a
	// second on both sides.
	const limit, window, workers = 100, time.Second, 8
	sim, err := mmsim.New(mmsim.Options{APIKey: "bench-key", Username: "bench", Password: "bench-pw", DNSServer: k.Addr, RateLimit: limit, RateWindow: window})
	if err != nil {
		b.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = sim.Serve(ctx, ln) }()
	apiRoots := x509.NewCertPool()
	apiRoots.AppendCertsFromPEM(sim.APICAPEM())
	client, err := markmonitor.NewClient(markmonitor.ClientOptions{URL: "https://" + ln.Addr().String() + "/cert/v1", AuthURL: "https://" + ln.Addr().String() + "/auth/v1",
		APIKey: config.NewSecretValue("bench-key"), Username: "bench", Password: config.NewSecretValue("bench-pw"), RootCAs: apiRoots, RequestsPerMinute: limit, RateWindow: window, RateMargin: window / 30})
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
	perOrderBench{account: "markmonitor", issuer: issuer, workers: workers, requests: func() int { return mmRequests(sim) },
		perRequest: window / limit, spread: false, ledger: func() int { return len(sim.Ledger()) }}.run(b, k)
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
