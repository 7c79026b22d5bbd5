package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// CopyStats counts the rows CopySQLiteToPostgres copied, by table.
type CopyStats struct {
	Rows map[string]int64
}

// String lists the counts in copy order, for an operator.
func (s CopyStats) String() string {
	var parts []string
	for _, t := range copyTables {
		if n, ok := s.Rows[t.name]; ok {
			parts = append(parts, fmt.Sprintf("%s %d", t.name, n))
		}
	}
	return strings.Join(parts, ", ")
}

// Total is the number of rows copied.
func (s CopyStats) Total() int64 {
	var n int64
	for _, v := range s.Rows {
		n += v
	}
	return n
}

// A copy column's kind: how it is read from SQLite and written to
// PostgreSQL.
const (
	colInt     = iota // NOT NULL integer
	colNullInt        // integer or NULL (times: NULL is "none")
	colText           // text
	colBytes          // blob or NULL
	colBlob           // NOT NULL blob
	colKeyPEM         // private_keys.key_pem: opened from SQLite, sealed for PostgreSQL
	colAcctPEM        // ca_accounts.key_pem: likewise
)

type copyColumn struct {
	name string
	kind int
}

type copyTable struct {
	name  string
	cols  []copyColumn
	hasID bool // an identity id, whose sequence is set past the copied ids
	order string
}

func cols(spec string) []copyColumn {
	var out []copyColumn
	for _, f := range strings.Fields(spec) {
		name, kind, _ := strings.Cut(f, ":")
		k := map[string]int{"i": colInt, "n": colNullInt, "t": colText, "b": colBytes, "B": colBlob, "key": colKeyPEM, "acct": colAcctPEM}[kind]
		out = append(out, copyColumn{name, k})
	}
	return out
}

// copyTables lists every table of the schema, parents before children
// (foreign keys). leases are not copied (a lease is a live process's, and
// none is live across a migration); the token sequence is set past
// SQLite's last token so tokens still only grow.
var copyTables = []copyTable{
	{name: "certificates", order: "name", cols: cols(`name:t account:t domains:t key_type:t spec_hash:t state:t current_version:i
		next_action:t next_action_at:n failures:i last_error:t retry_after:n created_at:i updated_at:i`)},
	{name: "private_keys", hasID: true, order: "id", cols: cols(`id:i cert_name:t key_type:t key_pem:key public_sha:t created_at:i`)},
	{name: "orders", hasID: true, order: "id", cols: cols(`id:i idempotency_key:t cert_name:t account:t generation:i key_id:i csr:b
		spec_hash:t state:t ca_ref:t last_error:t next_poll_at:n sent_at:n created_at:i updated_at:i`)},
	{name: "cert_versions", hasID: true, order: "id", cols: cols(`id:i cert_name:t order_id:n key_id:i serial:t not_before:i not_after:i
		fingerprint:t cert_pem:B chain_pem:B created_at:i`)},
	{name: "claims", order: "account, domain", cols: cols(`account:t domain:t ca_claim_id:t token:t status:t method:t assert_by:n expires_at:n
		next_action:t next_action_at:n failures:i last_error:t updated_at:i`)},
	{name: "dcv_artefacts", hasID: true, order: "id", cols: cols(`id:i owner:t kind:t provider:t zone:t name:t value:t state:t attempts:i
		last_error:t created_at:i updated_at:i`)},
	{name: "deployments", hasID: true, order: "id", cols: cols(`id:i host:t cert_name:t version_id:i dir:t state:t error:t started_at:i finished_at:n`)},
	{name: "events", hasID: true, order: "id", cols: cols(`id:i at:i level:t kind:t cert_name:t claim:t account:t message:t fields:t`)},
	{name: "ca_accounts", order: "account, endpoint", cols: cols(`account:t endpoint:t key_pem:acct ref:t binding_id:t created_at:i updated_at:i`)},
	{name: "account_holds", order: "account", cols: cols(`account:t until:i reason:t updated_at:i`)},
	{name: "passes", order: "host", cols: cols(`host:t finished_at:i pid:i worked:i`)},
	{name: "host_certificates", order: "host, cert_name", cols: cols(`host:t cert_name:t spec_hash:t`)},
}

// CopySQLiteToPostgres copies everything src holds into dst, ids kept, in
// one PostgreSQL transaction (all or nothing), then sets every id
// sequence past the largest copied id. Secrets are opened with src's key
// (if it has one) and sealed with dst's. It refuses a destination that
// already holds certificates (ErrExists). src should not be written while
// it copies: its rows are read in one SQLite transaction, which holds its
// write lock.
func CopySQLiteToPostgres(ctx context.Context, src *SQLite, dst *Postgres) (CopyStats, error) {
	stats := CopyStats{Rows: map[string]int64{}}
	rtx, err := src.db.BeginTx(ctx, nil)
	if err != nil {
		return stats, fmt.Errorf("store: copying: reading %s: %w", src.path, err)
	}
	defer rtx.Rollback()
	tx, err := dst.pool.Begin(ctx)
	if err != nil {
		return stats, fmt.Errorf("store: copying: connecting to postgresql: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// One copy at a time, and no daemon writing certificates meanwhile.
	if _, err := tx.Exec(ctx, "LOCK TABLE certificates IN EXCLUSIVE MODE"); err != nil {
		return stats, fmt.Errorf("store: copying: locking the destination: %w", err)
	}
	var has bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM certificates)").Scan(&has); err != nil {
		return stats, fmt.Errorf("store: copying: reading the destination: %w", err)
	}
	if has {
		return stats, fmt.Errorf("%w: the postgresql database already holds certificates; copy only into a new, empty database", ErrExists)
	}
	for _, t := range copyTables {
		rows, err := readTable(ctx, rtx, src, dst, t)
		if err != nil {
			return stats, err
		}
		names := make([]string, len(t.cols))
		for i, c := range t.cols {
			names[i] = c.name
		}
		n, err := tx.CopyFrom(ctx, pgx.Identifier{t.name}, names, pgx.CopyFromRows(rows))
		if err != nil {
			if pgUnique(err) {
				return stats, fmt.Errorf("%w: copying %s: the postgresql database already holds some of its rows; copy only into a new, empty database", ErrExists, t.name)
			}
			return stats, fmt.Errorf("store: copying %s: %w", t.name, err)
		}
		stats.Rows[t.name] = n
		if t.hasID {
			if _, err := tx.Exec(ctx, fmt.Sprintf(`SELECT setval(pg_get_serial_sequence('%[1]s', 'id'),
	COALESCE((SELECT max(id) FROM %[1]s), 1), (SELECT max(id) FROM %[1]s) IS NOT NULL)`, t.name)); err != nil {
				return stats, fmt.Errorf("store: copying %s: setting its id sequence: %w", t.name, err)
			}
		}
	}
	var last sql.NullInt64
	if err := rtx.QueryRowContext(ctx, "SELECT last FROM lease_tokens WHERE id = 1").Scan(&last); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return stats, fmt.Errorf("store: copying lease tokens: %w", err)
	}
	if last.Int64 > 0 {
		if _, err := tx.Exec(ctx, "SELECT setval('lease_tokens', GREATEST($1::bigint, (SELECT last_value FROM lease_tokens)))", last.Int64); err != nil {
			return stats, fmt.Errorf("store: copying lease tokens: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return stats, fmt.Errorf("store: copying: committing: %w", err)
	}
	return stats, nil
}

// readTable reads every row of t from SQLite as PostgreSQL values.
func readTable(ctx context.Context, rtx *sql.Tx, src *SQLite, dst *Postgres, t copyTable) ([][]any, error) {
	names := make([]string, len(t.cols))
	idx := map[string]int{}
	for i, c := range t.cols {
		names[i] = c.name
		idx[c.name] = i
	}
	rows, err := rtx.QueryContext(ctx, "SELECT "+strings.Join(names, ", ")+" FROM "+t.name+" ORDER BY "+t.order)
	if err != nil {
		return nil, fmt.Errorf("store: copying %s: reading: %w", t.name, err)
	}
	defer rows.Close()
	var out [][]any
	for rows.Next() {
		ints := make([]sql.NullInt64, len(t.cols))
		texts := make([]sql.NullString, len(t.cols))
		blobs := make([][]byte, len(t.cols))
		dest := make([]any, len(t.cols))
		for i, c := range t.cols {
			switch c.kind {
			case colInt, colNullInt:
				dest[i] = &ints[i]
			case colText:
				dest[i] = &texts[i]
			default:
				dest[i] = &blobs[i]
			}
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("store: copying %s: reading: %w", t.name, err)
		}
		row := make([]any, len(t.cols))
		for i, c := range t.cols {
			switch c.kind {
			case colInt:
				row[i] = ints[i].Int64
			case colNullInt:
				if ints[i].Valid {
					row[i] = ints[i].Int64
				}
			case colText:
				row[i] = texts[i].String
			case colBytes:
				row[i] = blobs[i]
			case colBlob:
				if row[i] = blobs[i]; blobs[i] == nil {
					row[i] = []byte{}
				}
			case colKeyPEM, colAcctPEM:
				var aad []byte
				var what string
				if c.kind == colKeyPEM {
					cert, sha := texts[idx["cert_name"]].String, texts[idx["public_sha"]].String
					aad, what = keyAAD(cert, sha), fmt.Sprintf("key %d of %s", ints[idx["id"]].Int64, cert)
				} else {
					acct, ep := texts[idx["account"]].String, texts[idx["endpoint"]].String
					aad, what = accountAAD(acct, ep), "CA account "+acct+" at "+ep
				}
				plain := blobs[i]
				if IsSealed(plain) {
					if src.seal == nil {
						return nil, fmt.Errorf("store: copying %s: it is sealed and the SQLite store was opened without its encryption key", what)
					}
					if plain, err = src.seal.Open(plain, aad); err != nil {
						return nil, fmt.Errorf("store: copying %s: %w", what, err)
					}
				}
				if row[i], err = dst.seal.Seal(plain, aad); err != nil {
					return nil, fmt.Errorf("store: copying %s: %w", what, err)
				}
			}
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: copying %s: reading: %w", t.name, err)
	}
	return out, nil
}
