// Package acme is certd's ACME (RFC 8555) issuer, with External Account
// Binding and renewal information (ARI). This release holds the account
// configuration and the directory presets.
package acme
