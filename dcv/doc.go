// Package dcv proves domain control for certd: challenges as data (a DNS
// TXT value, a DNS CNAME, an HTTP file, an email), and the engine that
// publishes them through DNS providers and HTTP targets, waits until they
// are visible to the CA, and cleans them up.
//
// dcv consumes DNS providers through the libdns interfaces and HTTP targets
// through HTTPTarget; it never constructs them (providers/ does, cmd/ wires
// them in). It may import libdns and miekg/dns, nothing else of certd.
// ca/ packages import it for the Challenge type only.
//
// # Artefacts and the journal
//
// Every artefact the engine creates (a TXT value, a CNAME, a token file)
// is journaled before it exists, as a Record with an owner: the claim,
// certificate or order it is for ("claim:<account>/<domain>",
// "cert:<name>", "order:<id>"). The engine removes exactly what it
// journaled: one TXT value, never the RRset; one CNAME with its target;
// one file for one host. When two live records stand for the same
// artefact (two owners publishing the same TXT value, two hosts sharing
// one file on a host-blind target), removing one record leaves the
// artefact in place for the other; the last removal takes it away.
//
// # Present
//
// Present MUST be called with the owner that will clean up. It returns
// quickly; Wait does the waiting, for many challenges together. Present is
// idempotent per owner: when owner already has the same artefact live and
// published (same kind, provider, name and value, and host for a file),
// Present returns that publication instead of making a second one (no
// second journal record, no second TXT value); an HTTP file is put in
// place again, with identical content. A Published returned together with
// an error MUST still be passed to CleanUp.
//
// A DNS CNAME (DNSCNAME: Sectigo's _<MD5>.<domain>, DigiCert's token
// names) is published only where the name holds nothing else: a CNAME
// cannot coexist with other data, and adding one through RFC 2136 would
// replace another CNAME or be silently ignored. If the name already has a
// CNAME to another target, or other records, or the journal holds another
// owner's CNAME there, Present returns ErrCNAMEConflict and publishes
// nothing. A CNAME with the same target already in place that no journal
// record stands for is someone else's: Present uses it as it is and
// CleanUp leaves it. Wait requires every authoritative server of the zone
// to answer the CNAME with its target (case-insensitively, trailing dots
// aside). Delegation (Target.Delegate) applies to TXT challenges only.
//
// # HTTP files that share a path
//
// Many names prove control at the same path (every GlobalSign Atlas
// domain uses /.well-known/pki-validation/gsdv.txt). HTTPTarget is
// therefore host-aware: Put and Remove take the host (Challenge.Domain,
// kept in Record.Zone of http-file records). A host-aware target MUST
// serve a file only to its Host, so two hosts at one path coexist. A
// target that cannot tell hosts apart MUST implement HostBlind; for it the
// engine keeps at most one content live per path: Present for a different
// content (another host or owner) waits until the live publication is
// removed, bounded by ctx and Options.Timeout, then publishes; it never
// overwrites another live publication. A wait that runs out returns
// ErrPathBusy with nothing published. The same content is shared at once
// (a Sectigo order serves one content for all its names), and removed
// with the last record that stands for it. On a host-aware target the
// same rule holds per host and path. Callers SHOULD clean up each
// publication as soon as the CA has checked it, so that the next host
// waits no longer than it must.
//
// # Artefacts that must outlive a job
//
// A paid order is never replaced because validation failed: its
// artefacts stay published, across passes and restarts, until the order
// ends, and the CA is asked to check again. Options.Keep tells the engine
// which owners those are. Reconcile (run once at start) removes every
// live artefact except those of kept owners, and puts kept HTTP files
// back (the built-in responder loses them on restart); ReconcileStale
// (run every pass) removes failed removals and artefacts untouched for
// longer than its olderThan, except those of kept owners (a kept
// artefact whose removal failed is retried by CleanUp or CleanUpOwner,
// or once Keep no longer reports its owner). Keep MUST be safe for
// concurrent use and SHOULD answer from memory and, when unsure, true.
//
// A job resuming after a restart MUST NOT publish again what an earlier
// run published for it: it calls Adopt(owner) to get the live, published
// artefacts back as *Published (the Challenge rebuilt from the journal)
// and Waits on them, then CleanUps them or, when the order ends,
// CleanUpOwner(owner), which removes every live artefact of owner,
// published or still an intent, whatever Keep says.
//
// # Concurrency and cancellation
//
// The engine is safe for concurrent use. Publications and removals at one
// place (a DNS name of a provider, a path of an HTTP target) are
// serialised within one engine; engines sharing a journal see each other's
// records through it. CleanUp and CleanUpOwner go on after ctx is
// cancelled (a shutdown still cleans up), within their own timeout; a
// removal that fails stays journaled and is retried.
package dcv
