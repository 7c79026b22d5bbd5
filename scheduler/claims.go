package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/internal/logkey"
	"github.com/certd/certd/store"

	"github.com/certd/certd/internal/ctxtime"

	"github.com/certd/certd/internal/failpoint"
)

// Proof is how one domain is proved: what the CA is told, and where the
// artefact is published.
type Proof struct {
	CA     ca.Proof
	Target dcv.Target
}

// ClaimStore is what claims need of persistence.
type ClaimStore interface {
	store.Claims
	store.Events
}

// Claims keeps account-level domain claims verified: it creates them,
// publishes their tokens, asks the CA to verify, and reasserts them
// ahead of expiry.
type Claims struct {
	Store ClaimStore
	Log   *zap.Logger
	Now   func() time.Time
	// PollTimeout bounds the wait for the CA's own check (default 2m).
	PollTimeout time.Duration
	// Sleep waits between polls (tests replace it).
	Sleep func(ctx context.Context, d time.Duration) error
	// Fleet, when set, makes a claim proved by one host of the fleet at a
	// time: the others wait for its lease and read the result.
	Fleet *Fleet

	locks sync.Map // account/domain -> *sync.Mutex
}

func (m *Claims) now() time.Time {
	if m.Now == nil {
		return time.Now()
	}
	return m.Now()
}

func (m *Claims) lock(key string) func() {
	v, _ := m.locks.LoadOrStore(key, &sync.Mutex{})
	mu := v.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// ErrAwaitingApproval: the CA mailed the approver; the claim verifies when
// they follow the link. certd checks again later without mailing again.
var ErrAwaitingApproval = errors.New("waiting for the approver to follow the link in the CA's email")

// awaitApproval is a claim's next action while an approval email is out.
const awaitApproval = "await_approval"

// Ensure returns when the account holds a verified claim on domain that
// does not expire within ReassertBefore, proving it if needed. Two callers
// for the same claim wait for one proof.
//
// margin is how long before expiry a claim is proved again (0: 30 days);
// force proves it again whatever its state (certd claims reassert).
func (m *Claims) Ensure(ctx context.Context, engine *dcv.Engine, account string, da ca.DomainAuthorizer, domain string, p Proof, margin time.Duration, force bool) error {
	log := m.Log
	if log == nil {
		log = zap.NewNop()
	}
	log = log.With(zap.String(logkey.Account, account), zap.String(logkey.Domain, domain))
	if margin == 0 {
		margin = 30 * 24 * time.Hour
	}
	// A claim verified well beyond the margin needs nothing, and no lease
	// to find that out.
	if cur, err := m.Store.GetClaim(ctx, account, domain); err == nil && !force &&
		cur.Status == string(ca.AuthValid) && cur.ExpiresAt.After(m.now().Add(margin)) {
		return nil
	}
	// The fleet's lease first, then this process's lock: one order.
	ctx, end, err := m.Fleet.claimLease(ctx, log, account, domain, m.pollTimeout()+time.Minute)
	if err != nil {
		return err
	}
	defer end()
	defer m.lock(account + "/" + domain)()
	now := m.now()
	st, err := m.Store.GetClaim(ctx, account, domain)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	st.Account, st.Domain = account, domain
	if !force && st.Status == string(ca.AuthValid) && st.ExpiresAt.After(now.Add(margin)) {
		return nil
	}
	err = m.prove(ctx, log, engine, da, &st, p, margin, force)
	if errors.Is(err, ErrAwaitingApproval) {
		st.NextAction, st.NextActionAt = awaitApproval, now.Add(5*time.Minute)
		if serr := m.Store.SaveClaim(context.WithoutCancel(ctx), st); serr != nil {
			return serr
		}
		return fmt.Errorf("claim on %s: %w", domain, err)
	}
	if err != nil {
		st.Failures++
		st.LastError = err.Error()
		st.NextAction, st.NextActionAt = "verify", now.Add(Backoff(st.Failures, 0, nil))
		if serr := m.Store.SaveClaim(context.WithoutCancel(ctx), st); serr != nil {
			log.Error("recording the claim failure failed", zap.Error(serr))
		}
		m.event(ctx, "error", "claim_failed", st, fmt.Sprintf("claim on %s not verified: %v", domain, err))
		return fmt.Errorf("claim on %s: %w", domain, err)
	}
	return nil
}

// Recheck reads the account's claim on domain at the CA, when the CA has
// refused names the store believes covered. A claim the CA dropped,
// invalidated or let lapse is marked unverified (with a warning and an
// event) and proved again at once. A claim the CA still holds verified
// is an error: proving it again would not help.
func (m *Claims) Recheck(ctx context.Context, engine *dcv.Engine, account string, da ca.DomainAuthorizer, domain string, p Proof, margin time.Duration) error {
	log := m.Log
	if log == nil {
		log = zap.NewNop()
	}
	log = log.With(zap.String(logkey.Account, account), zap.String(logkey.Domain, domain))
	if margin == 0 {
		margin = 30 * 24 * time.Hour
	}
	lctx, end, err := m.Fleet.claimLease(ctx, log, account, domain, m.pollTimeout()+time.Minute)
	if err != nil {
		return err
	}
	unlockMu := m.lock(account + "/" + domain)
	unlock := func() { unlockMu(); end() }
	outer := ctx
	ctx = lctx
	st, err := m.Store.GetClaim(ctx, account, domain)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		unlock()
		return err
	}
	st.Account, st.Domain = account, domain
	auth, found, err := da.Authorization(ctx, st.CAClaimID, domain)
	if err != nil {
		unlock()
		return fmt.Errorf("reading the claim on %s at the CA: %w", domain, err)
	}
	now := m.now()
	if found && auth.Status == ca.AuthValid && auth.ExpiresAt.After(now.Add(margin)) {
		err := m.saveValid(ctx, log, &st, auth, p, margin)
		unlock()
		if err != nil {
			return err
		}
		return fmt.Errorf("the CA refused names under %s although its claim %s is verified until %s", domain, auth.ID, auth.ExpiresAt.UTC().Format(time.RFC3339))
	}
	what := "deleted at the CA"
	switch {
	case found && auth.Status == ca.AuthValid:
		what = "expiring at the CA on " + auth.ExpiresAt.UTC().Format(time.RFC3339)
	case found:
		what = fmt.Sprintf("%s at the CA", auth.Status)
		if auth.Detail != "" {
			what += " (" + auth.Detail + ")"
		}
	}
	was := st.Status
	if !found {
		st.CAClaimID, st.Token = "", ""
	}
	st.Status, st.ExpiresAt = string(ca.AuthPending), time.Time{}
	if found {
		st.Status = string(auth.Status)
		if auth.Status == ca.AuthValid {
			st.Status = string(ca.AuthPending) // lapsing: prove it again now
		}
	}
	st.LastError = "claim " + what
	err = m.Store.SaveClaim(ctx, st)
	unlock()
	if err != nil {
		return err
	}
	log.Warn("a claim the store held verified is not verified at the CA; proving it again now", zap.String("stored_status", was), zap.String("ca_status", what))
	m.event(outer, "warn", "claim_dropped", st, fmt.Sprintf("claim on %s was %s in certd's store but is %s; proving it again", domain, was, what))
	return m.Ensure(outer, engine, account, da, domain, p, margin, false)
}

func (m *Claims) prove(ctx context.Context, log *zap.Logger, engine *dcv.Engine, da ca.DomainAuthorizer, st *store.Claim, p Proof, margin time.Duration, force bool) error {
	now := m.now()
	auth, found, err := da.Authorization(ctx, st.CAClaimID, st.Domain)
	if err != nil {
		return fmt.Errorf("looking up the claim: %w", err)
	}
	if !force && found && auth.Status == ca.AuthValid && auth.ExpiresAt.After(now.Add(margin)) {
		return m.saveValid(ctx, log, st, auth, p, margin)
	}
	if !force && found && p.CA.Method == dcv.Email && st.NextAction == awaitApproval && auth.Status == ca.AuthPending && auth.AssertBy.After(now) {
		return ErrAwaitingApproval // mailed already: do not mail again
	}
	if !found {
		auth = ca.Authorization{}
	}
	auth.Token = st.Token
	var ch dcv.Challenge
	switch {
	case found && auth.Status == ca.AuthPending && st.Token != "" && auth.AssertBy.After(now.Add(time.Hour)):
		// A pending claim whose token is still good: publish it again.
		if ch, err = da.Challenge(auth, p.CA); err != nil {
			return err
		}
	default:
		// No claim yet, its token lapsed, or it is verified but due for
		// reassertion: get a (new) token.
		if auth, ch, err = da.Authorize(ctx, auth, st.Domain, p.CA); err != nil {
			return fmt.Errorf("getting a token: %w", err)
		}
		log.Info("claim token issued", zap.String(logkey.Claim, auth.ID), zap.Time("assert_by", auth.AssertBy))
	}
	// The claim id and token are stored before anything is published.
	st.CAClaimID, st.Token, st.AssertBy, st.Method = auth.ID, auth.Token, auth.AssertBy, string(p.CA.Method)
	if st.Status == "" {
		st.Status = string(ca.AuthPending)
	}
	if err := m.Store.SaveClaim(ctx, *st); err != nil {
		return err
	}
	m.event(ctx, "info", "claim_token", *st, fmt.Sprintf("claim %s on %s: token to publish by %s", auth.ID, st.Domain, p.CA.Method))
	failpoint.Hit(failpoint.ClaimBeforePublish)

	var published []*dcv.Published
	defer func() {
		if err := engine.CleanUp(ctx, published); err != nil {
			log.Warn("cleaning up the claim's token failed; it will be retried", zap.Error(err))
		}
	}()
	pub, err := engine.Present(ctx, "claim:"+st.Account+"/"+st.Domain, ch, p.Target)
	if pub != nil {
		published = append(published, pub)
	}
	if err != nil {
		return err
	}
	if err := engine.Wait(ctx, published); err != nil {
		return err
	}
	auth, err = da.Verify(ctx, auth, p.CA)
	if err != nil {
		return fmt.Errorf("asking the CA to verify: %w", err)
	}
	if p.CA.Method == dcv.Email && auth.Status != ca.AuthValid {
		log.Info("approval email sent", zap.String(logkey.Claim, auth.ID), zap.String("to", p.CA.Email))
		m.event(ctx, "info", "claim_email", *st, fmt.Sprintf("approval email for %s sent to %s", st.Domain, p.CA.Email))
		return ErrAwaitingApproval
	}
	deadline := m.now().Add(m.pollTimeout())
	wait := 250 * time.Millisecond
	for auth.Status != ca.AuthValid {
		if !m.now().Before(deadline) {
			detail := auth.Detail
			if detail == "" {
				detail = "the CA has not verified it yet"
			}
			return fmt.Errorf("not verified within %s: %s", m.pollTimeout(), detail)
		}
		if err := m.sleep(ctx, wait); err != nil {
			return err
		}
		wait = min(wait*2, 5*time.Second)
		a, found, err := da.Authorization(ctx, auth.ID, st.Domain)
		if err != nil {
			return fmt.Errorf("polling the claim: %w", err)
		}
		if !found {
			return errors.New("the claim disappeared at the CA")
		}
		auth.Status, auth.ExpiresAt, auth.Detail = a.Status, a.ExpiresAt, a.Detail
	}
	return m.saveValid(ctx, log, st, auth, p, margin)
}

func (m *Claims) saveValid(ctx context.Context, log *zap.Logger, st *store.Claim, auth ca.Authorization, p Proof, margin time.Duration) error {
	st.CAClaimID, st.Status, st.ExpiresAt = auth.ID, string(ca.AuthValid), auth.ExpiresAt
	if !auth.AssertBy.IsZero() {
		st.AssertBy = auth.AssertBy
	}
	if st.Method == "" {
		st.Method = string(p.CA.Method)
	}
	st.Failures, st.LastError = 0, ""
	st.NextAction, st.NextActionAt = "reassert", auth.ExpiresAt.Add(-margin)
	if err := m.Store.SaveClaim(ctx, *st); err != nil {
		return err
	}
	log.Info("claim verified", zap.String(logkey.Claim, auth.ID), zap.Time("expires_at", auth.ExpiresAt))
	m.event(ctx, "info", "claim_verified", *st, fmt.Sprintf("claim %s on %s verified until %s", auth.ID, st.Domain, auth.ExpiresAt.UTC().Format(time.RFC3339)))
	return nil
}

func (m *Claims) pollTimeout() time.Duration {
	if m.PollTimeout == 0 {
		return 2 * time.Minute
	}
	return m.PollTimeout
}

func (m *Claims) sleep(ctx context.Context, d time.Duration) error {
	if m.Sleep != nil {
		return m.Sleep(ctx, d)
	}
	return ctxtime.Sleep(ctx, d)
}

func (m *Claims) event(ctx context.Context, level, kind string, c store.Claim, msg string) {
	_, _ = m.Store.AppendEvent(context.WithoutCancel(ctx), store.Event{Level: level, Kind: kind, Claim: c.Domain, Account: c.Account, Message: msg})
}
