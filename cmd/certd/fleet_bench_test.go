package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/certd/certd/internal/pgtest"
	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

// BenchmarkFleetRenewals: 1,000 certificates at the Atlas simulator,
// issued by a fleet of 1, 2 and 3 hosts on one PostgreSQL, then all made
// due at once and renewed; the figure is the wall time of the renewals,
// until every host serves every renewed certificate. CERTD_FLEET_CERTS
// changes the count.
func BenchmarkFleetRenewals(b *testing.B) {
	n := fleetSize(1000)
	for _, hostCount := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("hosts=%d", hostCount), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				f := newFleet(b, pgtest.Shared(b), 0)
				names := fleetNames(n, 0)
				var hosts []string
				for i := range hostCount {
					h := fmt.Sprintf("web%d", i+1)
					hosts = append(hosts, h)
					f.launch(b, h, f.config(b, h, names, 2*time.Minute, time.Minute))
				}
				st := f.open(b)
				f.waitServed(b, st, hosts, names, 10*time.Minute)
				first := map[string]int64{}
				for _, name := range names {
					c, err := st.GetCertificate(context.Background(), name)
					if err != nil {
						b.Fatal(err)
					}
					first[name] = c.CurrentVersion
				}
				b.StartTimer()
				start := time.Now()
				for _, name := range names {
					if err := st.UpdateCertificate(context.Background(), name, func(c *store.Certificate) error {
						c.NextAction, c.NextActionAt = scheduler.ActionRenew, time.Now()
						return nil
					}); err != nil {
						b.Fatal(err)
					}
				}
				for {
					renewed := 0
					for _, name := range names {
						if c, err := st.GetCertificate(context.Background(), name); err == nil && c.CurrentVersion != first[name] {
							renewed++
						}
					}
					if renewed == len(names) && len(f.notServed(st, hosts, names)) == 0 {
						break
					}
					if time.Since(start) > 10*time.Minute {
						b.Fatalf("%d of %d renewed after 10 minutes", renewed, len(names))
					}
					time.Sleep(200 * time.Millisecond)
				}
				took := time.Since(start)
				b.StopTimer()
				b.ReportMetric(took.Seconds(), "s/renewals")
				b.ReportMetric(float64(len(names))/took.Seconds(), "renewals/s")
				for _, h := range hosts {
					f.stop(b, h)
				}
			}
		})
	}
}
