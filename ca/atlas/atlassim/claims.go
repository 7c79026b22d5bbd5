package atlassim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if !decode(w, r, &req) {
		return
	}
	if req.APIKey == "" || req.APISecret == "" {
		writeProblem(w, http.StatusUnprocessableEntity, "Invalid login request")
		return
	}
	if req.APIKey != s.opts.APIKey || req.APISecret != s.opts.APISecret {
		writeProblem(w, http.StatusUnauthorized, "Invalid credentials")
		return
	}
	tok := randomHex(32)
	s.mu.Lock()
	s.tokens[tok] = s.opts.Now().Add(s.opts.TokenLifetime)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"access_token": tok})
}

func (s *Server) validationPolicy(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	p := s.policy(s.opts.Now())
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, p)
}

func (c *claim) json() claimJSON {
	return claimJSON{ID: c.id, Status: c.status, Domain: c.domain + ".", CreatedAt: c.created.Unix(),
		ExpiresAt: unixOrZero(c.expires), AssertBy: c.asBy.Unix(), Log: append([]claimLogEntry{}, c.log...)}
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func (s *Server) newToken() string {
	return "globalsign-domain-verification=" + randomHex(16)
}

func (s *Server) createClaim(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("domain")
	domain, err := url.QueryUnescape(raw)
	if err != nil || domain == "" || strings.HasSuffix(domain, ".") || strings.ToLower(domain) != domain ||
		strings.HasPrefix(domain, "*.") || !strings.Contains(domain, ".") {
		writeProblemErrors(w, http.StatusUnprocessableEntity, "Invalid domain", map[string]string{"domain": fmt.Sprintf("%q is not a lower-case punycode FQDN without a trailing dot", raw)})
		return
	}
	if strings.HasSuffix(domain, ".invalid") {
		writeProblemErrors(w, http.StatusUnprocessableEntity, "Domain not allowed", map[string]string{"blacklist": domain + " is not allowed by the blacklist"})
		return
	}
	now := s.opts.Now()
	s.mu.Lock()
	c := &claim{id: randomHex(16), domain: domain, token: s.newToken(), status: "PENDING", created: now, asBy: now.Add(s.opts.AssertWindow)}
	c.log = append(c.log, claimLogEntry{Status: "INFO", Description: "claim created", Timestamp: now.Unix()})
	s.claims[c.id] = c
	s.mu.Unlock()
	w.Header().Set("Location", s.opts.BasePath+"/claims/domains/"+c.id)
	writeJSON(w, http.StatusCreated, claimToken{Token: c.token, AssertBy: c.asBy.Unix()})
}

// claimFor returns the claim of the {id} path value, answering 404 itself.
func (s *Server) claimFor(w http.ResponseWriter, r *http.Request) *claim {
	s.mu.Lock()
	c := s.claims[r.PathValue("id")]
	s.mu.Unlock()
	if c == nil {
		writeProblem(w, http.StatusNotFound, "Claim not found")
	}
	return c
}

func (s *Server) getClaim(w http.ResponseWriter, r *http.Request) {
	c := s.claimFor(w, r)
	if c == nil {
		return
	}
	s.progress(r.Context(), c)
	s.mu.Lock()
	j := c.json()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, j)
}

// progress re-runs a pending assertion job, as Atlas does in the
// background, whenever the claim is looked at.
func (s *Server) progress(ctx context.Context, c *claim) {
	s.mu.Lock()
	job := c.job
	s.mu.Unlock()
	if job == nil {
		return
	}
	err := s.check(ctx, c, job)
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.job != job {
		return
	}
	now := s.opts.Now()
	switch {
	case err == nil:
		s.verified(c, job.method, "assertion job succeeded")
	case !now.Before(job.until):
		c.job = nil
		c.log = append(c.log, claimLogEntry{Status: "ERROR", Description: err.Error(), Timestamp: now.Unix(), Method: job.method})
	}
}

// verified marks c verified; s.mu must be held.
func (s *Server) verified(c *claim, method, why string) {
	now := s.opts.Now()
	c.status, c.expires, c.job = "VERIFIED", now.Add(s.opts.ClaimValidity), nil
	c.log = append(c.log, claimLogEntry{Status: "SUCCESS", Description: why, Timestamp: now.Unix(), Method: method})
}

func (s *Server) listClaims(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	page, perPage, ok := paging(w, q)
	if !ok {
		return
	}
	status := q.Get("status")
	if status != "" && status != "PENDING" && status != "VERIFIED" {
		writeProblem(w, http.StatusUnprocessableEntity, "status must be PENDING or VERIFIED")
		return
	}
	s.mu.Lock()
	var all []claimJSON
	for _, c := range s.claims {
		if status == "" || c.status == status {
			all = append(all, c.json())
		}
	}
	s.mu.Unlock()
	sort.Slice(all, func(i, j int) bool {
		return all[i].CreatedAt < all[j].CreatedAt || all[i].CreatedAt == all[j].CreatedAt && all[i].ID < all[j].ID
	})
	writePage(w, r, all, page, perPage)
}

func paging(w http.ResponseWriter, q url.Values) (page, perPage int, ok bool) {
	page, perPage = 1, 100
	if v := q.Get("page"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 {
			writeProblem(w, http.StatusUnprocessableEntity, "page must be a positive integer")
			return 0, 0, false
		}
		page = p
	}
	if v := q.Get("per_page"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 100 {
			writeProblem(w, http.StatusUnprocessableEntity, "per_page must be between 1 and 100")
			return 0, 0, false
		}
		perPage = p
	}
	return page, perPage, true
}

// writePage answers one page with the Total-Count and Links headers.
func writePage[T any](w http.ResponseWriter, r *http.Request, all []T, page, perPage int) {
	total := len(all)
	last := max(1, (total+perPage-1)/perPage)
	start := min((page-1)*perPage, total)
	end := min(start+perPage, total)
	link := func(p int, rel string) string {
		q := r.URL.Query()
		q.Set("page", strconv.Itoa(p))
		return fmt.Sprintf("<%s?%s>; rel=%q", r.URL.Path, q.Encode(), rel)
	}
	var links []string
	if page > 1 {
		links = append(links, link(page-1, "previous"))
	}
	if page < last {
		links = append(links, link(page+1, "next"))
	}
	links = append(links, link(last, "last"))
	w.Header().Set("Total-Count", strconv.Itoa(total))
	// Atlas separates entries inconsistently; so does the simulator.
	w.Header().Set("Links", strings.Join(links, "; "))
	writeJSON(w, http.StatusOK, append([]T{}, all[start:end]...))
}

func (s *Server) deleteClaim(w http.ResponseWriter, r *http.Request) {
	c := s.claimFor(w, r)
	if c == nil {
		return
	}
	s.mu.Lock()
	delete(s.claims, c.id)
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) reassert(w http.ResponseWriter, r *http.Request) {
	c := s.claimFor(w, r)
	if c == nil {
		return
	}
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.job != nil && now.Before(c.job.until) {
		writeProblem(w, http.StatusAccepted, "A previous assertion is still pending")
		return
	}
	c.token, c.asBy, c.job = s.newToken(), now.Add(s.opts.AssertWindow), nil
	c.log = append(c.log, claimLogEntry{Status: "INFO", Description: "claim reasserted: new token", Timestamp: now.Unix()})
	w.Header().Set("Location", s.opts.BasePath+"/claims/domains/"+c.id)
	writeJSON(w, http.StatusCreated, claimToken{Token: c.token, AssertBy: c.asBy.Unix()})
}

// startVerify is the shared front of /dns and /http: assert_by, a pending
// job, then an immediate check; success is 204, otherwise a job (201).
func (s *Server) startVerify(w http.ResponseWriter, r *http.Request, c *claim, job *verifyJob) {
	now := s.opts.Now()
	s.mu.Lock()
	switch {
	case now.After(c.asBy):
		s.mu.Unlock()
		writeProblem(w, http.StatusFailedDependency, "Claim expired. Reassert first")
		return
	case c.job != nil && now.Before(c.job.until):
		s.mu.Unlock()
		writeProblem(w, http.StatusAccepted, "A previous assertion is still pending")
		return
	}
	s.mu.Unlock()
	err := s.check(r.Context(), c, job)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.verified(c, job.method, "verified")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	job.until = now.Add(s.opts.VerifyWindow)
	c.job = job
	c.log = append(c.log, claimLogEntry{Status: "INFO", Description: "assertion job created: " + err.Error(), Timestamp: now.Unix(), Method: job.method})
	w.WriteHeader(http.StatusCreated)
}

func (s *Server) verifyDNS(w http.ResponseWriter, r *http.Request) {
	c := s.claimFor(w, r)
	if c == nil {
		return
	}
	adn := c.domain
	if r.ContentLength != 0 {
		var body struct {
			AuthorizationDomain string `json:"authorization_domain"`
		}
		if !decode(w, r, &body) {
			return
		}
		if body.AuthorizationDomain == "" {
			writeProblem(w, http.StatusUnprocessableEntity, "authorization_domain is empty: omit the body instead")
			return
		}
		adn = strings.TrimSuffix(body.AuthorizationDomain, ".")
	}
	if !adnAllowed(adn, c.domain) {
		writeProblemErrors(w, http.StatusUnprocessableEntity, "Invalid authorization domain",
			map[string]string{"authorization_domain": adn + " is neither " + c.domain + " nor an underscore label of it"})
		return
	}
	s.startVerify(w, r, c, &verifyJob{method: "DNS", adn: adn})
}

// adnAllowed: the domain itself, or "_label." in front of it (Appendix B
// delegation).
func adnAllowed(adn, domain string) bool {
	if adn == domain {
		return true
	}
	label, rest, ok := strings.Cut(adn, ".")
	return ok && rest == domain && strings.HasPrefix(label, "_") && len(label) > 1
}

func (s *Server) verifyHTTP(w http.ResponseWriter, r *http.Request) {
	c := s.claimFor(w, r)
	if c == nil {
		return
	}
	var body struct {
		AuthorizationDomain string `json:"authorization_domain"`
		Scheme              string `json:"scheme"`
	}
	if !decode(w, r, &body) {
		return
	}
	adn := strings.TrimSuffix(body.AuthorizationDomain, ".")
	switch {
	case strings.Contains(adn, "*") || strings.HasPrefix(c.domain, "*"):
		writeProblemErrors(w, http.StatusUnprocessableEntity, "HTTP validation is not available for wildcard domains", map[string]string{"authorization_domain": adn})
		return
	case adn != c.domain:
		writeProblemErrors(w, http.StatusUnprocessableEntity, "Invalid authorization domain", map[string]string{"authorization_domain": adn + " is not " + c.domain})
		return
	case body.Scheme != "http" && body.Scheme != "https":
		writeProblemErrors(w, http.StatusUnprocessableEntity, "Invalid scheme", map[string]string{"scheme": "must be http or https"})
		return
	}
	s.startVerify(w, r, c, &verifyJob{method: "HTTP", adn: adn, scheme: body.Scheme})
}

func (s *Server) emailAddresses(w http.ResponseWriter, r *http.Request) {
	c := s.claimFor(w, r)
	if c == nil {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"constructed": constructedEmails(c.domain),
		"DNS":         map[string]any{"SOA": map[string]any{"emails": []string{}, "errors": []string{"SOA lookup is not simulated"}}},
	})
}

func constructedEmails(domain string) []string {
	var out []string
	for _, local := range []string{"admin", "administrator", "webmaster", "hostmaster", "postmaster"} {
		out = append(out, local+"@"+domain)
	}
	return out
}

func (s *Server) sendEmail(w http.ResponseWriter, r *http.Request) {
	c := s.claimFor(w, r)
	if c == nil {
		return
	}
	var body struct {
		EmailAddress string `json:"email_address"`
	}
	if !decode(w, r, &body) {
		return
	}
	allowed := false
	for _, a := range constructedEmails(c.domain) {
		allowed = allowed || a == body.EmailAddress
	}
	if !allowed {
		writeProblemErrors(w, http.StatusUnprocessableEntity, "Email address not allowed for this domain", map[string]string{"email_address": body.EmailAddress})
		return
	}
	s.mu.Lock()
	s.emailSent[c.id] = body.EmailAddress
	c.log = append(c.log, claimLogEntry{Status: "INFO", Description: "validation email sent to " + body.EmailAddress, Timestamp: s.opts.Now().Unix(), Method: "EMAIL"})
	s.mu.Unlock()
	w.WriteHeader(http.StatusCreated)
}

// --- the real checks

func (s *Server) check(ctx context.Context, c *claim, job *verifyJob) error {
	s.mu.Lock()
	token := c.token
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if job.method == "HTTP" {
		return s.checkHTTP(ctx, job.scheme, job.adn, token)
	}
	return s.checkDNS(ctx, job.adn, token)
}

// checkDNS asks the configured server for TXT at name, following CNAMEs
// (at most 8 hops, loops refused), and looks for the token.
func (s *Server) checkDNS(ctx context.Context, name, token string) error {
	if s.opts.DNSServer == "" {
		return errors.New("no DNS server configured for DCV")
	}
	client := &dns.Client{Timeout: 3 * time.Second}
	seen := map[string]bool{}
	for hop := 0; hop < 8; hop++ {
		fqdn := dns.Fqdn(name)
		if seen[fqdn] {
			return fmt.Errorf("CNAME loop at %s", name)
		}
		seen[fqdn] = true
		m := new(dns.Msg)
		m.SetQuestion(fqdn, dns.TypeTXT)
		resp, _, err := client.ExchangeContext(ctx, m, s.opts.DNSServer)
		if err != nil {
			return fmt.Errorf("TXT lookup of %s: %w", name, err)
		}
		if resp.Rcode != dns.RcodeSuccess {
			return fmt.Errorf("TXT lookup of %s: %s", name, dns.RcodeToString[resp.Rcode])
		}
		var target string
		for _, rr := range resp.Answer {
			switch rr := rr.(type) {
			case *dns.TXT:
				if strings.Join(rr.Txt, "") == token {
					return nil
				}
			case *dns.CNAME:
				if strings.EqualFold(rr.Hdr.Name, fqdn) {
					target = rr.Target
				}
			}
		}
		if target == "" {
			return fmt.Errorf("no TXT record with the token at %s", name)
		}
		name = strings.TrimSuffix(target, ".")
	}
	return errors.New("too many CNAME hops")
}

// checkHTTP fetches gsdv.txt, never following a redirect.
func (s *Server) checkHTTP(ctx context.Context, scheme, host, token string) error {
	u := scheme + "://" + host + "/.well-known/pki-validation/gsdv.txt"
	dialer := &net.Dialer{Timeout: 3 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if s.opts.HTTPAddr != "" {
				addr = s.opts.HTTPAddr
			}
			return dialer.DialContext(ctx, network, addr)
		},
		// The simulator does not judge the site's own certificate.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
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
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status code of the request is not 200: %d", u, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return fmt.Errorf("%s: %w", u, err)
	}
	if strings.TrimSpace(string(b)) != token {
		return fmt.Errorf("%s: content does not match the token", u)
	}
	return nil
}
