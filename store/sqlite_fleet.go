package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// write runs fn in one transaction on the writer connection. When ctx
// carries a lease, the transaction first checks that it is still the
// resource's current lease and writes nothing if not (ErrLeaseLost): the
// fencing every backend owes (see Leases).
func (s *SQLite) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.txn(ctx, "", true, fn)
}

// txn runs fn in one transaction on the writer connection, fenced by the
// lease ctx carries when fenced; what, when set, names the write in a
// failed commit's error.
func (s *SQLite) txn(ctx context.Context, what string, fenced bool, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return s.disk(err)
	}
	defer tx.Rollback()
	if l, ok := LeaseFrom(ctx); ok && fenced {
		var n int
		err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM leases WHERE resource = ? AND holder = ? AND token = ? AND expires_at > ?`,
			l.Resource, l.Holder, l.Token, s.now().UnixMilli()).Scan(&n)
		if err != nil {
			return s.disk(err)
		}
		if n == 0 {
			return fmt.Errorf("%w: %s (token %d) is no longer held by %s", ErrLeaseLost, l.Resource, l.Token, l.Holder)
		}
	}
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		if what != "" {
			return fmt.Errorf("store: %s: committing: %w", what, s.disk(err))
		}
		return fmt.Errorf("store: committing: %w", s.disk(err))
	}
	return nil
}

// exec runs one fenced statement.
func (s *SQLite) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	var res sql.Result
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		res, err = tx.ExecContext(ctx, q, args...)
		return err
	})
	return res, err
}

// sealKey is the key's PEM as stored: sealed when the store has a Sealer.
func (s *SQLite) sealKey(k PrivateKey) ([]byte, error) {
	if s.seal == nil {
		return k.PEM, nil
	}
	return s.seal.Seal(k.PEM, keyAAD(k.CertName, k.PublicSHA))
}

type execer interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
}

func (s *SQLite) saveCert(ctx context.Context, q execer, c Certificate) error {
	domains, err := json.Marshal(c.Domains)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	now := s.now()
	_, err = q.ExecContext(ctx, `
INSERT INTO certificates (name, account, domains, key_type, spec_hash, state, current_version,
	next_action, next_action_at, failures, last_error, retry_after, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET account = excluded.account, domains = excluded.domains,
	key_type = excluded.key_type, spec_hash = excluded.spec_hash, state = excluded.state,
	current_version = excluded.current_version, next_action = excluded.next_action,
	next_action_at = excluded.next_action_at, failures = excluded.failures,
	last_error = excluded.last_error, retry_after = excluded.retry_after, updated_at = excluded.updated_at`,
		c.Name, c.Account, string(domains), c.KeyType, c.SpecHash, c.State, c.CurrentVersion,
		c.NextAction, ms(c.NextActionAt), c.Failures, c.LastError, ms(c.RetryAfter), ms(now), ms(now))
	if err != nil {
		return fmt.Errorf("store: saving certificate %s: %w", c.Name, s.disk(err))
	}
	return nil
}

// InsertCertificate implements Certificates.
func (s *SQLite) InsertCertificate(ctx context.Context, c Certificate) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM certificates WHERE name = ?`, c.Name).Scan(&n); err != nil {
			return fmt.Errorf("store: inserting certificate %s: %w", c.Name, s.disk(err))
		}
		if n > 0 {
			return fmt.Errorf("%w: certificate %s", ErrExists, c.Name)
		}
		return s.saveCert(ctx, tx, c)
	})
}

// UpdateCertificate implements Certificates.
func (s *SQLite) UpdateCertificate(ctx context.Context, name string, fn func(*Certificate) error) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		c, err := scanCert(tx.QueryRowContext(ctx, "SELECT "+certCols+certFrom+"WHERE c.name = ?", name))
		if err != nil {
			return notFound(err, "certificate "+name)
		}
		if err := fn(&c); err != nil {
			return err
		}
		c.Name = name
		return s.saveCert(ctx, tx, c)
	})
}

func (s *SQLite) saveClaim(ctx context.Context, q execer, c Claim) error {
	_, err := q.ExecContext(ctx, `
INSERT INTO claims (`+claimCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (account, domain) DO UPDATE SET ca_claim_id = excluded.ca_claim_id, token = excluded.token, status = excluded.status,
	method = excluded.method, assert_by = excluded.assert_by, expires_at = excluded.expires_at,
	next_action = excluded.next_action, next_action_at = excluded.next_action_at,
	failures = excluded.failures, last_error = excluded.last_error, updated_at = excluded.updated_at`,
		c.Account, c.Domain, c.CAClaimID, c.Token, c.Status, c.Method, ms(c.AssertBy), ms(c.ExpiresAt),
		c.NextAction, ms(c.NextActionAt), c.Failures, c.LastError, ms(s.now()))
	if err != nil {
		return fmt.Errorf("store: saving claim %s/%s: %w", c.Account, c.Domain, s.disk(err))
	}
	return nil
}

// UpdateClaim implements Claims.
func (s *SQLite) UpdateClaim(ctx context.Context, account, domain string, fn func(*Claim) error) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		c, err := scanClaim(tx.QueryRowContext(ctx, "SELECT "+claimCols+" FROM claims WHERE account = ? AND domain = ?", account, domain))
		if err != nil {
			return notFound(err, "claim "+account+"/"+domain)
		}
		if err := fn(&c); err != nil {
			return err
		}
		c.Account, c.Domain = account, domain
		return s.saveClaim(ctx, tx, c)
	})
}

// --- leases (one host, but the same contract as a fleet's)

func (s *SQLite) nextToken(ctx context.Context, tx *sql.Tx) (int64, error) {
	var t int64
	err := tx.QueryRowContext(ctx, `UPDATE lease_tokens SET last = last + 1 WHERE id = 1 RETURNING last`).Scan(&t)
	return t, err
}

// grant gives holder the lease on resource unless a live one exists; ok
// is false when one does.
func (s *SQLite) grant(ctx context.Context, tx *sql.Tx, resource, holder string, now time.Time, ttl time.Duration) (Lease, bool, error) {
	var live int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM leases WHERE resource = ? AND expires_at > ?`, resource, now.UnixMilli()).Scan(&live); err != nil {
		return Lease{}, false, err
	}
	if live > 0 {
		return Lease{}, false, nil
	}
	tok, err := s.nextToken(ctx, tx)
	if err != nil {
		return Lease{}, false, err
	}
	exp := now.Add(ttl).UnixMilli()
	if _, err := tx.ExecContext(ctx, `INSERT INTO leases (resource, holder, token, expires_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (resource) DO UPDATE SET holder = excluded.holder, token = excluded.token, expires_at = excluded.expires_at`,
		resource, holder, tok, exp); err != nil {
		return Lease{}, false, err
	}
	return Lease{Resource: resource, Holder: holder, Token: tok, Expires: time.UnixMilli(exp).UTC(), Remaining: ttl}, true, nil
}

// AcquireLease implements Leases.
func (s *SQLite) AcquireLease(ctx context.Context, resource, holder string, ttl time.Duration) (Lease, error) {
	var l Lease
	err := s.txn(ctx, "", false, func(tx *sql.Tx) error {
		var ok bool
		var err error
		if l, ok, err = s.grant(ctx, tx, resource, holder, s.now(), ttl); err != nil {
			return fmt.Errorf("store: leasing %s: %w", resource, s.disk(err))
		} else if !ok {
			return fmt.Errorf("%w: %s", ErrLeaseHeld, resource)
		}
		return nil
	})
	return l, err
}

// RenewLease implements Leases.
func (s *SQLite) RenewLease(ctx context.Context, l Lease, ttl time.Duration) (Lease, error) {
	err := s.txn(ctx, "", false, func(tx *sql.Tx) error {
		now := s.now()
		exp := now.Add(ttl).UnixMilli()
		res, err := tx.ExecContext(ctx, `UPDATE leases SET expires_at = ? WHERE resource = ? AND holder = ? AND token = ? AND expires_at > ?`,
			exp, l.Resource, l.Holder, l.Token, now.UnixMilli())
		if err != nil {
			return fmt.Errorf("store: renewing the lease on %s: %w", l.Resource, s.disk(err))
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: %s (token %d)", ErrLeaseLost, l.Resource, l.Token)
		}
		l.Expires, l.Remaining = time.UnixMilli(exp).UTC(), ttl
		return nil
	})
	return l, err
}

// ReleaseLease implements Leases.
func (s *SQLite) ReleaseLease(ctx context.Context, l Lease) error {
	return s.txn(ctx, "", false, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE leases SET expires_at = 0 WHERE resource = ? AND holder = ? AND token = ? AND expires_at > ?`,
			l.Resource, l.Holder, l.Token, s.now().UnixMilli())
		if err != nil {
			return fmt.Errorf("store: releasing the lease on %s: %w", l.Resource, s.disk(err))
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: %s (token %d)", ErrLeaseLost, l.Resource, l.Token)
		}
		return nil
	})
}

// ClaimDueCertificates implements Leases.
func (s *SQLite) ClaimDueCertificates(ctx context.Context, host, holder string, now time.Time, ttl time.Duration, limit int) ([]LeasedCertificate, error) {
	var out []LeasedCertificate
	err := s.txn(ctx, "", false, func(tx *sql.Tx) error {
		out = out[:0]
		clock := s.now()
		rows, err := tx.QueryContext(ctx, `SELECT c.name FROM certificates c
	JOIN host_certificates h ON h.cert_name = c.name AND h.host = ? AND h.spec_hash = c.spec_hash
	WHERE c.next_action_at IS NOT NULL AND c.next_action_at <= ?
	AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.resource = 'cert:' || c.name AND l.expires_at > ?)
	ORDER BY c.next_action_at LIMIT ?`, host, now.UnixMilli(), clock.UnixMilli(), limit)
		if err != nil {
			return fmt.Errorf("store: claiming due certificates: %w", s.disk(err))
		}
		var names []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				rows.Close()
				return fmt.Errorf("store: claiming due certificates: %w", err)
			}
			names = append(names, n)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("store: claiming due certificates: %w", err)
		}
		for _, n := range names {
			l, ok, err := s.grant(ctx, tx, CertificateResource(n), holder, clock, ttl)
			if err != nil {
				return fmt.Errorf("store: claiming %s: %w", n, s.disk(err))
			}
			if !ok {
				continue
			}
			c, err := scanCert(tx.QueryRowContext(ctx, "SELECT "+certCols+certFrom+"WHERE c.name = ?", n))
			if err != nil {
				return fmt.Errorf("store: claiming %s: %w", n, err)
			}
			out = append(out, LeasedCertificate{Certificate: c, Lease: l})
		}
		return nil
	})
	return out, err
}

// ListLeases implements Leases.
func (s *SQLite) ListLeases(ctx context.Context) ([]Lease, error) {
	now := s.now()
	return queryAll(ctx, s.db, "leases", func(r scanner) (Lease, error) {
		var l Lease
		var exp int64
		err := r.Scan(&l.Resource, &l.Holder, &l.Token, &exp)
		l.Expires = time.UnixMilli(exp).UTC()
		l.Remaining = l.Expires.Sub(now)
		return l, err
	}, `SELECT resource, holder, token, expires_at FROM leases WHERE expires_at > ? ORDER BY resource`, now.UnixMilli())
}

// --- hosts

// SetHostCertificates implements Hosts.
func (s *SQLite) SetHostCertificates(ctx context.Context, host string, specs map[string]string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM host_certificates WHERE host = ?`, host); err != nil {
			return fmt.Errorf("store: listing the certificates of host %q: %w", host, s.disk(err))
		}
		for n, h := range specs {
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO host_certificates (host, cert_name, spec_hash) VALUES (?, ?, ?)`, host, n, h); err != nil {
				return fmt.Errorf("store: listing the certificates of host %q: %w", host, s.disk(err))
			}
		}
		return nil
	})
}

// HostCertificates implements Hosts.
func (s *SQLite) HostCertificates(ctx context.Context) (map[string]map[string]string, error) {
	type row struct{ host, name, hash string }
	rows, err := queryAll(ctx, s.db, "host certificates", func(r scanner) (row, error) {
		var x row
		err := r.Scan(&x.host, &x.name, &x.hash)
		return x, err
	}, `SELECT host, cert_name, spec_hash FROM host_certificates ORDER BY host, cert_name`)
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]string{}
	for _, r := range rows {
		if out[r.host] == nil {
			out[r.host] = map[string]string{}
		}
		out[r.host][r.name] = r.hash
	}
	return out, nil
}
