package providers

import (
	"fmt"
	"net"

	"github.com/libdns/cloudflare"
	"github.com/libdns/rfc2136"

	"github.com/certd/certd/config"
	"github.com/certd/certd/dcv"
)

// Compile-time guards: each DNS provider does what dcv needs.
var (
	_ dcv.DNSProvider = (*cloudflare.Provider)(nil)
	_ dcv.DNSProvider = (*route53Provider)(nil)
	_ dcv.DNSProvider = (*rfc2136.Provider)(nil)
)

// CloudflareConfig is a cloudflare DNS provider block.
type CloudflareConfig struct {
	// APIToken needs Zone.DNS:Edit; ZoneToken (optional) Zone:Read over
	// all zones when APIToken is scoped to one zone.
	APIToken  config.Secret `yaml:"api_token"`
	ZoneToken config.Secret `yaml:"zone_token"`
}

func decodeCloudflare(b *config.Block) (any, error) {
	return config.DecodeWith(b, CloudflareConfig{}, func(c *CloudflareConfig, ck *config.Checker) {
		ck.Required("api_token", c.APIToken.IsSet())
	})
}

func newCloudflare(settings any) (dcv.DNSProvider, error) {
	c, err := settingsOf[CloudflareConfig]("cloudflare", settings)
	if err != nil {
		return nil, err
	}
	tok, err := c.APIToken.Resolve()
	if err != nil {
		return nil, fmt.Errorf("cloudflare: %w", err)
	}
	p := &cloudflare.Provider{APIToken: tok.Reveal()}
	if c.ZoneToken.IsSet() {
		zt, err := c.ZoneToken.Resolve()
		if err != nil {
			return nil, fmt.Errorf("cloudflare: %w", err)
		}
		p.ZoneToken = zt.Reveal()
	}
	return p, nil
}

// RFC2136Config is an rfc2136 DNS provider block: dynamic updates signed
// with a TSIG key, for BIND, Knot, PowerDNS and other authoritative servers.
type RFC2136Config struct {
	// Server is the primary's host:port.
	Server string `yaml:"server"`
	// KeyName, KeyAlg (hmac-sha256 default) and Key (base64) are the TSIG
	// key.
	KeyName string        `yaml:"key_name"`
	KeyAlg  string        `yaml:"key_alg"`
	Key     config.Secret `yaml:"key"`
}

var tsigAlgs = map[string]bool{"hmac-sha1": true, "hmac-sha224": true, "hmac-sha256": true, "hmac-sha384": true, "hmac-sha512": true}

func decodeRFC2136(b *config.Block) (any, error) {
	return config.DecodeWith(b, RFC2136Config{KeyAlg: "hmac-sha256"}, func(c *RFC2136Config, ck *config.Checker) {
		if _, _, err := net.SplitHostPort(c.Server); err != nil {
			ck.Errorf("server", "server must be host:port, got %q", c.Server)
		}
		ck.Required("key_name", c.KeyName != "")
		ck.Required("key", c.Key.IsSet())
		if !tsigAlgs[c.KeyAlg] {
			ck.Errorf("key_alg", "unknown TSIG algorithm %q (hmac-sha256, hmac-sha512, ...)", c.KeyAlg)
		}
	})
}

func newRFC2136(settings any) (dcv.DNSProvider, error) {
	c, err := settingsOf[RFC2136Config]("rfc2136", settings)
	if err != nil {
		return nil, err
	}
	key, err := c.Key.Resolve()
	if err != nil {
		return nil, fmt.Errorf("rfc2136: %w", err)
	}
	return &rfc2136.Provider{Server: c.Server, KeyName: c.KeyName, KeyAlg: c.KeyAlg, Key: key.Reveal()}, nil
}
