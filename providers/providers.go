package providers

import (
	"fmt"

	"github.com/certd/certd/config"
	"github.com/certd/certd/dcv"
)

// DNS is one DNS provider type: how its config block is decoded, and how
// a provider is built from the decoded settings.
type DNS struct {
	Decode config.Decoder
	New    func(settings any) (dcv.DNSProvider, error)
}

// HTTP is one HTTP target type.
type HTTP struct {
	Decode config.Decoder
	New    func(settings any) (dcv.HTTPTarget, error)
}

// DNSTypes is the table from a DNS provider's type in config to its
// implementation. It is a function, not a package variable, so that no
// caller can change what another sees.
func DNSTypes() map[string]DNS {
	return map[string]DNS{
		"cloudflare": {Decode: decodeCloudflare, New: newCloudflare},
		"route53":    {Decode: decodeRoute53, New: newRoute53},
		"rfc2136":    {Decode: decodeRFC2136, New: newRFC2136},
	}
}

// HTTPTypes is the table from an HTTP target's type in config to its
// implementation.
func HTTPTypes() map[string]HTTP {
	return map[string]HTTP{
		"webroot":   {Decode: decodeWebroot, New: newWebroot},
		"responder": {Decode: decodeResponder, New: newResponder},
	}
}

// Decoders returns the decode half of a table, in the form config.Load
// takes.
func Decoders[T DNS | HTTP](table map[string]T) map[string]config.Decoder {
	out := make(map[string]config.Decoder, len(table))
	for name, t := range table {
		switch t := any(t).(type) {
		case DNS:
			out[name] = t.Decode
		case HTTP:
			out[name] = t.Decode
		}
	}
	return out
}

func settingsOf[T any](name string, settings any) (*T, error) {
	s, ok := settings.(*T)
	if !ok {
		return nil, fmt.Errorf("%s: internal: settings of type %T", name, settings)
	}
	return s, nil
}
