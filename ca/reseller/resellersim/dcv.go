package resellersim

import (
	"context"
	"crypto/md5" //nolint:gosec // Sectigo's DCV names a file after the CSR's MD5; not for security
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// artefact is what proves one name, as the upstream CA defines it.
type artefact struct {
	method      string // DNS, FILE or EMAIL
	rrType      string // CNAME or TXT
	name, value string // DNS record
	host, path  string // HTTP file
	content     string
	lines       bool // Sectigo's file content is compared line by line
	email       string
}

// artefactFor is the proof of d in o; s.mu must be held.
func (s *Server) artefactFor(o *order, d *domainState) artefact {
	base := strings.TrimPrefix(d.name, "*.")
	switch d.method {
	case dcvEmail:
		return artefact{method: dcvEmail, email: d.email}
	}
	if o.upstream == UpstreamDigiCert {
		if d.method == dcvFile {
			return artefact{method: dcvFile, host: d.name, path: "/.well-known/pki-validation/fileauth.txt", content: o.token}
		}
		return artefact{method: dcvDNS, rrType: "TXT", name: "_dnsauth." + base, value: o.token}
	}
	md := md5.Sum(o.csrDER) //nolint:gosec // see the import
	sh := sha256.Sum256(o.csrDER)
	mdHex, shHex := strings.ToUpper(hex.EncodeToString(md[:])), strings.ToUpper(hex.EncodeToString(sh[:]))
	if d.method == dcvFile {
		return artefact{method: dcvFile, host: d.name, path: "/.well-known/pki-validation/" + mdHex + ".txt",
			content: shHex + "\nsectigo.com\n" + o.unique, lines: true}
	}
	return artefact{method: dcvDNS, rrType: "CNAME", name: "_" + strings.ToLower(mdHex) + "." + base,
		value: strings.ToLower(shHex[:32] + "." + shHex[32:] + "." + o.unique + ".sectigo.com")}
}

// progress runs the CA's automatic checks of o's pending names (only
// those in only, when set), as the CA does in the background, whenever
// the order is looked at; then issues it if it is proved. Checks are
// made without holding s.mu.
func (s *Server) progress(ctx context.Context, o *order, only []string) {
	s.runChecks(ctx, o, only, false)
}

type checkJob struct {
	d      *domainState
	art    artefact
	forced bool
	err    error
}

// runChecks checks o's pending names. asked: the client asked (validate),
// so names whose automatic checks ended are checked too.
func (s *Server) runChecks(ctx context.Context, o *order, only []string, asked bool) {
	s.mu.Lock()
	if o.status != stPending {
		s.mu.Unlock()
		return
	}
	gen := o.gen
	var jobs []*checkJob
	for _, d := range o.domains {
		if only != nil && !slices.Contains(only, d.name) {
			continue
		}
		if d.status == domValidated || d.method == dcvEmail || d.status == domFailed && !asked {
			continue
		}
		j := &checkJob{d: d, art: s.artefactFor(o, d)}
		if o.failNext {
			j.forced, o.failNext = true, false
		}
		jobs = append(jobs, j)
	}
	s.mu.Unlock()
	for _, j := range jobs {
		if j.forced {
			j.err = errors.New("the CA could not find the proof (injected failure)")
			continue
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		j.err = s.check(cctx, j.art)
		cancel()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if o.gen != gen || o.status != stPending {
		return
	}
	now := s.opts.Now()
	for _, j := range jobs {
		d := j.d
		if d.status == domValidated {
			continue
		}
		switch {
		case j.err == nil:
			d.status, d.detail = domValidated, "validated"
		case j.forced || !now.Before(d.checkUntil):
			d.status, d.detail = domFailed, j.err.Error()+"; no further automatic checks: ask again (validate)"
		default:
			d.status, d.detail = domPending, j.err.Error()
		}
	}
	s.maybeIssue(o)
}

// check looks for the artefact for real.
func (s *Server) check(ctx context.Context, a artefact) error {
	switch a.method {
	case dcvDNS:
		if a.rrType == "CNAME" {
			return s.checkCNAME(ctx, a.name, a.value)
		}
		return s.checkTXT(ctx, a.name, a.value)
	case dcvFile:
		return s.checkHTTP(ctx, a)
	}
	return fmt.Errorf("nothing to check for %s", a.method)
}

func (s *Server) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	if s.opts.DNSServer == "" {
		return nil, errors.New("no DNS server configured for DCV")
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	resp, _, err := (&dns.Client{Timeout: 3 * time.Second}).ExchangeContext(ctx, m, s.opts.DNSServer)
	if err != nil {
		return nil, fmt.Errorf("%s lookup of %s: %w", dns.TypeToString[qtype], name, err)
	}
	if resp.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("%s lookup of %s: %s", dns.TypeToString[qtype], name, dns.RcodeToString[resp.Rcode])
	}
	return resp, nil
}

// checkCNAME asks for the CNAME at name and compares its target.
func (s *Server) checkCNAME(ctx context.Context, name, target string) error {
	resp, err := s.exchange(ctx, name, dns.TypeCNAME)
	if err != nil {
		return err
	}
	for _, rr := range resp.Answer {
		if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, dns.Fqdn(name)) {
			if strings.EqualFold(c.Target, dns.Fqdn(target)) {
				return nil
			}
			return fmt.Errorf("CNAME %s points to %s, not to the expected target", name, strings.TrimSuffix(c.Target, "."))
		}
	}
	return fmt.Errorf("no CNAME record at %s", name)
}

// checkTXT asks for TXT at name, following CNAMEs (at most 8 hops, loops
// refused), and looks for value.
func (s *Server) checkTXT(ctx context.Context, name, value string) error {
	seen := map[string]bool{}
	for hop := 0; hop < 8; hop++ {
		fqdn := dns.Fqdn(name)
		if seen[fqdn] {
			return fmt.Errorf("CNAME loop at %s", name)
		}
		seen[fqdn] = true
		resp, err := s.exchange(ctx, name, dns.TypeTXT)
		if err != nil {
			return err
		}
		var target string
		for _, rr := range resp.Answer {
			switch rr := rr.(type) {
			case *dns.TXT:
				if strings.Join(rr.Txt, "") == value {
					return nil
				}
			case *dns.CNAME:
				if strings.EqualFold(rr.Hdr.Name, fqdn) {
					target = rr.Target
				}
			}
		}
		if target == "" {
			return fmt.Errorf("no TXT record with the expected value at %s", name)
		}
		name = strings.TrimSuffix(target, ".")
	}
	return errors.New("too many CNAME hops")
}

// checkHTTP fetches the file over plain HTTP with the name as Host,
// never following a redirect.
func (s *Server) checkHTTP(ctx context.Context, a artefact) error {
	u := "http://" + a.host + a.path
	dialer := &net.Dialer{Timeout: 3 * time.Second}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if s.opts.HTTPAddr != "" {
			addr = s.opts.HTTPAddr
		}
		return dialer.DialContext(ctx, network, addr)
	}}
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
		return fmt.Errorf("%s: HTTP %d (redirects are not followed)", u, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return fmt.Errorf("%s: %w", u, err)
	}
	if !sameContent(string(b), a.content, a.lines) {
		return fmt.Errorf("%s: the content does not match", u)
	}
	return nil
}

// sameContent compares a served file with the expected one: as trimmed
// lines (Sectigo, whose line endings are not specified), or trimmed.
func sameContent(got, want string, lines bool) bool {
	if !lines {
		return strings.TrimSpace(got) == strings.TrimSpace(want)
	}
	split := func(s string) []string {
		var out []string
		for _, l := range strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n") {
			out = append(out, strings.TrimSpace(l))
		}
		for len(out) > 0 && out[len(out)-1] == "" {
			out = out[:len(out)-1]
		}
		return out
	}
	return slices.Equal(split(got), split(want))
}

// approvers are the addresses a validation email may go to for name: the
// constructed ones (as the CAs allow) and the order's approver.
func approvers(o *order, name string) []string {
	base := strings.TrimPrefix(name, "*.")
	out := []string{}
	for _, l := range []string{"admin", "administrator", "hostmaster", "postmaster", "webmaster"} {
		out = append(out, l+"@"+base)
	}
	if o.fields.ApproverEmailAddress != "" {
		out = append(out, o.fields.ApproverEmailAddress)
	}
	return out
}

func (s *Server) validate(w http.ResponseWriter, r *http.Request) {
	o := s.orderFor(w, r)
	if o == nil {
		return
	}
	var b validateBody
	if !decode(w, r, &b) {
		return
	}
	errs := map[string]string{}
	switch b.DCVType {
	case dcvDNS, dcvFile, dcvEmail:
	case "":
		errs["dcv_type"] = "This field is required."
	default:
		errs["dcv_type"] = fmt.Sprintf("%q is not a valid choice (EMAIL, FILE or DNS).", b.DCVType)
	}
	if b.DCVType == dcvEmail {
		if a, err := mail.ParseAddress(b.EmailAddress); err != nil || a.Address != b.EmailAddress {
			errs["email_address"] = "Enter a valid email address."
		}
	} else if b.EmailAddress != "" {
		errs["email_address"] = "Applicable to EMAIL validation only."
	}
	if len(errs) > 0 {
		writeFields(w, errs)
		return
	}
	now := s.opts.Now()
	s.mu.Lock()
	if o.status != stPending {
		st := o.status
		s.mu.Unlock()
		writeDetail(w, http.StatusConflict, "The certificate is not awaiting validation (status "+st+").")
		return
	}
	targets := o.domains
	if b.Domain != "" {
		d := o.domain(b.Domain)
		if d == nil {
			s.mu.Unlock()
			writeFields(w, map[string]string{"domain": fmt.Sprintf("%q is not a name of this certificate.", b.Domain)})
			return
		}
		targets = []*domainState{d}
	}
	var names []string
	for _, d := range targets {
		if d.status == domValidated {
			continue
		}
		if b.DCVType == dcvFile && strings.HasPrefix(d.name, "*.") {
			s.mu.Unlock()
			writeFields(w, map[string]string{"dcv_type": "FILE validation is not available for wildcard names (" + d.name + ")."})
			return
		}
		if b.DCVType == dcvEmail && !slices.Contains(approvers(o, d.name), b.EmailAddress) {
			s.mu.Unlock()
			writeFields(w, map[string]string{"email_address": b.EmailAddress + " may not approve " + d.name + "."})
			return
		}
		names = append(names, d.name)
	}
	for _, d := range targets {
		if d.status == domValidated {
			continue
		}
		d.method, d.status, d.detail, d.checkUntil = b.DCVType, domPending, "", now.Add(s.opts.CheckWindow)
		if b.DCVType == dcvEmail {
			d.email = b.EmailAddress
			s.emails = append(s.emails, Email{ID: o.id, Domain: d.name, Address: d.email, At: now})
		}
	}
	s.mu.Unlock()
	if len(names) > 0 && b.DCVType != dcvEmail {
		s.runChecks(r.Context(), o, names, true)
	}
	s.mu.Lock()
	out := map[string]any{"id": o.id, "status": o.status}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) validationDetails(w http.ResponseWriter, r *http.Request) {
	o := s.orderFor(w, r)
	if o == nil {
		return
	}
	s.progress(r.Context(), o, nil)
	s.mu.Lock()
	defer s.mu.Unlock()
	if o.upstream == UpstreamDigiCert {
		writeJSON(w, http.StatusOK, s.digicertDetails(o))
		return
	}
	writeJSON(w, http.StatusOK, s.sectigoDetails(o))
}

// sectigoDetails: a list of flat domain objects (inferred shape).
func (s *Server) sectigoDetails(o *order) map[string]any {
	var domains []map[string]any
	for _, d := range o.domains {
		a := s.artefactFor(o, d)
		m := map[string]any{"domain": d.name, "dcv_type": d.method, "status": d.status}
		if d.detail != "" {
			m["message"] = d.detail
		}
		switch a.method {
		case dcvDNS:
			m["dns_record"], m["dns_type"], m["dns_value"] = a.name, a.rrType, a.value
		case dcvFile:
			m["file_path"], m["file_content"] = a.path, a.content
		case dcvEmail:
			m["approver_email"] = a.email
		}
		domains = append(domains, m)
	}
	return map[string]any{"status": o.status, "dcv_type": o.dcvType, "domains": domains}
}

// digicertDetails: an object keyed by name with nested records (inferred
// shape).
func (s *Server) digicertDetails(o *order) map[string]any {
	domains := map[string]any{}
	for _, d := range o.domains {
		a := s.artefactFor(o, d)
		st := d.status
		if st == domValidated {
			st = "approved"
		}
		m := map[string]any{"validation_status": st}
		if d.detail != "" && d.status != domValidated {
			m["message"] = d.detail
		}
		switch a.method {
		case dcvDNS:
			m["txt_record"] = map[string]string{"host": a.name, "value": a.value}
		case dcvFile:
			m["fileauth"] = map[string]string{"url": "http://" + a.host + a.path, "contents": a.content}
		case dcvEmail:
			m["approver"] = map[string]string{"email": a.email}
		}
		domains[d.name] = m
	}
	methods := map[string]string{dcvDNS: "dns-txt-token", dcvFile: "http-token", dcvEmail: "email"}
	return map[string]any{
		"order_status":     o.status,
		"dcv_method":       methods[o.dcvType],
		"dcv_random_value": map[string]string{"token": o.token, "expires_at": rfc3339(o.created.Add(30 * 24 * time.Hour))},
		"domains":          domains,
	}
}
