// Package dcv proves domain control for certd: challenges as data (a DNS
// TXT value, a DNS CNAME, an HTTP file, an email), and the engine that
// publishes them through DNS providers and HTTP targets, waits until they
// are visible to the CA, and cleans them up.
//
// dcv consumes DNS providers through the libdns interfaces and HTTP targets
// through HTTPTarget; it never constructs them (providers/ does, cmd/ wires
// them in). It may import libdns and miekg/dns, nothing else of certd.
// ca/ packages import it for the Challenge type only.
package dcv
