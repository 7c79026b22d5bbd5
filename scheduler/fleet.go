package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/internal/failpoint"
	"github.com/certd/certd/internal/logkey"
	"github.com/certd/certd/store"
)

// FleetStore is what fleet mode needs of persistence beyond the rest.
type FleetStore interface {
	store.Leases
	store.Hosts
	ListPasses(ctx context.Context) ([]store.Pass, error)
}

// Fleet turns on fleet mode: several hosts share one store, and each
// certificate, claim and order is worked by the one host holding its
// lease. Every store write of a job carries the job's lease (fenced), so a
// host paused past its lease writes nothing more.
type Fleet struct {
	Store FleetStore
	// Host names this host (its deployments, the certificates it lists).
	Host string
	// Holder names this process in leases: a restarted daemon is a new
	// holder and waits for its predecessor's leases to expire.
	Holder string
	// TTL is the lease time, renewed every third of it while a job runs.
	TTL time.Duration
	// HostStale is how long a host may go without a pass before its
	// configuration stops counting (default 10m): a host that is down
	// does not hold up a change the others agree on.
	HostStale time.Duration
}

// otherSpecs returns, for each certificate, the spec hashes the other
// hosts of the fleet that are alive list it with (host -> hash), and
// whether any other host lists it at all. A host that never completed a
// pass counts as alive: it has just started.
func (f *Fleet) otherSpecs(ctx context.Context, hosts map[string]map[string]string, now time.Time) (map[string]map[string]string, map[string]bool, error) {
	passes, err := f.Store.ListPasses(ctx)
	if err != nil {
		return nil, nil, err
	}
	stale := f.HostStale
	if stale <= 0 {
		stale = 10 * time.Minute
	}
	last := map[string]time.Time{}
	for _, p := range passes {
		last[p.Host] = p.FinishedAt
	}
	specs, listed := map[string]map[string]string{}, map[string]bool{}
	for h, m := range hosts {
		if h == f.Host {
			continue
		}
		t, seen := last[h]
		alive := !seen || now.Sub(t) <= stale
		for name, hash := range m {
			listed[name] = true
			if !alive {
				continue
			}
			if specs[name] == nil {
				specs[name] = map[string]string{}
			}
			specs[name][h] = hash
		}
	}
	return specs, listed, nil
}

// keeper holds one lease for one job: it renews the lease every third of
// its time and cancels the job when the lease is lost, or when it can no
// longer tell that it still holds it (the store unreachable for most of
// the lease).
type keeper struct {
	leases store.Leases
	ttl    time.Duration
	log    *zap.Logger
	cancel context.CancelFunc

	mu      sync.Mutex
	lease   store.Lease
	until   time.Time // local monotonic end of the lease, as last renewed
	lostErr error

	stop chan struct{}
	done chan struct{}
}

type keeperKey struct{}

// keeperFrom returns the job's lease keeper, if the job runs under one.
func keeperFrom(ctx context.Context) *keeper {
	k, _ := ctx.Value(keeperKey{}).(*keeper)
	return k
}

// hold runs under lease l: the returned context carries the lease (every
// store write fenced by it) and is cancelled when the lease is lost. end
// stops renewing and releases the lease.
func hold(ctx context.Context, leases store.Leases, l store.Lease, ttl time.Duration, log *zap.Logger) (context.Context, *keeper, func()) {
	jctx, cancel := context.WithCancel(ctx)
	k := &keeper{leases: leases, ttl: ttl, log: log, cancel: cancel, lease: l, until: time.Now().Add(l.Remaining),
		stop: make(chan struct{}), done: make(chan struct{})}
	go k.loop()
	jctx = context.WithValue(store.WithLease(jctx, l), keeperKey{}, k)
	return jctx, k, func() {
		close(k.stop)
		<-k.done
		cancel()
		if k.lost() == nil {
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer rcancel()
			if err := leases.ReleaseLease(rctx, k.current()); err != nil && !errors.Is(err, store.ErrLeaseLost) {
				log.Warn("releasing a lease failed; it expires on its own", zap.String("resource", l.Resource), zap.Error(err))
			}
		}
	}
}

func (k *keeper) loop() {
	defer close(k.done)
	if failpoint.Active(failpoint.LeaseKeeperStalled) {
		<-k.stop
		return
	}
	t := time.NewTicker(k.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-k.stop:
			return
		case <-t.C:
			if _, err := k.renew(); err != nil && k.lost() != nil {
				return
			}
		}
	}
}

func (k *keeper) current() store.Lease {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lease
}

// left is how long the lease is held for, as last renewed.
func (k *keeper) left() time.Duration { return time.Until(k.end()) }

// end is when the lease ends by the local monotonic clock, as last renewed.
func (k *keeper) end() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.until
}

// lost is why the lease is gone, or nil while it is held.
func (k *keeper) lost() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lostErr
}

// renew extends the lease and returns how long it is now held for.
func (k *keeper) renew() (time.Duration, error) {
	if err := k.lost(); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), k.ttl/3)
	defer cancel()
	cur := k.current()
	start := time.Now()
	l, err := k.leases.RenewLease(ctx, cur, k.ttl)
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case errors.Is(err, store.ErrLeaseLost):
		k.lostErr = fmt.Errorf("%w: another host took over %s", err, cur.Resource)
	case err != nil && time.Until(k.until) < k.ttl/6:
		// The store has not answered for most of the lease: whether it
		// is still held cannot be told, so the work stops as if lost.
		k.lostErr = fmt.Errorf("%w: cannot renew the lease on %s before it ends: %w", store.ErrLeaseLost, cur.Resource, err)
	case err != nil:
		k.log.Warn("renewing a lease failed; retrying", zap.String("resource", cur.Resource), zap.Duration("left", time.Until(k.until)), zap.Error(err))
		return time.Until(k.until), err
	default:
		k.lease, k.until = l, start.Add(l.Remaining)
		return l.Remaining, nil
	}
	k.log.Warn("lease lost; the work stops and another host carries on", zap.String("resource", cur.Resource), zap.Error(k.lostErr))
	k.cancel()
	return 0, k.lostErr
}

// ensure renews the lease and returns the time it is now held for, or an
// error when that is less than need (a CA request must not outlive the
// lease it is sent under).
func (k *keeper) ensure(need time.Duration) (time.Duration, error) {
	left, err := k.renew()
	if err != nil {
		if lost := k.lost(); lost != nil {
			return 0, lost
		}
		// The store did not answer this once: what was last renewed
		// still counts.
		left = k.left()
	}
	if left < need {
		return 0, fmt.Errorf("the lease on %s has %s left, less than the %s a CA request may take; not sending", k.current().Resource, left.Round(time.Millisecond), need)
	}
	return left, nil
}

// forSubmit bounds a CA request by the lease: nothing is sent unless the
// lease outlasts the request's timeout, and the request is cut off before
// the lease ends. Outside fleet mode it returns ctx as it is.
func forSubmit(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc, error) {
	k := keeperFrom(ctx)
	if k == nil {
		return ctx, func() {}, nil
	}
	if timeout <= 0 {
		timeout = time.Minute
	}
	if _, err := k.ensure(timeout + time.Second); err != nil {
		return ctx, func() {}, err
	}
	// Cut off a second before the lease ends, by the local monotonic
	// clock from the moment the renewal was asked (not answered).
	c, cancel := context.WithDeadline(ctx, k.end().Add(-time.Second))
	return c, cancel, nil
}

// leaseLost reports whether the job under ctx lost its lease.
func leaseLost(ctx context.Context) error {
	if k := keeperFrom(ctx); k != nil {
		return k.lost()
	}
	return nil
}

// claimLease takes the fleet-wide lease on an account's claim before it is
// proved, waiting up to wait for another holder (another host, or another
// job of this one) that is proving it; the caller re-reads the claim
// after. The returned context carries the claim's lease: the claim's
// writes are fenced by it, and the proof stops when it is lost. Callers
// take it before any in-process lock on the claim (one order of locking
// everywhere). Outside fleet mode, or when ctx already holds that very
// lease (a claim job), it holds nothing new.
func (f *Fleet) claimLease(ctx context.Context, log *zap.Logger, account, domain string, wait time.Duration) (context.Context, func(), error) {
	res := store.ClaimResource(account, domain)
	if f == nil {
		return ctx, func() {}, nil
	}
	if l, ok := store.LeaseFrom(ctx); ok && l.Resource == res {
		return ctx, func() {}, nil
	}
	deadline := time.Now().Add(wait)
	for pause := 200 * time.Millisecond; ; pause = min(pause*2, 2*time.Second) {
		l, err := f.Store.AcquireLease(ctx, res, f.Holder, f.TTL)
		if err == nil {
			cctx, _, end := hold(ctx, f.Store, l, f.TTL, log)
			return cctx, end, nil
		}
		if !errors.Is(err, store.ErrLeaseHeld) {
			return ctx, nil, fmt.Errorf("leasing the claim on %s: %w", domain, err)
		}
		if time.Now().After(deadline) {
			return ctx, nil, fmt.Errorf("the claim on %s is being proved by another host for longer than %s; this certificate waits for it", domain, wait)
		}
		log.Debug("another host is proving the claim; waiting", zap.String(logkey.Domain, domain))
		select {
		case <-ctx.Done():
			return ctx, nil, ctx.Err()
		case <-time.After(pause):
		}
	}
}
