package store_test

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/certd/certd/store"
)

// BenchmarkDueCertificates measures the scheduler's due query over a store
// of n certificates of which 1% are due (target: under 50 ms at 100,000).
func BenchmarkDueCertificates(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("certs=%d", n), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "certd.db")
			s, err := store.Open(ctx, path, store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
			fill(b, path, n, now)
			b.ResetTimer()
			for b.Loop() {
				due, err := s.DueCertificates(ctx, now, 10_000)
				if err != nil {
					b.Fatal(err)
				}
				if len(due) != n/100 {
					b.Fatalf("%d due, want %d", len(due), n/100)
				}
			}
		})
	}
}

// fill inserts n certificates in one transaction: 1% due before now, the
// rest spread over the next 90 days.
func fill(b *testing.B, path string, n int, now time.Time) {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	stmt, err := tx.Prepare(`INSERT INTO certificates (name, account, domains, key_type, spec_hash, state, next_action,
		next_action_at, created_at, updated_at) VALUES (?, 'atlas', ?, 'ecdsa-p256', 'h', 'valid', 'renew', ?, 0, 0)`)
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		at := now.Add(time.Duration(1+i%(90*24)) * time.Hour)
		if i%100 == 0 {
			at = now.Add(-time.Duration(1+i%60) * time.Minute)
		}
		if _, err := stmt.Exec(fmt.Sprintf("cert-%06d", i), fmt.Sprintf(`["c%d.example.com"]`, i), at.UnixMilli()); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}
