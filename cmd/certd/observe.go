package main

import (
	"context"
	"errors"
	"net"
	"strconv"
	"time"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/dcv"
	"github.com/certd/certd/deploy"
	"github.com/certd/certd/metrics"
	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

// errIssuerUnavailable: the account's CA has no issuer in this release.
var errIssuerUnavailable = errors.New("issuer not available in this certd release")

// failureReasons are the reasons failureReason gives that do not depend
// on a CA's status or a deploy step: their counters are exported at zero
// from the start.
var failureReasons = []string{"quota", "awaiting_approval", "issuer_unavailable", "rejected", "ambiguous", "dcv_failed",
	"dcv_not_visible", "needs_operator", "ca_unreachable", "timeout", "other"}

// failureReason classifies a failed job for metrics and notifications,
// from the errors' types, never their text.
func failureReason(err error) string {
	var df *deploy.Failure
	ce, isCA := ca.AsError(err)
	switch {
	case isCA && ce.Code == "quota":
		return "quota"
	case errors.Is(err, scheduler.ErrAwaitingApproval):
		return "awaiting_approval"
	case errors.Is(err, errIssuerUnavailable):
		return "issuer_unavailable"
	case errors.Is(err, ca.ErrRejected):
		return "rejected"
	case errors.Is(err, ca.ErrAmbiguous):
		return "ambiguous"
	case errors.Is(err, ca.ErrDCVFailed):
		return "dcv_failed"
	case errors.Is(err, dcv.ErrNotVisible):
		return "dcv_not_visible"
	case errors.As(err, &df):
		return "deploy_" + df.Step
	case isCA && ce.Status == 0 && errors.As(err, new(*net.OpError)):
		return "ca_unreachable"
	case isCA && ce.Permanent && ce.Status == 0:
		return "needs_operator"
	case isCA && ce.Status != 0:
		return "ca_" + strconv.Itoa(ce.Status)
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "other"
}

// observers feed metrics from the daemon's parts; all methods are no-ops
// without metrics.
type observers struct{ m *metrics.Metrics }

// caRequests counts a CA client's requests by route.
func (o observers) caRequests(account string) func(route string, status int, d time.Duration) {
	if o.m == nil {
		return nil
	}
	return func(route string, status int, d time.Duration) {
		o.m.CARequests.WithLabelValues(account, route, strconv.Itoa(status)).Inc()
		o.m.CALatency.WithLabelValues(account, route).Observe(d.Seconds())
	}
}

func (o observers) dcv() func(provider, kind string, d time.Duration) {
	if o.m == nil {
		return nil
	}
	return func(provider, kind string, d time.Duration) {
		o.m.DCVVisible.WithLabelValues(provider, kind).Observe(d.Seconds())
	}
}

func (o observers) failure(c store.Certificate, err error) {
	if o.m != nil {
		o.m.Failures.WithLabelValues(c.Account, failureReason(err)).Inc()
	}
}

// deployed counts deploys and live verifications, and after a success
// refreshes the account's quota in the background.
func (o observers) deployed(c store.Certificate, plan scheduler.Plan, err error) {
	if o.m == nil {
		return
	}
	var df *deploy.Failure
	switch {
	case err == nil:
		o.m.Deploys.WithLabelValues(c.Name, "success").Inc()
		o.m.Renewals.WithLabelValues(plan.Spec.Account).Inc()
		if plan.Deploy.Verify != nil {
			o.m.LiveChecks.WithLabelValues(c.Name, "success").Inc()
		}
		if q, ok := plan.Issuer.(interface {
			Quota(ctx context.Context) (int, error)
		}); ok {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if n, err := q.Quota(ctx); err == nil {
					o.m.Quota.WithLabelValues(plan.Spec.Account).Set(float64(n))
				}
			}()
		}
	case errors.As(err, &df) && df.Step == "live verification":
		o.m.Deploys.WithLabelValues(c.Name, "failure").Inc()
		o.m.LiveChecks.WithLabelValues(c.Name, "failure").Inc()
	default:
		o.m.Deploys.WithLabelValues(c.Name, "failure").Inc()
	}
}
