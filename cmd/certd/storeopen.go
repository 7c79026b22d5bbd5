package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/certd/certd/config"
	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

// fleetMode reports whether the configuration shares a PostgreSQL store
// between hosts.
func fleetMode(cfg *config.Config) bool { return cfg.Store.Postgres.IsSet() }

// storeName describes the configured store for logs and messages (never
// the DSN: it holds a password).
func storeName(cfg *config.Config) string {
	if fleetMode(cfg) {
		return "postgres (" + cfg.Store.Postgres.String() + ")"
	}
	return cfg.Store.SQLite
}

// openConfiguredStore opens the configured store. exclusive takes SQLite's daemon
// lock (one daemon per SQLite store); PostgreSQL is shared by design, and
// its hosts coordinate with leases instead.
func openConfiguredStore(ctx context.Context, cfg *config.Config, exclusive bool) (store.Store, error) {
	if !fleetMode(cfg) {
		return store.Open(ctx, cfg.Store.SQLite, store.Options{Exclusive: exclusive})
	}
	dsn, err := cfg.Store.Postgres.Resolve()
	if err != nil {
		return nil, fmt.Errorf("store.postgres: %w", err)
	}
	sealer, err := fleetSealer(cfg)
	if err != nil {
		return nil, err
	}
	st, err := store.OpenPostgres(ctx, dsn.Reveal(), store.Options{Sealer: sealer})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// fleetSealer builds the encryption of keys at rest from
// fleet.encryption_key; a host without the key cannot run in the fleet.
func fleetSealer(cfg *config.Config) (store.Sealer, error) {
	kv, err := cfg.Fleet.EncryptionKey.Resolve()
	if err != nil {
		return nil, fmt.Errorf("fleet.encryption_key: %w", err)
	}
	key, err := store.ParseEncryptionKey(kv.Reveal())
	if err != nil {
		return nil, fmt.Errorf("%s: fleet.encryption_key: %w", cfg.Fleet.EncryptionKey.Pos(), err)
	}
	return store.NewAESGCM(key)
}

// fleetOf is the scheduler's fleet settings, nil on a single host.
func fleetOf(cfg *config.Config, st store.Store) *scheduler.Fleet {
	if !fleetMode(cfg) {
		return nil
	}
	return &scheduler.Fleet{Store: st, Host: cfg.Fleet.Host, Holder: holderName(cfg.Fleet.Host), TTL: cfg.Fleet.Lease.D(), HostStale: hostStale(cfg)}
}

// holderName names this process in leases: the host, its pid and a
// random part, so a restarted daemon never takes its predecessor's
// leases for its own.
func holderName(host string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "/" + strconv.Itoa(os.Getpid()) + "/" + fmt.Sprintf("%x", b)
}

// fleetTick is how often a fleet host passes to pick up versions other
// hosts issued (0 on a single host: the schedule and due times suffice).
func fleetTick(cfg *config.Config) time.Duration {
	if !fleetMode(cfg) {
		return 0
	}
	return cfg.Fleet.SyncInterval.D()
}

// hostWork deploys, at the end of each pass, the fleet's current version
// of every certificate this host lists (nil on a single host).
func hostWork(cfg *config.Config, fleet *scheduler.Fleet, issuing *scheduler.Issuing, d *daemonState) func(context.Context) error {
	if fleet == nil {
		return nil
	}
	return func(ctx context.Context) error {
		c := d.cfg.Load()
		names := make([]string, 0, len(c.Certificates))
		for _, cert := range c.Certificates {
			if !perHostKeys(c, cert.Account) { // those each host issues for itself
				names = append(names, cert.Name)
			}
		}
		return issuing.SyncHost(ctx, names)
	}
}
