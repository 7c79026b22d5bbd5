package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/certd/certd/config"
	"github.com/certd/certd/notify"
	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

// notifySenders builds the senders of the notify section, resolving its
// secrets.
func notifySenders(n config.Notify) ([]notify.Sender, error) {
	var out []notify.Sender
	if w := n.Webhook; w != nil {
		url, err := w.URL.Resolve()
		if err != nil {
			return nil, fmt.Errorf("notify.webhook: %w", err)
		}
		out = append(out, &notify.Webhook{URL: url.Reveal(), Slack: w.Slack})
	}
	if e := n.Email; e != nil {
		em := &notify.Email{Addr: e.SMTP, From: e.From, To: e.To, Username: e.Username, Insecure: e.Insecure}
		if e.Password.IsSet() {
			pw, err := e.Password.Resolve()
			if err != nil {
				return nil, fmt.Errorf("notify.email: %w", err)
			}
			em.Password = pw.Reveal()
		}
		if e.CA != "" {
			pemData, err := os.ReadFile(e.CA)
			if err != nil {
				return nil, fmt.Errorf("notify.email.ca: %w", err)
			}
			em.RootCAs = x509.NewCertPool()
			if !em.RootCAs.AppendCertsFromPEM(pemData) {
				return nil, fmt.Errorf("notify.email.ca: %s holds no PEM certificate", e.CA)
			}
		}
		out = append(out, em)
	}
	return out, nil
}

// notifier decides what is worth a person's attention.
type notifier struct {
	n   *notify.Notifier
	cfg func() config.Notify
	log *zap.Logger
}

func (nt *notifier) send(m notify.Message) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := nt.n.Notify(ctx, m)
		switch {
		case errors.Is(err, notify.ErrSuppressed):
			nt.log.Debug("notification suppressed", zap.String("cert", m.Cert), zap.String("kind", m.Kind))
		case err != nil:
			nt.log.Warn("notification failed", zap.String("cert", m.Cert), zap.String("kind", m.Kind), zap.Error(err))
		default:
			nt.log.Info("notification sent", zap.String("cert", m.Cert), zap.String("kind", m.Kind))
		}
	}()
}

// failed is called after a failure is recorded.
func (nt *notifier) failed(c store.Certificate, err error) {
	cfg := nt.cfg()
	reason := failureReason(err)
	if c.Current != nil && time.Until(c.Current.NotAfter) < cfg.ExpiryWarning.D() {
		nt.send(notify.Message{Kind: notify.KindExpiring, Cert: c.Name, Account: c.Account, Domains: c.Domains,
			Subject: fmt.Sprintf("certd: %s expires %s and renewal is failing", c.Name, c.Current.NotAfter.UTC().Format(time.RFC3339)),
			Text: fmt.Sprintf("The deployed certificate %s (serial %s) expires at %s. Renewal has failed %d times; the last error (%s): %v.",
				c.Name, c.Current.Serial, c.Current.NotAfter.UTC().Format(time.RFC3339), c.Failures, reason, err)})
		return
	}
	if c.State == store.StateNeedsOperator {
		// Retrying cannot fix it: tell someone at once, not after N tries.
		nt.send(notify.Message{Kind: notify.KindFailure, Cert: c.Name, Account: c.Account, Domains: c.Domains,
			Subject: fmt.Sprintf("certd: %s needs an operator (%s)", c.Name, reason),
			Text: fmt.Sprintf("%s failed in a way retrying cannot fix: %v. certd checks again only at %s, or at once after a reload or `certd renew %s`.",
				c.Name, err, c.NextActionAt.UTC().Format(time.RFC3339), c.Name)})
		return
	}
	if c.Failures < cfg.AfterFailures {
		return
	}
	nt.send(notify.Message{Kind: notify.KindFailure, Cert: c.Name, Account: c.Account, Domains: c.Domains,
		Subject: fmt.Sprintf("certd: %s keeps failing (%s)", c.Name, reason),
		Text: fmt.Sprintf("%s has failed %d times in a row; certd retries at %s. Last error: %v.",
			c.Name, c.Failures, c.NextActionAt.UTC().Format(time.RFC3339), err)})
}

// deployed is called after every deploy.
func (nt *notifier) deployed(c store.Certificate, plan scheduler.Plan, err error) {
	if err != nil {
		return // counted as a failure by the scheduler
	}
	kind, subject := notify.KindSuccess, fmt.Sprintf("certd: %s renewed", c.Name)
	switch {
	case nt.n.Reported(c.Name):
		kind, subject = notify.KindRecovered, fmt.Sprintf("certd: %s recovered", c.Name)
	case !nt.cfg().OnSuccess:
		return
	}
	nt.send(notify.Message{Kind: kind, Cert: c.Name, Account: plan.Spec.Account, Domains: plan.Spec.Domains, Subject: subject,
		Text: fmt.Sprintf("%s (%s) was issued and deployed to %s.", c.Name, strings.Join(plan.Spec.Domains, ", "), plan.Deploy.LivePath())})
}
