package markmonitor

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/certd/certd/ca"
	"github.com/certd/certd/dcv"
)

// Where DigiCert looks (reference §5).
const (
	// CNAMETarget is the target of a DNS_CNAME_TOKEN record in the form
	// the guide words ("<token>.<domain> CNAME dcv.digicert.com").
	CNAMETarget = "dcv.digicert.com"
	// DNSAuthLabel is DigiCert's static prefix: "_dnsauth.<domain>" holds
	// the TXT token (txt_name: dnsauth) or the CNAME to
	// "<token>.dcv.digicert.com" (cname_form: dnsauth).
	DNSAuthLabel = "_dnsauth"
	// HTTPPath is the HTTP_TOKEN file.
	HTTPPath = "/.well-known/pki-validation/fileauth.txt"
	// TokenLife is how long DigiCert accepts a random value.
	TokenLife = 30 * 24 * time.Hour
)

// TXT record placements (txt_name) and CNAME forms (cname_form).
const (
	TXTAtDomain    = "domain"  // the TXT at the domain itself (a wildcard's base)
	TXTAtDNSAuth   = "dnsauth" // the TXT at _dnsauth.<domain>
	CNAMEAtToken   = "token"   // <token>.<domain> CNAME dcv.digicert.com (the guide's wording)
	CNAMEAtDNSAuth = "dnsauth" // _dnsauth.<domain> CNAME <token>.dcv.digicert.com (DigiCert's current form)
)

// apiMethod is the DCV method that proves a domain as p says. certd's
// "dns" proof (dcv.DNSTXT: a record through the DNS provider) is the
// account's dns_method.
func (is *Issuer) apiMethod(p ca.Proof) (string, error) {
	var m string
	switch p.Method {
	case dcv.DNSTXT:
		m = is.opts.DNSMethod
	case dcv.DNSCNAME:
		m = MethodDNSCNAME
	case dcv.HTTPFile:
		m = MethodHTTP
	case dcv.Email:
		m = MethodEmail
	default:
		return "", fmt.Errorf("markmonitor: no DCV method for a %s proof (use dns, http or email)", p.Method)
	}
	if p.Delegated && !(m == MethodDNSTXT && is.opts.TXTName == TXTAtDNSAuth) {
		return "", errors.New("markmonitor: a delegated proof needs the TXT at _dnsauth.<domain> (dns_method txt, txt_name dnsauth): DigiCert looks for nothing else a CNAME could delegate")
	}
	return m, nil
}

// challenge is what to publish for domain (a "*." wildcard is proved at
// its base) by method with DigiCert's random value token.
func (is *Issuer) challenge(domain, method, token string, emails []string, expires time.Time) (dcv.Challenge, error) {
	base := strings.TrimPrefix(domain, "*.")
	ch := dcv.Challenge{Domain: domain, Expires: expires, CARef: method}
	if method != MethodEmail && !validToken(token) {
		return dcv.Challenge{}, fmt.Errorf("markmonitor: %s: the random value %q cannot be published", domain, token)
	}
	switch method {
	case MethodDNSTXT:
		ch.Method, ch.RecordName, ch.Value = dcv.DNSTXT, base, token
		if is.opts.TXTName == TXTAtDNSAuth {
			ch.RecordName = DNSAuthLabel + "." + base
		}
	case MethodDNSCNAME:
		ch.Method = dcv.DNSCNAME
		if is.opts.CNAMEForm == CNAMEAtDNSAuth {
			ch.RecordName, ch.Value = DNSAuthLabel+"."+base, strings.ToLower(token)+"."+CNAMETarget
		} else {
			ch.RecordName, ch.Value = strings.ToLower(token)+"."+base, CNAMETarget
		}
	case MethodHTTP:
		if strings.HasPrefix(domain, "*.") {
			return dcv.Challenge{}, fmt.Errorf("markmonitor: %s: HTTP_TOKEN cannot validate a wildcard", domain)
		}
		ch.Method, ch.Path, ch.Content = dcv.HTTPFile, HTTPPath, token
	case MethodEmail:
		ch.Method = dcv.Email
		if len(emails) > 0 {
			ch.EmailAddress = emails[0]
		}
	default:
		return dcv.Challenge{}, fmt.Errorf("markmonitor: %s: unknown DCV method %q", domain, method)
	}
	return ch, nil
}

// validToken: one DNS label (it may be the first label of a CNAME's
// name).
func validToken(t string) bool {
	if t == "" || len(t) > 63 {
		return false
	}
	return strings.IndexFunc(t, func(r rune) bool {
		return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' || r == '_')
	}) < 0
}

// Locate implements ca.ChallengeLocator: where DigiCert looks for a proof
// of domain by how, carrying value (a dry run's throwaway value stands in
// for the random value). Email has nothing to publish.
func (is *Issuer) Locate(domain string, how ca.Proof, value string) (dcv.Challenge, bool) {
	m, err := is.apiMethod(how)
	if err != nil || m == MethodEmail {
		return dcv.Challenge{}, false
	}
	ch, err := is.challenge(domain, m, value, nil, time.Time{})
	if err != nil {
		return dcv.Challenge{}, false
	}
	return ch, true
}
