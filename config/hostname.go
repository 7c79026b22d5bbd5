package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"golang.org/x/net/idna"
)

// hostProfile converts a name as browsers and CAs do (UTS #46 lookup
// mapping, so case is folded) and checks it is a valid DNS host name.
var hostProfile = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.ValidateLabels(true),
	idna.VerifyDNSLength(true),
	idna.StrictDomainName(true),
)

// dnsProfile is hostProfile without the host-name letter rule, so that
// "_acme-challenge" style labels of DNS record names pass.
var dnsProfile = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.VerifyDNSLength(true),
	idna.StrictDomainName(false),
)

// NormalizeDomain returns the canonical form of a certificate name: IDN
// converted to punycode, lower case, no trailing dot; a leading "*." is kept
// for wildcards. It refuses IP addresses, single labels and a "*" anywhere
// but the whole leftmost label.
func NormalizeDomain(s string) (string, error) {
	name := strings.TrimSuffix(strings.TrimSpace(s), ".")
	if name == "" {
		return "", errors.New("empty domain name")
	}
	if net.ParseIP(name) != nil {
		return "", fmt.Errorf("%q is an IP address; certd handles DNS names only", s)
	}
	wild := strings.HasPrefix(name, "*.")
	if wild {
		name = name[2:]
	}
	if strings.Contains(name, "*") {
		return "", fmt.Errorf("%q: a wildcard is allowed only as the whole leftmost label (*.example.com)", s)
	}
	ascii, err := hostProfile.ToASCII(name)
	if err == nil {
		err = checkIDNA2008(ascii)
	}
	if err != nil {
		return "", fmt.Errorf("%q is not a valid host name: %v", s, trimIDNA(err))
	}
	if !strings.Contains(ascii, ".") {
		return "", fmt.Errorf("%q is not a fully qualified name (it needs at least two labels)", s)
	}
	if wild {
		ascii = "*." + ascii
	}
	return ascii, nil
}

// NormalizeIdentifier is NormalizeDomain that also takes an IP address
// (IPv4 or IPv6, RFC 8738), returned in its canonical text form ("::1",
// "192.0.2.1"; an IPv4-mapped IPv6 address becomes IPv4); ip reports it.
// An IP address with a zone ("fe80::1%eth0") or a prefix is refused.
func NormalizeIdentifier(s string) (name string, ip bool, err error) {
	t := strings.TrimSpace(s)
	if a, perr := netip.ParseAddr(t); perr == nil {
		if a.Zone() != "" {
			return "", true, fmt.Errorf("%q: an IP address with a zone cannot be certified", s)
		}
		return a.Unmap().String(), true, nil
	}
	name, err = NormalizeDomain(s)
	return name, false, err
}

// IsIPAddress reports whether a normalised identifier is an IP address.
func IsIPAddress(id string) bool {
	_, err := netip.ParseAddr(id)
	return err == nil
}

// NormalizeDNSName is NormalizeDomain for DNS record names: underscores are
// allowed and wildcards are not.
func NormalizeDNSName(s string) (string, error) {
	name := strings.TrimSuffix(strings.TrimSpace(s), ".")
	if name == "" {
		return "", errors.New("empty DNS name")
	}
	if strings.ContainsAny(name, "* ") {
		return "", fmt.Errorf("%q is not a valid DNS name", s)
	}
	ascii, err := dnsProfile.ToASCII(name)
	if err == nil {
		err = checkIDNA2008(ascii)
	}
	if err != nil {
		return "", fmt.Errorf("%q is not a valid DNS name: %v", s, trimIDNA(err))
	}
	for _, label := range strings.Split(ascii, ".") {
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return "", fmt.Errorf("%q is not a valid DNS name: character %q", s, r)
			}
		}
	}
	if !strings.Contains(ascii, ".") {
		return "", fmt.Errorf("%q is not a fully qualified name (it needs at least two labels)", s)
	}
	return ascii, nil
}

func trimIDNA(err error) string {
	return strings.TrimPrefix(err.Error(), "idna: ")
}
