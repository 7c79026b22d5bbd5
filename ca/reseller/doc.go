// Package reseller is certd's issuer for the reseller /ssl-certificate
// REST API (basic auth, plan UUIDs, client_reference for idempotency).
// This release holds the account configuration.
package reseller
