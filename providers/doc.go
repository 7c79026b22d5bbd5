// Package providers is the one table from a provider name in configuration
// to its implementation: DNS providers over libdns (cloudflare, route53,
// rfc2136) and HTTP token targets (a webroot folder, the built-in
// responder). Each decodes its own config block and takes credentials only
// from the secret references in it, never from the process environment
// implicitly. What they return is what dcv already knows how to use.
//
// providers imports libdns modules, config (for its value types) and dcv
// (for its interfaces); only cmd/certd imports providers.
package providers
