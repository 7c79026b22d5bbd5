package notify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"strings"
	"time"
)

// Email sends messages through an SMTP relay. STARTTLS is required unless
// Insecure is set; credentials are never sent in the clear.
type Email struct {
	Addr     string // host:port of the relay
	From     string
	To       []string
	Username string
	Password string
	// RootCAs verifies the relay's certificate (nil: the system roots).
	RootCAs *x509.CertPool
	// Insecure allows a relay without STARTTLS (and then no auth).
	Insecure bool
}

// Name implements Sender.
func (e *Email) Name() string { return "email" }

// Send implements Sender.
func (e *Email) Send(ctx context.Context, m Message) error {
	host, _, err := net.SplitHostPort(e.Addr)
	if err != nil {
		return fmt.Errorf("relay address %q: %w", e.Addr, err)
	}
	d := net.Dialer{Timeout: 15 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", e.Addr)
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(time.Minute))
	}
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if err := c.Hello("certd"); err != nil {
		return err
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(&tls.Config{ServerName: host, RootCAs: e.RootCAs, MinVersion: tls.VersionTLS12}); err != nil {
			return fmt.Errorf("STARTTLS: %w", err)
		}
	} else if !e.Insecure {
		return errors.New("the relay does not offer STARTTLS; refusing to send (set insecure to allow)")
	}
	if e.Username != "" {
		if _, tlsOn := c.TLSConnectionState(); !tlsOn {
			return errors.New("refusing to authenticate without TLS")
		}
		if err := c.Auth(smtp.PlainAuth("", e.Username, e.Password, host)); err != nil {
			return fmt.Errorf("authenticating as %s: %w", e.Username, err)
		}
	}
	if err := c.Mail(e.From); err != nil {
		return err
	}
	for _, to := range e.To {
		if err := c.Rcpt(to); err != nil {
			return fmt.Errorf("recipient %s: %w", to, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	msg := "From: " + e.From + "\r\nTo: " + strings.Join(e.To, ", ") + "\r\nSubject: " + headerSafe(m.Subject) +
		"\r\nDate: " + m.At.Format(time.RFC1123Z) + "\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"Auto-Submitted: auto-generated\r\n\r\n" + strings.ReplaceAll(render(m), "\n", "\r\n")
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// headerSafe keeps a subject on one line.
func headerSafe(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}
