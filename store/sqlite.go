package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Options tune Open.
type Options struct {
	// Exclusive takes the daemon lock (PATH.lock): a second Exclusive
	// open of the same store fails at once with ErrLocked. Readers such as
	// `certd status` open without it.
	Exclusive bool
	// Now is the clock used for created_at and updated_at (default
	// time.Now); SQLite's leases run on it too (one host, one clock).
	Now func() time.Time
	// Sealer, when set, encrypts private keys and CA account keys at
	// rest. PostgreSQL requires one; SQLite keeps keys in a 0600 file and
	// may do without.
	Sealer Sealer
}

// SQLite is the embedded store: one database file in WAL mode with
// synchronous=FULL, so a committed transaction survives a power cut, and a
// transaction cut short by a crash leaves the previous state.
type SQLite struct {
	db   *sql.DB // reads
	w    *sql.DB // writes: one connection
	lock *lockFile
	now  func() time.Time
	path string
	seal Sealer
}

var _ Store = (*SQLite)(nil)

// Open opens (creating if needed) the SQLite store at path and brings its
// schema up to date. The database file and its directory are private to
// the owner: the store holds private keys.
func Open(ctx context.Context, path string, opts Options) (*SQLite, error) {
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("store: path %q must not contain '?' or '#'", path)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s := &SQLite{now: opts.Now, path: path, seal: opts.Sealer}
	if opts.Exclusive {
		l, err := acquireLock(path + ".lock")
		if err != nil {
			return nil, err
		}
		s.lock = l
	}
	// Create the file ourselves so it is 0600 whatever the umask; SQLite
	// gives the -wal and -shm files the database file's mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		s.lock.release()
		return nil, fmt.Errorf("store: %w", err)
	}
	f.Close()
	if err := os.Chmod(path, 0o600); err != nil {
		s.lock.release()
		return nil, fmt.Errorf("store: %w", err)
	}
	dsn := path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		s.lock.release()
		return nil, fmt.Errorf("store: %w", err)
	}
	s.db = db
	// Writes go through one connection: concurrent jobs queue in Go
	// instead of sleeping in SQLite's busy handler (1, 2, 5, 10... ms),
	// which dominated the time of many concurrent issuances. Reads use
	// the pool (WAL readers do not block the writer).
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	w.SetMaxOpenConns(1)
	s.w = w
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database and releases the daemon lock.
func (s *SQLite) Close() error {
	var err error
	if s.w != nil {
		err = s.w.Close()
	}
	if s.db != nil {
		err = errors.Join(err, s.db.Close())
	}
	if lerr := s.lock.release(); err == nil {
		err = lerr
	}
	return err
}

func (s *SQLite) migrate(ctx context.Context) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: starting migration: %w", s.disk(err))
	}
	defer tx.Rollback()
	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("store: reading schema version: %w", s.disk(err))
	}
	if v > len(migrations) {
		return fmt.Errorf("%w: %s has schema version %d, this certd knows up to %d; run a newer certd", ErrSchemaNewer, s.path, v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("store: migration %d: %w", i+1, s.disk(err))
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", i+1)); err != nil {
			return fmt.Errorf("store: migration %d: %w", i+1, s.disk(err))
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: committing migrations: %w", s.disk(err))
	}
	return nil
}

// ms converts a time to unix milliseconds; the zero time is NULL.
func ms(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

func fromMs(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}

func isUnique(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code()
		return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// disk names the store's file in an error SQLite raised writing or
// opening it (SQLITE_FULL, SQLITE_IOERR, SQLITE_CANTOPEN), and says whether
// its file system is out of space: SQLite keeps errno to itself ("disk I/O
// error (4874)" is a tmpfs that could not grow the -shm file), and an
// operator needs the path to act. Other errors are returned as they are.
func (s *SQLite) disk(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN:
	default:
		return err
	}
	dir := filepath.Dir(s.path)
	var fs unix.Statfs_t
	if serr := unix.Statfs(dir, &fs); serr == nil && fs.Bavail*uint64(fs.Bsize) < lowSpace {
		return fmt.Errorf("%w (store %s: no space left on device, %d bytes free in %s)", err, s.path, fs.Bavail*uint64(fs.Bsize), dir)
	}
	// A process file size limit (ulimit -f, LimitFSIZE=) reached shows
	// as an I/O error too (EFBIG): say so when a file of the store is at
	// the limit.
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_FSIZE, &lim) == nil && lim.Cur != unix.RLIM_INFINITY {
		for _, f := range []string{s.path, s.path + "-wal", s.path + "-shm"} {
			if fi, serr := os.Stat(f); serr == nil && uint64(fi.Size())+lowSpace >= lim.Cur {
				return fmt.Errorf("%w (store %s: the process's file size limit of %d bytes is reached by %s; raise ulimit -f or LimitFSIZE=)", err, s.path, lim.Cur, f)
			}
		}
	}
	return fmt.Errorf("%w (store %s)", err, s.path)
}

// lowSpace is what disk calls out of space: less than a few SQLite pages
// and a WAL frame's worth.
const lowSpace = 256 << 10

func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: %s", ErrNotFound, what)
	}
	return fmt.Errorf("store: %s: %w", what, err)
}

type scanner interface{ Scan(dest ...any) error }

// queryAll runs q and scans every row with scan; what names the listing in
// errors.
func queryAll[T any](ctx context.Context, db *sql.DB, what string, scan func(scanner) (T, error), q string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, q, args...)
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

const certCols = `c.name, c.account, c.domains, c.key_type, c.spec_hash, c.state, c.current_version,
	c.next_action, c.next_action_at, c.failures, c.last_error, c.retry_after, c.created_at, c.updated_at,
	v.id, v.serial, v.not_before, v.not_after, v.fingerprint`

const certFrom = ` FROM certificates c LEFT JOIN cert_versions v ON v.id = c.current_version `

func scanCert(r scanner) (Certificate, error) {
	var c Certificate
	var domains string
	var next, retry, created, updated sql.NullInt64
	var vid sql.NullInt64
	var serial, fp sql.NullString
	var nb, na sql.NullInt64
	err := r.Scan(&c.Name, &c.Account, &domains, &c.KeyType, &c.SpecHash, &c.State, &c.CurrentVersion,
		&c.NextAction, &next, &c.Failures, &c.LastError, &retry, &created, &updated,
		&vid, &serial, &nb, &na, &fp)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal([]byte(domains), &c.Domains); err != nil {
		return c, fmt.Errorf("decoding domains of %s: %w", c.Name, err)
	}
	c.NextActionAt, c.RetryAfter, c.CreatedAt, c.UpdatedAt = fromMs(next), fromMs(retry), fromMs(created), fromMs(updated)
	if vid.Valid {
		c.Current = &Version{ID: vid.Int64, CertName: c.Name, Serial: serial.String, NotBefore: fromMs(nb), NotAfter: fromMs(na), Fingerprint: fp.String}
	}
	return c, nil
}

// GetCertificate implements Certificates.
func (s *SQLite) GetCertificate(ctx context.Context, name string) (Certificate, error) {
	c, err := scanCert(s.db.QueryRowContext(ctx, "SELECT "+certCols+certFrom+"WHERE c.name = ?", name))
	if err != nil {
		return c, notFound(err, "certificate "+name)
	}
	return c, nil
}

// SaveCertificate implements Certificates.
func (s *SQLite) SaveCertificate(ctx context.Context, c Certificate) error {
	return s.write(ctx, func(tx *sql.Tx) error { return s.saveCert(ctx, tx, c) })
}

// ListCertificates implements Certificates.
func (s *SQLite) ListCertificates(ctx context.Context) ([]Certificate, error) {
	return s.queryCerts(ctx, "SELECT "+certCols+certFrom+"ORDER BY c.name")
}

// DueCertificates implements Certificates.
func (s *SQLite) DueCertificates(ctx context.Context, now time.Time, limit int) ([]Certificate, error) {
	return s.queryCerts(ctx, "SELECT "+certCols+certFrom+
		"WHERE c.next_action_at IS NOT NULL AND c.next_action_at <= ? ORDER BY c.next_action_at LIMIT ?", now.UnixMilli(), limit)
}

func (s *SQLite) queryCerts(ctx context.Context, q string, args ...any) ([]Certificate, error) {
	return queryAll(ctx, s.db, "certificates", scanCert, q, args...)
}

// --- claims

const claimCols = `account, domain, ca_claim_id, token, status, method, assert_by, expires_at,
	next_action, next_action_at, failures, last_error, updated_at`

func scanClaim(r scanner) (Claim, error) {
	var c Claim
	var ab, ea, next, upd sql.NullInt64
	err := r.Scan(&c.Account, &c.Domain, &c.CAClaimID, &c.Token, &c.Status, &c.Method, &ab, &ea,
		&c.NextAction, &next, &c.Failures, &c.LastError, &upd)
	c.AssertBy, c.ExpiresAt, c.NextActionAt, c.UpdatedAt = fromMs(ab), fromMs(ea), fromMs(next), fromMs(upd)
	return c, err
}

// GetClaim implements Claims.
func (s *SQLite) GetClaim(ctx context.Context, account, domain string) (Claim, error) {
	c, err := scanClaim(s.db.QueryRowContext(ctx, "SELECT "+claimCols+" FROM claims WHERE account = ? AND domain = ?", account, domain))
	if err != nil {
		return c, notFound(err, "claim "+account+"/"+domain)
	}
	return c, nil
}

// SaveClaim implements Claims.
func (s *SQLite) SaveClaim(ctx context.Context, c Claim) error {
	return s.write(ctx, func(tx *sql.Tx) error { return s.saveClaim(ctx, tx, c) })
}

// ListClaims implements Claims.
func (s *SQLite) ListClaims(ctx context.Context) ([]Claim, error) {
	return s.queryClaims(ctx, "SELECT "+claimCols+" FROM claims ORDER BY account, domain")
}

// DueClaims implements Claims.
func (s *SQLite) DueClaims(ctx context.Context, now time.Time, limit int) ([]Claim, error) {
	return s.queryClaims(ctx, "SELECT "+claimCols+
		" FROM claims WHERE next_action_at IS NOT NULL AND next_action_at <= ? ORDER BY next_action_at LIMIT ?", now.UnixMilli(), limit)
}

func (s *SQLite) queryClaims(ctx context.Context, q string, args ...any) ([]Claim, error) {
	return queryAll(ctx, s.db, "claims", scanClaim, q, args...)
}

// --- orders and keys

const orderCols = `id, idempotency_key, cert_name, account, generation, key_id, csr, spec_hash, state,
	ca_ref, last_error, next_poll_at, sent_at, created_at, updated_at`

func scanOrder(r scanner) (Order, error) {
	var o Order
	var next, sent, created, updated sql.NullInt64
	err := r.Scan(&o.ID, &o.IdempotencyKey, &o.CertName, &o.Account, &o.Generation, &o.KeyID, &o.CSR,
		&o.SpecHash, &o.State, &o.CARef, &o.LastError, &next, &sent, &created, &updated)
	o.NextPollAt, o.SentAt, o.CreatedAt, o.UpdatedAt = fromMs(next), fromMs(sent), fromMs(created), fromMs(updated)
	return o, err
}

// CreateOrder implements Orders.
func (s *SQLite) CreateOrder(ctx context.Context, o Order, key PrivateKey) (int64, error) {
	pem, err := s.sealKey(key)
	if err != nil {
		return 0, err
	}
	var id int64
	err = s.txn(ctx, "creating order for "+o.CertName, true, func(tx *sql.Tx) error {
		now := ms(s.now())
		res, err := tx.ExecContext(ctx, `INSERT INTO private_keys (cert_name, key_type, key_pem, public_sha, created_at) VALUES (?, ?, ?, ?, ?)`,
			key.CertName, key.KeyType, pem, key.PublicSHA, now)
		if err != nil {
			return fmt.Errorf("store: storing key for %s: %w", key.CertName, s.disk(err))
		}
		keyID, _ := res.LastInsertId()
		res, err = tx.ExecContext(ctx, `INSERT INTO orders (idempotency_key, cert_name, account, generation, key_id, csr,
	spec_hash, state, ca_ref, last_error, next_poll_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			o.IdempotencyKey, o.CertName, o.Account, o.Generation, keyID, o.CSR, o.SpecHash, o.State, o.CARef, o.LastError, ms(o.NextPollAt), now, now)
		if err != nil {
			if isUnique(err) {
				return fmt.Errorf("%w: order %s (generation %d of %s)", ErrExists, o.IdempotencyKey, o.Generation, o.CertName)
			}
			return fmt.Errorf("store: creating order for %s: %w", o.CertName, s.disk(err))
		}
		id, _ = res.LastInsertId()
		return nil
	})
	if err != nil {
		return 0, err
	}
	return id, nil
}

// GetOrder implements Orders.
func (s *SQLite) GetOrder(ctx context.Context, id int64) (Order, error) {
	o, err := scanOrder(s.db.QueryRowContext(ctx, "SELECT "+orderCols+" FROM orders WHERE id = ?", id))
	if err != nil {
		return o, notFound(err, fmt.Sprintf("order %d", id))
	}
	return o, nil
}

// GetOrderByKey implements Orders.
func (s *SQLite) GetOrderByKey(ctx context.Context, key string) (Order, error) {
	o, err := scanOrder(s.db.QueryRowContext(ctx, "SELECT "+orderCols+" FROM orders WHERE idempotency_key = ?", key))
	if err != nil {
		return o, notFound(err, "order "+key)
	}
	return o, nil
}

// LatestOrder implements Orders.
func (s *SQLite) LatestOrder(ctx context.Context, certName string) (Order, error) {
	o, err := scanOrder(s.db.QueryRowContext(ctx, "SELECT "+orderCols+" FROM orders WHERE cert_name = ? ORDER BY generation DESC LIMIT 1", certName))
	if err != nil {
		return o, notFound(err, "orders of "+certName)
	}
	return o, nil
}

// SaveOrder implements Orders. The idempotency key, certificate,
// generation and key of an order never change.
func (s *SQLite) SaveOrder(ctx context.Context, o Order) error {
	res, err := s.exec(ctx, `UPDATE orders SET state = ?, ca_ref = ?, last_error = ?, next_poll_at = ?, sent_at = ?, updated_at = ? WHERE id = ?`,
		o.State, o.CARef, o.LastError, ms(o.NextPollAt), ms(o.SentAt), ms(s.now()), o.ID)
	if err != nil {
		return fmt.Errorf("store: saving order %d: %w", o.ID, s.disk(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: order %d", ErrNotFound, o.ID)
	}
	return nil
}

// OpenOrders implements Orders.
func (s *SQLite) OpenOrders(ctx context.Context) ([]Order, error) {
	return queryAll(ctx, s.db, "open orders", scanOrder,
		"SELECT "+orderCols+" FROM orders WHERE state NOT IN ('issued', 'failed', 'abandoned') ORDER BY id")
}

// GetKey implements Orders.
func (s *SQLite) GetKey(ctx context.Context, id int64) (PrivateKey, error) {
	var k PrivateKey
	var created sql.NullInt64
	err := s.db.QueryRowContext(ctx, "SELECT id, cert_name, key_type, key_pem, public_sha, created_at FROM private_keys WHERE id = ?", id).
		Scan(&k.ID, &k.CertName, &k.KeyType, &k.PEM, &k.PublicSHA, &created)
	if err != nil {
		return k, notFound(err, fmt.Sprintf("key %d", id))
	}
	k.CreatedAt = fromMs(created)
	if s.seal != nil {
		if k.PEM, err = s.seal.Open(k.PEM, keyAAD(k.CertName, k.PublicSHA)); err != nil {
			return k, fmt.Errorf("store: key %d of %s: %w", id, k.CertName, err)
		}
	}
	return k, nil
}

// --- versions

const versionCols = `id, cert_name, order_id, key_id, serial, not_before, not_after, fingerprint, cert_pem, chain_pem, created_at`

func scanVersion(r scanner) (Version, error) {
	var v Version
	var order sql.NullInt64
	var nb, na, created sql.NullInt64
	err := r.Scan(&v.ID, &v.CertName, &order, &v.KeyID, &v.Serial, &nb, &na, &v.Fingerprint, &v.CertPEM, &v.ChainPEM, &created)
	v.OrderID, v.NotBefore, v.NotAfter, v.CreatedAt = order.Int64, fromMs(nb), fromMs(na), fromMs(created)
	return v, err
}

// AddVersion implements Versions.
func (s *SQLite) AddVersion(ctx context.Context, v Version) (int64, error) {
	order := sql.NullInt64{Int64: v.OrderID, Valid: v.OrderID != 0}
	res, err := s.exec(ctx, `INSERT INTO cert_versions (cert_name, order_id, key_id, serial, not_before, not_after,
	fingerprint, cert_pem, chain_pem, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		v.CertName, order, v.KeyID, v.Serial, ms(v.NotBefore), ms(v.NotAfter), v.Fingerprint, v.CertPEM, v.ChainPEM, ms(s.now()))
	if err != nil {
		return 0, fmt.Errorf("store: adding version of %s: %w", v.CertName, s.disk(err))
	}
	return res.LastInsertId()
}

// GetVersion implements Versions.
func (s *SQLite) GetVersion(ctx context.Context, id int64) (Version, error) {
	v, err := scanVersion(s.db.QueryRowContext(ctx, "SELECT "+versionCols+" FROM cert_versions WHERE id = ?", id))
	if err != nil {
		return v, notFound(err, fmt.Sprintf("version %d", id))
	}
	return v, nil
}

// ListVersions implements Versions, newest first.
func (s *SQLite) ListVersions(ctx context.Context, certName string) ([]Version, error) {
	return queryAll(ctx, s.db, "versions", scanVersion,
		"SELECT "+versionCols+" FROM cert_versions WHERE cert_name = ? ORDER BY id DESC", certName)
}

// --- DCV artefacts

// JournalArtefact implements Artefacts.
func (s *SQLite) JournalArtefact(ctx context.Context, a Artefact) (int64, error) {
	if a.State == "" {
		a.State = ArtefactIntent
	}
	now := ms(s.now())
	res, err := s.exec(ctx, `INSERT INTO dcv_artefacts (owner, kind, provider, zone, name, value, state, attempts,
	last_error, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.Owner, a.Kind, a.Provider, a.Zone, a.Name, a.Value, a.State, a.Attempts, a.LastError, now, now)
	if err != nil {
		return 0, fmt.Errorf("store: journaling %s %s: %w", a.Kind, a.Name, s.disk(err))
	}
	return res.LastInsertId()
}

// SaveArtefact implements Artefacts.
func (s *SQLite) SaveArtefact(ctx context.Context, a Artefact) error {
	res, err := s.exec(ctx, `UPDATE dcv_artefacts SET zone = ?, state = ?, attempts = ?, last_error = ?, updated_at = ? WHERE id = ?`,
		a.Zone, a.State, a.Attempts, a.LastError, ms(s.now()), a.ID)
	if err != nil {
		return fmt.Errorf("store: saving artefact %d: %w", a.ID, s.disk(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: artefact %d", ErrNotFound, a.ID)
	}
	return nil
}

// LiveArtefacts implements Artefacts.
func (s *SQLite) LiveArtefacts(ctx context.Context) ([]Artefact, error) {
	return queryAll(ctx, s.db, "artefacts", func(r scanner) (Artefact, error) {
		var a Artefact
		var created, updated sql.NullInt64
		err := r.Scan(&a.ID, &a.Owner, &a.Kind, &a.Provider, &a.Zone, &a.Name, &a.Value, &a.State, &a.Attempts,
			&a.LastError, &created, &updated)
		a.CreatedAt, a.UpdatedAt = fromMs(created), fromMs(updated)
		return a, err
	}, `SELECT id, owner, kind, provider, zone, name, value, state, attempts, last_error,
	created_at, updated_at FROM dcv_artefacts WHERE state != 'removed' ORDER BY id`)
}

// --- deployments

// AddDeployment implements Deployments.
func (s *SQLite) AddDeployment(ctx context.Context, d Deployment) (int64, error) {
	if d.StartedAt.IsZero() {
		d.StartedAt = s.now()
	}
	res, err := s.exec(ctx, `INSERT INTO deployments (host, cert_name, version_id, dir, state, error, started_at, finished_at)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, d.Host, d.CertName, d.VersionID, d.Dir, d.State, d.Error, ms(d.StartedAt), ms(d.FinishedAt))
	if err != nil {
		return 0, fmt.Errorf("store: adding deployment of %s: %w", d.CertName, s.disk(err))
	}
	return res.LastInsertId()
}

// SaveDeployment implements Deployments.
func (s *SQLite) SaveDeployment(ctx context.Context, d Deployment) error {
	res, err := s.exec(ctx, `UPDATE deployments SET state = ?, error = ?, finished_at = ? WHERE id = ?`,
		d.State, d.Error, ms(d.FinishedAt), d.ID)
	if err != nil {
		return fmt.Errorf("store: saving deployment %d: %w", d.ID, s.disk(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: deployment %d", ErrNotFound, d.ID)
	}
	return nil
}

// ListDeployments implements Deployments, newest first.
func (s *SQLite) ListDeployments(ctx context.Context, certName string) ([]Deployment, error) {
	return queryAll(ctx, s.db, "deployments", func(r scanner) (Deployment, error) {
		var d Deployment
		var started, finished sql.NullInt64
		err := r.Scan(&d.ID, &d.Host, &d.CertName, &d.VersionID, &d.Dir, &d.State, &d.Error, &started, &finished)
		d.StartedAt, d.FinishedAt = fromMs(started), fromMs(finished)
		return d, err
	}, `SELECT id, host, cert_name, version_id, dir, state, error, started_at, finished_at
	FROM deployments WHERE cert_name = ? ORDER BY id DESC`, certName)
}

// --- events

// AppendEvent implements Events.
func (s *SQLite) AppendEvent(ctx context.Context, e Event) (int64, error) {
	if e.At.IsZero() {
		e.At = s.now()
	}
	fields := []byte("{}")
	if len(e.Fields) > 0 {
		var err error
		if fields, err = json.Marshal(e.Fields); err != nil {
			return 0, fmt.Errorf("store: %w", s.disk(err))
		}
	}
	res, err := s.exec(ctx, `INSERT INTO events (at, level, kind, cert_name, claim, account, message, fields)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, ms(e.At), e.Level, e.Kind, e.CertName, e.Claim, e.Account, e.Message, string(fields))
	if err != nil {
		return 0, fmt.Errorf("store: appending event: %w", s.disk(err))
	}
	return res.LastInsertId()
}

// ListEvents implements Events.
func (s *SQLite) ListEvents(ctx context.Context, f EventFilter) ([]Event, error) {
	q := `SELECT id, at, level, kind, cert_name, claim, account, message, fields FROM events WHERE 1 = 1`
	var args []any
	if f.CertName != "" {
		q += " AND cert_name = ?"
		args = append(args, f.CertName)
	}
	if !f.Since.IsZero() {
		q += " AND at >= ?"
		args = append(args, f.Since.UnixMilli())
	}
	q += " ORDER BY id DESC"
	if f.Limit > 0 {
		q += " LIMIT ?"
		args = append(args, f.Limit)
	}
	out, err := queryAll(ctx, s.db, "events", func(r scanner) (Event, error) {
		var e Event
		var at sql.NullInt64
		var fields string
		if err := r.Scan(&e.ID, &at, &e.Level, &e.Kind, &e.CertName, &e.Claim, &e.Account, &e.Message, &fields); err != nil {
			return e, err
		}
		e.At = fromMs(at)
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
	// oldest first
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// --- CA accounts

// GetCAAccount implements CAAccounts.
func (s *SQLite) GetCAAccount(ctx context.Context, account, endpoint string) (CAAccount, error) {
	a := CAAccount{Account: account, Endpoint: endpoint}
	var created, updated sql.NullInt64
	err := s.db.QueryRowContext(ctx, "SELECT key_pem, ref, binding_id, created_at, updated_at FROM ca_accounts WHERE account = ? AND endpoint = ?",
		account, endpoint).Scan(&a.KeyPEM, &a.Ref, &a.BindingID, &created, &updated)
	if err != nil {
		return a, notFound(err, fmt.Sprintf("CA account %s at %s", account, endpoint))
	}
	a.CreatedAt, a.UpdatedAt = fromMs(created), fromMs(updated)
	if s.seal != nil {
		if a.KeyPEM, err = s.seal.Open(a.KeyPEM, accountAAD(account, endpoint)); err != nil {
			return a, fmt.Errorf("store: CA account %s: %w", account, err)
		}
	}
	return a, nil
}

// SaveCAAccount implements CAAccounts.
func (s *SQLite) SaveCAAccount(ctx context.Context, a CAAccount) error {
	if a.Account == "" || a.Endpoint == "" || len(a.KeyPEM) == 0 {
		return errors.New("store: a CA account needs a name, an endpoint and a key")
	}
	now := ms(s.now())
	keyPEM := a.KeyPEM
	if s.seal != nil {
		var err error
		if keyPEM, err = s.seal.Seal(a.KeyPEM, accountAAD(a.Account, a.Endpoint)); err != nil {
			return err
		}
	}
	_, err := s.exec(ctx, `INSERT INTO ca_accounts (account, endpoint, key_pem, ref, binding_id, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (account, endpoint) DO UPDATE SET key_pem = excluded.key_pem, ref = excluded.ref,
			binding_id = excluded.binding_id, updated_at = excluded.updated_at`,
		a.Account, a.Endpoint, keyPEM, a.Ref, a.BindingID, now, now)
	if err != nil {
		return fmt.Errorf("store: saving CA account %s: %w", a.Account, s.disk(err))
	}
	return nil
}

// --- account holds

// SetAccountHold implements AccountHolds.
func (s *SQLite) SetAccountHold(ctx context.Context, h AccountHold) error {
	_, err := s.exec(ctx, `INSERT INTO account_holds (account, until, reason, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (account) DO UPDATE SET until = excluded.until, reason = excluded.reason, updated_at = excluded.updated_at`,
		h.Account, ms(h.Until).Int64, h.Reason, ms(s.now())) // a lifted hold (zero Until) is 0: the column is NOT NULL
	if err != nil {
		return fmt.Errorf("store: saving the hold on account %s: %w", h.Account, s.disk(err))
	}
	return nil
}

// AccountHolds implements AccountHolds.
func (s *SQLite) AccountHolds(ctx context.Context) ([]AccountHold, error) {
	return queryAll(ctx, s.db, "account holds", func(r scanner) (AccountHold, error) {
		var h AccountHold
		var until, updated sql.NullInt64
		err := r.Scan(&h.Account, &until, &h.Reason, &updated)
		h.Until, h.UpdatedAt = fromMs(until), fromMs(updated)
		return h, err
	}, "SELECT account, until, reason, updated_at FROM account_holds ORDER BY account")
}

// --- passes

// RecordPass implements Passes.
func (s *SQLite) RecordPass(ctx context.Context, p Pass) error {
	if p.FinishedAt.IsZero() {
		p.FinishedAt = s.now()
	}
	_, err := s.exec(ctx, `INSERT INTO passes (host, finished_at, pid, worked) VALUES (?, ?, ?, ?)
		ON CONFLICT (host) DO UPDATE SET finished_at = excluded.finished_at, pid = excluded.pid, worked = excluded.worked`,
		p.Host, ms(p.FinishedAt), p.PID, p.Worked)
	if err != nil {
		return fmt.Errorf("store: recording the last pass: %w", s.disk(err))
	}
	return nil
}

// LastPass implements Passes.
func (s *SQLite) LastPass(ctx context.Context) (Pass, error) {
	p, err := scanPass(s.db.QueryRowContext(ctx, "SELECT host, finished_at, pid, worked FROM passes ORDER BY finished_at DESC LIMIT 1"))
	if err != nil {
		return p, notFound(err, "last pass")
	}
	return p, nil
}

// ListPasses implements Passes.
func (s *SQLite) ListPasses(ctx context.Context) ([]Pass, error) {
	return queryAll(ctx, s.db, "passes", scanPass, "SELECT host, finished_at, pid, worked FROM passes ORDER BY host")
}

func scanPass(r scanner) (Pass, error) {
	var p Pass
	var at sql.NullInt64
	err := r.Scan(&p.Host, &at, &p.PID, &p.Worked)
	p.FinishedAt = fromMs(at)
	return p, err
}
