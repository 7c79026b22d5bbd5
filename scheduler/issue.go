package scheduler

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"time"

	"crypto/sha256"

	"go.uber.org/zap"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/deploy"
	"github.com/certd/certd/internal/logkey"
	"github.com/certd/certd/internal/pemutil"
	"github.com/certd/certd/store"
)

// Plan is everything configuration says about one certificate, resolved
// into the parts that do the work (cmd/certd builds it).
type Plan struct {
	Spec   CertSpec
	Issuer ca.Issuer
	// Engine publishes this certificate\'s challenges.
	Engine *dcv.Engine
	Policy Policy
	Deploy deploy.Spec
	// Proofs says how each domain is proved (for account-level claims).
	Proofs map[string]Proof
	// ClaimDomain maps each domain to the domain claimed for it (itself
	// without "*.", or a configured parent).
	ClaimDomain func(domain string) string
	// Lifetime, when set, asks for certificates this long (demo, tests).
	Lifetime time.Duration
	// ReassertBefore is how long before a claim's expiry it is proved
	// again (the account's reassert_before; 0: 30 days).
	ReassertBefore time.Duration
}

// IssueStore is what issuance needs of persistence.
type IssueStore interface {
	store.Certificates
	store.Orders
	store.Versions
	store.Deployments
	store.Events
}

// Issuing is the scheduler's Work for certificates: claims, the order
// journal, verification, deploy.
type Issuing struct {
	Store    IssueStore
	Plans    func(name string) (Plan, error)
	Claims   *Claims
	Deployer *deploy.Deployer
	Log      *zap.Logger
	Now      func() time.Time
	// PollInterval is how soon an order still pending is looked at again
	// (default 15s).
	PollInterval time.Duration
	// Rand draws renewal jitter.
	Rand *mrand.Rand
	// OnDeploy, when set, is told of every deploy: its error (nil on
	// success) and whether a live verification was part of it.
	OnDeploy func(cert store.Certificate, plan Plan, err error)
	// ARIMinRecheck is the shortest wait before asking a CA's renewal
	// information again, whatever its Retry-After (default 1 minute).
	ARIMinRecheck time.Duration
}

func (x *Issuing) now() time.Time {
	if x.Now == nil {
		return time.Now()
	}
	return x.Now()
}

func (x *Issuing) log() *zap.Logger {
	if x.Log == nil {
		return zap.NewNop()
	}
	return x.Log
}

// Work implements scheduler.Work.
func (x *Issuing) Work(ctx context.Context, c store.Certificate) error {
	plan, err := x.Plans(c.Name)
	if err != nil {
		return err
	}
	log := x.log().With(zap.String(logkey.Cert, c.Name), zap.String(logkey.Account, plan.Spec.Account))

	// 0. Files missing or altered: the stored current version goes back.
	if c.NextAction == ActionRedeploy && c.CurrentVersion != 0 {
		v, err := x.Store.GetVersion(ctx, c.CurrentVersion)
		if err != nil {
			return err
		}
		return x.deploy(ctx, log, c, plan, v)
	}

	// 1. A stored version not yet deployed (a deploy failed) is deployed,
	//    never bought again.
	if v, ok, err := x.undeployed(ctx, c); err != nil {
		return err
	} else if ok {
		return x.deploy(ctx, log, c, plan, v)
	}

	// 2. The CA's renewal advice (ARI), when it is what is due.
	if c.NextAction == ActionARI && c.CurrentVersion != 0 {
		v, err := x.Store.GetVersion(ctx, c.CurrentVersion)
		if err != nil {
			return err
		}
		if now, err := x.adviseRenewal(ctx, log, c, plan, v); err != nil || !now {
			return err
		}
	}

	// 3. Account-level claims first (Atlas).
	if da, ok := plan.Issuer.(ca.DomainAuthorizer); ok && x.Claims != nil {
		seen := map[string]bool{}
		for _, d := range plan.Spec.Domains {
			cd := strings.TrimPrefix(d, "*.")
			if plan.ClaimDomain != nil {
				cd = plan.ClaimDomain(d)
			}
			if seen[cd] {
				continue
			}
			seen[cd] = true
			if err := x.Claims.Ensure(ctx, plan.Engine, plan.Spec.Account, da, cd, plan.Proofs[d], plan.ReassertBefore, false); err != nil {
				return err
			}
		}
	}

	// 4. The order: resumed if one is open, else a new generation.
	// 5. Per-order authorizations (ACME).
	// 6. Fetch; a pending order is not a failure, only a later look.
	//
	// A resumed ACME order that fails (the CA checked a challenge while
	// certd was down, or before this run had published it again) is
	// ended and a new one placed at once: its failure says nothing about
	// the proof as it stands now, and an ACME order costs nothing until
	// it is finalized. Orders placed in this run fail the usual way.
	var o store.Order
	var req ca.Request
	var res *ca.Result
	for attempt := 0; ; attempt++ {
		var fresh bool
		if o, req, fresh, err = x.order(ctx, log, c, plan); err != nil {
			return err
		}
		if err := x.submit(ctx, log, plan, &o, req, fresh); err != nil {
			return err
		}
		oa, perOrder := plan.Issuer.(ca.OrderAuthorizer)
		retry := perOrder && !fresh && attempt == 0
		if perOrder {
			err := x.authorize(ctx, log, c, plan, oa, &o, req)
			var stale *staleAuthorization
			if retry && (errors.As(err, &stale) || errors.Is(err, ca.ErrDCVFailed)) {
				log.Info("a resumed order failed validation; placing a new order", zap.String(logkey.Order, o.CARef), zap.Error(err))
				continue
			}
			if err != nil {
				return err
			}
		}
		res, err = plan.Issuer.Fetch(ctx, ca.Order{Ref: o.CARef}, req)
		if errors.Is(err, ca.ErrPending) {
			poll := x.PollInterval
			if poll == 0 {
				poll = 15 * time.Second
			}
			var ra RetryAfterError
			if errors.As(err, &ra) && ra.RetryAfter() > poll {
				poll = ra.RetryAfter() // the CA said when to look again
			}
			o.NextPollAt = x.now().Add(poll)
			if err := x.Store.SaveOrder(ctx, o); err != nil {
				return err
			}
			c, _ = x.Store.GetCertificate(ctx, c.Name)
			c.State, c.NextAction, c.NextActionAt = store.StateIssuing, "poll", o.NextPollAt
			log.Info("order pending at the CA", zap.String(logkey.Order, o.CARef), zap.Duration("poll_in", poll))
			return x.Store.SaveCertificate(ctx, c)
		}
		if errors.Is(err, ca.ErrRejected) {
			// The serial is dead: this order is over, and the next attempt
			// places a new one (nothing was issued, so nothing is bought twice).
			o.State, o.LastError = store.OrderFailed, err.Error()
			if serr := x.Store.SaveOrder(ctx, o); serr != nil {
				return errors.Join(err, serr)
			}
			x.event(ctx, "error", "rejected", c, fmt.Sprintf("order %s rejected by the CA: %v", o.CARef, err))
			if retry {
				log.Info("a resumed order was rejected; placing a new order", zap.String(logkey.Order, o.CARef), zap.Error(err))
				continue
			}
			return fmt.Errorf("order %s: %w", o.CARef, err)
		}
		break
	}
	if err != nil {
		return fmt.Errorf("fetching order %s: %w", o.CARef, err)
	}
	if err := verifyResult(res, req, x.now()); err != nil {
		var bad *badCertificate
		if errors.As(err, &bad) {
			// The CA issued something that is not what was ordered: the
			// order is over, and a person must look before certd buys again.
			o.State, o.LastError = store.OrderFailed, err.Error()
			_ = x.Store.SaveOrder(ctx, o)
			return fmt.Errorf("the CA delivered a certificate certd cannot use (order %s): %w", o.CARef, err)
		}
		// A chain that does not verify is fetched again later; the
		// certificate itself may be fine, and the order stays pending.
		o.LastError = err.Error()
		_ = x.Store.SaveOrder(ctx, o)
		return fmt.Errorf("order %s: %w", o.CARef, err)
	}
	v := store.Version{CertName: c.Name, OrderID: o.ID, KeyID: o.KeyID, Serial: fmt.Sprintf("%X", res.Leaf.SerialNumber),
		NotBefore: res.Leaf.NotBefore, NotAfter: res.Leaf.NotAfter, Fingerprint: deploy.Fingerprint(res.Leaf),
		CertPEM: pemutil.EncodeCertificates(res.Leaf), ChainPEM: pemutil.EncodeCertificates(res.Chain...)}
	if v.ID, err = x.Store.AddVersion(ctx, v); err != nil {
		return err
	}
	o.State, o.LastError = store.OrderIssued, ""
	if err := x.Store.SaveOrder(ctx, o); err != nil {
		return err
	}
	log.Info("certificate issued", zap.String(logkey.Serial, v.Serial), zap.Time(logkey.NotAfter, v.NotAfter))
	x.event(ctx, "info", "issued", c, fmt.Sprintf("issued serial %s, valid until %s", v.Serial, v.NotAfter.UTC().Format(time.RFC3339)))
	return x.deploy(ctx, log, c, plan, v)
}

// Sweep runs the reissue checks over every valid certificate and makes
// due those whose files or state call for it: the slow, periodic look at
// the disk that the indexed tick does not take.
func (x *Issuing) Sweep(ctx context.Context) error {
	certs, err := x.Store.ListCertificates(ctx)
	if err != nil {
		return err
	}
	now := x.now()
	revoked := map[string]map[string]bool{} // account -> serials, read once per account
	for _, c := range certs {
		if c.State != store.StateValid || c.Current == nil || (!c.NextActionAt.IsZero() && !c.NextActionAt.After(now)) {
			continue // not deployed, failing, or already due
		}
		plan, err := x.Plans(c.Name)
		if err != nil {
			continue
		}
		if _, seen := revoked[c.Account]; !seen {
			revoked[c.Account] = map[string]bool{}
			if rl, ok := plan.Issuer.(ca.RevocationLister); ok {
				// Since the oldest validity that can still matter.
				serials, err := rl.RevokedSince(ctx, now.Add(-398*24*time.Hour))
				if err != nil {
					x.log().Warn("listing revoked certificates failed; revocations are checked at the next sweep", zap.String(logkey.Account, c.Account), zap.Error(err))
				}
				for _, s := range serials {
					revoked[c.Account][s] = true
				}
			}
		}
		check, due := Decide(Facts{Now: now, Cert: c, SpecHash: plan.Spec.Hash(), Live: deploy.Inspect(plan.Deploy), Policy: plan.Policy,
			Revoked: revoked[c.Account][strings.ToUpper(c.Current.Serial)]})
		if !due || check.Name == "renewal-due" {
			continue // renewal is already scheduled by its time
		}
		c.NextAction, c.NextActionAt = check.Action, now
		if err := x.Store.SaveCertificate(ctx, c); err != nil {
			return err
		}
		x.log().Warn("certificate due", zap.String(logkey.Cert, c.Name), zap.String("check", check.Name), zap.String(logkey.Action, check.Action))
		x.event(ctx, "warn", "check", c, fmt.Sprintf("%s: %s is due (%s)", check.Name, check.Action, c.Name))
	}
	return nil
}

// undeployed is the newest stored version when it is not the current one
// and is still worth deploying.
func (x *Issuing) undeployed(ctx context.Context, c store.Certificate) (store.Version, bool, error) {
	vs, err := x.Store.ListVersions(ctx, c.Name)
	if err != nil || len(vs) == 0 {
		return store.Version{}, false, err
	}
	v := vs[0]
	if v.ID == c.CurrentVersion || c.NextAction == ActionReissue || !x.now().Before(v.NotAfter) {
		return store.Version{}, false, nil
	}
	if c.Current != nil && !v.NotAfter.After(c.Current.NotAfter) {
		return store.Version{}, false, nil
	}
	return v, true, nil
}

// order returns the certificate's open order, or journals a new one (key,
// CSR and intent stored durably before any CA call).
func (x *Issuing) order(ctx context.Context, log *zap.Logger, c store.Certificate, plan Plan) (store.Order, ca.Request, bool, error) {
	open, err := x.Store.OpenOrders(ctx)
	if err != nil {
		return store.Order{}, ca.Request{}, false, err
	}
	for _, o := range open {
		if o.CertName != c.Name {
			continue
		}
		k, err := x.Store.GetKey(ctx, o.KeyID)
		if err != nil {
			return o, ca.Request{}, false, err
		}
		key, err := pemutil.Key(k.PEM)
		if err != nil {
			return o, ca.Request{}, false, fmt.Errorf("order %s: %w", o.IdempotencyKey, err)
		}
		log.Info("resuming order", zap.String(logkey.Order, o.IdempotencyKey), zap.String("state", o.State))
		return o, x.request(ctx, c, plan, o, key), false, nil
	}
	gen := 1
	if last, err := x.Store.LatestOrder(ctx, c.Name); err == nil {
		gen = last.Generation + 1
	} else if !errors.Is(err, store.ErrNotFound) {
		return store.Order{}, ca.Request{}, false, err
	}
	key, err := newKey(plan.Spec.KeyType)
	if err != nil {
		return store.Order{}, ca.Request{}, false, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: plan.Spec.Domains[0]}, DNSNames: plan.Spec.Domains,
	}, key)
	if err != nil {
		return store.Order{}, ca.Request{}, false, fmt.Errorf("creating the CSR: %w", err)
	}
	keyPEM, err := pemutil.EncodeKey(key)
	if err != nil {
		return store.Order{}, ca.Request{}, false, err
	}
	spki, _ := x509.MarshalPKIXPublicKey(key.Public())
	sum := sha256.Sum256(spki)
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	o := store.Order{IdempotencyKey: fmt.Sprintf("%s-%d-%s", c.Name, gen, hex.EncodeToString(suffix)), CertName: c.Name,
		Account: plan.Spec.Account, Generation: gen, CSR: csr, SpecHash: plan.Spec.Hash(), State: store.OrderIntent}
	if o.ID, err = x.Store.CreateOrder(ctx, o, store.PrivateKey{CertName: c.Name, KeyType: plan.Spec.KeyType, PEM: keyPEM,
		PublicSHA: hex.EncodeToString(sum[:])}); err != nil {
		return o, ca.Request{}, false, err
	}
	if o, err = x.Store.GetOrder(ctx, o.ID); err != nil {
		return o, ca.Request{}, false, err
	}
	c, _ = x.Store.GetCertificate(ctx, c.Name)
	c.State = store.StateIssuing
	if err := x.Store.SaveCertificate(ctx, c); err != nil {
		return o, ca.Request{}, false, err
	}
	log.Info("order journaled", zap.String(logkey.Order, o.IdempotencyKey), zap.Int("generation", gen))
	return o, x.request(ctx, c, plan, o, key), true, nil
}

func (x *Issuing) request(ctx context.Context, c store.Certificate, plan Plan, o store.Order, key crypto.Signer) ca.Request {
	req := ca.Request{CertName: c.Name, Domains: plan.Spec.Domains, Key: key, CSR: o.CSR, ClientRef: o.IdempotencyKey,
		Since: o.CreatedAt, Lifetime: plan.Lifetime}
	// The certificate this one replaces, for CAs that take the hint.
	if c.CurrentVersion != 0 {
		if v, err := x.Store.GetVersion(ctx, c.CurrentVersion); err == nil {
			if leaf, _, err := parseChain(v.CertPEM, v.ChainPEM); err == nil {
				req.Replaces = leaf
			}
		}
	}
	return req
}

// submit brings the order to "pending at the CA" with its reference. An
// order whose submission was never confirmed is looked up first: after a
// crash or an ambiguous answer it may exist already (N1).
func (x *Issuing) submit(ctx context.Context, log *zap.Logger, plan Plan, o *store.Order, req ca.Request, fresh bool) error {
	if o.State == store.OrderPending {
		return nil
	}
	if !fresh {
		found, ok, err := plan.Issuer.Reconcile(ctx, req)
		if err != nil {
			return fmt.Errorf("reconciling order %s before resubmitting: %w", o.IdempotencyKey, err)
		}
		if ok {
			o.State, o.CARef, o.LastError = store.OrderPending, found.Ref, ""
			log.Info("order found at the CA; not submitting again", zap.String(logkey.Order, found.Ref))
			return x.Store.SaveOrder(ctx, *o)
		}
	}
	placed, err := plan.Issuer.Submit(ctx, req)
	if err != nil {
		if errors.Is(err, ca.ErrAmbiguous) {
			o.State = store.OrderAmbiguous
		}
		o.LastError = err.Error()
		if serr := x.Store.SaveOrder(context.WithoutCancel(ctx), *o); serr != nil {
			return errors.Join(err, serr)
		}
		return fmt.Errorf("submitting order %s: %w", o.IdempotencyKey, err)
	}
	o.State, o.CARef, o.LastError = store.OrderPending, placed.Ref, ""
	if err := x.Store.SaveOrder(ctx, *o); err != nil {
		return err
	}
	log.Info("order submitted", zap.String(logkey.Order, placed.Ref))
	return nil
}

// badCertificate is a result that can never be used: not for the
// order's key, names or validity.
type badCertificate struct{ msg string }

func (b *badCertificate) Error() string { return b.msg }

// verifyResult: the key matches, the chain verifies to the roots the CA
// sent, the names are exactly the request's, and now is inside validity.
func verifyResult(res *ca.Result, req ca.Request, now time.Time) error {
	pub, ok := res.Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(req.Key.Public()) {
		return &badCertificate{"the certificate is not for the order's key"}
	}
	// No roots from the CA: the system's (public ACME CAs).
	var roots *x509.CertPool
	inter := x509.NewCertPool()
	if len(res.Roots) > 0 {
		roots = x509.NewCertPool()
		for _, r := range res.Roots {
			roots.AddCert(r)
		}
	}
	for _, c := range res.Chain {
		inter.AddCert(c)
	}
	if _, err := res.Leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now}); err != nil {
		return fmt.Errorf("the chain does not verify to the CA's root: %w", err)
	}
	got, want := slices.Clone(res.Leaf.DNSNames), slices.Clone(req.Domains)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return &badCertificate{fmt.Sprintf("names %v differ from the request %v", got, want)}
	}
	if now.Before(res.Leaf.NotBefore) || !now.Before(res.Leaf.NotAfter) {
		return &badCertificate{fmt.Sprintf("not valid now (%s to %s)", res.Leaf.NotBefore, res.Leaf.NotAfter)}
	}
	return nil
}

// deploy puts version v in place and schedules the renewal.
func (x *Issuing) deploy(ctx context.Context, log *zap.Logger, c store.Certificate, plan Plan, v store.Version) error {
	leaf, chain, err := parseChain(v.CertPEM, v.ChainPEM)
	if err != nil {
		return err
	}
	k, err := x.Store.GetKey(ctx, v.KeyID)
	if err != nil {
		return err
	}
	dep := store.Deployment{CertName: c.Name, VersionID: v.ID, Dir: plan.Deploy.LivePath(), State: "started"}
	if dep.ID, err = x.Store.AddDeployment(ctx, dep); err != nil {
		return err
	}
	res, err := x.Deployer.Deploy(ctx, plan.Deploy, deploy.Bundle{Domains: plan.Spec.Domains, Serial: v.Serial, Leaf: leaf, Chain: chain, KeyPEM: k.PEM})
	for _, h := range res.Hooks {
		level, msg := "info", fmt.Sprintf("hook %s ran in %s", strings.Join(h.Argv, " "), h.Duration.Round(time.Millisecond))
		if h.Err != nil {
			level, msg = "error", fmt.Sprintf("hook %s failed: %v", strings.Join(h.Argv, " "), h.Err)
			log.Warn("hook failed", zap.Strings("argv", h.Argv), zap.Error(h.Err), zap.String("output", h.Output))
		} else {
			log.Info("hook ran", zap.Strings("argv", h.Argv), zap.Duration("took", h.Duration), zap.String("output", strings.TrimSpace(h.Output)))
		}
		x.event(ctx, level, "hook", c, msg+outputNote(h.Output))
	}
	dep.FinishedAt = x.now()
	if x.OnDeploy != nil {
		x.OnDeploy(c, plan, err)
	}
	if err != nil {
		dep.State, dep.Error = "failed", err.Error()
		_ = x.Store.SaveDeployment(context.WithoutCancel(ctx), dep)
		return err
	}
	dep.State = "live"
	if err := x.Store.SaveDeployment(ctx, dep); err != nil {
		return err
	}
	cur, err := x.Store.GetCertificate(ctx, c.Name)
	if err != nil {
		return err
	}
	jitter := 0.0
	if x.Rand != nil {
		jitter = x.Rand.Float64()
	}
	renewAt := RenewalTime(v.NotBefore, v.NotAfter, plan.Policy, jitter)
	cur.CurrentVersion, cur.State, cur.Failures, cur.LastError = v.ID, store.StateValid, 0, ""
	cur.NextAction, cur.NextActionAt, cur.RetryAfter = ActionRenew, renewAt, time.Time{}
	if err := x.Store.SaveCertificate(ctx, cur); err != nil {
		return err
	}
	log.Info("certificate deployed", zap.String(logkey.Serial, v.Serial), zap.String("path", res.Path), zap.Time("renew_at", renewAt))
	x.event(ctx, "info", "deployed", c, fmt.Sprintf("serial %s deployed to %s; renewal at %s", v.Serial, res.Path, renewAt.UTC().Format(time.RFC3339)))
	// The CA's renewal advice, when it gives any, refines renewAt. A
	// window already open for a certificate just deployed is taken up
	// after the shortest recheck, never in a tight loop.
	if now, err := x.adviseRenewal(ctx, log, cur, plan, v); err != nil {
		log.Warn("reading renewal advice failed; the local renewal time stands", zap.Error(err))
	} else if now {
		cur.NextAction, cur.NextActionAt = ActionRenew, x.now().Add(x.minRecheck())
		return x.Store.SaveCertificate(ctx, cur)
	}
	return nil
}

func outputNote(out string) string {
	out = strings.TrimSpace(out)
	if out == "" {
		return ""
	}
	if len(out) > 500 {
		out = out[:500] + "…"
	}
	return ": " + out
}

func (x *Issuing) event(ctx context.Context, level, kind string, c store.Certificate, msg string) {
	_, _ = x.Store.AppendEvent(context.WithoutCancel(ctx), store.Event{Level: level, Kind: kind, CertName: c.Name, Account: c.Account, Message: msg})
}

// --- keys and PEM

func newKey(keyType string) (crypto.Signer, error) {
	switch keyType {
	case "", "ecdsa-p256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ecdsa-p384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "rsa-2048":
		return rsa.GenerateKey(rand.Reader, 2048)
	case "rsa-3072":
		return rsa.GenerateKey(rand.Reader, 3072)
	case "rsa-4096":
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("unknown key type %q", keyType)
}

func parseChain(certPEM, chainPEM []byte) (*x509.Certificate, []*x509.Certificate, error) {
	all, err := pemutil.Certificates(append(append([]byte{}, certPEM...), chainPEM...))
	if err != nil {
		return nil, nil, fmt.Errorf("stored version: %w", err)
	}
	return all[0], all[1:], nil
}
