package store_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certd/certd/store"
)

// BenchmarkPostgresClaimDue100k measures one fleet scheduler pass's claim
// on PostgreSQL: 100,000 certificates listed by one host, 1% due, one
// ClaimDueCertificates(limit 1000) and the release of the 1000 leases
// (target: under 50 ms). claim-ms/op is the claim alone. Skipped when
// PostgreSQL is not installed.
//
// The leases are released by four goroutines, as a scheduler's jobs end
// concurrently; one after the other, 1000 round trips dominate.
func BenchmarkPostgresClaimDue100k(b *testing.B) {
	const n, releasers = 100_000, 4
	s, dsn := openPG(b)
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	conn := sqlConn(b, dsn)
	var certs, hosts [][]any
	for i := range n {
		at := now.Add(time.Duration(1+i%(90*24)) * time.Hour)
		if i%100 == 0 {
			at = now.Add(-time.Duration(1+i%60) * time.Minute)
		}
		name := fmt.Sprintf("cert-%06d", i)
		certs = append(certs, []any{name, "atlas", fmt.Sprintf(`["c%d.example.com"]`, i), "ecdsa-p256", "h", "valid", "renew", at.UnixMilli(), int64(0), int64(0)})
		hosts = append(hosts, []any{"host-1", name, "h"})
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"certificates"},
		[]string{"name", "account", "domains", "key_type", "spec_hash", "state", "next_action", "next_action_at", "created_at", "updated_at"},
		pgx.CopyFromRows(certs)); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"host_certificates"}, []string{"host", "cert_name", "spec_hash"}, pgx.CopyFromRows(hosts)); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "VACUUM ANALYZE"); err != nil {
		b.Fatal(err)
	}
	var claim time.Duration
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		got, err := s.ClaimDueCertificates(ctx, "host-1", "holder", now, time.Minute, 1000)
		claim += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if len(got) != n/100 {
			b.Fatalf("%d claimed, want %d", len(got), n/100)
		}
		// Released as jobs end: concurrently, by the pool's connections.
		var wg sync.WaitGroup
		errs := make(chan error, releasers)
		for w := range releasers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < len(got); i += releasers {
					if err := s.ReleaseLease(ctx, got[i].Lease); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	}
	b.ReportMetric(claim.Seconds()*1000/float64(b.N), "claim-ms/op")
}

var _ store.Store = (*store.Postgres)(nil)
