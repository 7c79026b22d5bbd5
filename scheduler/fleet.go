package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/internal/logkey"
	"github.com/certd/certd/store"
)

// FleetStore is what fleet mode needs of persistence beyond the rest.
type FleetStore interface {
	store.Leases
	store.Hosts
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
		return 0, err
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
	left, err := k.ensure(timeout + time.Second)
	if err != nil {
		return ctx, func() {}, err
	}
	c, cancel := context.WithTimeout(ctx, left-time.Second)
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
// proved, waiting up to wait for another host that is proving it; the
// caller re-reads the claim after. Outside fleet mode, or when ctx already
// holds that very lease (a claim job), it holds nothing.
func (f *Fleet) claimLease(ctx context.Context, log *zap.Logger, account, domain string, wait time.Duration) (func(), error) {
	res := store.ClaimResource(account, domain)
	if f == nil {
		return func() {}, nil
	}
	if l, ok := store.LeaseFrom(ctx); ok && l.Resource == res {
		return func() {}, nil
	}
	deadline := time.Now().Add(wait)
	for pause := 200 * time.Millisecond; ; pause = min(pause*2, 2*time.Second) {
		l, err := f.Store.AcquireLease(ctx, res, f.Holder, f.TTL)
		if err == nil {
			_, _, end := hold(ctx, f.Store, l, f.TTL, log)
			return end, nil
		}
		if !errors.Is(err, store.ErrLeaseHeld) {
			return nil, fmt.Errorf("leasing the claim on %s: %w", domain, err)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the claim on %s is being proved by another host for longer than %s; this certificate waits for it", domain, wait)
		}
		log.Debug("another host is proving the claim; waiting", zap.String(logkey.Domain, domain))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pause):
		}
	}
}
