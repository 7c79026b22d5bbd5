package providers

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	r53 "github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/libdns/libdns"

	"github.com/certd/certd/config"
	"github.com/certd/certd/dcv"
)

// Route53Config is a route53 DNS provider block. Credentials and region
// are explicit: certd reads no AWS environment variable (AWS_PROFILE,
// AWS_REGION, AWS_ENDPOINT_URL_*, ...), no shared config or credentials
// file and no instance metadata, so what a host may change about certd's
// access to Route 53 is written in one place.
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

func newRoute53(settings any) (dcv.DNSProvider, error) {
	return newRoute53With(settings)
}

// newRoute53With builds the provider; optFns adjust the Route 53 client
// (tests point it at a fake endpoint).
func newRoute53With(settings any, optFns ...func(*r53.Options)) (*route53Provider, error) {
	c, err := settingsOf[Route53Config]("route53", settings)
	if err != nil {
		return nil, err
	}
	var akid, secret, token string
	for _, s := range []struct {
		ref config.Secret
		dst *string
	}{{c.AccessKeyID, &akid}, {c.SecretAccessKey, &secret}, {c.SessionToken, &token}} {
		if !s.ref.IsSet() {
			continue
		}
		v, err := s.ref.Resolve()
		if err != nil {
			return nil, fmt.Errorf("route53: %w", err)
		}
		*s.dst = v.Reveal()
	}
	// An aws.Config built here, not by config.LoadDefaultConfig: the
	// loader reads the AWS environment variables and the shared config and
	// credentials files (a profile's endpoint_url, retry mode and CA
	// bundle among them), and fails when AWS_PROFILE names a profile that
	// does not exist. Without ConfigSources the client takes nothing from
	// either.
	cfg := aws.Config{
		Region:      c.Region,
		Credentials: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(akid, secret, token)),
	}
	return &route53Provider{client: r53.NewFromConfig(cfg, optFns...), hostedZoneID: c.HostedZoneID}, nil
}

// route53Provider adds and removes DCV records in Route 53 through a
// client certd builds itself (newRoute53With).
//
// It does not use libdns/route53's Provider: that one (v1.6.0) builds its
// client on first use with config.LoadDefaultConfig and calls log.Fatalf
// when the load fails, as it does when AWS_PROFILE in the unit's
// environment names a missing profile; certd would have ended in the
// middle of a DNS cleanup. Its client cannot be handed in, so no method
// of it may run inside certd.
//
// AppendRecords merges a value into the record set with one UPSERT:
// Route 53 refuses a CREATE where the name already holds values of that
// type (the apex's SPF and verification TXT records, say). DeleteRecords
// removes exactly the given values: an UPSERT of the values left, or a
// DELETE of the set (naming it exactly, as Route 53 requires) when none
// is. Route 53 has no conditional writes: both are read-modify-write, and
// a change another tool makes to the same record set between the read and
// the write would be lost.
type route53Provider struct {
	client       *r53.Client
	hostedZoneID string
}

// zoneID is the hosted zone of zone: the configured one, or looked up by
// name.
func (r *route53Provider) zoneID(ctx context.Context, zone string) (string, error) {
	if r.hostedZoneID != "" {
		return r.hostedZoneID, nil
	}
	out, err := r.client.ListHostedZonesByName(ctx, &r53.ListHostedZonesByNameInput{DNSName: aws.String(zone), MaxItems: aws.Int32(1)})
	if err != nil {
		return "", fmt.Errorf("route53: finding the hosted zone %s: %w", zone, err)
	}
	if len(out.HostedZones) == 0 || !strings.EqualFold(strings.TrimSuffix(aws.ToString(out.HostedZones[0].Name), "."), strings.TrimSuffix(zone, ".")) {
		return "", fmt.Errorf("route53: no hosted zone %s", zone)
	}
	return aws.ToString(out.HostedZones[0].Id), nil
}

// recordSet reads the record set of type typ at name (nil if there is
// none).
func (r *route53Provider) recordSet(ctx context.Context, zoneID, name, typ string) (*r53types.ResourceRecordSet, error) {
	list, err := r.client.ListResourceRecordSets(ctx, &r53.ListResourceRecordSetsInput{HostedZoneId: aws.String(zoneID),
		StartRecordName: aws.String(name), StartRecordType: r53types.RRType(typ), MaxItems: aws.Int32(1)})
	if err != nil {
		return nil, fmt.Errorf("route53: reading %s %s: %w", typ, name, err)
	}
	for i, set := range list.ResourceRecordSets {
		if strings.EqualFold(aws.ToString(set.Name), name) && string(set.Type) == typ {
			return &list.ResourceRecordSets[i], nil
		}
	}
	return nil, nil
}

func (r *route53Provider) change(ctx context.Context, zoneID, comment string, action r53types.ChangeAction, set *r53types.ResourceRecordSet) error {
	_, err := r.client.ChangeResourceRecordSets(ctx, &r53.ChangeResourceRecordSetsInput{HostedZoneId: aws.String(zoneID),
		ChangeBatch: &r53types.ChangeBatch{Comment: aws.String(comment), Changes: []r53types.Change{{Action: action, ResourceRecordSet: set}}}})
	return err
}

func (r *route53Provider) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	zoneID, err := r.zoneID(ctx, zone)
	if err != nil {
		return nil, err
	}
	var added []libdns.Record
	for _, rec := range recs {
		rr := rec.RR()
		name := route53Name(rr.Name, zone)
		set, err := r.recordSet(ctx, zoneID, name, rr.Type)
		if err != nil {
			return added, err
		}
		values := []r53types.ResourceRecord{{Value: aws.String(route53Value(rr))}}
		ttl := int64(rr.TTL.Seconds())
		present := false
		if set != nil {
			if set.TTL != nil {
				ttl = *set.TTL // keep the set's TTL: it is not certd's to change
			}
			for _, v := range set.ResourceRecords {
				if sameRoute53Value(rr, aws.ToString(v.Value)) {
					present = true
					continue
				}
				values = append(values, v)
			}
		}
		if present {
			added = append(added, rec) // already there: nothing to write
			continue
		}
		err = r.change(ctx, zoneID, "certd: add a DCV record", r53types.ChangeActionUpsert,
			&r53types.ResourceRecordSet{Name: aws.String(name), Type: r53types.RRType(rr.Type), TTL: aws.Int64(ttl), ResourceRecords: values})
		if err != nil {
			return added, fmt.Errorf("route53: adding %s %s: %w", rr.Type, name, err)
		}
		added = append(added, rec)
	}
	return added, nil
}

func (r *route53Provider) DeleteRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	zoneID, err := r.zoneID(ctx, zone)
	if err != nil {
		return nil, err
	}
	var deleted []libdns.Record
	for _, rec := range recs {
		rr := rec.RR()
		name := route53Name(rr.Name, zone)
		set, err := r.recordSet(ctx, zoneID, name, rr.Type)
		if err != nil {
			return deleted, err
		}
		if set == nil {
			continue // already gone
		}
		var rest []r53types.ResourceRecord
		for _, v := range set.ResourceRecords {
			if !sameRoute53Value(rr, aws.ToString(v.Value)) {
				rest = append(rest, v)
			}
		}
		if len(rest) == len(set.ResourceRecords) {
			continue // not there: nothing of certd's to remove
		}
		action, change := r53types.ChangeActionDelete, set // the set exactly as it is
		if len(rest) > 0 {
			kept := *set
			kept.ResourceRecords = rest
			action, change = r53types.ChangeActionUpsert, &kept
		}
		if err := r.change(ctx, zoneID, "certd: remove a DCV record", action, change); err != nil {
			return deleted, fmt.Errorf("route53: removing %s %s: %w", rr.Type, name, err)
		}
		deleted = append(deleted, rec)
	}
	return deleted, nil
}

// route53Name is the fully qualified name (one trailing dot) of a record
// name relative to zone.
func route53Name(name, zone string) string {
	return strings.TrimSuffix(libdns.AbsoluteName(name, zone), ".") + "."
}

// route53Value is rr's data as Route 53 takes it: a TXT value quoted, in
// strings of at most 255 bytes.
func route53Value(rr libdns.RR) string {
	if rr.Type != "TXT" {
		return rr.Data
	}
	data := rr.Data
	var parts []string
	for len(data) > 255 {
		parts = append(parts, strconv.Quote(data[:255]))
		data = data[255:]
	}
	return strings.Join(append(parts, strconv.Quote(data)), " ")
}

// sameRoute53Value: v, as Route 53 lists it, is rr's data. TXT values
// compare unquoted (Route 53 may split them into several strings and
// escape characters in octal); names compare case-insensitively, trailing
// dots aside.
func sameRoute53Value(rr libdns.RR, v string) bool {
	switch rr.Type {
	case "TXT":
		data, ok := unquoteTXT(v)
		return ok && data == rr.Data
	case "CNAME", "NS", "PTR":
		return strings.EqualFold(strings.TrimSuffix(v, "."), strings.TrimSuffix(rr.Data, "."))
	default:
		return v == rr.Data
	}
}

// unquoteTXT joins the quoted strings of a Route 53 TXT value.
func unquoteTXT(v string) (string, bool) {
	var b strings.Builder
	rest := strings.TrimSpace(v)
	for rest != "" {
		q, err := strconv.QuotedPrefix(rest)
		if err != nil || q[0] != '"' {
			return "", false
		}
		s, err := strconv.Unquote(q)
		if err != nil {
			return "", false
		}
		b.WriteString(s)
		rest = strings.TrimSpace(rest[len(q):])
	}
	return b.String(), true
}
