// Package pgtest starts a real PostgreSQL server (Debian's packages) for
// tests: its own cluster in its own directory, on a free loopback port,
// with password (SCRAM) authentication, stopped by the PID it started.
//
// It is for tests only; nothing outside _test.go files may import it.
//
// Starting a cluster takes a second or two, so a test binary shares one
// through Shared, and each test takes a fresh, empty database of it with
// NewDatabase. The shared server lives until the test binary exits: it
// is started with a parent-death signal (SIGINT, PostgreSQL's fast
// shutdown), so it stops when the binary does even if no TestMain calls
// StopShared, and the next Shared in any binary removes the directories
// of servers whose binaries are gone. A test that stops, restarts or
// kills a server (Stop, Start, Kill) starts its own with New.
//
// For speed, servers run with fsync, full_page_writes and (the shared one)
// synchronous_commit off: a killed process keeps the OS's page cache, so
// only New's servers, which tests may Kill, keep synchronous commits.
//
// When PostgreSQL's binaries are not installed the test is skipped, or
// fails when CI=true (CI installs them: .ci/run).
//
// Why the server runs as the postgres user through a credential of its own
// process rather than under runuser: the PID the test starts is then the
// postmaster itself, so Stop (SIGINT), Kill (SIGKILL) and the parent-death
// signal reach exactly it, with no session process in between. Nothing is
// ever stopped by name.
package pgtest
