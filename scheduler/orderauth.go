package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/internal/logkey"
	"github.com/certd/certd/store"
)

// authorize proves the order's pending authorizations (per-order DCV):
// every challenge is published (owned by the order, so it stays through
// later passes and restarts until the order ends), waited for together,
// then answered together. Authorizations already valid (reused by the CA,
// or proved before a restart) are left alone.
//
// What a failed proof means depends on the order's cost. A free order
// (ACME) is dead once an authorization is invalid: a resumed one (its
// failure may predate this run's proofs) is replaced at once, one placed
// in this run fails the usual way. A paid order is never replaced for
// that: its proofs stay published and the CA is asked to check again on
// the next attempt.
func (x *Issuing) authorize(ctx context.Context, log *zap.Logger, c store.Certificate, plan Plan, cost ca.Cost, oa ca.OrderAuthorizer,
	o *store.Order, req ca.Request, st *orderRun) (orderStep, error) {
	auths, err := oa.Authorizations(ctx, ca.Order{Ref: o.CARef}, req)
	if err != nil {
		return 0, fmt.Errorf("reading the order's authorizations: %w", err)
	}
	type job struct {
		auth  ca.OrderAuthorization
		ch    dcv.Challenge
		proof Proof
	}
	var jobs []*job
	for _, a := range auths {
		switch a.Status {
		case ca.AuthValid:
			continue
		case ca.AuthInvalid:
			if cost == ca.FreeUntilFinalized {
				// Found failed before certd published anything in this run.
				return x.proofFailed(ctx, log, c, plan, cost, o, a, st, true)
			}
		}
		p, ok := plan.Proofs[a.Domain]
		if !ok {
			return 0, fmt.Errorf("the CA asks to authorize %s, which the certificate does not name", a.Domain)
		}
		ch, ok := pickChallenge(a.Challenges, p.CA.Method)
		if !ok {
			return 0, fmt.Errorf("the CA offers no %s challenge for %s", p.CA.Method, a.Domain)
		}
		jobs = append(jobs, &job{auth: a, ch: ch, proof: p})
	}
	if len(jobs) == 0 {
		return stepNext, nil
	}
	owner := OrderOwner(o.ID)
	var published []*dcv.Published
	for _, j := range jobs {
		pub, err := plan.Engine.Present(ctx, owner, j.ch, j.proof.Target)
		if pub != nil {
			published = append(published, pub)
		}
		if err != nil {
			return 0, err
		}
	}
	if err := plan.Engine.Wait(ctx, published); err != nil {
		return 0, err
	}
	results := make([]ca.OrderAuthorization, len(jobs))
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for k, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[k], errs[k] = oa.Respond(ctx, j.auth, j.ch)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, fmt.Errorf("answering challenges: %w", err)
	}
	waiting := false
	for k, r := range results {
		switch r.Status {
		case ca.AuthValid:
			log.Info("authorization valid", zap.String(logkey.Domain, r.Domain), zap.String("method", string(jobs[k].ch.Method)))
		case ca.AuthInvalid:
			// Checking: the CA checked on an earlier run's request,
			// possibly before this run had published anything.
			return x.proofFailed(ctx, log, c, plan, cost, o, r, st, jobs[k].auth.Checking)
		default:
			waiting = true // the CA has not decided yet
		}
	}
	if waiting {
		return stepWait, nil
	}
	x.event(ctx, "info", "authorized", c, fmt.Sprintf("order %s: %d authorization(s) proved", o.CARef, len(jobs)))
	return stepNext, nil
}

// proofFailed handles an authorization the CA refused. A free order is
// ended (stale: replaced at once); a paid one keeps its proofs and fails
// this attempt, so the CA is asked to check again on the next.
func (x *Issuing) proofFailed(ctx context.Context, log *zap.Logger, c store.Certificate, plan Plan, cost ca.Cost, o *store.Order,
	a ca.OrderAuthorization, st *orderRun, stale bool) (orderStep, error) {
	detail := a.Detail
	if detail == "" {
		detail = "no detail given"
	}
	err := fmt.Errorf("%w for %s: %s", ca.ErrDCVFailed, a.Domain, detail)
	x.event(ctx, "error", "dcv_failed", c, err.Error())
	if cost != ca.FreeUntilFinalized {
		o.LastError = err.Error()
		if serr := x.Store.SaveOrder(context.WithoutCancel(ctx), *o); serr != nil {
			return 0, errors.Join(err, serr)
		}
		log.Warn("the CA's check failed; the proofs stay published and the CA is asked again (a paid order is never replaced for this)",
			zap.String(logkey.Order, o.CARef), zap.String(logkey.Domain, a.Domain), zap.Error(err))
		return 0, fmt.Errorf("order %s: %w; the CA is asked to check again", o.CARef, err)
	}
	if serr := x.endOrder(ctx, plan, o, store.OrderFailed, err.Error()); serr != nil {
		return 0, errors.Join(err, serr)
	}
	if stale && !st.fresh {
		log.Info("a resumed order failed validation; placing a new order", zap.String(logkey.Order, o.CARef), zap.Error(err))
		return stepRenew, nil
	}
	return 0, err
}

// pickChallenge is the offered challenge that proves by m. A DNS proof
// (dcv.DNSTXT in configuration: a record through the DNS provider) takes
// the CA's TXT challenge, or its CNAME one when that is what it offers.
func pickChallenge(offered []dcv.Challenge, m dcv.Method) (dcv.Challenge, bool) {
	for _, ch := range offered {
		if ch.Method == m {
			return ch, true
		}
	}
	if m == dcv.DNSTXT {
		for _, ch := range offered {
			if ch.Method == dcv.DNSCNAME {
				return ch, true
			}
		}
	}
	return dcv.Challenge{}, false
}

// ActionARI: ask the CA's renewal information (ARI) when due, then renew
// or schedule the renewal inside the CA's window.
const ActionARI = "ari-check"

// ariDefaultRecheck is how soon ARI is asked again when the CA does not
// say (RFC 9773 suggests six hours).
const ariDefaultRecheck = 6 * time.Hour

// adviseRenewal asks the CA when cur (just deployed, or due for an ARI
// check) should be renewed, and saves the decision as the certificate's
// next action. It reports whether renewal is due now. ARI trouble never
// blocks renewal: on an error or an unusable window the local renewal
// time stands, and ARI is asked again later.
func (x *Issuing) adviseRenewal(ctx context.Context, log *zap.Logger, cur store.Certificate, plan Plan, v store.Version) (bool, error) {
	adv, ok := plan.Issuer.(ca.RenewalAdvisor)
	if !ok {
		return false, nil
	}
	leaf, _, err := parseChain(v.CertPEM, v.ChainPEM)
	if err != nil {
		return false, err
	}
	now := x.now()
	fallback := RenewalTime(v.NotBefore, v.NotAfter, plan.Policy, 0)
	minRecheck := x.minRecheck()
	w, err := adv.RenewalWindow(ctx, leaf)
	var at time.Time
	action := ActionRenew
	switch {
	case errors.Is(err, ca.ErrNoAdvice):
		return false, nil // the deploy's own renewal time stands
	case err != nil || !w.Valid():
		recheck := ariDefaultRecheck / 6 // an error: sooner than the routine hour
		if err == nil {
			log.Warn("ignoring an invalid ARI window; the local renewal time stands", zap.Time("start", w.Start), zap.Time("end", w.End))
			recheck = ariDefaultRecheck
		} else {
			log.Warn("ARI request failed; the local renewal time stands", zap.Error(err))
			x.event(ctx, "warn", "ari", cur, fmt.Sprintf("renewal information unavailable (%v); renewal stays at %s", err, fallback.UTC().Format(time.RFC3339)))
		}
		var ra RetryAfterError
		if errors.As(err, &ra) && ra.RetryAfter() > 0 {
			recheck = ra.RetryAfter()
		} else if w.RetryAfter > 0 {
			recheck = w.RetryAfter
		}
		if !now.Before(fallback) {
			return true, nil
		}
		at, action = now.Add(max(recheck, minRecheck)), ActionARI
		if !at.Before(fallback) {
			at, action = fallback, ActionRenew
		}
	default:
		r := 0.5
		if x.Rand != nil {
			r = x.Rand.Float64()
		}
		t := w.Start.Add(time.Duration(r * float64(w.End.Sub(w.Start))))
		// Never later than the emergency window: that is an outage risk
		// whatever the CA suggests.
		// Never inside the emergency window: a window that reaches it
		// (a short lifetime, a late suggestion) is cut to halfway between
		// the local renewal time and the emergency time.
		if e := EmergencyTime(v.NotBefore, v.NotAfter); !t.Before(e) {
			t = fallback.Add(e.Sub(fallback) / 2)
		}
		recheck := ariDefaultRecheck
		if w.RetryAfter > 0 {
			recheck = w.RetryAfter
		}
		next := now.Add(max(recheck, minRecheck))
		if w.ExplanationURL != "" {
			log.Info("the CA explains its renewal window", zap.String("explanation_url", w.ExplanationURL))
		}
		if !t.After(now) {
			log.Info("ARI window open: renewing now", zap.Time("start", w.Start), zap.Time("end", w.End))
			x.event(ctx, "info", "ari", cur, fmt.Sprintf("the CA's renewal window %s to %s is open: renewing now%s",
				w.Start.UTC().Format(time.RFC3339), w.End.UTC().Format(time.RFC3339), explain(w.ExplanationURL)))
			return true, nil
		}
		at = t
		if next.Before(t) {
			at, action = next, ActionARI
		}
		log.Info("ARI window", zap.Time("start", w.Start), zap.Time("end", w.End), zap.String(logkey.Action, action), zap.Time("at", at))
	}
	return false, x.Store.UpdateCertificate(ctx, cur.Name, func(c *store.Certificate) error {
		c.NextAction, c.NextActionAt = action, at
		return nil
	})
}

func (x *Issuing) minRecheck() time.Duration {
	if x.ARIMinRecheck > 0 {
		return x.ARIMinRecheck
	}
	return time.Minute
}

func explain(u string) string {
	if u == "" {
		return ""
	}
	return " (" + strings.TrimSpace(u) + ")"
}
