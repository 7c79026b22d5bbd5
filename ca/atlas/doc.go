// Package atlas is certd's issuer for GlobalSign Atlas (HVCA API v2):
// account-level domain claims proved by DNS TXT (optionally through a
// CNAME delegation) or an HTTP gsdv.txt file, and certificates issued
// against verified claims, over mTLS with short-lived bearer tokens.
//
// This release holds the account configuration; the client and its
// simulator (atlassim) follow.
package atlas
