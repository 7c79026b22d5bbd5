package providers

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	r53 "github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"

	"github.com/libdns/cloudflare"
	"github.com/libdns/libdns"
	"github.com/libdns/rfc2136"
	"github.com/libdns/route53"

	"github.com/certd/certd/config"
	"github.com/certd/certd/dcv"
)

// Compile-time guards: each libdns module does what dcv needs.
var (
	_ dcv.DNSProvider = (*cloudflare.Provider)(nil)
	_ dcv.DNSProvider = (*route53.Provider)(nil)
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

// Route53Config is a route53 DNS provider block. Credentials are explicit:
// certd does not fall back to the AWS environment variables or shared
// config files, so what a host may change is written in one place.
type Route53Config struct {
	Region          string        `yaml:"region"`
	AccessKeyID     config.Secret `yaml:"access_key_id"`
	SecretAccessKey config.Secret `yaml:"secret_access_key"`
	SessionToken    config.Secret `yaml:"session_token"`
	// HostedZoneID skips the zone lookup (optional).
	HostedZoneID string `yaml:"hosted_zone_id"`
}

func decodeRoute53(b *config.Block) (any, error) {
	return config.DecodeWith(b, Route53Config{}, func(c *Route53Config, ck *config.Checker) {
		ck.Required("region", c.Region != "")
		ck.Required("access_key_id", c.AccessKeyID.IsSet())
		ck.Required("secret_access_key", c.SecretAccessKey.IsSet())
	})
}

// route53Appender adds records by merging them into the existing record
// set with one UPSERT. libdns/route53 (v1.6.0) sends a single record as a
// CREATE, which Route 53 refuses when the name already holds values of
// that type (the apex's SPF and verification TXT records, say), and its
// SetRecords writes one value per UPSERT, each replacing the last. Route
// 53 has no conditional writes: this is read-modify-write, and a change
// another tool makes to the same record set between the read and the
// write would be lost. Deletion stays with libdns/route53, which removes
// exactly the given values.
type route53Appender struct {
	*route53.Provider
	client *r53.Client
}

func (r route53Appender) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	zoneID := r.HostedZoneID
	if zoneID == "" {
		out, err := r.client.ListHostedZonesByName(ctx, &r53.ListHostedZonesByNameInput{DNSName: aws.String(zone), MaxItems: aws.Int32(1)})
		if err != nil {
			return nil, fmt.Errorf("route53: finding the hosted zone %s: %w", zone, err)
		}
		if len(out.HostedZones) == 0 || !strings.EqualFold(strings.TrimSuffix(aws.ToString(out.HostedZones[0].Name), "."), strings.TrimSuffix(zone, ".")) {
			return nil, fmt.Errorf("route53: no hosted zone %s", zone)
		}
		zoneID = aws.ToString(out.HostedZones[0].Id)
	}
	var added []libdns.Record
	for _, rec := range recs {
		rr := rec.RR()
		name := strings.TrimSuffix(libdns.AbsoluteName(rr.Name, zone), ".") + "."
		value := rr.Data
		if rr.Type == "TXT" {
			value = strconv.Quote(rr.Data)
		}
		list, err := r.client.ListResourceRecordSets(ctx, &r53.ListResourceRecordSetsInput{HostedZoneId: aws.String(zoneID),
			StartRecordName: aws.String(name), StartRecordType: r53types.RRType(rr.Type), MaxItems: aws.Int32(1)})
		if err != nil {
			return added, fmt.Errorf("route53: reading %s %s: %w", rr.Type, name, err)
		}
		values := []r53types.ResourceRecord{{Value: aws.String(value)}}
		ttl := int64(rr.TTL.Seconds())
		present := false
		for _, set := range list.ResourceRecordSets {
			if !strings.EqualFold(aws.ToString(set.Name), name) || string(set.Type) != rr.Type {
				continue
			}
			if set.TTL != nil {
				ttl = *set.TTL // keep the set's TTL: it is not certd's to change
			}
			for _, v := range set.ResourceRecords {
				if aws.ToString(v.Value) == value {
					present = true
					continue
				}
				values = append(values, v)
			}
		}
		if present && len(values) == 1 {
			added = append(added, rec)
			continue
		}
		_, err = r.client.ChangeResourceRecordSets(ctx, &r53.ChangeResourceRecordSetsInput{HostedZoneId: aws.String(zoneID),
			ChangeBatch: &r53types.ChangeBatch{Comment: aws.String("certd: add a DCV record"), Changes: []r53types.Change{{
				Action: r53types.ChangeActionUpsert,
				ResourceRecordSet: &r53types.ResourceRecordSet{Name: aws.String(name), Type: r53types.RRType(rr.Type),
					TTL: aws.Int64(ttl), ResourceRecords: values},
			}}}})
		if err != nil {
			return added, fmt.Errorf("route53: adding %s %s: %w", rr.Type, name, err)
		}
		added = append(added, rec)
	}
	return added, nil
}

func newRoute53(settings any) (dcv.DNSProvider, error) {
	c, err := settingsOf[Route53Config]("route53", settings)
	if err != nil {
		return nil, err
	}
	p := &route53.Provider{Region: c.Region, HostedZoneID: c.HostedZoneID}
	for _, s := range []struct {
		ref config.Secret
		dst *string
	}{{c.AccessKeyID, &p.AccessKeyId}, {c.SecretAccessKey, &p.SecretAccessKey}, {c.SessionToken, &p.SessionToken}} {
		if !s.ref.IsSet() {
			continue
		}
		v, err := s.ref.Resolve()
		if err != nil {
			return nil, fmt.Errorf("route53: %w", err)
		}
		*s.dst = v.Reveal()
	}
	// The same explicit credentials and region as the provider; nothing
	// is taken from the shared AWS files or the instance metadata.
	awsCfg, err := awsconfig.LoadDefaultConfig(context.Background(), awsconfig.WithRegion(c.Region),
		awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(p.AccessKeyId, p.SecretAccessKey, p.SessionToken)))
	if err != nil {
		return nil, fmt.Errorf("route53: %w", err)
	}
	return route53Appender{Provider: p, client: r53.NewFromConfig(awsCfg)}, nil
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
