package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/certd/certd/store"
)

const fleetUsage = `usage: certd fleet keygen

  keygen   print a new fleet.encryption_key (32 random bytes, base64): write it to
           a 0600 file (or a systemd credential) on every host of the fleet
`

// cmdFleet is `certd fleet keygen`.
func cmdFleet(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 || args[0] != "keygen" {
		fmt.Fprint(stderr, fleetUsage)
		return exitUsage
	}
	fmt.Fprintln(stdout, store.NewEncryptionKey())
	return exitOK
}

const storeUsage = `usage: certd store migrate [-config FILE] -from SQLITE

  migrate  copy every row of the SQLite store at SQLITE (certificates, versions, keys,
           orders, claims, artefacts, deployments, events) into the PostgreSQL store
           the configuration FILE names (store.postgres), encrypting the keys with its
           fleet.encryption_key; the destination must be empty, the daemon stopped
`

// cmdStore is `certd store migrate`: a host moves from SQLite to a
// fleet's PostgreSQL without buying anything again.
func cmdStore(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "migrate" {
		fmt.Fprint(stderr, storeUsage)
		return exitUsage
	}
	fs := newFlags("store migrate", stderr)
	path := fs.String("config", defaultConfig(), "the fleet configuration (store.postgres and fleet.encryption_key)")
	from := fs.String("from", "", "the SQLite store to copy (the old store.sqlite)")
	if code, ok := parseFlags(fs, args[1:]); !ok {
		return code
	}
	if *from == "" || fs.NArg() != 0 {
		fmt.Fprint(stderr, storeUsage)
		return exitUsage
	}
	cfg, ok := loadOrReport(*path, stderr)
	if !ok {
		return exitUsage
	}
	if !fleetMode(cfg) {
		fmt.Fprintf(stderr, "certd store migrate: %s sets no store.postgres to copy into\n", *path)
		return exitUsage
	}
	if _, err := os.Stat(*from); err != nil {
		fmt.Fprintf(stderr, "certd store migrate: %v\n", err)
		return exitUsage
	}
	ctx := context.Background()
	// The SQLite store is held like a daemon holds it: nothing writes it
	// while it is copied.
	src, err := store.Open(ctx, *from, store.Options{Exclusive: true})
	if err != nil {
		fmt.Fprintf(stderr, "certd store migrate: %v (stop the daemon first)\n", err)
		return exitStore
	}
	defer src.Close()
	dst, err := openConfiguredStore(ctx, cfg, false)
	if err != nil {
		fmt.Fprintf(stderr, "certd store migrate: %v\n", err)
		return exitStore
	}
	defer dst.Close()
	pg, ok := dst.(*store.Postgres)
	if !ok {
		fmt.Fprintln(stderr, "certd store migrate: the destination is not PostgreSQL")
		return exitUsage
	}
	stats, err := store.CopySQLiteToPostgres(ctx, src, pg)
	if err != nil {
		fmt.Fprintf(stderr, "certd store migrate: %v\n", err)
		if errors.Is(err, store.ErrExists) {
			return exitStore
		}
		return exitFailure
	}
	fmt.Fprintf(stdout, "copied %s into %s: %s\n", *from, storeName(cfg), stats)
	fmt.Fprintln(stdout, "start certd with this configuration on each host; nothing already issued is ordered again")
	return exitOK
}
