package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
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

	mu       sync.Mutex
	channels []string // names of the configured senders
	inflight sync.WaitGroup
}

// kindRetired: a certificate left the configuration while its files are
// still deployed.
const kindRetired = "retired"

// setSenders replaces the channels messages go to and says so when there
// is none: then nobody is told anything, which an operator must know.
func (nt *notifier) setSenders(senders []notify.Sender) {
	names := make([]string, 0, len(senders))
	for _, s := range senders {
		names = append(names, s.Name())
	}
	nt.mu.Lock()
	nt.channels = names
	nt.mu.Unlock()
	nt.n.SetSenders(senders)
	if len(names) == 0 {
		nt.log.Warn("no notification channel is configured (notify.webhook, notify.email): nobody is told when a certificate fails, " +
			"expires or is retired; it is only logged, recorded in the event log and shown by certd status")
		return
	}
	nt.log.Info("notifications go to " + strings.Join(names, " and "))
}

func (nt *notifier) send(m notify.Message) {
	nt.mu.Lock()
	channels := strings.Join(nt.channels, ",")
	nt.mu.Unlock()
	if channels == "" {
		nt.log.Debug("not notified: no notification channel is configured", zap.String("cert", m.Cert), zap.String("kind", m.Kind))
		return
	}
	nt.inflight.Add(1)
	go func() {
		defer nt.inflight.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := nt.n.Notify(ctx, m)
		switch {
		case errors.Is(err, notify.ErrSuppressed):
			nt.log.Debug("notification suppressed", zap.String("cert", m.Cert), zap.String("kind", m.Kind))
		case err != nil:
			nt.log.Warn("notification failed", zap.String("cert", m.Cert), zap.String("kind", m.Kind), zap.Error(err))
		default:
			nt.log.Info("notification sent", zap.String("cert", m.Cert), zap.String("kind", m.Kind), zap.String("channels", channels))
		}
	}()
}

// flush waits, at most d, for the notifications being sent: a run that
// exits must not drop what it was telling someone.
func (nt *notifier) flush(d time.Duration) {
	done := make(chan struct{})
	go func() { nt.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		nt.log.Warn("notifications still being sent were abandoned at exit", zap.Duration("waited", d))
	}
}

// retired is called for every certificate the configuration no longer
// lists: its files stay deployed and are no longer renewed.
func (nt *notifier) retired(c store.Certificate) {
	text := fmt.Sprintf("%s (%s) was removed from the configuration and retired: certd no longer renews it.", c.Name, strings.Join(c.Domains, ", "))
	if c.Current != nil {
		text += fmt.Sprintf(" Its deployed files (serial %s) stay in place and expire at %s. If the removal was a mistake (a truncated or half-written "+
			"configuration), put the certificate back: its stored version is adopted and nothing is ordered.", c.Current.Serial, c.Current.NotAfter.UTC().Format(time.RFC3339))
	}
	nt.send(notify.Message{Kind: kindRetired, Cert: c.Name, Account: c.Account, Domains: c.Domains,
		Subject: fmt.Sprintf("certd: %s retired (removed from the configuration)", c.Name), Text: text})
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
