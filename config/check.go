package config

import (
	"net/url"
)

// Checker collects a plug-in's validation errors against its block, so a
// plug-in's decoder reads as a list of rules:
//
//	ck := b.Check()
//	ck.Required("api_key", c.APIKey.IsSet())
//	ck.URL("url", c.URL)
//	return c, ck.Err()
type Checker struct {
	b    *Block
	errs Errors
	// failed holds the paths that already have an error from decoding,
	// so Required does not report a key twice.
	failed map[string]bool
}

// Check starts validating the block's decoded values.
func (b *Block) Check() *Checker { return &Checker{b: b} }

// Errorf records a problem with key, unless key was not written because
// a misspelling of it was: the unknown key's error names it.
func (c *Checker) Errorf(key, format string, args ...any) {
	if misspelt(c.b.keys, c.b.unknown, key) {
		return
	}
	c.errs = append(c.errs, c.b.Errorf(key, format, args...))
}

// Required records an error when ok is false.
func (c *Checker) Required(key string, ok bool) {
	if !ok && !c.failed[c.b.Errorf(key, "").Pos.Path] {
		c.Errorf(key, "%s is required", key)
	}
}

// URL checks that s is an absolute https URL (http is accepted only for
// loopback hosts, which tests and simulators use).
func (c *Checker) URL(key, s string) {
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Host == "":
		c.Errorf(key, "invalid URL %q", s)
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
	default:
		c.Errorf(key, "URL %q must use https", s)
	}
}

// Err returns the collected problems, or nil.
func (c *Checker) Err() error {
	if len(c.errs) == 0 {
		return nil
	}
	return c.errs.sorted()
}

func isLoopbackHost(h string) bool {
	return h == "localhost" || h == "::1" || len(h) > 4 && h[:4] == "127."
}

// DecodeWith decodes a block into a fresh T and runs check on it: the shape
// of every plug-in's decoder. check may be nil.
func DecodeWith[T any](b *Block, defaults T, check func(c *T, ck *Checker)) (any, error) {
	c := defaults
	var errs Errors
	if err := b.Decode(&c); err != nil {
		errs = append(errs, err.(Errors)...)
	}
	if check != nil {
		// Checks run even when decoding failed, so that a missing key is
		// reported together with a misspelt one.
		ck := b.Check()
		ck.failed = map[string]bool{}
		for _, e := range errs {
			ck.failed[e.Pos.Path] = true
		}
		check(&c, ck)
		errs = append(errs, ck.errs...)
	}
	if len(errs) > 0 {
		return nil, dedupe(errs.sorted())
	}
	return &c, nil
}
