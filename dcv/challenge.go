package dcv

import (
	"context"
	"time"

	"github.com/libdns/libdns"
)

// Method is how domain control is proved.
type Method string

// The methods certd can publish.
const (
	DNSTXT   Method = "dns-txt"   // a TXT value at a name
	DNSCNAME Method = "dns-cname" // a CNAME from a name to a target
	HTTPFile Method = "http-file" // a file at a path under /.well-known/
	Email    Method = "email"     // an approval email; nothing to publish
)

// Challenge is one proof a CA asks for, as plain data. CA packages produce
// challenges and never publish them themselves; the engine publishes,
// waits until they are visible and cleans them up.
type Challenge struct {
	// Domain is the name being proved (punycode, no trailing dot).
	Domain string
	Method Method

	// RecordName is the DNS name the CA looks up (DNSTXT, DNSCNAME), fully
	// qualified without a trailing dot, and Value the TXT value or the
	// CNAME target.
	RecordName string
	Value      string

	// Path and Content are the HTTP file (HTTPFile): Path starts with
	// "/.well-known/" and Content is served exactly.
	Path    string
	Content string

	// EmailAddress is the approver address (Email).
	EmailAddress string

	// Expires is when the CA stops accepting this challenge (zero if
	// unknown).
	Expires time.Time
	// CARef is the CA's reference for the challenge (a claim id, an ACME
	// challenge URL), opaque to the engine.
	CARef string
}

// DNSProvider is what the engine needs of a DNS provider: add records to a
// zone's RRsets without replacing them, and delete exactly the records it
// added. Every libdns provider satisfies it.
type DNSProvider interface {
	libdns.RecordAppender
	libdns.RecordDeleter
}

// HTTPTarget serves token files. Implementations MUST write atomically
// (a reader sees the old file, no file, or the whole new file), MUST remove
// only files they put in place, and MUST be safe for concurrent use.
type HTTPTarget interface {
	// Put makes content available at path (which starts with
	// "/.well-known/").
	Put(ctx context.Context, path string, content []byte) error
	// Remove withdraws path. Removing a path that is not there is not an
	// error.
	Remove(ctx context.Context, path string) error
}
