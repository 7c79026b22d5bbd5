package config

import (
	"fmt"
	"strings"
	"unicode"

	"golang.org/x/net/idna"
)

// checkIDNA2008 refuses a name (in its A-label form, as hostProfile or
// dnsProfile returns it) holding a code point that IDNA2008 (RFC 5892)
// does not allow in a domain name: symbols and emoji ("i❤.example.com",
// "😀.example.com"), punctuation, and the context rules of RFC 5892
// appendix A.
//
// x/net/idna cannot do this itself: its profiles (Lookup and Registration
// alike) implement UTS #46, which keeps such characters as "valid, NV8"
// and treats them as valid (see simplify's "TODO: handle V2008"). CAs
// follow IDNA2008 and refuse the name at order time, after DCV records
// were published; certd refuses it at load, with file:line.
//
// Each xn-- label is decoded and its code points checked against the
// derived property of RFC 5892 section 3. The Unstable rule (NFKC case
// folding) is already enforced by the UTS #46 step before this: a
// character that folding would change is "mapped" there, and a decoded
// A-label holding one is refused by the profile.
func checkIDNA2008(ascii string) error {
	for _, label := range strings.Split(ascii, ".") {
		if !strings.HasPrefix(label, "xn--") {
			continue // LDH (and "_" for DNS record names): checked elsewhere
		}
		u, err := idna.Punycode.ToUnicode(label)
		if err != nil {
			return fmt.Errorf("label %s is not valid punycode", label)
		}
		runes := []rune(u)
		for i, r := range runes {
			switch idna2008Property(r) {
			case pvalid, contextJ: // joiners: the profile's CheckJoiners rule
			case contextO:
				if !contextORule(runes, i) {
					return fmt.Errorf("IDNA2008 allows %U (%c) only in certain contexts (RFC 5892 appendix A), not in %q", r, r, u)
				}
			case unassigned:
				return fmt.Errorf("%U is not an assigned Unicode code point", r)
			default:
				return fmt.Errorf("IDNA2008 does not allow %U (%c) in a domain name (RFC 5892)", r, r)
			}
		}
	}
	return nil
}

type idnaProperty int

const (
	disallowed idnaProperty = iota
	pvalid
	contextJ
	contextO
	unassigned
)

// idna2008Exceptions is RFC 5892 section 2.6.
var idna2008Exceptions = map[rune]idnaProperty{
	0x00DF: pvalid, 0x03C2: pvalid, 0x06FD: pvalid, 0x06FE: pvalid, 0x0F0B: pvalid, 0x3007: pvalid,
	0x00B7: contextO, 0x0375: contextO, 0x05F3: contextO, 0x05F4: contextO, 0x30FB: contextO,
	0x0640: disallowed, 0x07FA: disallowed, 0x302E: disallowed, 0x302F: disallowed,
	0x3031: disallowed, 0x3032: disallowed, 0x3033: disallowed, 0x3034: disallowed, 0x3035: disallowed, 0x303B: disallowed,
}

// idna2008Ignorable are the IgnorableBlocks (2.8) and the OldHangulJamo
// (2.9) of RFC 5892.
var idna2008Ignorable = &unicode.RangeTable{
	R16: []unicode.Range16{
		{Lo: 0x1100, Hi: 0x11FF, Stride: 1}, // Hangul_Syllable_Type L, V, T
		{Lo: 0x20D0, Hi: 0x20FF, Stride: 1}, // Combining Diacritical Marks for Symbols
		{Lo: 0xA960, Hi: 0xA97F, Stride: 1}, // Hangul Jamo Extended-A (L)
		{Lo: 0xD7B0, Hi: 0xD7FF, Stride: 1}, // Hangul Jamo Extended-B (V, T)
	},
	R32: []unicode.Range32{
		{Lo: 0x1D100, Hi: 0x1D1FF, Stride: 1}, // Musical Symbols
		{Lo: 0x1D200, Hi: 0x1D24F, Stride: 1}, // Ancient Greek Musical Notation
	},
}

// idna2008Property is the derived property of RFC 5892 section 3 for a
// code point that survived UTS #46 mapping (so is stable under NFKC case
// folding).
func idna2008Property(r rune) idnaProperty {
	if p, ok := idna2008Exceptions[r]; ok {
		return p
	}
	if r >= 0x0660 && r <= 0x0669 || r >= 0x06F0 && r <= 0x06F9 {
		return contextO // Arabic-Indic digits: one set or the other, not both
	}
	switch {
	case !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z, unicode.C):
		return unassigned
	case r < 0x80 && (r == '-' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9'):
		return pvalid
	case r == 0x200C || r == 0x200D:
		return contextJ
	case unicode.In(r, unicode.White_Space, unicode.Noncharacter_Code_Point, unicode.Other_Default_Ignorable_Code_Point,
		unicode.Variation_Selector, unicode.Cf, idna2008Ignorable):
		return disallowed
	case unicode.In(r, unicode.Ll, unicode.Lu, unicode.Lo, unicode.Nd, unicode.Lm, unicode.Mn, unicode.Mc):
		return pvalid
	}
	return disallowed
}

// contextORule is RFC 5892 appendix A.3 to A.9 for the code point at i.
func contextORule(label []rune, i int) bool {
	r := label[i]
	switch {
	case r == 0x00B7: // MIDDLE DOT: between two l (Catalan l·l)
		return i > 0 && i+1 < len(label) && label[i-1] == 'l' && label[i+1] == 'l'
	case r == 0x0375: // GREEK LOWER NUMERAL SIGN: followed by Greek
		return i+1 < len(label) && unicode.Is(unicode.Greek, label[i+1])
	case r == 0x05F3 || r == 0x05F4: // HEBREW GERESH, GERSHAYIM: after Hebrew
		return i > 0 && unicode.Is(unicode.Hebrew, label[i-1])
	case r == 0x30FB: // KATAKANA MIDDLE DOT: in a Japanese label
		for _, o := range label {
			if o != 0x30FB && unicode.In(o, unicode.Hiragana, unicode.Katakana, unicode.Han) {
				return true
			}
		}
		return false
	case r >= 0x0660 && r <= 0x0669: // ARABIC-INDIC DIGITS: not mixed with extended
		for _, o := range label {
			if o >= 0x06F0 && o <= 0x06F9 {
				return false
			}
		}
		return true
	case r >= 0x06F0 && r <= 0x06F9: // EXTENDED ARABIC-INDIC DIGITS
		for _, o := range label {
			if o >= 0x0660 && o <= 0x0669 {
				return false
			}
		}
		return true
	}
	return false
}
