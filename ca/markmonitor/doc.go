// Package markmonitor is certd's issuer for the Markmonitor SSL Certs API
// (DigiCert behind it): x-api-key plus a JWT, per-order DCV tokens. This
// release holds the account configuration.
package markmonitor
