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

// authorize proves the order's pending authorizations (ACME): every
// challenge is published and waited for together, then answered together,
// and cleaned up whatever happens. Authorizations already valid (reused by
// the CA, or proved before a restart) are left alone.
func (x *Issuing) authorize(ctx context.Context, log *zap.Logger, c store.Certificate, plan Plan, oa ca.OrderAuthorizer, o *store.Order, req ca.Request) error {
	auths, err := oa.Authorizations(ctx, ca.Order{Ref: o.CARef}, req)
	if err != nil {
		return fmt.Errorf("reading the order's authorizations: %w", err)
	}
	type job struct {
		auth  ca.OrderAuthorization
		ch    dcv.Challenge
		proof Proof
		pub   *dcv.Published
	}
	var jobs []*job
	for _, a := range auths {
		switch a.Status {
		case ca.AuthValid:
			continue
		case ca.AuthInvalid:
			// Found failed before certd published anything in this run.
			return &staleAuthorization{x.authFailed(ctx, c, o, a)}
		}
		p, ok := plan.Proofs[a.Domain]
		if !ok {
			return fmt.Errorf("the CA asks to authorize %s, which the certificate does not name", a.Domain)
		}
		ch, ok := pickChallenge(a.Challenges, p.CA.Method)
		if !ok {
			return fmt.Errorf("the CA offers no %s challenge for %s", p.CA.Method, a.Domain)
		}
		jobs = append(jobs, &job{auth: a, ch: ch, proof: p})
	}
	if len(jobs) == 0 {
		return nil
	}
	var published []*dcv.Published
	defer func() {
		if err := plan.Engine.CleanUp(ctx, published); err != nil {
			log.Warn("cleaning up challenges failed; it will be retried", zap.Error(err))
		}
	}()
	for _, j := range jobs {
		pub, err := plan.Engine.Present(ctx, "cert:"+c.Name, j.ch, j.proof.Target)
		if pub != nil {
			published = append(published, pub)
		}
		if err != nil {
			return err
		}
		j.pub = pub
	}
	if err := plan.Engine.Wait(ctx, published); err != nil {
		return err
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
		return fmt.Errorf("answering challenges: %w", err)
	}
	for k, r := range results {
		if r.Status != ca.AuthValid {
			if jobs[k].auth.Checking {
				// The CA checked on an earlier run's request, possibly
				// before this run had published anything.
				return &staleAuthorization{x.authFailed(ctx, c, o, r)}
			}
			return x.authFailed(ctx, c, o, r)
		}
		log.Info("authorization valid", zap.String(logkey.Domain, r.Domain), zap.String("method", string(jobs[k].ch.Method)))
	}
	x.event(ctx, "info", "authorized", c, fmt.Sprintf("order %s: %d authorization(s) proved", o.CARef, len(jobs)))
	return nil
}

// authFailed ends an order whose authorization the CA refused: the order
// can never be finalized, so the next attempt places a new one (an ACME
// order costs nothing until it is finalized).
func (x *Issuing) authFailed(ctx context.Context, c store.Certificate, o *store.Order, a ca.OrderAuthorization) error {
	detail := a.Detail
	if detail == "" {
		detail = "no detail given"
	}
	err := fmt.Errorf("%w for %s: %s", ca.ErrDCVFailed, a.Domain, detail)
	o.State, o.LastError = store.OrderFailed, err.Error()
	if serr := x.Store.SaveOrder(context.WithoutCancel(ctx), *o); serr != nil {
		return errors.Join(err, serr)
	}
	x.event(ctx, "error", "dcv_failed", c, err.Error())
	return err
}

// staleAuthorization: the order's authorization had failed before this
// attempt (the CA checked while certd was down or had cleaned up).
type staleAuthorization struct{ err error }

func (s *staleAuthorization) Error() string { return s.err.Error() }
func (s *staleAuthorization) Unwrap() error { return s.err }

func pickChallenge(offered []dcv.Challenge, m dcv.Method) (dcv.Challenge, bool) {
	for _, ch := range offered {
		if ch.Method == m {
			return ch, true
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
		if e := EmergencyTime(v.NotBefore, v.NotAfter); t.After(e) {
			t = e
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
	c, err := x.Store.GetCertificate(ctx, cur.Name)
	if err != nil {
		return false, err
	}
	c.NextAction, c.NextActionAt = action, at
	return false, x.Store.SaveCertificate(ctx, c)
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
