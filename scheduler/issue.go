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
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/deploy"
	"github.com/certd/certd/internal/ctxtime"
	"github.com/certd/certd/internal/logkey"
	"github.com/certd/certd/internal/pemutil"
	"github.com/certd/certd/store"

	"github.com/certd/certd/internal/failpoint"
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
	// Proofs says how each domain is proved.
	Proofs map[string]Proof
	// ClaimDomain, when set, overrides the issuer's ca.ClaimPolicy: the
	// domain claimed for each name.
	ClaimDomain func(domain string) string
	// Lifetime, when set, asks for certificates this long (demo, tests).
	Lifetime time.Duration
	// ReassertBefore, when set, overrides the issuer's ca.ClaimPolicy.
	ReassertBefore time.Duration
	// OrderWait bounds how long one pass waits for an order the CA is
	// still working on before leaving it to a later pass (0: no wait).
	OrderWait time.Duration
	// Profile, when set, is the certificate's own CA profile (ACME), with
	// whether the CA must offer it.
	Profile         string
	ProfileRequired bool
	// RequestTimeout is the account's bound on one CA request (default
	// 1m): in fleet mode nothing is sent to the CA under a lease with
	// less time left.
	RequestTimeout time.Duration
	// PerHostKeys: the account gives every host of the fleet a
	// certificate for a key of its own (Spec.Base names the fleet's
	// certificate on a host's own one). The fleet's certificate is bought
	// and never deployed; each host's is a reissue of it, its key kept
	// in KeyDir on the host and never in the store.
	PerHostKeys bool
	KeyDir      string
}

// hostOwn reports whether p is a host's own certificate (per-host keys).
func (p Plan) hostOwn() bool { return p.PerHostKeys && p.Spec.Base != "" }

// fleetOnly reports whether p is the fleet's certificate of an account
// with per-host keys: bought, never deployed.
func (p Plan) fleetOnly() bool { return p.PerHostKeys && p.Spec.Base == "" }

// claimDomain is the domain claimed for name.
func (p Plan) claimDomain(name string) string {
	if p.ClaimDomain != nil {
		return p.ClaimDomain(name)
	}
	if cp, ok := p.Issuer.(ca.ClaimPolicy); ok {
		return cp.ClaimDomain(name)
	}
	return strings.TrimPrefix(name, "*.")
}

// ClaimDomainOf is the domain the plan's account claims for name.
func (p Plan) ClaimDomainOf(name string) string { return p.claimDomain(name) }

// reassertBefore is how long before expiry claims are proved again.
func (p Plan) reassertBefore() time.Duration {
	if p.ReassertBefore > 0 {
		return p.ReassertBefore
	}
	if cp, ok := p.Issuer.(ca.ClaimPolicy); ok {
		return cp.ReassertBefore()
	}
	return 0
}

// ReassertBeforeOf is how long before expiry the account proves claims again.
func (p Plan) ReassertBeforeOf() time.Duration { return p.reassertBefore() }

// IssueStore is what issuance needs of persistence.
type IssueStore interface {
	store.Certificates
	store.Orders
	store.Versions
	store.Deployments
	store.Events
	store.AccountHolds
}

// Issuing is the scheduler's Work for certificates: claims, the order
// lifecycle, verification, deploy.
//
// The order lifecycle is one CA-neutral state machine driven by what the
// issuer answers:
//
//	intent ──send──▶ pending ──(proofs)──▶ issued
//	   │  ▲            │  ╲
//	 lost answer,   rejected  still issuing: looked at again
//	 crash after      │        (within OrderWait, else a later pass)
//	 sending          ▼
//	   ▼            failed ──▶ a new generation
//	ambiguous ──lookup──▶ pending (found) | intent (absent, proved)
//	   └─ cannot tell yet: looked up again later, loudly
//
// An order is sent only from intent, and only after its SentAt is stored;
// an order with SentAt set is never sent again before a lookup proves it
// absent (N1). A paid order (ca.PaidAtSubmit) whose proofs failed keeps
// them published and asks the CA to check again; only an explicit
// rejection, an operator or the order's expiry ends it.
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
	// Sleep waits between looks at an order within one pass (tests
	// replace it).
	Sleep func(ctx context.Context, d time.Duration) error
	// Rand draws renewal jitter.
	Rand *mrand.Rand
	// OnDeploy, when set, is told of every deploy: its error (nil on
	// success) and whether a live verification was part of it.
	OnDeploy func(cert store.Certificate, plan Plan, err error)
	// ARIMinRecheck is the shortest wait before asking a CA's renewal
	// information again, whatever its Retry-After (default 1 minute).
	ARIMinRecheck time.Duration
	// Host names this host in the deployments it records ("" on a single
	// host).
	Host string
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

func (x *Issuing) sleep(ctx context.Context, d time.Duration) error {
	if x.Sleep != nil {
		return x.Sleep(ctx, d)
	}
	return ctxtime.Sleep(ctx, d)
}

func (x *Issuing) pollInterval() time.Duration {
	if x.PollInterval > 0 {
		return x.PollInterval
	}
	return 15 * time.Second
}

// Work implements scheduler.Work.
func (x *Issuing) Work(ctx context.Context, c store.Certificate) (err error) {
	plan, err := x.Plans(c.Name)
	if err != nil {
		return err
	}
	log := x.log().With(zap.String(logkey.Cert, c.Name), zap.String(logkey.Account, plan.Spec.Account))
	defer func() { x.holdAccount(ctx, log, plan.Spec.Account, err) }()

	// A host's own certificate (per-host keys) follows the fleet's: it is
	// reissued when the fleet's is new, and waits while it is not.
	if plan.hostOwn() {
		if wait, err := x.waitForFleetCert(ctx, log, c, plan); err != nil || wait {
			return err
		}
	}

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
		if err := x.endStoredOrder(ctx, log, plan, v); err != nil {
			return err
		}
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

	// 3. The account asked for a pause (Retry-After): the certificate
	//    waits with it, without counting a failure.
	if until, reason, held := x.held(ctx, plan.Spec.Account); held {
		log.Info("the CA account is paused; the certificate waits with it", zap.Time("until", until), zap.String("reason", reason))
		return x.Store.UpdateCertificate(ctx, c.Name, func(cur *store.Certificate) error {
			cur.NextActionAt, cur.RetryAfter = until, until
			return nil
		})
	}

	// 4. Account-level claims first (Atlas).
	if err := x.ensureClaims(ctx, plan, plan.Spec.Domains, false); err != nil {
		return err
	}

	// 5. The order, resumed or new, through its states.
	return x.work(ctx, log, c, plan)
}

// ensureClaims proves the account-level claims names need. With recheck,
// each claim is first read again at the CA: one the CA dropped or
// invalidated is marked unverified and proved again at once.
func (x *Issuing) ensureClaims(ctx context.Context, plan Plan, names []string, recheck bool) error {
	da, ok := plan.Issuer.(ca.DomainAuthorizer)
	if !ok || x.Claims == nil {
		return nil
	}
	seen := map[string]bool{}
	for _, d := range names {
		cd := plan.claimDomain(d)
		if seen[cd] {
			continue
		}
		seen[cd] = true
		var err error
		if recheck {
			err = x.Claims.Recheck(ctx, plan.Engine, plan.Spec.Account, da, cd, plan.Proofs[d], plan.reassertBefore())
		} else {
			err = x.Claims.Ensure(ctx, plan.Engine, plan.Spec.Account, da, cd, plan.Proofs[d], plan.reassertBefore(), false)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// orderStep is what one step of the state machine leaves to do.
type orderStep int

const (
	stepNext  orderStep = iota // the order moved on: take the next step
	stepWait                   // the CA is still working: look again later
	stepRenew                  // the order is over: place a new generation
	stepDone                   // issued and deployed
)

// work drives the certificate's order through its states until it is
// deployed, must wait, or fails.
func (x *Issuing) work(ctx context.Context, log *zap.Logger, c store.Certificate, plan Plan) error {
	deadline := x.now().Add(plan.OrderWait)
	cost := ca.CostOf(plan.Issuer)
	o, req, fresh, err := x.order(ctx, log, c, plan)
	if err != nil {
		return err
	}
	st := &orderRun{fresh: fresh, started: x.now()}
	pause := 50 * time.Millisecond // doubling to 5s: a CA that issues in a second is looked at a few times
	for generations := 0; ; {
		step, wait, err := x.step(ctx, log, c, plan, cost, &o, req, st)
		if err != nil {
			return err
		}
		switch step {
		case stepDone:
			return nil
		case stepNext:
			continue
		case stepRenew:
			generations++
			if generations > 1 {
				return fmt.Errorf("order %s ended; the next attempt places a new order", o.IdempotencyKey)
			}
			if o, req, fresh, err = x.order(ctx, log, c, plan); err != nil {
				return err
			}
			st = &orderRun{fresh: fresh, started: x.now()}
			continue
		case stepWait:
			// Within the pass's budget, look again soon (short first
			// intervals, the CA's Retry-After when shorter than what is
			// left); otherwise a later pass does.
			d := pause
			if wait > 0 {
				d = wait
			}
			if x.now().Add(d).Before(deadline) {
				if err := x.sleep(ctx, d); err != nil {
					return err
				}
				pause = min(pause*2, 5*time.Second)
				continue
			}
			return x.later(ctx, log, c, &o, wait)
		}
	}
}

// orderRun is what one Work knows of its order beyond the store.
type orderRun struct {
	fresh     bool // journaled in this Work
	started   time.Time
	reproved  bool // claims the CA refused were proved again in this Work
	undecided bool // a lookup could not tell yet
}

// later stores when the order is looked at again and leaves the
// certificate waiting for it: not a failure (the CA is working), but never
// without a next attempt (N8).
func (x *Issuing) later(ctx context.Context, log *zap.Logger, c store.Certificate, o *store.Order, wait time.Duration) error {
	poll := x.pollInterval()
	if wait > poll {
		poll = wait // the CA said when to look again
	}
	o.NextPollAt = x.now().Add(poll)
	if err := x.Store.SaveOrder(ctx, *o); err != nil {
		return err
	}
	if err := x.Store.UpdateCertificate(ctx, c.Name, func(cur *store.Certificate) error {
		cur.State, cur.NextAction, cur.NextActionAt = store.StateIssuing, ActionPoll, o.NextPollAt
		if o.State == store.OrderAmbiguous {
			cur.LastError = o.LastError
		}
		return nil
	}); err != nil {
		return err
	}
	if o.State == store.OrderAmbiguous {
		log.Warn("order outcome still unknown; it is looked up again before anything is sent",
			zap.String(logkey.Order, o.IdempotencyKey), zap.Duration(logkey.RetryIn, poll), zap.String("reason", o.LastError))
	} else {
		log.Info("order pending at the CA", zap.String(logkey.Order, o.CARef), zap.Duration("poll_in", poll))
	}
	return nil
}

// ActionPoll: an order is in flight; look at it again.
const ActionPoll = "poll"

// step takes the order one state forward.
func (x *Issuing) step(ctx context.Context, log *zap.Logger, c store.Certificate, plan Plan, cost ca.Cost, o *store.Order, req ca.Request, st *orderRun) (orderStep, time.Duration, error) {
	switch o.State {
	case store.OrderIntent:
		if o.SentAt.IsZero() {
			return x.send(ctx, log, c, plan, o, req, st)
		}
		// Sent by an earlier run that did not learn the outcome.
		return x.lookup(ctx, log, c, plan, o, req, st)
	case store.OrderAmbiguous:
		return x.lookup(ctx, log, c, plan, o, req, st)
	case store.OrderPending:
		if oa, ok := plan.Issuer.(ca.OrderAuthorizer); ok {
			step, err := x.authorize(ctx, log, c, plan, cost, oa, o, req, st)
			if err != nil || step != stepNext {
				return step, 0, err
			}
		}
		return x.fetch(ctx, log, c, plan, cost, o, req, st)
	}
	return stepRenew, 0, nil // a terminal order: the next generation
}

// send hands the order to the CA, SentAt stored first. Proofs the CA
// names before the order (ca.PreSubmitChallenger) are published, owned by
// the order, and visible before it is sent.
func (x *Issuing) send(ctx context.Context, log *zap.Logger, c store.Certificate, plan Plan, o *store.Order, req ca.Request, st *orderRun) (orderStep, time.Duration, error) {
	if pc, ok := plan.Issuer.(ca.PreSubmitChallenger); ok {
		if err := x.publishBefore(ctx, log, plan, pc, o, req); err != nil {
			return 0, 0, err
		}
	}
	// In a fleet, the request goes out only under a lease that outlasts
	// it, and is cut off before the lease ends. Checked before SentAt is
	// stored: an order refused here was never sent, and stays free to
	// send (a CA that cannot be asked would otherwise leave it to a
	// person).
	sctx, cancel, err := forSubmit(ctx, plan.RequestTimeout)
	if err != nil {
		return 0, 0, err
	}
	defer cancel()
	o.SentAt = x.now()
	if err := x.Store.SaveOrder(ctx, *o); err != nil {
		return 0, 0, err
	}
	failpoint.Hit(failpoint.OrderBeforeSubmit)
	req.SentAt = o.SentAt
	var placed ca.Order
	switch prev, how := x.baseOrder(ctx, c, plan, o); how {
	case "reissue":
		log.Info("the key changes, the names do not: reissuing under the current order (no new purchase)", zap.String(logkey.Order, prev.Ref))
		placed, err = plan.Issuer.(ca.Reissuer).Reissue(sctx, prev, req)
	case "renew":
		log.Info("renewing the current order at the CA", zap.String(logkey.Order, prev.Ref))
		placed, err = plan.Issuer.(ca.Renewer).Renew(sctx, prev, req)
	case "none":
		// A host's own certificate with no fleet order to reissue under:
		// never a purchase; it waits (the order stays unsent).
		o.SentAt = time.Time{}
		if serr := x.Store.SaveOrder(context.WithoutCancel(ctx), *o); serr != nil {
			return 0, 0, serr
		}
		return 0, 0, fmt.Errorf("order %s: the fleet's certificate %s has no order to reissue under yet", o.IdempotencyKey, plan.Spec.Base)
	default:
		placed, err = plan.Issuer.Submit(sctx, req)
	}
	if err == nil {
		failpoint.Hit(failpoint.OrderAfterSubmit)
		o.State, o.CARef, o.LastError = store.OrderPending, placed.Ref, ""
		if err := x.saveAccepted(ctx, log, o); err != nil {
			return 0, 0, err
		}
		log.Info("order submitted", zap.String(logkey.Order, placed.Ref))
		x.event(ctx, "info", "ordered", c, fmt.Sprintf("order %s placed with the CA (%s)", placed.Ref, ca.CostOf(plan.Issuer)))
		return stepNext, 0, nil
	}
	o.LastError = err.Error()
	if errors.Is(err, ca.ErrAmbiguous) {
		o.State = store.OrderAmbiguous
		if serr := x.Store.SaveOrder(context.WithoutCancel(ctx), *o); serr != nil {
			return 0, 0, errors.Join(err, serr)
		}
		log.Warn("the CA's answer to the order was lost; it is looked up before anything is sent again", zap.String(logkey.Order, o.IdempotencyKey), zap.Error(err))
		x.event(ctx, "warn", "order_ambiguous", c, fmt.Sprintf("order %s: outcome unknown (%v); looking it up before sending anything again", o.IdempotencyKey, err))
		return stepNext, 0, nil
	}
	// A definite refusal: the CA did not commit the order, so it may be
	// sent again as it is.
	o.SentAt = time.Time{}
	if serr := x.Store.SaveOrder(context.WithoutCancel(ctx), *o); serr != nil {
		return 0, 0, errors.Join(err, serr)
	}
	if names := ca.UnauthorizedNames(err); len(names) > 0 && !st.reproved {
		// The CA (or its policy) says a claim is not verified although
		// the store says it is: it was dropped at the CA. Read, prove
		// again, and send again, all in this pass.
		st.reproved = true
		log.Warn("the CA refused names as not validated; checking their claims at the CA and proving them again", zap.Strings("domains", names), zap.Error(err))
		x.event(ctx, "warn", "claim_refused", c, fmt.Sprintf("the CA refused %s as not validated (%v); proving again", strings.Join(names, ", "), err))
		if _, ok := plan.Issuer.(ca.DomainAuthorizer); ok && x.Claims != nil {
			if cerr := x.ensureClaims(ctx, plan, names, true); cerr != nil {
				return 0, 0, fmt.Errorf("submitting order %s: %w; proving the refused names again: %w", o.IdempotencyKey, err, cerr)
			}
			return stepNext, 0, nil
		}
	}
	return 0, 0, fmt.Errorf("submitting order %s: %w", o.IdempotencyKey, err)
}

// saveAccepted stores the CA's reference of an order it just accepted.
// Losing it costs a lookup at best, and a person at a CA that cannot be
// asked, so in a fleet a database that cannot be written (restarting) is
// tried again for up to two minutes, while the job's lease holds; the
// reference is logged, for `certd orders found` should it never be
// stored.
func (x *Issuing) saveAccepted(ctx context.Context, log *zap.Logger, o *store.Order) error {
	deadline := x.now().Add(2 * time.Minute)
	pause := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := x.Store.SaveOrder(context.WithoutCancel(ctx), *o)
		if err == nil {
			if attempt > 1 {
				log.Info("the accepted order is stored", zap.String(logkey.Order, o.IdempotencyKey), zap.String("ca_ref", o.CARef), zap.Int(logkey.Attempt, attempt))
			}
			return nil
		}
		// One host's SQLite that cannot be written will not be writable
		// in a moment; a fleet's database restarting will be.
		fleet := keeperFrom(ctx) != nil
		if !fleet || errors.Is(err, store.ErrLeaseLost) || leaseLost(ctx) != nil || !x.now().Add(pause).Before(deadline) || ctx.Err() != nil || attempt >= 30 {
			log.Error("the CA accepted an order but storing its reference failed; it is looked up before anything is sent again",
				zap.String(logkey.Order, o.IdempotencyKey), zap.String("ca_ref", o.CARef), zap.Error(err))
			return err
		}
		if attempt == 1 {
			log.Warn("the CA accepted an order but the store cannot be written; trying again",
				zap.String(logkey.Order, o.IdempotencyKey), zap.String("ca_ref", o.CARef), zap.Error(err))
		}
		if serr := x.sleep(ctx, pause); serr != nil {
			return err
		}
		pause = min(pause*2, 5*time.Second)
	}
}

// baseOrder says whether o is sent as an action on the order that issued
// the current certificate rather than as a new order: "reissue" when the
// CA can reissue without a purchase (ca.Reissuer) and o only changes the
// key (the names are the current certificate's, the spec changed since its
// order, and the certificate is not yet due for renewal: a reissue keeps
// its expiry); "renew" when the CA renews an order in place (ca.Renewer)
// and o renews the same spec. It is a pure function of what is stored, so
// a resumed order decides the same way.
func (x *Issuing) baseOrder(ctx context.Context, c store.Certificate, plan Plan, o *store.Order) (ca.Order, string) {
	if plan.hostOwn() {
		// Always a reissue of the order that issued the fleet's current
		// certificate: a host's own key is never a purchase.
		if prev, err := x.fleetOrder(ctx, plan); err == nil {
			return prev, "reissue"
		}
		return ca.Order{}, "none"
	}
	_, canReissue := plan.Issuer.(ca.Reissuer)
	_, canRenew := plan.Issuer.(ca.Renewer)
	if (!canReissue && !canRenew) || c.CurrentVersion == 0 {
		return ca.Order{}, ""
	}
	v, err := x.Store.GetVersion(ctx, c.CurrentVersion)
	if err != nil || v.OrderID == 0 || v.OrderID == o.ID {
		return ca.Order{}, ""
	}
	prev, err := x.Store.GetOrder(ctx, v.OrderID)
	if err != nil || prev.CARef == "" {
		return ca.Order{}, ""
	}
	leaf, _, err := parseChain(v.CertPEM, v.ChainPEM)
	if err != nil {
		return ca.Order{}, ""
	}
	got, want := leafNames(leaf), slices.Clone(plan.Spec.Domains)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return ca.Order{}, "" // other names: a new order
	}
	switch {
	case prev.SpecHash != o.SpecHash && canReissue && x.now().Before(RenewalTime(v.NotBefore, v.NotAfter, plan.Policy, 0)):
		return ca.Order{Ref: prev.CARef}, "reissue"
	case prev.SpecHash == o.SpecHash && canRenew:
		return ca.Order{Ref: prev.CARef}, "renew"
	}
	return ca.Order{}, ""
}

// publishBefore publishes the proofs a CA names before the order exists
// and waits until every one is visible.
func (x *Issuing) publishBefore(ctx context.Context, log *zap.Logger, plan Plan, pc ca.PreSubmitChallenger, o *store.Order, req ca.Request) error {
	how := make(map[string]ca.Proof, len(plan.Proofs))
	for d, p := range plan.Proofs {
		how[d] = p.CA
	}
	chs, err := pc.ChallengesBefore(req, how)
	if err != nil {
		return fmt.Errorf("the proofs for order %s: %w", o.IdempotencyKey, err)
	}
	var published []*dcv.Published
	for _, ch := range chs {
		p, ok := plan.Proofs[ch.Domain]
		if !ok {
			return fmt.Errorf("the CA asks to prove %s, which the certificate does not name", ch.Domain)
		}
		pub, err := plan.Engine.Present(ctx, OrderOwner(o.ID), ch, p.Target)
		if pub != nil {
			published = append(published, pub)
		}
		if err != nil {
			return err
		}
	}
	if err := plan.Engine.Wait(ctx, published); err != nil {
		return err
	}
	if len(published) > 0 {
		log.Info("proofs published before the order", zap.String(logkey.Order, o.IdempotencyKey), zap.Int("proofs", len(published)))
	}
	return nil
}

// lookup settles an order that may have reached the CA: found, it is
// pending; proved absent, it may be sent again; otherwise it waits.
func (x *Issuing) lookup(ctx context.Context, log *zap.Logger, c store.Certificate, plan Plan, o *store.Order, req ca.Request, st *orderRun) (orderStep, time.Duration, error) {
	req.SentAt = o.SentAt
	found, ok, err := plan.Issuer.Reconcile(ctx, req)
	switch {
	case err != nil && errors.Is(err, ca.ErrUndetermined) && ca.IsPermanent(err):
		// The CA offers no lookup that can ever prove absence: a person
		// must say what happened (`certd orders found|absent|abandon`).
		o.State, o.LastError = store.OrderAmbiguous, err.Error()
		_ = x.Store.SaveOrder(context.WithoutCancel(ctx), *o)
		x.event(ctx, "error", "order_ambiguous", c, fmt.Sprintf("order %s: the CA cannot tell whether it has it, and certd never sends it again on its own: %v; "+
			"resolve it with `certd orders found %s REF`, `certd orders absent %s` or `certd orders abandon %s`", o.IdempotencyKey, err, c.Name, c.Name, c.Name))
		return 0, 0, fmt.Errorf("order %s needs an operator: %w", o.IdempotencyKey, err)
	case err != nil && errors.Is(err, ca.ErrUndetermined):
		o.State, o.LastError = store.OrderAmbiguous, err.Error()
		if !st.undecided {
			st.undecided = true
			x.event(ctx, "warn", "order_ambiguous", c, fmt.Sprintf("order %s: the CA cannot tell yet whether it has it (%v); nothing is sent until it can", o.IdempotencyKey, err))
		}
		if serr := x.Store.SaveOrder(ctx, *o); serr != nil {
			return 0, 0, serr
		}
		return stepWait, ca.RetryAfterOf(err), nil
	case err != nil:
		o.LastError = err.Error()
		_ = x.Store.SaveOrder(context.WithoutCancel(ctx), *o)
		return 0, 0, fmt.Errorf("looking up order %s before sending anything again: %w", o.IdempotencyKey, err)
	case ok:
		o.State, o.CARef, o.LastError = store.OrderPending, found.Ref, ""
		if err := x.Store.SaveOrder(ctx, *o); err != nil {
			return 0, 0, err
		}
		log.Info("order found at the CA; not sending it again", zap.String(logkey.Order, found.Ref))
		x.event(ctx, "info", "order_found", c, fmt.Sprintf("order %s found at the CA as %s; nothing sent again", o.IdempotencyKey, found.Ref))
		return stepNext, 0, nil
	}
	// Proved absent: the same order (same key, same reference) goes again.
	o.State, o.SentAt, o.LastError = store.OrderIntent, time.Time{}, ""
	if err := x.Store.SaveOrder(ctx, *o); err != nil {
		return 0, 0, err
	}
	log.Info("the CA has no such order; sending it", zap.String(logkey.Order, o.IdempotencyKey))
	return stepNext, 0, nil
}

// fetch collects the certificate, verifies, stores and deploys it.
func (x *Issuing) fetch(ctx context.Context, log *zap.Logger, c store.Certificate, plan Plan, cost ca.Cost, o *store.Order, req ca.Request, st *orderRun) (orderStep, time.Duration, error) {
	res, err := plan.Issuer.Fetch(ctx, ca.Order{Ref: o.CARef}, req)
	switch {
	case errors.Is(err, ca.ErrPending):
		return stepWait, ca.RetryAfterOf(err), nil
	case errors.Is(err, ca.ErrRejected):
		// The CA will never issue this order: it is over, and a new
		// generation is placed (nothing was issued, so nothing is bought
		// twice).
		if serr := x.endOrder(ctx, plan, o, store.OrderFailed, err.Error()); serr != nil {
			return 0, 0, errors.Join(err, serr)
		}
		x.event(ctx, "error", "rejected", c, fmt.Sprintf("order %s rejected by the CA: %v", o.CARef, err))
		if cost == ca.FreeUntilFinalized && !st.fresh {
			log.Info("a resumed order was rejected; placing a new order", zap.String(logkey.Order, o.CARef), zap.Error(err))
			return stepRenew, 0, nil
		}
		return 0, 0, fmt.Errorf("order %s: %w", o.CARef, err)
	case err != nil:
		return 0, 0, fmt.Errorf("fetching order %s: %w", o.CARef, err)
	}
	if err := verifyResult(res, req, x.now()); err != nil {
		var bad *badCertificate
		if errors.As(err, &bad) {
			// The CA issued something that is not what was ordered: the
			// order is over, and a person must look before certd buys again.
			_ = x.endOrder(ctx, plan, o, store.OrderFailed, err.Error())
			return 0, 0, fmt.Errorf("the CA delivered a certificate certd cannot use (order %s): %w", o.CARef, err)
		}
		// A chain that does not verify is fetched again later; the
		// certificate itself may be fine, and the order stays pending.
		o.LastError = err.Error()
		_ = x.Store.SaveOrder(ctx, *o)
		return 0, 0, fmt.Errorf("order %s: %w", o.CARef, err)
	}
	v := store.Version{CertName: c.Name, OrderID: o.ID, KeyID: o.KeyID, Serial: fmt.Sprintf("%X", res.Leaf.SerialNumber),
		NotBefore: res.Leaf.NotBefore, NotAfter: res.Leaf.NotAfter, Fingerprint: deploy.Fingerprint(res.Leaf),
		CertPEM: pemutil.EncodeCertificates(res.Leaf), ChainPEM: append([]byte{}, pemutil.EncodeCertificates(res.Chain...)...)}
	if v.ID, err = x.Store.AddVersion(ctx, v); err != nil {
		return 0, 0, err
	}
	failpoint.Hit(failpoint.OrderAfterVersion)
	if err := x.endOrder(ctx, plan, o, store.OrderIssued, ""); err != nil {
		return 0, 0, err
	}
	log.Info("certificate issued", zap.String(logkey.Serial, v.Serial), zap.Time(logkey.NotAfter, v.NotAfter))
	x.event(ctx, "info", "issued", c, fmt.Sprintf("issued serial %s, valid until %s", v.Serial, v.NotAfter.UTC().Format(time.RFC3339)))
	if err := x.deploy(ctx, log, c, plan, v); err != nil {
		return 0, 0, err
	}
	return stepDone, 0, nil
}

// endStoredOrder ends the order of a stored version that a crash left
// open (the version was stored, the order not yet ended): it is issued.
// Left open, its proofs would stay published and the next renewal would
// resume it and collect the same certificate again.
func (x *Issuing) endStoredOrder(ctx context.Context, log *zap.Logger, plan Plan, v store.Version) error {
	if v.OrderID == 0 {
		return nil
	}
	o, err := x.Store.GetOrder(ctx, v.OrderID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if o.Ended() {
		return nil
	}
	log.Info("ending the order of a certificate stored before an interruption", zap.String(logkey.Order, o.IdempotencyKey), zap.String(logkey.Serial, v.Serial))
	return x.endOrder(ctx, plan, &o, store.OrderIssued, "")
}

// endOrder stores a terminal state and removes the order's proofs.
func (x *Issuing) endOrder(ctx context.Context, plan Plan, o *store.Order, state, lastErr string) error {
	o.State, o.LastError = state, lastErr
	if err := x.Store.SaveOrder(context.WithoutCancel(ctx), *o); err != nil {
		return err
	}
	if plan.Engine != nil {
		if err := plan.Engine.CleanUpOwner(ctx, OrderOwner(o.ID)); err != nil {
			x.log().Warn("removing the order's proofs failed; it is retried", zap.String(logkey.Order, o.IdempotencyKey), zap.Error(err))
		}
	}
	return nil
}

// OrderOwner is the DCV journal owner of an order's proofs: they stay
// published, across passes and restarts, until the order ends.
func OrderOwner(id int64) string { return "order:" + strconv.FormatInt(id, 10) }

// KeepOrderArtefacts reports, for the DCV engine's housekeeping, whether
// owner is an order that is still open (its proofs must stay).
func KeepOrderArtefacts(ctx context.Context, orders store.Orders) func(owner string) bool {
	return func(owner string) bool {
		rest, ok := strings.CutPrefix(owner, "order:")
		if !ok {
			return false
		}
		id, err := strconv.ParseInt(rest, 10, 64)
		if err != nil {
			return false
		}
		o, err := orders.GetOrder(ctx, id)
		if err != nil {
			return !errors.Is(err, store.ErrNotFound) // unsure: keep
		}
		return !o.Ended()
	}
}

// holdAccount stores a pause for the whole CA account when err carries a
// CA's rate-limit or busy answer with a Retry-After: every certificate of
// the account waits, across restarts.
func (x *Issuing) holdAccount(ctx context.Context, log *zap.Logger, account string, err error) {
	e, ok := ca.AsError(err)
	if !ok || e.Retry <= 0 || (e.Status != http.StatusTooManyRequests && e.Status != http.StatusServiceUnavailable) {
		return
	}
	until := x.now().Add(e.Retry)
	if serr := x.Store.SetAccountHold(context.WithoutCancel(ctx), store.AccountHold{Account: account, Until: until, Reason: e.Error()}); serr != nil {
		log.Error("storing the CA's Retry-After failed", zap.Error(serr))
		return
	}
	log.Warn("the CA asked to wait; the account is paused", zap.Time("until", until), zap.Duration(logkey.RetryIn, e.Retry))
	_, _ = x.Store.AppendEvent(context.WithoutCancel(ctx), store.Event{Level: "warn", Kind: "account_paused", Account: account,
		Message: fmt.Sprintf("the CA asked to wait %s (%v); nothing is sent to account %s before %s", e.Retry, e, account, until.UTC().Format(time.RFC3339))})
}

// held reports the account's stored pause, if it is still in force.
func (x *Issuing) held(ctx context.Context, account string) (time.Time, string, bool) {
	holds, err := x.Store.AccountHolds(ctx)
	if err != nil {
		return time.Time{}, "", false
	}
	for _, h := range holds {
		if h.Account == account && h.Until.After(x.now()) {
			return h.Until, h.Reason, true
		}
	}
	return time.Time{}, "", false
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
		if err != nil || plan.fleetOnly() {
			continue // the fleet's certificate of per-host keys has no files of its own
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
		if check.Action == ActionRedeploy && x.Host != "" && !plan.hostOwn() {
			// In a fleet this host's files are this host's business:
			// SyncHost puts them back here, while a redeploy due on the
			// shared row would run on whichever host claims it.
			continue
		}
		err = x.Store.UpdateCertificate(ctx, c.Name, func(cur *store.Certificate) error {
			if cur.State != store.StateValid || cur.CurrentVersion != c.CurrentVersion || (!cur.NextActionAt.IsZero() && !cur.NextActionAt.After(now)) {
				return errUnchanged // moved on since it was listed
			}
			cur.NextAction, cur.NextActionAt = check.Action, now
			return nil
		})
		if errors.Is(err, errUnchanged) {
			continue
		}
		if err != nil {
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
	// One that ends before the current one is not worth it; one that
	// ends with it (issued within the same second) is a later order's.
	if c.Current != nil && v.NotAfter.Before(c.Current.NotAfter) {
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
		if k.PEM, err = readKey(plan.KeyDir, k); err != nil {
			return o, ca.Request{}, false, fmt.Errorf("order %s: %w", o.IdempotencyKey, err)
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
	csr, err := x509.CreateCertificateRequest(rand.Reader, csrTemplate(plan.Spec.Domains), key)
	if err != nil {
		return store.Order{}, ca.Request{}, false, fmt.Errorf("creating the CSR: %w", err)
	}
	keyPEM, err := pemutil.EncodeKey(key)
	if err != nil {
		return store.Order{}, ca.Request{}, false, err
	}
	publicSHA, err := pemutil.PublicSHA(key.Public())
	if err != nil {
		return store.Order{}, ca.Request{}, false, err
	}
	if plan.hostOwn() {
		// The key stays on this host: written (durably) here before the
		// order is journaled; the store keeps only where it is.
		if keyPEM, err = writeHostKey(plan.KeyDir, publicSHA, keyPEM); err != nil {
			return store.Order{}, ca.Request{}, false, err
		}
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	o := store.Order{IdempotencyKey: fmt.Sprintf("%s-%d-%s", c.Name, gen, hex.EncodeToString(suffix)), CertName: c.Name,
		Account: plan.Spec.Account, Generation: gen, CSR: csr, SpecHash: plan.Spec.Hash(), State: store.OrderIntent}
	if o.ID, err = x.Store.CreateOrder(ctx, o, store.PrivateKey{CertName: c.Name, KeyType: plan.Spec.KeyType, PEM: keyPEM,
		PublicSHA: publicSHA}); err != nil {
		return o, ca.Request{}, false, err
	}
	if o, err = x.Store.GetOrder(ctx, o.ID); err != nil {
		return o, ca.Request{}, false, err
	}
	if err := x.Store.UpdateCertificate(ctx, c.Name, func(cur *store.Certificate) error {
		cur.State = store.StateIssuing
		c = *cur
		return nil
	}); err != nil {
		return o, ca.Request{}, false, err
	}
	log.Info("order journaled", zap.String(logkey.Order, o.IdempotencyKey), zap.Int("generation", gen))
	return o, x.request(ctx, c, plan, o, key), true, nil
}

func (x *Issuing) request(ctx context.Context, c store.Certificate, plan Plan, o store.Order, key crypto.Signer) ca.Request {
	req := ca.Request{CertName: c.Name, Domains: plan.Spec.Domains, Key: key, CSR: o.CSR, ClientRef: o.IdempotencyKey,
		Since: o.CreatedAt, SentAt: o.SentAt, Lifetime: plan.Lifetime, Proofs: map[string]ca.Proof{},
		Profile: plan.Profile, ProfileRequired: plan.ProfileRequired}
	for d, p := range plan.Proofs {
		req.Proofs[d] = p.CA
	}
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
	got, want := leafNames(res.Leaf), slices.Clone(req.Domains)
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

// csrTemplate puts DNS names in DNSNames and IP addresses (RFC 8738) in
// IPAddresses; the common name is the first DNS name (none for a
// certificate of addresses only).
func csrTemplate(names []string) *x509.CertificateRequest {
	tmpl := &x509.CertificateRequest{}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			continue
		}
		tmpl.DNSNames = append(tmpl.DNSNames, n)
	}
	if len(tmpl.DNSNames) > 0 {
		tmpl.Subject = pkix.Name{CommonName: tmpl.DNSNames[0]}
	}
	return tmpl
}

// leafNames are a leaf's DNS names and IP addresses (RFC 8738), in the
// form configuration normalises identifiers to.
func leafNames(leaf *x509.Certificate) []string {
	names := slices.Clone(leaf.DNSNames)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

// deploy puts version v in place and schedules the renewal.
func (x *Issuing) deploy(ctx context.Context, log *zap.Logger, c store.Certificate, plan Plan, v store.Version) error {
	if plan.fleetOnly() {
		return x.promote(ctx, log, c, plan, v)
	}
	res, err := x.deployFiles(ctx, log, c, plan, v)
	if err != nil {
		x.keepIssuedVersion(ctx, c.Name)
		return err
	}
	jitter := 0.0
	if x.Rand != nil {
		jitter = x.Rand.Float64()
	}
	renewAt := RenewalTime(v.NotBefore, v.NotAfter, plan.Policy, jitter)
	var cur store.Certificate
	if err := x.Store.UpdateCertificate(ctx, c.Name, func(x *store.Certificate) error {
		x.CurrentVersion, x.State, x.Failures, x.LastError = v.ID, store.StateValid, 0, ""
		x.NextAction, x.NextActionAt, x.RetryAfter = ActionRenew, renewAt, time.Time{}
		cur = *x
		return nil
	}); err != nil {
		return err
	}
	log.Info("certificate deployed", zap.String(logkey.Serial, v.Serial), zap.String("path", res.Path), zap.Time("renew_at", renewAt))
	x.event(ctx, "info", "deployed", c, fmt.Sprintf("serial %s deployed to %s%s; renewal at %s", v.Serial, res.Path, x.onHost(), renewAt.UTC().Format(time.RFC3339)))
	// The CA's renewal advice, when it gives any, refines renewAt. A
	// window already open for a certificate just deployed is taken up
	// after the shortest recheck, never in a tight loop.
	if now, err := x.adviseRenewal(ctx, log, cur, plan, v); err != nil {
		log.Warn("reading renewal advice failed; the local renewal time stands", zap.Error(err))
	} else if now {
		return x.Store.UpdateCertificate(ctx, c.Name, func(cur *store.Certificate) error {
			cur.NextAction, cur.NextActionAt = ActionRenew, x.now().Add(x.minRecheck())
			return nil
		})
	}
	return nil
}

// keepIssuedVersion runs when a deploy failed. A certificate due for a
// reissue (names changed, `certd renew -force`, a rollback held) has just
// been issued a version it could not deploy: the retry must deploy that
// version, never buy another, so it goes back to a plain renewal (which
// deploys a stored version newer than the current one first). The write
// carries the job's lease, like every other.
func (x *Issuing) keepIssuedVersion(ctx context.Context, name string) {
	err := x.Store.UpdateCertificate(context.WithoutCancel(ctx), name, func(c *store.Certificate) error {
		if c.NextAction != ActionReissue {
			return errUnchanged
		}
		c.NextAction = ActionRenew
		return nil
	})
	if err != nil && !errors.Is(err, errUnchanged) {
		x.log().Warn("keeping the issued version for the retry failed", zap.String(logkey.Cert, name), zap.Error(err))
	}
}

func (x *Issuing) onHost() string {
	if x.Host == "" {
		return ""
	}
	return " on " + x.Host
}

// deployFiles puts version v in place on this host (files, hooks, the
// deployment record), touching nothing of the certificate's shared state.
func (x *Issuing) deployFiles(ctx context.Context, log *zap.Logger, c store.Certificate, plan Plan, v store.Version) (deploy.Result, error) {
	leaf, chain, err := parseChain(v.CertPEM, v.ChainPEM)
	if err != nil {
		return deploy.Result{}, err
	}
	k, err := x.Store.GetKey(ctx, v.KeyID)
	if err != nil {
		return deploy.Result{}, err
	}
	if k.PEM, err = readKey(plan.KeyDir, k); err != nil {
		return deploy.Result{}, fmt.Errorf("version %s: %w", v.Serial, err)
	}
	dep := store.Deployment{Host: x.Host, CertName: c.Name, VersionID: v.ID, Dir: plan.Deploy.LivePath(), State: "started"}
	if dep.ID, err = x.Store.AddDeployment(ctx, dep); err != nil {
		return deploy.Result{}, err
	}
	res, err := x.Deployer.Deploy(ctx, plan.Deploy, deploy.Bundle{Domains: plan.Spec.Domains, Serial: v.Serial, Leaf: leaf, Chain: chain, KeyPEM: k.PEM})
	for _, h := range res.Hooks {
		level, msg := "info", fmt.Sprintf("hook %s ran in %s%s", strings.Join(h.Argv, " "), h.Duration.Round(time.Millisecond), x.onHost())
		if h.Err != nil {
			level, msg = "error", fmt.Sprintf("hook %s failed%s: %v", strings.Join(h.Argv, " "), x.onHost(), h.Err)
			log.Warn("hook failed", zap.Strings("argv", h.Argv), zap.Error(h.Err), zap.String("output", h.Output))
		} else {
			log.Info("hook ran", zap.Strings("argv", h.Argv), zap.Duration("took", h.Duration), zap.String("output", strings.TrimSpace(h.Output)))
		}
		x.event(ctx, level, "hook", c, msg+outputNote(h.Output))
	}
	dep.FinishedAt = x.now()
	if err == nil {
		failpoint.Hit(failpoint.DeployAfterSwitch)
	}
	if x.OnDeploy != nil {
		x.OnDeploy(c, plan, err)
	}
	if err != nil {
		dep.State, dep.Error = "failed", err.Error()
		_ = x.Store.SaveDeployment(context.WithoutCancel(ctx), dep)
		return res, err
	}
	dep.State = "live"
	if err := x.Store.SaveDeployment(ctx, dep); err != nil {
		return res, err
	}
	return res, nil
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
