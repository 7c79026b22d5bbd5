// Package sectigo is certd's issuer for Sectigo's reseller Auto* API
// (AutoApplySSL, CollectSSL, AutoUpdateDCV, AutoReplaceSSL) with per-order
// DCV by CSR hash. This release holds the account configuration.
package sectigo
