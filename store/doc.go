// Package store persists certd's state: certificates and their issued
// versions, private keys, domain claims, the order journal (written before
// any CA is called), the DCV artefact journal, deployments and an
// append-only event log.
//
// It is persistence only: no business logic, no knowledge of CAs. The
// embedded backend is SQLite through modernc.org/sqlite (no cgo), in WAL
// mode with synchronous=FULL and versioned migrations; a daemon holds an
// exclusive lock so a second one refuses to start. PostgreSQL (pgx) is the
// backend of a fleet: many daemons share it and coordinate through leases
// with fencing tokens (see Leases), and private keys are sealed with a key
// the database never sees (Sealer). storetest is the suite every backend
// passes.
//
// store imports nothing of certd.
package store
