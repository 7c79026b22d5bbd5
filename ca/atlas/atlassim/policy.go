package atlassim

import (
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"
)

// claimPattern is the san.dns_names.list entry real Atlas derives from a
// verified claim: the domain, any subdomain, and a wildcard of either.
func claimPattern(domain string) string {
	return `^(\*\.)?([a-z0-9-]+\.)*` + regexp.QuoteMeta(domain) + `$`
}

// verifiedDomains are the distinct domains of the VERIFIED, unexpired
// claims, sorted; s.mu must be held.
func (s *Server) verifiedDomains(now time.Time) []string {
	var out []string
	for _, c := range s.claims {
		if c.status == "VERIFIED" && now.Before(c.expires) {
			out = append(out, c.domain)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// policy is the validation policy in force at now, as served by GET
// /validationpolicy and enforced by POST /certificates: the configured one
// with, unless StaticPolicyList, its DNS name list and common name format
// made from the verified claims. It is a copy the caller may keep; s.mu
// must be held.
func (s *Server) policy(now time.Time) *Policy {
	p := *s.opts.Policy
	p.SubjectDN = maps.Clone(p.SubjectDN)
	lists := []*ListPolicy{&p.SAN.DNSNames, &p.SAN.Emails, &p.SAN.IPAddresses, &p.SAN.URIs, &p.ExtendedKeyUsages.EKUs}
	for _, lp := range lists {
		// Atlas writes an empty list as [], not null.
		lp.List = append([]string{}, lp.List...)
	}
	p.PublicKey.AllowedLengths = slices.Clone(p.PublicKey.AllowedLengths)
	if s.opts.StaticPolicyList {
		return &p
	}
	domains := s.verifiedDomains(now)
	p.SAN.DNSNames.List = []string{}
	var alts []string
	for _, d := range domains {
		p.SAN.DNSNames.List = append(p.SAN.DNSNames.List, claimPattern(d))
		alts = append(alts, regexp.QuoteMeta(d))
	}
	if cn, ok := p.SubjectDN["common_name"]; ok && len(alts) > 0 && (cn.Presence == "REQUIRED" || cn.Presence == "OPTIONAL") {
		if len(alts) == 1 {
			cn.Format = claimPattern(domains[0])
		} else {
			cn.Format = `^(\*\.)?([a-z0-9-]+\.)*(` + strings.Join(alts, "|") + `)$`
		}
		p.SubjectDN["common_name"] = cn
	}
	return &p
}
