package store

// migrations are applied in order; migration i brings the schema to
// version i+1 (PRAGMA user_version). Never edit a released migration:
// append a new one.
var migrations = []string{
	// 1: the initial schema.
	`
CREATE TABLE certificates (
	name            TEXT PRIMARY KEY,
	account         TEXT NOT NULL,
	domains         TEXT NOT NULL,              -- JSON array
	key_type        TEXT NOT NULL,
	spec_hash       TEXT NOT NULL,
	state           TEXT NOT NULL,
	current_version INTEGER NOT NULL DEFAULT 0,
	next_action     TEXT NOT NULL DEFAULT '',
	next_action_at  INTEGER,                    -- unix ms; NULL: nothing due
	failures        INTEGER NOT NULL DEFAULT 0,
	last_error      TEXT NOT NULL DEFAULT '',
	retry_after     INTEGER,
	created_at      INTEGER NOT NULL,
	updated_at      INTEGER NOT NULL
);
CREATE INDEX certificates_due ON certificates(next_action_at) WHERE next_action_at IS NOT NULL;

CREATE TABLE private_keys (
	id          INTEGER PRIMARY KEY,
	cert_name   TEXT NOT NULL REFERENCES certificates(name),
	key_type    TEXT NOT NULL,
	key_pem     BLOB NOT NULL,
	public_sha  TEXT NOT NULL,
	created_at  INTEGER NOT NULL
);

CREATE TABLE orders (
	id              INTEGER PRIMARY KEY,
	idempotency_key TEXT NOT NULL UNIQUE,
	cert_name       TEXT NOT NULL REFERENCES certificates(name),
	account         TEXT NOT NULL,
	generation      INTEGER NOT NULL,
	key_id          INTEGER NOT NULL REFERENCES private_keys(id),
	csr             BLOB,
	spec_hash       TEXT NOT NULL,
	state           TEXT NOT NULL,
	ca_ref          TEXT NOT NULL DEFAULT '',
	last_error      TEXT NOT NULL DEFAULT '',
	next_poll_at    INTEGER,
	created_at      INTEGER NOT NULL,
	updated_at      INTEGER NOT NULL,
	UNIQUE (cert_name, generation)             -- N1: one order per renewal generation
);
CREATE INDEX orders_open ON orders(state) WHERE state NOT IN ('issued', 'failed', 'abandoned');

CREATE TABLE cert_versions (
	id           INTEGER PRIMARY KEY,
	cert_name    TEXT NOT NULL REFERENCES certificates(name),
	order_id     INTEGER REFERENCES orders(id),
	key_id       INTEGER NOT NULL REFERENCES private_keys(id),
	serial       TEXT NOT NULL,
	not_before   INTEGER NOT NULL,
	not_after    INTEGER NOT NULL,
	fingerprint  TEXT NOT NULL,
	cert_pem     BLOB NOT NULL,
	chain_pem    BLOB NOT NULL,
	created_at   INTEGER NOT NULL
);
CREATE INDEX cert_versions_cert ON cert_versions(cert_name, id);

CREATE TABLE claims (
	account         TEXT NOT NULL,
	domain          TEXT NOT NULL,
	ca_claim_id     TEXT NOT NULL DEFAULT '',
	token           TEXT NOT NULL DEFAULT '',   -- public by design: it is published in DNS
	status          TEXT NOT NULL,
	method          TEXT NOT NULL DEFAULT '',
	assert_by       INTEGER,
	expires_at      INTEGER,
	next_action     TEXT NOT NULL DEFAULT '',
	next_action_at  INTEGER,
	failures        INTEGER NOT NULL DEFAULT 0,
	last_error      TEXT NOT NULL DEFAULT '',
	updated_at      INTEGER NOT NULL,
	PRIMARY KEY (account, domain)
);
CREATE INDEX claims_due ON claims(next_action_at) WHERE next_action_at IS NOT NULL;

CREATE TABLE dcv_artefacts (
	id          INTEGER PRIMARY KEY,
	owner       TEXT NOT NULL,
	kind        TEXT NOT NULL,
	provider    TEXT NOT NULL,
	zone        TEXT NOT NULL DEFAULT '',
	name        TEXT NOT NULL,
	value       TEXT NOT NULL,
	state       TEXT NOT NULL,
	attempts    INTEGER NOT NULL DEFAULT 0,
	last_error  TEXT NOT NULL DEFAULT '',
	created_at  INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL
);
CREATE INDEX dcv_artefacts_live ON dcv_artefacts(state) WHERE state != 'removed';

CREATE TABLE deployments (
	id           INTEGER PRIMARY KEY,
	cert_name    TEXT NOT NULL REFERENCES certificates(name),
	version_id   INTEGER NOT NULL REFERENCES cert_versions(id),
	dir          TEXT NOT NULL,
	state        TEXT NOT NULL,
	error        TEXT NOT NULL DEFAULT '',
	started_at   INTEGER NOT NULL,
	finished_at  INTEGER
);
CREATE INDEX deployments_cert ON deployments(cert_name, id);

CREATE TABLE events (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	at         INTEGER NOT NULL,
	level      TEXT NOT NULL,
	kind       TEXT NOT NULL,
	cert_name  TEXT NOT NULL DEFAULT '',
	claim      TEXT NOT NULL DEFAULT '',
	account    TEXT NOT NULL DEFAULT '',
	message    TEXT NOT NULL,
	fields     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_cert ON events(cert_name, id);
CREATE INDEX events_at ON events(at);
CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
	BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
	BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
`,
	// 2: CA accounts (ACME account keys). The key is a secret kept like
	// private_keys: only here, in a 0600 file.
	`
CREATE TABLE ca_accounts (
	account     TEXT NOT NULL,
	endpoint    TEXT NOT NULL,
	key_pem     BLOB NOT NULL,
	ref         TEXT NOT NULL DEFAULT '',
	binding_id  TEXT NOT NULL DEFAULT '',
	created_at  INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL,
	PRIMARY KEY (account, endpoint)
);
`,
	// 3: the order lifecycle. sent_at: when the order was last handed to
	// the CA (NULL: never, so it cannot exist there). account_holds: a
	// CA account's "not before" (Retry-After), honoured across restarts.
	`
ALTER TABLE orders ADD COLUMN sent_at INTEGER;
CREATE TABLE account_holds (
	account     TEXT PRIMARY KEY,
	until       INTEGER NOT NULL,
	reason      TEXT NOT NULL DEFAULT '',
	updated_at  INTEGER NOT NULL
);
`,
	// 4: the last completed pass of the scheduler (one row), so that
	// `certd status` and the metrics tell when the daemon last did its
	// work.
	`
CREATE TABLE last_pass (
	id           INTEGER PRIMARY KEY CHECK (id = 1),
	finished_at  INTEGER NOT NULL,
	pid          INTEGER NOT NULL,
	worked       INTEGER NOT NULL DEFAULT 0
);
`,
	// 5: fleet mode. leases: which holder works a resource, until when
	// (unix ms of the store's clock), with a fencing token that only
	// grows; host_certificates: which host lists which certificate;
	// deployments per host; passes per host.
	`
CREATE TABLE lease_tokens (id INTEGER PRIMARY KEY CHECK (id = 1), last INTEGER NOT NULL);
INSERT INTO lease_tokens (id, last) VALUES (1, 0);
CREATE TABLE leases (
	resource    TEXT PRIMARY KEY,
	holder      TEXT NOT NULL,
	token       INTEGER NOT NULL,
	expires_at  INTEGER NOT NULL
);
CREATE TABLE host_certificates (
	host       TEXT NOT NULL,
	cert_name  TEXT NOT NULL,
	spec_hash  TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (host, cert_name)
);
CREATE INDEX host_certificates_cert ON host_certificates(cert_name);
ALTER TABLE deployments ADD COLUMN host TEXT NOT NULL DEFAULT '';
CREATE TABLE passes (
	host         TEXT PRIMARY KEY,
	finished_at  INTEGER NOT NULL,
	pid          INTEGER NOT NULL,
	worked       INTEGER NOT NULL DEFAULT 0
);
INSERT INTO passes (host, finished_at, pid, worked) SELECT '', finished_at, pid, worked FROM last_pass;
`,
}

// SchemaVersion is the schema version this build writes.
func SchemaVersion() int { return len(migrations) }
