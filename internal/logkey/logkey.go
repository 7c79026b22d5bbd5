// Package logkey holds the stable field names of certd's structured logs,
// in one place so that every package logs the same thing the same way and
// operators can build queries and alerts on them. Any package may import
// it; it imports nothing.
package logkey

// Field names.
const (
	Cert      = "cert"
	Account   = "account"
	Order     = "order"
	Claim     = "claim"
	Domain    = "domain"
	Method    = "method"
	Target    = "target"
	Serial    = "serial"
	NotAfter  = "not_after"
	Action    = "action"
	Due       = "due"
	Attempt   = "attempt"
	RetryIn   = "retry_in"
	Config    = "config"
	Store     = "store"
	Signal    = "signal"
	Version   = "version"
	Component = "component"
)
