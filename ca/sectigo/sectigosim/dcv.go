package sectigosim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// check runs one real DCV check of name by method.
func (s *Server) check(ctx context.Context, name, method, md5, sha, uv string) error {
	switch method {
	case "CNAME_CSR_HASH":
		return s.checkCNAME(ctx, name, md5, sha, uv)
	case "HTTP_CSR_HASH":
		return s.checkHTTP(ctx, "http", name, md5, sha, uv)
	case "HTTPS_CSR_HASH":
		return s.checkHTTP(ctx, "https", name, md5, sha, uv)
	}
	return fmt.Errorf("%s is not checked over the network", method)
}

// checkCNAME looks for _<MD5>.<ADN> CNAME <sha[:32]>.<sha[32:]>.<uv>.sectigo.com
// at the name (a wildcard's base) and then at each parent, as Sectigo's
// ADN search does. Names compare case-insensitively.
func (s *Server) checkCNAME(ctx context.Context, name, md5, sha, uv string) error {
	if s.opts.DNSServer == "" {
		return errors.New("no DNS server configured for DCV")
	}
	want := sha[:32] + "." + sha[32:] + "."
	if uv != "" {
		want += uv + "."
	}
	want += "sectigo.com."
	client := &dns.Client{Timeout: 3 * time.Second}
	adn := strings.TrimPrefix(name, "*.")
	var tried []string
	for strings.Count(adn, ".") >= 1 {
		owner := dns.Fqdn("_" + md5 + "." + adn)
		tried = append(tried, owner)
		m := new(dns.Msg)
		m.SetQuestion(owner, dns.TypeCNAME)
		resp, _, err := client.ExchangeContext(ctx, m, s.opts.DNSServer)
		if err != nil {
			return fmt.Errorf("CNAME lookup of %s: %w", owner, err)
		}
		for _, rr := range resp.Answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, owner) {
				if strings.EqualFold(c.Target, want) {
					return nil
				}
				return fmt.Errorf("CNAME %s points to %s, not %s", owner, c.Target, want)
			}
		}
		_, adn, _ = strings.Cut(adn, ".")
	}
	return fmt.Errorf("no CNAME at %s", strings.Join(tried, ", "))
}

// checkHTTP fetches /.well-known/pki-validation/<MD5>.txt with the domain
// as Host, never following a redirect, and wants the SHA-256 line,
// "sectigo.com" and the uniqueValue line exactly (line ends \n or \r\n,
// a final newline optional).
func (s *Server) checkHTTP(ctx context.Context, scheme, host, md5, sha, uv string) error {
	u := scheme + "://" + host + "/.well-known/pki-validation/" + md5 + ".txt"
	dialer := &net.Dialer{Timeout: 3 * time.Second}
	addr := s.opts.HTTPAddr
	if scheme == "https" {
		addr = s.opts.HTTPSAddr
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			if addr != "" {
				a = addr
			}
			return dialer.DialContext(ctx, network, a)
		},
		// The simulator does not judge the site's own certificate.
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
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
	got := strings.Split(strings.TrimSuffix(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n"), "\n")
	want := []string{sha, "sectigo.com"}
	if uv != "" {
		want = append(want, uv)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		return fmt.Errorf("%s: content %q is not %q", u, string(b), strings.Join(want, "\n"))
	}
	return nil
}
