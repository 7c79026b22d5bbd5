package mmsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// cnameTarget is DigiCert's CNAME target.
const cnameTarget = "dcv.digicert.com."

// check runs one real DigiCert check of name by method for token.
func (s *Server) check(ctx context.Context, name, method, token string) error {
	switch method {
	case "DNS_TXT_TOKEN":
		return s.checkTXT(ctx, name, token)
	case "DNS_CNAME_TOKEN":
		return s.checkCNAME(ctx, name, token)
	case "HTTP_TOKEN":
		return s.checkHTTP(ctx, name, token)
	}
	return fmt.Errorf("%s is not checked over the network", method)
}

// owners are the names DigiCert looks at for name: the name (a wildcard's
// base) and each parent with two labels or more.
func owners(name string) []string {
	d := strings.TrimPrefix(strings.ToLower(name), "*.")
	var out []string
	for strings.Count(d, ".") >= 1 {
		out = append(out, d)
		_, d, _ = strings.Cut(d, ".")
	}
	return out
}

func (s *Server) lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	if s.opts.DNSServer == "" {
		return nil, errors.New("no DNS server configured for DCV")
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	client := &dns.Client{Timeout: 3 * time.Second}
	resp, _, err := client.ExchangeContext(ctx, m, s.opts.DNSServer)
	if err != nil {
		return nil, fmt.Errorf("%s lookup of %s: %w", dns.TypeToString[qtype], name, err)
	}
	return resp.Answer, nil
}

// checkTXT looks for a TXT string equal to the token at the name or
// _dnsauth.<name>, then at each parent the same way.
func (s *Server) checkTXT(ctx context.Context, name, token string) error {
	var tried []string
	for _, owner := range owners(name) {
		for _, n := range []string{owner, "_dnsauth." + owner} {
			tried = append(tried, n)
			rrs, err := s.lookup(ctx, n, dns.TypeTXT)
			if err != nil {
				return err
			}
			for _, rr := range rrs {
				if t, ok := rr.(*dns.TXT); ok && strings.Join(t.Txt, "") == token {
					return nil
				}
			}
		}
	}
	return fmt.Errorf("no TXT %q at %s", token, strings.Join(tried, ", "))
}

// checkCNAME looks for <token>.<name> CNAME dcv.digicert.com or
// _dnsauth.<name> CNAME <token>.dcv.digicert.com, then at each parent.
func (s *Server) checkCNAME(ctx context.Context, name, token string) error {
	var tried []string
	for _, owner := range owners(name) {
		for _, c := range []struct{ at, want string }{{token + "." + owner, cnameTarget}, {"_dnsauth." + owner, token + "." + cnameTarget}} {
			tried = append(tried, c.at)
			rrs, err := s.lookup(ctx, c.at, dns.TypeCNAME)
			if err != nil {
				return err
			}
			for _, rr := range rrs {
				if cn, ok := rr.(*dns.CNAME); ok && strings.EqualFold(cn.Hdr.Name, dns.Fqdn(c.at)) {
					if strings.EqualFold(cn.Target, c.want) {
						return nil
					}
					return fmt.Errorf("CNAME %s points to %s, not %s", c.at, cn.Target, c.want)
				}
			}
		}
	}
	return fmt.Errorf("no CNAME at %s", strings.Join(tried, ", "))
}

// checkHTTP fetches http://<name>/.well-known/pki-validation/fileauth.txt
// with the name as Host, never following a redirect, and wants the token
// (surrounding white space ignored).
func (s *Server) checkHTTP(ctx context.Context, name, token string) error {
	if strings.HasPrefix(name, "*.") {
		return fmt.Errorf("HTTP_TOKEN cannot validate the wildcard %s", name)
	}
	u := "http://" + name + "/.well-known/pki-validation/fileauth.txt"
	dialer := &net.Dialer{Timeout: 3 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			if s.opts.HTTPAddr != "" {
				a = s.opts.HTTPAddr
			}
			return dialer.DialContext(ctx, network, a)
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return fmt.Errorf("%s: redirect (%d) to %s is not followed", u, resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status %d", u, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return fmt.Errorf("%s: %w", u, err)
	}
	if strings.TrimSpace(string(b)) != token {
		return fmt.Errorf("%s: content %q is not the token", u, snippet(b))
	}
	return nil
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}
