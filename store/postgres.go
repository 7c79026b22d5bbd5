package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the fleet store: several certd hosts share one PostgreSQL
// database, and leases (lease.go) decide which host works what. Secrets
// are sealed (Options.Sealer is required): the database, its backups and
// its replicas never hold a private key in the clear.
//
// The DSN holds a password: it is never put in an error or a log; errors
// name the operation, and the server's host and port when connecting.
type Postgres struct {
	pool *pgxpool.Pool
	now  func() time.Time
	seal Sealer
}

var _ Store = (*Postgres)(nil)

// pgNow is the database's clock in unix milliseconds, the only clock
// leases run on: hosts' clocks disagree, the database's is one.
// clock_timestamp() (not now()) so a long transaction does not see time
// stand still.
const pgNow = `(extract(epoch from clock_timestamp())*1000)::bigint`

// pgMigrationLock is the pg_advisory_xact_lock key the migrations run
// under ("certd" in ASCII), so daemons starting together migrate once.
const pgMigrationLock = 0x6365727464

// OpenPostgres connects to the PostgreSQL database at dsn, brings its
// schema up to date and checks opts.Sealer is the key the database was
// written with (the first open stores a check value). opts.Exclusive is
// ignored: many daemons share one database, and leases, not a lock, keep
// them apart. opts.Now is the clock of created_at and updated_at; leases
// use the database's clock.
func OpenPostgres(ctx context.Context, dsn string, opts Options) (*Postgres, error) {
	if opts.Sealer == nil {
		return nil, errors.New("store: postgresql: an encryption key is required (the database holds private keys; certd fleet keygen prints one)")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgconn's message quotes the DSN with the password redacted at
		// best effort, and its cause may quote any part of it: say only
		// that it is wrong.
		return nil, errors.New("store: postgresql: the connection string cannot be parsed (postgres://USER:PASSWORD@HOST:PORT/DATABASE?OPTIONS or key=value pairs)")
	}
	where := fmt.Sprintf("%s:%d", cfg.ConnConfig.Host, cfg.ConnConfig.Port)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: postgresql: connecting to %s: %w", where, err)
	}
	p := &Postgres{pool: pool, now: opts.Now, seal: opts.Sealer}
	if err := p.migrate(ctx, where); err != nil {
		pool.Close()
		return nil, err
	}
	return p, nil
}

// Close closes the pool's connections.
func (p *Postgres) Close() error {
	p.pool.Close()
	return nil
}

func (p *Postgres) migrate(ctx context.Context, where string) error {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("store: postgresql: connecting to %s: %w", where, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(pgMigrationLock)); err != nil {
		return fmt.Errorf("store: postgresql: locking the schema for migration: %w", err)
	}
	if _, err := tx.Exec(ctx, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"); err != nil {
		return fmt.Errorf("store: postgresql: reading schema version: %w", err)
	}
	var v int
	err = tx.QueryRow(ctx, "SELECT version FROM schema_version").Scan(&v)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if _, err := tx.Exec(ctx, "INSERT INTO schema_version (version) VALUES (0)"); err != nil {
			return fmt.Errorf("store: postgresql: writing schema version: %w", err)
		}
	case err != nil:
		return fmt.Errorf("store: postgresql: reading schema version: %w", err)
	}
	if v > len(pgMigrations) {
		return fmt.Errorf("%w: the postgresql database has schema version %d, this certd knows up to %d; run a newer certd", ErrSchemaNewer, v, len(pgMigrations))
	}
	for i := v; i < len(pgMigrations); i++ {
		if _, err := tx.Exec(ctx, pgMigrations[i]); err != nil {
			return fmt.Errorf("store: postgresql: migration %d: %w", i+1, err)
		}
		if _, err := tx.Exec(ctx, "UPDATE schema_version SET version = $1", i+1); err != nil {
			return fmt.Errorf("store: postgresql: migration %d: %w", i+1, err)
		}
	}
	if err := p.checkSeal(ctx, tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("store: postgresql: committing migrations: %w", err)
	}
	return nil
}

// checkSeal writes the seal check on a new database, and on any other
// refuses a key that does not open it: a daemon with another key would
// store keys no other host can open, and open none of theirs.
func (p *Postgres) checkSeal(ctx context.Context, tx pgx.Tx) error {
	var check []byte
	err := tx.QueryRow(ctx, "SELECT value FROM store_meta WHERE name = 'seal_check'").Scan(&check)
	if errors.Is(err, pgx.ErrNoRows) {
		sealed, err := p.seal.Seal(sealCheck, nil)
		if err != nil {
			return fmt.Errorf("store: postgresql: sealing the key check: %w", err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO store_meta (name, value) VALUES ('seal_check', $1)", sealed); err != nil {
			return fmt.Errorf("store: postgresql: storing the key check: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: postgresql: reading the key check: %w", err)
	}
	plain, err := p.seal.Open(check, nil)
	if err != nil || string(plain) != string(sealCheck) {
		return fmt.Errorf("%w: the encryption key is not the one this database was written with", ErrSealed)
	}
	return nil
}

// write runs fn in one transaction, fenced by the lease ctx carries (if
// any): the lease row is read FOR SHARE first, so the write commits only
// while the lease is current and unexpired by the database's clock, and a
// takeover of the lease waits until the write commits. Every write method
// goes through here. Errors from fn are returned as they are (fn names its
// step); what names the write in the helper's own errors.
func (p *Postgres) write(ctx context.Context, what string, fn func(pgx.Tx) error) error {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("store: %s: %w", what, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if l, ok := LeaseFrom(ctx); ok {
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM leases WHERE resource = $1 AND holder = $2 AND token = $3 AND expires_at > `+pgNow+` FOR SHARE`,
			l.Resource, l.Holder, l.Token).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %s: the lease on %s (token %d) is no longer %s's", ErrLeaseLost, what, l.Resource, l.Token, l.Holder)
		}
		if err != nil {
			return fmt.Errorf("store: %s: checking the lease on %s: %w", what, l.Resource, err)
		}
	}
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("store: %s: committing: %w", what, err)
	}
	return nil
}

func pgUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

func pgNotFound(err error, what string) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: %s", ErrNotFound, what)
	}
	return fmt.Errorf("store: %s: %w", what, err)
}

// pms converts a time to unix milliseconds; the zero time is NULL.
func pms(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	v := t.UnixMilli()
	return &v
}

func fromPms(v *int64) time.Time {
	if v == nil {
		return time.Time{}
	}
	return time.UnixMilli(*v).UTC()
}

// pgQueryAll runs q and scans every row with scan; what names the listing
// in errors.
func pgQueryAll[T any](ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, what string, scan func(pgx.Row) (T, error), sql string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("store: listing %s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("store: listing %s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: listing %s: %w", what, err)
	}
	return out, nil
}

// --- certificates

// pgCertRowCols are a certificate's own columns, pgCertCols those and its
// current version's.
const pgCertRowCols = `c.name, c.account, c.domains, c.key_type, c.spec_hash, c.state, c.current_version,
	c.next_action, c.next_action_at, c.failures, c.last_error, c.retry_after, c.created_at, c.updated_at`

const pgCertCols = pgCertRowCols + `,
	v.id, v.serial, v.not_before, v.not_after, v.fingerprint`

const pgCertFrom = ` FROM certificates c LEFT JOIN cert_versions v ON v.id = c.current_version `

func pgScanCert(r pgx.Row, extra ...any) (Certificate, error) {
	var c Certificate
	var domains string
	var next, retry, created, updated *int64
	var vid, nb, na *int64
	var serial, fp *string
	dest := []any{&c.Name, &c.Account, &domains, &c.KeyType, &c.SpecHash, &c.State, &c.CurrentVersion,
		&c.NextAction, &next, &c.Failures, &c.LastError, &retry, &created, &updated,
		&vid, &serial, &nb, &na, &fp}
	if err := r.Scan(append(dest, extra...)...); err != nil {
		return c, err
	}
	if err := json.Unmarshal([]byte(domains), &c.Domains); err != nil {
		return c, fmt.Errorf("decoding domains of %s: %w", c.Name, err)
	}
	c.NextActionAt, c.RetryAfter, c.CreatedAt, c.UpdatedAt = fromPms(next), fromPms(retry), fromPms(created), fromPms(updated)
	if vid != nil {
		c.Current = &Version{ID: *vid, CertName: c.Name, NotBefore: fromPms(nb), NotAfter: fromPms(na)}
		if serial != nil {
			c.Current.Serial = *serial
		}
		if fp != nil {
			c.Current.Fingerprint = *fp
		}
	}
	return c, nil
}

func pgScanCertRow(r pgx.Row) (Certificate, error) { return pgScanCert(r) }

// GetCertificate implements Certificates.
func (p *Postgres) GetCertificate(ctx context.Context, name string) (Certificate, error) {
	c, err := pgScanCert(p.pool.QueryRow(ctx, "SELECT "+pgCertCols+pgCertFrom+"WHERE c.name = $1", name))
	if err != nil {
		return c, pgNotFound(err, "certificate "+name)
	}
	return c, nil
}

// SaveCertificate implements Certificates.
func (p *Postgres) SaveCertificate(ctx context.Context, c Certificate) error {
	domains, err := json.Marshal(c.Domains)
	if err != nil {
		return fmt.Errorf("store: saving certificate %s: %w", c.Name, err)
	}
	what := "saving certificate " + c.Name
	return p.write(ctx, what, func(tx pgx.Tx) error {
		now := pms(p.now())
		_, err := tx.Exec(ctx, `
INSERT INTO certificates (name, account, domains, key_type, spec_hash, state, current_version,
	next_action, next_action_at, failures, last_error, retry_after, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (name) DO UPDATE SET account = excluded.account, domains = excluded.domains,
	key_type = excluded.key_type, spec_hash = excluded.spec_hash, state = excluded.state,
	current_version = excluded.current_version, next_action = excluded.next_action,
	next_action_at = excluded.next_action_at, failures = excluded.failures,
	last_error = excluded.last_error, retry_after = excluded.retry_after, updated_at = excluded.updated_at`,
			c.Name, c.Account, string(domains), c.KeyType, c.SpecHash, c.State, c.CurrentVersion,
			c.NextAction, pms(c.NextActionAt), c.Failures, c.LastError, pms(c.RetryAfter), now, now)
		if err != nil {
			return fmt.Errorf("store: %s: %w", what, err)
		}
		return nil
	})
}

// InsertCertificate implements Certificates.
func (p *Postgres) InsertCertificate(ctx context.Context, c Certificate) error {
	domains, err := json.Marshal(c.Domains)
	if err != nil {
		return fmt.Errorf("store: inserting certificate %s: %w", c.Name, err)
	}
	what := "inserting certificate " + c.Name
	return p.write(ctx, what, func(tx pgx.Tx) error {
		now := pms(p.now())
		tag, err := tx.Exec(ctx, `
INSERT INTO certificates (name, account, domains, key_type, spec_hash, state, current_version,
	next_action, next_action_at, failures, last_error, retry_after, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (name) DO NOTHING`,
			c.Name, c.Account, string(domains), c.KeyType, c.SpecHash, c.State, c.CurrentVersion,
			c.NextAction, pms(c.NextActionAt), c.Failures, c.LastError, pms(c.RetryAfter), now, now)
		if err != nil {
			return fmt.Errorf("store: %s: %w", what, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: certificate %s", ErrExists, c.Name)
		}
		return nil
	})
}

// UpdateCertificate implements Certificates: the row is read FOR UPDATE,
// so concurrent updates of one certificate queue instead of losing one.
func (p *Postgres) UpdateCertificate(ctx context.Context, name string, fn func(*Certificate) error) error {
	what := "updating certificate " + name
	return p.write(ctx, what, func(tx pgx.Tx) error {
		c, err := pgScanCert(tx.QueryRow(ctx, "SELECT "+pgCertCols+pgCertFrom+"WHERE c.name = $1 FOR UPDATE OF c", name))
		if err != nil {
			return pgNotFound(err, "certificate "+name)
		}
		if err := fn(&c); err != nil {
			return err
		}
		domains, err := json.Marshal(c.Domains)
		if err != nil {
			return fmt.Errorf("store: %s: %w", what, err)
		}
		_, err = tx.Exec(ctx, `UPDATE certificates SET account = $2, domains = $3, key_type = $4, spec_hash = $5, state = $6,
	current_version = $7, next_action = $8, next_action_at = $9, failures = $10, last_error = $11, retry_after = $12,
	updated_at = $13 WHERE name = $1`,
			name, c.Account, string(domains), c.KeyType, c.SpecHash, c.State, c.CurrentVersion,
			c.NextAction, pms(c.NextActionAt), c.Failures, c.LastError, pms(c.RetryAfter), pms(p.now()))
		if err != nil {
			return fmt.Errorf("store: %s: %w", what, err)
		}
		return nil
	})
}

// ListCertificates implements Certificates.
func (p *Postgres) ListCertificates(ctx context.Context) ([]Certificate, error) {
	return pgQueryAll(ctx, p.pool, "certificates", pgScanCertRow, "SELECT "+pgCertCols+pgCertFrom+"ORDER BY c.name")
}

// DueCertificates implements Certificates.
func (p *Postgres) DueCertificates(ctx context.Context, now time.Time, limit int) ([]Certificate, error) {
	return pgQueryAll(ctx, p.pool, "certificates", pgScanCertRow, "SELECT "+pgCertCols+pgCertFrom+
		"WHERE c.next_action_at IS NOT NULL AND c.next_action_at <= $1 ORDER BY c.next_action_at LIMIT $2", now.UnixMilli(), limit)
}

// --- claims

const pgClaimCols = `account, domain, ca_claim_id, token, status, method, assert_by, expires_at,
	next_action, next_action_at, failures, last_error, updated_at`

func pgScanClaim(r pgx.Row) (Claim, error) {
	var c Claim
	var ab, ea, next, upd *int64
	err := r.Scan(&c.Account, &c.Domain, &c.CAClaimID, &c.Token, &c.Status, &c.Method, &ab, &ea,
		&c.NextAction, &next, &c.Failures, &c.LastError, &upd)
	c.AssertBy, c.ExpiresAt, c.NextActionAt, c.UpdatedAt = fromPms(ab), fromPms(ea), fromPms(next), fromPms(upd)
	return c, err
}

// GetClaim implements Claims.
func (p *Postgres) GetClaim(ctx context.Context, account, domain string) (Claim, error) {
	c, err := pgScanClaim(p.pool.QueryRow(ctx, "SELECT "+pgClaimCols+" FROM claims WHERE account = $1 AND domain = $2", account, domain))
	if err != nil {
		return c, pgNotFound(err, "claim "+account+"/"+domain)
	}
	return c, nil
}

// SaveClaim implements Claims.
func (p *Postgres) SaveClaim(ctx context.Context, c Claim) error {
	what := "saving claim " + c.Account + "/" + c.Domain
	return p.write(ctx, what, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
INSERT INTO claims (`+pgClaimCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (account, domain) DO UPDATE SET ca_claim_id = excluded.ca_claim_id, token = excluded.token, status = excluded.status,
	method = excluded.method, assert_by = excluded.assert_by, expires_at = excluded.expires_at,
	next_action = excluded.next_action, next_action_at = excluded.next_action_at,
	failures = excluded.failures, last_error = excluded.last_error, updated_at = excluded.updated_at`,
			c.Account, c.Domain, c.CAClaimID, c.Token, c.Status, c.Method, pms(c.AssertBy), pms(c.ExpiresAt),
			c.NextAction, pms(c.NextActionAt), c.Failures, c.LastError, pms(p.now()))
		if err != nil {
			return fmt.Errorf("store: %s: %w", what, err)
		}
		return nil
	})
}

// UpdateClaim implements Claims.
func (p *Postgres) UpdateClaim(ctx context.Context, account, domain string, fn func(*Claim) error) error {
	what := "updating claim " + account + "/" + domain
	return p.write(ctx, what, func(tx pgx.Tx) error {
		c, err := pgScanClaim(tx.QueryRow(ctx, "SELECT "+pgClaimCols+" FROM claims WHERE account = $1 AND domain = $2 FOR UPDATE", account, domain))
		if err != nil {
			return pgNotFound(err, "claim "+account+"/"+domain)
		}
		if err := fn(&c); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE claims SET ca_claim_id = $3, token = $4, status = $5, method = $6, assert_by = $7,
	expires_at = $8, next_action = $9, next_action_at = $10, failures = $11, last_error = $12, updated_at = $13
	WHERE account = $1 AND domain = $2`,
			account, domain, c.CAClaimID, c.Token, c.Status, c.Method, pms(c.AssertBy), pms(c.ExpiresAt),
			c.NextAction, pms(c.NextActionAt), c.Failures, c.LastError, pms(p.now()))
		if err != nil {
			return fmt.Errorf("store: %s: %w", what, err)
		}
		return nil
	})
}

// ListClaims implements Claims.
func (p *Postgres) ListClaims(ctx context.Context) ([]Claim, error) {
	return pgQueryAll(ctx, p.pool, "claims", pgScanClaim, "SELECT "+pgClaimCols+" FROM claims ORDER BY account, domain")
}

// DueClaims implements Claims.
func (p *Postgres) DueClaims(ctx context.Context, now time.Time, limit int) ([]Claim, error) {
	return pgQueryAll(ctx, p.pool, "claims", pgScanClaim, "SELECT "+pgClaimCols+
		" FROM claims WHERE next_action_at IS NOT NULL AND next_action_at <= $1 ORDER BY next_action_at LIMIT $2", now.UnixMilli(), limit)
}

// --- orders and keys

const pgOrderCols = `id, idempotency_key, cert_name, account, generation, key_id, csr, spec_hash, state,
	ca_ref, last_error, next_poll_at, sent_at, created_at, updated_at`

func pgScanOrder(r pgx.Row) (Order, error) {
	var o Order
	var next, sent, created, updated *int64
	err := r.Scan(&o.ID, &o.IdempotencyKey, &o.CertName, &o.Account, &o.Generation, &o.KeyID, &o.CSR,
		&o.SpecHash, &o.State, &o.CARef, &o.LastError, &next, &sent, &created, &updated)
	o.NextPollAt, o.SentAt, o.CreatedAt, o.UpdatedAt = fromPms(next), fromPms(sent), fromPms(created), fromPms(updated)
	return o, err
}

// CreateOrder implements Orders. The key is sealed, bound to its
// certificate and public key.
func (p *Postgres) CreateOrder(ctx context.Context, o Order, key PrivateKey) (int64, error) {
	sealed, err := p.seal.Seal(key.PEM, keyAAD(key.CertName, key.PublicSHA))
	if err != nil {
		return 0, fmt.Errorf("store: sealing key for %s: %w", key.CertName, err)
	}
	var id int64
	err = p.write(ctx, "creating order for "+o.CertName, func(tx pgx.Tx) error {
		now := pms(p.now())
		var keyID int64
		err := tx.QueryRow(ctx, `INSERT INTO private_keys (cert_name, key_type, key_pem, public_sha, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id`,
			key.CertName, key.KeyType, sealed, key.PublicSHA, now).Scan(&keyID)
		if err != nil {
			return fmt.Errorf("store: storing key for %s: %w", key.CertName, err)
		}
		err = tx.QueryRow(ctx, `INSERT INTO orders (idempotency_key, cert_name, account, generation, key_id, csr,
	spec_hash, state, ca_ref, last_error, next_poll_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id`,
			o.IdempotencyKey, o.CertName, o.Account, o.Generation, keyID, o.CSR, o.SpecHash, o.State, o.CARef, o.LastError, pms(o.NextPollAt), now, now).Scan(&id)
		if err != nil {
			if pgUnique(err) {
				return fmt.Errorf("%w: order %s (generation %d of %s)", ErrExists, o.IdempotencyKey, o.Generation, o.CertName)
			}
			return fmt.Errorf("store: creating order for %s: %w", o.CertName, err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return id, nil
}

// GetOrder implements Orders.
func (p *Postgres) GetOrder(ctx context.Context, id int64) (Order, error) {
	o, err := pgScanOrder(p.pool.QueryRow(ctx, "SELECT "+pgOrderCols+" FROM orders WHERE id = $1", id))
	if err != nil {
		return o, pgNotFound(err, fmt.Sprintf("order %d", id))
	}
	return o, nil
}

// GetOrderByKey implements Orders.
func (p *Postgres) GetOrderByKey(ctx context.Context, key string) (Order, error) {
	o, err := pgScanOrder(p.pool.QueryRow(ctx, "SELECT "+pgOrderCols+" FROM orders WHERE idempotency_key = $1", key))
	if err != nil {
		return o, pgNotFound(err, "order "+key)
	}
	return o, nil
}

// LatestOrder implements Orders.
func (p *Postgres) LatestOrder(ctx context.Context, certName string) (Order, error) {
	o, err := pgScanOrder(p.pool.QueryRow(ctx, "SELECT "+pgOrderCols+" FROM orders WHERE cert_name = $1 ORDER BY generation DESC LIMIT 1", certName))
	if err != nil {
		return o, pgNotFound(err, "orders of "+certName)
	}
	return o, nil
}

// SaveOrder implements Orders. The idempotency key, certificate,
// generation and key of an order never change.
func (p *Postgres) SaveOrder(ctx context.Context, o Order) error {
	what := fmt.Sprintf("saving order %d", o.ID)
	return p.write(ctx, what, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE orders SET state = $1, ca_ref = $2, last_error = $3, next_poll_at = $4, sent_at = $5, updated_at = $6 WHERE id = $7`,
			o.State, o.CARef, o.LastError, pms(o.NextPollAt), pms(o.SentAt), pms(p.now()), o.ID)
		if err != nil {
			return fmt.Errorf("store: %s: %w", what, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: order %d", ErrNotFound, o.ID)
		}
		return nil
	})
}

// OpenOrders implements Orders.
func (p *Postgres) OpenOrders(ctx context.Context) ([]Order, error) {
	return pgQueryAll(ctx, p.pool, "open orders", pgScanOrder,
		"SELECT "+pgOrderCols+" FROM orders WHERE state NOT IN ('issued', 'failed', 'abandoned') ORDER BY id")
}

// GetKey implements Orders.
func (p *Postgres) GetKey(ctx context.Context, id int64) (PrivateKey, error) {
	var k PrivateKey
	var created *int64
	err := p.pool.QueryRow(ctx, "SELECT id, cert_name, key_type, key_pem, public_sha, created_at FROM private_keys WHERE id = $1", id).
		Scan(&k.ID, &k.CertName, &k.KeyType, &k.PEM, &k.PublicSHA, &created)
	if err != nil {
		return k, pgNotFound(err, fmt.Sprintf("key %d", id))
	}
	k.CreatedAt = fromPms(created)
	if k.PEM, err = p.seal.Open(k.PEM, keyAAD(k.CertName, k.PublicSHA)); err != nil {
		return PrivateKey{}, fmt.Errorf("store: reading key %d of %s: %w", id, k.CertName, err)
	}
	return k, nil
}

// --- versions

const pgVersionCols = `id, cert_name, order_id, key_id, serial, not_before, not_after, fingerprint, cert_pem, chain_pem, created_at`

func pgScanVersion(r pgx.Row) (Version, error) {
	var v Version
	var order, nb, na, created *int64
	err := r.Scan(&v.ID, &v.CertName, &order, &v.KeyID, &v.Serial, &nb, &na, &v.Fingerprint, &v.CertPEM, &v.ChainPEM, &created)
	if order != nil {
		v.OrderID = *order
	}
	v.NotBefore, v.NotAfter, v.CreatedAt = fromPms(nb), fromPms(na), fromPms(created)
	return v, err
}

func nullID(id int64) *int64 {
	if id == 0 {
		return nil
	}
	return &id
}

// AddVersion implements Versions.
func (p *Postgres) AddVersion(ctx context.Context, v Version) (int64, error) {
	var id int64
	what := "adding version of " + v.CertName
	err := p.write(ctx, what, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO cert_versions (cert_name, order_id, key_id, serial, not_before, not_after,
	fingerprint, cert_pem, chain_pem, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id`,
			v.CertName, nullID(v.OrderID), v.KeyID, v.Serial, pms(v.NotBefore), pms(v.NotAfter), v.Fingerprint, v.CertPEM, v.ChainPEM, pms(p.now())).Scan(&id)
		if err != nil {
			return fmt.Errorf("store: %s: %w", what, err)
		}
		return nil
	})
	return id, err
}

// GetVersion implements Versions.
func (p *Postgres) GetVersion(ctx context.Context, id int64) (Version, error) {
	v, err := pgScanVersion(p.pool.QueryRow(ctx, "SELECT "+pgVersionCols+" FROM cert_versions WHERE id = $1", id))
	if err != nil {
		return v, pgNotFound(err, fmt.Sprintf("version %d", id))
	}
	return v, nil
}

// ListVersions implements Versions, newest first.
func (p *Postgres) ListVersions(ctx context.Context, certName string) ([]Version, error) {
	return pgQueryAll(ctx, p.pool, "versions", pgScanVersion,
		"SELECT "+pgVersionCols+" FROM cert_versions WHERE cert_name = $1 ORDER BY id DESC", certName)
}

// --- DCV artefacts

// JournalArtefact implements Artefacts.
func (p *Postgres) JournalArtefact(ctx context.Context, a Artefact) (int64, error) {
	if a.State == "" {
		a.State = ArtefactIntent
	}
	var id int64
	what := fmt.Sprintf("journaling %s %s", a.Kind, a.Name)
	err := p.write(ctx, what, func(tx pgx.Tx) error {
		now := pms(p.now())
		err := tx.QueryRow(ctx, `INSERT INTO dcv_artefacts (owner, kind, provider, zone, name, value, state, attempts,
	last_error, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id`,
			a.Owner, a.Kind, a.Provider, a.Zone, a.Name, a.Value, a.State, a.Attempts, a.LastError, now, now).Scan(&id)
		if err != nil {
			return fmt.Errorf("store: %s: %w", what, err)
		}
		return nil
	})
	return id, err
}

// SaveArtefact implements Artefacts.
func (p *Postgres) SaveArtefact(ctx context.Context, a Artefact) error {
	what := fmt.Sprintf("saving artefact %d", a.ID)
	return p.write(ctx, what, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE dcv_artefacts SET zone = $1, state = $2, attempts = $3, last_error = $4, updated_at = $5 WHERE id = $6`,
			a.Zone, a.State, a.Attempts, a.LastError, pms(p.now()), a.ID)
		if err != nil {
			return fmt.Errorf("store: %s: %w", what, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: artefact %d", ErrNotFound, a.ID)
		}
		return nil
	})
}

// LiveArtefacts implements Artefacts.
func (p *Postgres) LiveArtefacts(ctx context.Context) ([]Artefact, error) {
	return pgQueryAll(ctx, p.pool, "artefacts", func(r pgx.Row) (Artefact, error) {
		var a Artefact
		var created, updated *int64
		err := r.Scan(&a.ID, &a.Owner, &a.Kind, &a.Provider, &a.Zone, &a.Name, &a.Value, &a.State, &a.Attempts,
			&a.LastError, &created, &updated)
		a.CreatedAt, a.UpdatedAt = fromPms(created), fromPms(updated)
		return a, err
	}, `SELECT id, owner, kind, provider, zone, name, value, state, attempts, last_error,
	created_at, updated_at FROM dcv_artefacts WHERE state != 'removed' ORDER BY id`)
}

// --- deployments

// AddDeployment implements Deployments.
func (p *Postgres) AddDeployment(ctx context.Context, d Deployment) (int64, error) {
	if d.StartedAt.IsZero() {
		d.StartedAt = p.now()
	}
	var id int64
	what := "adding deployment of " + d.CertName
	err := p.write(ctx, what, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO deployments (host, cert_name, version_id, dir, state, error, started_at, finished_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
			d.Host, d.CertName, d.VersionID, d.Dir, d.State, d.Error, pms(d.StartedAt), pms(d.FinishedAt)).Scan(&id)
		if err != nil {
			return fmt.Errorf("store: %s: %w", what, err)
		}
		return nil
	})
	return id, err
}

// SaveDeployment implements Deployments.
func (p *Postgres) SaveDeployment(ctx context.Context, d Deployment) error {
	what := fmt.Sprintf("saving deployment %d", d.ID)
	return p.write(ctx, what, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE deployments SET state = $1, error = $2, finished_at = $3 WHERE id = $4`,
			d.State, d.Error, pms(d.FinishedAt), d.ID)
		if err != nil {
			return fmt.Errorf("store: %s: %w", what, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: deployment %d", ErrNotFound, d.ID)
		}
		return nil
	})
}

// ListDeployments implements Deployments, newest first.
func (p *Postgres) ListDeployments(ctx context.Context, certName string) ([]Deployment, error) {
	return pgQueryAll(ctx, p.pool, "deployments", func(r pgx.Row) (Deployment, error) {
		var d Deployment
		var started, finished *int64
		err := r.Scan(&d.ID, &d.Host, &d.CertName, &d.VersionID, &d.Dir, &d.State, &d.Error, &started, &finished)
		d.StartedAt, d.FinishedAt = fromPms(started), fromPms(finished)
		return d, err
	}, `SELECT id, host, cert_name, version_id, dir, state, error, started_at, finished_at
	FROM deployments WHERE cert_name = $1 ORDER BY id DESC`, certName)
}

// --- events

// AppendEvent implements Events. The database refuses to update or
// delete an event (a trigger).
func (p *Postgres) AppendEvent(ctx context.Context, e Event) (int64, error) {
	if e.At.IsZero() {
		e.At = p.now()
	}
	fields := []byte("{}")
	if len(e.Fields) > 0 {
		var err error
		if fields, err = json.Marshal(e.Fields); err != nil {
			return 0, fmt.Errorf("store: appending event: %w", err)
		}
	}
	var id int64
	err := p.write(ctx, "appending event", func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO events (at, level, kind, cert_name, claim, account, message, fields)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
			pms(e.At), e.Level, e.Kind, e.CertName, e.Claim, e.Account, e.Message, string(fields)).Scan(&id)
		if err != nil {
			return fmt.Errorf("store: appending event: %w", err)
		}
		return nil
	})
	return id, err
}

// ListEvents implements Events.
func (p *Postgres) ListEvents(ctx context.Context, f EventFilter) ([]Event, error) {
	q := `SELECT id, at, level, kind, cert_name, claim, account, message, fields FROM events WHERE true`
	var args []any
	if f.CertName != "" {
		args = append(args, f.CertName)
		q += fmt.Sprintf(" AND cert_name = $%d", len(args))
	}
	if !f.Since.IsZero() {
		args = append(args, f.Since.UnixMilli())
		q += fmt.Sprintf(" AND at >= $%d", len(args))
	}
	q += " ORDER BY id DESC"
	if f.Limit > 0 {
		args = append(args, f.Limit)
		q += fmt.Sprintf(" LIMIT $%d", len(args))
	}
	out, err := pgQueryAll(ctx, p.pool, "events", func(r pgx.Row) (Event, error) {
		var e Event
		var at *int64
		var fields string
		if err := r.Scan(&e.ID, &at, &e.Level, &e.Kind, &e.CertName, &e.Claim, &e.Account, &e.Message, &fields); err != nil {
			return e, err
		}
		e.At = fromPms(at)
		if fields != "{}" {
			if err := json.Unmarshal([]byte(fields), &e.Fields); err != nil {
				return e, fmt.Errorf("decoding event %d: %w", e.ID, err)
			}
		}
		return e, nil
	}, q, args...)
	if err != nil {
		return nil, err
	}
	slices.Reverse(out) // oldest first
	return out, nil
}

// --- CA accounts

// GetCAAccount implements CAAccounts.
func (p *Postgres) GetCAAccount(ctx context.Context, account, endpoint string) (CAAccount, error) {
	a := CAAccount{Account: account, Endpoint: endpoint}
	var created, updated *int64
	err := p.pool.QueryRow(ctx, "SELECT key_pem, ref, binding_id, created_at, updated_at FROM ca_accounts WHERE account = $1 AND endpoint = $2",
		account, endpoint).Scan(&a.KeyPEM, &a.Ref, &a.BindingID, &created, &updated)
	if err != nil {
		return a, pgNotFound(err, fmt.Sprintf("CA account %s at %s", account, endpoint))
	}
	a.CreatedAt, a.UpdatedAt = fromPms(created), fromPms(updated)
	if a.KeyPEM, err = p.seal.Open(a.KeyPEM, accountAAD(account, endpoint)); err != nil {
		return CAAccount{}, fmt.Errorf("store: reading CA account %s at %s: %w", account, endpoint, err)
	}
	return a, nil
}

// SaveCAAccount implements CAAccounts. The key is sealed, bound to the
// account and endpoint.
func (p *Postgres) SaveCAAccount(ctx context.Context, a CAAccount) error {
	if a.Account == "" || a.Endpoint == "" || len(a.KeyPEM) == 0 {
		return errors.New("store: a CA account needs a name, an endpoint and a key")
	}
	sealed, err := p.seal.Seal(a.KeyPEM, accountAAD(a.Account, a.Endpoint))
	if err != nil {
		return fmt.Errorf("store: sealing the key of CA account %s: %w", a.Account, err)
	}
	what := "saving CA account " + a.Account
	return p.write(ctx, what, func(tx pgx.Tx) error {
		now := pms(p.now())
		_, err := tx.Exec(ctx, `INSERT INTO ca_accounts (account, endpoint, key_pem, ref, binding_id, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (account, endpoint) DO UPDATE SET key_pem = excluded.key_pem, ref = excluded.ref,
			binding_id = excluded.binding_id, updated_at = excluded.updated_at`,
			a.Account, a.Endpoint, sealed, a.Ref, a.BindingID, now, now)
		if err != nil {
			return fmt.Errorf("store: %s: %w", what, err)
		}
		return nil
	})
}

// --- account holds

// SetAccountHold implements AccountHolds.
func (p *Postgres) SetAccountHold(ctx context.Context, h AccountHold) error {
	what := "saving the hold on account " + h.Account
	return p.write(ctx, what, func(tx pgx.Tx) error {
		// until is NOT NULL: a lifted hold (zero Until) is stored as 0,
		// which reads back as the zero time.
		var until int64
		if !h.Until.IsZero() {
			until = h.Until.UnixMilli()
		}
		_, err := tx.Exec(ctx, `INSERT INTO account_holds (account, until, reason, updated_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (account) DO UPDATE SET until = excluded.until, reason = excluded.reason, updated_at = excluded.updated_at`,
			h.Account, until, h.Reason, pms(p.now()))
		if err != nil {
			return fmt.Errorf("store: %s: %w", what, err)
		}
		return nil
	})
}

// AccountHolds implements AccountHolds.
func (p *Postgres) AccountHolds(ctx context.Context) ([]AccountHold, error) {
	return pgQueryAll(ctx, p.pool, "account holds", func(r pgx.Row) (AccountHold, error) {
		var h AccountHold
		var until, updated *int64
		err := r.Scan(&h.Account, &until, &h.Reason, &updated)
		if until != nil && *until != 0 {
			h.Until = fromPms(until)
		}
		h.UpdatedAt = fromPms(updated)
		return h, err
	}, "SELECT account, until, reason, updated_at FROM account_holds ORDER BY account")
}

// --- passes

// RecordPass implements Passes: it replaces p.Host's last pass.
func (p *Postgres) RecordPass(ctx context.Context, ps Pass) error {
	if ps.FinishedAt.IsZero() {
		ps.FinishedAt = p.now()
	}
	return p.write(ctx, "recording the last pass", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO passes (host, finished_at, pid, worked) VALUES ($1, $2, $3, $4)
		ON CONFLICT (host) DO UPDATE SET finished_at = excluded.finished_at, pid = excluded.pid, worked = excluded.worked`,
			ps.Host, pms(ps.FinishedAt), ps.PID, ps.Worked)
		if err != nil {
			return fmt.Errorf("store: recording the last pass: %w", err)
		}
		return nil
	})
}

func pgScanPass(r pgx.Row) (Pass, error) {
	var ps Pass
	var at *int64
	err := r.Scan(&ps.Host, &at, &ps.PID, &ps.Worked)
	ps.FinishedAt = fromPms(at)
	return ps, err
}

// LastPass implements Passes: the newest pass of any host.
func (p *Postgres) LastPass(ctx context.Context) (Pass, error) {
	ps, err := pgScanPass(p.pool.QueryRow(ctx, "SELECT host, finished_at, pid, worked FROM passes ORDER BY finished_at DESC, host LIMIT 1"))
	if err != nil {
		return ps, pgNotFound(err, "last pass")
	}
	return ps, nil
}

// ListPasses implements Passes.
func (p *Postgres) ListPasses(ctx context.Context) ([]Pass, error) {
	return pgQueryAll(ctx, p.pool, "passes", pgScanPass, "SELECT host, finished_at, pid, worked FROM passes ORDER BY host")
}

// --- hosts

// SetHostCertificates implements Hosts, in one transaction.
func (p *Postgres) SetHostCertificates(ctx context.Context, host string, specs map[string]string) error {
	what := "listing the certificates of host " + host
	return p.write(ctx, what, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM host_certificates WHERE host = $1", host); err != nil {
			return fmt.Errorf("store: %s: %w", what, err)
		}
		if len(specs) == 0 {
			return nil
		}
		names, hashes := make([]string, 0, len(specs)), make([]string, 0, len(specs))
		for n, h := range specs {
			names, hashes = append(names, n), append(hashes, h)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO host_certificates (host, cert_name, spec_hash)
	SELECT $1, n, h FROM unnest($2::text[], $3::text[]) AS x(n, h) ON CONFLICT DO NOTHING`, host, names, hashes); err != nil {
			return fmt.Errorf("store: %s: %w", what, err)
		}
		return nil
	})
}

// HostCertificates implements Hosts.
func (p *Postgres) HostCertificates(ctx context.Context) (map[string]map[string]string, error) {
	type row struct{ host, name, hash string }
	rows, err := pgQueryAll(ctx, p.pool, "host certificates", func(r pgx.Row) (row, error) {
		var x row
		err := r.Scan(&x.host, &x.name, &x.hash)
		return x, err
	}, "SELECT host, cert_name, spec_hash FROM host_certificates ORDER BY host, cert_name")
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]string{}
	for _, x := range rows {
		if out[x.host] == nil {
			out[x.host] = map[string]string{}
		}
		out[x.host][x.name] = x.hash
	}
	return out, nil
}

// --- leases

// AcquireLease implements Leases. One statement: the row is inserted, or
// taken over only when its lease has ended by the database's clock; a
// live lease returns no row.
func (p *Postgres) AcquireLease(ctx context.Context, resource, holder string, ttl time.Duration) (Lease, error) {
	l := Lease{Resource: resource, Holder: holder}
	var expires, remaining int64
	err := p.pool.QueryRow(ctx, `
WITH n AS (SELECT `+pgNow+` AS ms)
INSERT INTO leases AS l (resource, holder, token, expires_at)
SELECT $1, $2, nextval('lease_tokens'), n.ms + $3 FROM n
ON CONFLICT (resource) DO UPDATE SET holder = excluded.holder, token = excluded.token, expires_at = excluded.expires_at
	WHERE l.expires_at <= `+pgNow+`
RETURNING l.token, l.expires_at, l.expires_at - (SELECT ms FROM n)`, resource, holder, ttl.Milliseconds()).Scan(&l.Token, &expires, &remaining)
	if errors.Is(err, pgx.ErrNoRows) {
		return Lease{}, fmt.Errorf("%w: %s", ErrLeaseHeld, resource)
	}
	if err != nil {
		return Lease{}, fmt.Errorf("store: acquiring the lease on %s: %w", resource, err)
	}
	l.Expires, l.Remaining = time.UnixMilli(expires).UTC(), time.Duration(remaining)*time.Millisecond
	return l, nil
}

// RenewLease implements Leases.
func (p *Postgres) RenewLease(ctx context.Context, l Lease, ttl time.Duration) (Lease, error) {
	var expires, remaining int64
	err := p.pool.QueryRow(ctx, `
WITH n AS (SELECT `+pgNow+` AS ms)
UPDATE leases SET expires_at = n.ms + $4 FROM n
WHERE resource = $1 AND holder = $2 AND token = $3 AND expires_at > n.ms
RETURNING expires_at, expires_at - n.ms`, l.Resource, l.Holder, l.Token, ttl.Milliseconds()).Scan(&expires, &remaining)
	if errors.Is(err, pgx.ErrNoRows) {
		return Lease{}, fmt.Errorf("%w: renewing %s (token %d)", ErrLeaseLost, l.Resource, l.Token)
	}
	if err != nil {
		return Lease{}, fmt.Errorf("store: renewing the lease on %s: %w", l.Resource, err)
	}
	l.Expires, l.Remaining = time.UnixMilli(expires).UTC(), time.Duration(remaining)*time.Millisecond
	return l, nil
}

// ReleaseLease implements Leases: the lease's expiry becomes 0, so the
// next AcquireLease takes it over (with a new token).
func (p *Postgres) ReleaseLease(ctx context.Context, l Lease) error {
	tag, err := p.pool.Exec(ctx, `UPDATE leases SET expires_at = 0
WHERE resource = $1 AND holder = $2 AND token = $3 AND expires_at > `+pgNow, l.Resource, l.Holder, l.Token)
	if err != nil {
		return fmt.Errorf("store: releasing the lease on %s: %w", l.Resource, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: releasing %s (token %d)", ErrLeaseLost, l.Resource, l.Token)
	}
	return nil
}

// ListLeases implements Leases.
func (p *Postgres) ListLeases(ctx context.Context) ([]Lease, error) {
	return pgQueryAll(ctx, p.pool, "leases", func(r pgx.Row) (Lease, error) {
		var l Lease
		var expires, remaining int64
		err := r.Scan(&l.Resource, &l.Holder, &l.Token, &expires, &remaining)
		l.Expires, l.Remaining = time.UnixMilli(expires).UTC(), time.Duration(remaining)*time.Millisecond
		return l, err
	}, `WITH n AS (SELECT `+pgNow+` AS ms)
SELECT resource, holder, token, expires_at, expires_at - n.ms FROM leases, n WHERE expires_at > n.ms ORDER BY resource`)
}

// ClaimDueCertificates implements Leases, in one statement: the due
// certificates host lists and no live lease covers are locked FOR UPDATE
// SKIP LOCKED (rows another claimer is locking at that instant are
// skipped, not waited for), and leases on them are inserted or taken over
// with AcquireLease's guard, which re-checks against the latest committed
// lease; only the certificates whose lease was granted come back, read
// as they were locked (the lock holds their latest version).
//
// It waits for no claimer, but may wait for a writer: a fenced write that
// passed its check just before its lease expired holds the lease row FOR
// SHARE, and the takeover waits for it to commit. Should that write then
// also wait for a certificate row this claim locked, PostgreSQL detects
// the deadlock (deadlock_timeout, 1 s) and aborts one of the two; either
// way nothing is written twice, and the claim is retried on the next pass.
func (p *Postgres) ClaimDueCertificates(ctx context.Context, host, holder string, now time.Time, ttl time.Duration, limit int) ([]LeasedCertificate, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := p.pool.Query(ctx, `
WITH n AS (SELECT `+pgNow+` AS ms),
due AS (
	SELECT `+pgCertRowCols+` FROM certificates c
	WHERE c.next_action_at IS NOT NULL AND c.next_action_at <= $3
		-- OFFSET 0 keeps this a probe of the primary key per due row: as
		-- a join, the planner hashes all of the host's rows (10 ms at
		-- 100,000) to keep 1% of them.
		AND EXISTS (SELECT 1 FROM host_certificates h WHERE h.host = $1 AND h.cert_name = c.name AND h.spec_hash = c.spec_hash OFFSET 0)
		AND NOT EXISTS (SELECT 1 FROM leases l, n WHERE l.resource = 'cert:' || c.name AND l.expires_at > n.ms)
	ORDER BY c.next_action_at, c.name
	LIMIT $5
	FOR UPDATE OF c SKIP LOCKED
),
granted AS (
	INSERT INTO leases AS l (resource, holder, token, expires_at)
	SELECT 'cert:' || due.name, $2, nextval('lease_tokens'), n.ms + $4 FROM due, n
	ORDER BY due.next_action_at, due.name
	ON CONFLICT (resource) DO UPDATE SET holder = excluded.holder, token = excluded.token, expires_at = excluded.expires_at
		WHERE l.expires_at <= `+pgNow+`
	RETURNING l.resource, l.token, l.expires_at
)
SELECT `+strings.ReplaceAll(pgCertCols, "c.", "d.")+`, g.token, g.expires_at, g.expires_at - n.ms
FROM granted g JOIN due d ON g.resource = 'cert:' || d.name
	LEFT JOIN cert_versions v ON v.id = d.current_version, n
ORDER BY d.next_action_at, d.name`, host, holder, now.UnixMilli(), ttl.Milliseconds(), limit)
	if err != nil {
		return nil, fmt.Errorf("store: claiming due certificates for %s: %w", host, err)
	}
	defer rows.Close()
	var out []LeasedCertificate
	for rows.Next() {
		var token, expires, remaining int64
		c, err := pgScanCert(rows, &token, &expires, &remaining)
		if err != nil {
			return nil, fmt.Errorf("store: claiming due certificates for %s: %w", host, err)
		}
		out = append(out, LeasedCertificate{Certificate: c, Lease: Lease{
			Resource: CertificateResource(c.Name), Holder: holder, Token: token,
			Expires: time.UnixMilli(expires).UTC(), Remaining: time.Duration(remaining) * time.Millisecond,
		}})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: claiming due certificates for %s: %w", host, err)
	}
	// The statement orders them; keep the order whatever the plan.
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Certificate, out[j].Certificate
		if !a.NextActionAt.Equal(b.NextActionAt) {
			return a.NextActionAt.Before(b.NextActionAt)
		}
		return a.Name < b.Name
	})
	return out, nil
}
