package store

import (
	"context"
	"time"
)

// Leases decide which host works a certificate, a claim or an order when
// several certd hosts share one store (fleet mode), and fence every write
// that host makes while it works.
//
// The contract every backend MUST keep (storetest checks each point):
//
//   - A lease is granted by the store's clock (the database's, never the
//     host's), for a resource name ("cert:www", "claim:atlas/example.com"),
//     to one holder, until an expiry, with a fencing token.
//   - At most one holder has a live lease on a resource at any instant of
//     the store's clock. Two claimers racing for one resource never both
//     succeed.
//   - Tokens only grow: a lease granted on a resource (after the previous
//     one expired or was released) has a token greater than every token
//     granted on it before. Renewal keeps the token.
//   - A write whose context carries a lease (WithLease) commits only if,
//     inside the write's own transaction, that lease is still the
//     resource's current, unexpired lease with the same token; otherwise
//     it fails with ErrLeaseLost and writes nothing. This holds for every
//     write method of Store, so a host paused (SIGSTOP, a long GC, a
//     partition) past its lease can store nothing on stale state. A write
//     that commits has excluded any takeover of the lease until it commits.
//   - Claiming due work never waits for another claimer: rows another
//     host is claiming at that instant are skipped, not waited for.
//   - Renewing or releasing a lease that is no longer current fails with
//     ErrLeaseLost and changes nothing.
//
// Callers SHOULD renew a lease well before it expires (a third of its
// time) and MUST NOT start a request to a CA unless the lease's remaining
// time exceeds the request's timeout: a lost lease costs money only when
// a CA call outlives it. A holder that loses its lease SHOULD stop the work
// at once; its writes fail anyway.
//
// certmagic's Locker is a model of this contract, but stricter: a lock lost
// there costs a retry, here it can cost a paid order, so every write is
// fenced rather than only the start of the work.
type Leases interface {
	// AcquireLease grants holder a lease on resource for ttl when there is
	// none, it has expired, or it was released; ErrLeaseHeld when another
	// (or the same) holder has a live one. It never waits for another
	// claimer.
	AcquireLease(ctx context.Context, resource, holder string, ttl time.Duration) (Lease, error)
	// RenewLease extends l to ttl from now (the store's clock), keeping
	// its token; ErrLeaseLost when l is no longer current.
	RenewLease(ctx context.Context, l Lease, ttl time.Duration) (Lease, error)
	// ReleaseLease ends l at once so another holder may take the
	// resource; ErrLeaseLost when l is no longer current.
	ReleaseLease(ctx context.Context, l Lease) error
	// ClaimDueCertificates grants holder leases on up to limit
	// certificates listed by host (SetHostCertificates) with the spec hash
	// the certificate has in the store, whose NextActionAt is at or
	// before now, earliest first, skipping those
	// with a live lease and those another claimer is claiming at that
	// instant. It returns the certificates with their leases, in the
	// same order.
	ClaimDueCertificates(ctx context.Context, host, holder string, now time.Time, ttl time.Duration, limit int) ([]LeasedCertificate, error)
	// ListLeases lists the leases not yet expired or released.
	ListLeases(ctx context.Context) ([]Lease, error)
}

// Lease is one holder's claim on one resource.
type Lease struct {
	Resource string
	Holder   string
	Token    int64
	// Expires is the lease's end by the store's clock; Remaining is how
	// long it had left when the store granted or renewed it (measure time
	// left from when the call returned, with the host's monotonic clock).
	Expires   time.Time
	Remaining time.Duration
}

// LeasedCertificate is a certificate claimed with its lease.
type LeasedCertificate struct {
	Certificate Certificate
	Lease       Lease
}

// CertificateResource is the lease resource of a certificate.
func CertificateResource(name string) string { return "cert:" + name }

// ClaimResource is the lease resource of an account's domain claim.
func ClaimResource(account, domain string) string { return "claim:" + account + "/" + domain }

type leaseKey struct{}

// WithLease returns a context whose store writes are fenced by l.
func WithLease(ctx context.Context, l Lease) context.Context {
	return context.WithValue(ctx, leaseKey{}, l)
}

// LeaseFrom returns the lease ctx carries, if any.
func LeaseFrom(ctx context.Context) (Lease, bool) {
	l, ok := ctx.Value(leaseKey{}).(Lease)
	return l, ok
}

// Hosts records which host lists which certificates in its configuration,
// with the hash of what its configuration asks for each (names, key
// type): a host claims only certificates it lists as the store has them
// (a host whose configuration differs never orders the other spec), and a
// certificate is retired only when no host lists it.
type Hosts interface {
	// SetHostCertificates replaces the set of certificates host lists:
	// certificate name to spec hash.
	SetHostCertificates(ctx context.Context, host string, specs map[string]string) error
	// HostCertificates returns every host's listed certificates with
	// their spec hashes.
	HostCertificates(ctx context.Context) (map[string]map[string]string, error)
}
