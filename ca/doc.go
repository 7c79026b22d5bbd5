// Package ca holds one package per certificate authority behind certd's
// Issuer interface: ca/atlas (GlobalSign Atlas HVCA), ca/sectigo,
// ca/markmonitor, ca/reseller and ca/acme. Each CA package decodes its own
// account block, returns challenges as dcv data (it never touches DNS or
// files) and carries a strict simulator of its CA for tests and the demo.
//
// CA packages may import dcv, config (for value types) and the small order
// journal interface they are handed; only cmd/certd picks a CA by name.
package ca
