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

// HTTPTarget serves token files, by host and path.
//
// Implementations MUST write atomically (a reader sees the old file, no
// file, or the whole new file), MUST remove only files they put in place,
// and MUST be safe for concurrent use. Put of the content already in
// place MUST succeed and change nothing a reader can see (the engine puts
// files again after a restart, because a target such as the built-in
// responder keeps them in memory).
//
// host is the name the CA fetches the file from (Challenge.Domain):
// lower case, punycode, no port, no trailing dot. A host-aware target
// (the built-in responder) MUST serve a file only for the Host it was put
// for, so that two hosts with the same path coexist: every GlobalSign
// Atlas domain proves control at /.well-known/pki-validation/gsdv.txt. A
// target that cannot tell hosts apart (one document root serving many
// names) MUST implement HostBlind and report true; the engine then never
// lets two different contents be live at the same path of that target
// (see Engine.Present).
type HTTPTarget interface {
	// Put makes content available at path (which starts with
	// "/.well-known/") for host.
	Put(ctx context.Context, host, path string, content []byte) error
	// Remove withdraws path for host. Removing a path that is not there
	// is not an error.
	Remove(ctx context.Context, host, path string) error
}

// HostBlind is implemented by HTTP targets that serve the same file for
// every host (a webroot shared by several server names): host is only
// advisory to Put and Remove. When HostBlind reports true, the engine
// serialises publications of different contents at the same path of the
// target. A target that does not implement HostBlind is host-aware.
type HostBlind interface {
	HostBlind() bool
}
