package reseller

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	pathpkg "path"
	"slices"
	"strings"
	"time"

	"github.com/certd/certd/dcv"
)

// The shape of GET /ssl-certificate/{id}/validation-details is not
// documented, and depends on the CA behind the plan: Sectigo plans prove
// a domain by a CNAME _<MD5>.<domain> -> <SHA256 split>.sectigo.com or a
// file /.well-known/pki-validation/<MD5>.txt; DigiCert plans by a TXT
// random value or /.well-known/pki-validation/fileauth.txt. The parser
// below reads whatever the answer says, and never computes an artefact
// itself:
//
//   - per-domain objects are found by a key naming a requested domain
//     ({"n.example.com": {...}}) or a field holding one ("domain",
//     "domain_name", "fqdn", "name", "host", ...), at any depth;
//   - in a domain object (and its sub-objects, whose key is a hint: "dns",
//     "cname", "txt", "file", "http", "email"), a DNS record is a type
//     (CNAME/TXT, from a type key or the hint), a name and a value; a file
//     is a path (or URL, or a file name under /.well-known/pki-validation/)
//     and a content (text or a list of lines); an email is an address;
//     flat objects use prefixed keys ("dns_record", "dns_type",
//     "dns_value", "file_path", "file_content");
//   - a domain is valid when its status (or a boolean such as "validated")
//     says so;
//   - with a single requested domain and no per-domain object, the whole
//     answer is that domain's object.
//
// What cannot be read is reported in notes (keys only, never values), for
// the log.

// domainValidation is what the answer says of one requested domain.
type domainValidation struct {
	Domain     string // as requested ("*." kept)
	Found      bool   // the answer names it
	Valid      bool
	Status     string
	Detail     string
	Method     string // the dcv_type the answer says, if any
	Challenges []dcv.Challenge
}

// validationReport is the parsed answer.
type validationReport struct {
	Domains []*domainValidation // in request order
	// AllValid: the answer's top level says the order is validated.
	AllValid bool
	// Notes say what was guessed or skipped.
	Notes []string
	// Shape is the answer's key paths (no values), when something could
	// not be read.
	Shape string
}

const maxDepth = 24

var (
	domainKeys = []string{"domain", "domain_name", "fqdn", "hostname", "common_name", "name", "dns_name", "host", "identifier"}
	// strongDomainKeys name a domain, never an artefact's location.
	strongDomainKeys = []string{"domain", "domain_name", "fqdn", "common_name", "dns_name", "identifier"}
	statusKeys       = []string{"status", "validation_status", "dcv_status", "state", "domain_status", "validation_state"}
	boolKeys         = []string{"validated", "is_validated", "is_valid", "valid", "verified", "is_verified", "approved", "dcv_validated"}
	detailKeys       = []string{"message", "detail", "error", "reason", "last_error", "failure_reason", "error_message", "remark", "description"}
	methodKeys       = []string{"dcv_type", "dcv_method", "method", "validation_method", "validation_type"}
	expiresKeys      = []string{"expires_at", "expiration_date", "expires", "valid_until", "expiry"}
	validWords       = []string{"validated", "valid", "verified", "approved", "completed", "complete", "done", "success", "successful", "passed", "ok"}
)

type vparser struct {
	want  map[string]string // normalised name -> requested name
	found map[string]*domainValidation
	notes []string
}

// parseValidation reads a validation-details answer for the requested
// domains. A body that is not JSON is an error; any JSON is read without
// failing, the domains it does not describe marked !Found.
func parseValidation(body []byte, domains []string) (*validationReport, error) {
	var root any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("validation details are not JSON: %w", err)
	}
	p := &vparser{want: map[string]string{}, found: map[string]*domainValidation{}}
	for _, d := range domains {
		p.want[normName(d)] = d
	}
	p.walk(root, "", 0, "")
	rep := &validationReport{}
	if len(p.found) == 0 && len(domains) == 1 {
		if m := soleObject(root); m != nil {
			p.note("no per-domain object: the whole answer read as " + domains[0] + "'s")
			p.domainObject(domains[0], m, "")
		}
	}
	if m, ok := root.(map[string]any); ok {
		if st := firstString(m, append([]string{"order_status", "certificate_status"}, statusKeys...)); st != "" &&
			(isValidWord(st) || slices.Contains([]string{"active", "issued"}, normWord(st))) {
			rep.AllValid = true
		}
	}
	missing := false
	for _, d := range domains {
		dv := p.found[d]
		if dv == nil && strings.HasPrefix(d, "*.") {
			// One proof of the base name covers the wildcard (Sectigo's
			// CNAME, DigiCert's TXT), never a file.
			if base := p.found[d[2:]]; base != nil {
				c := *base
				c.Domain = d
				c.Challenges = slices.DeleteFunc(slices.Clone(base.Challenges), func(ch dcv.Challenge) bool { return ch.Method == dcv.HTTPFile })
				dv = &c
				p.note(d + ": read from the answer's entry for " + d[2:])
			}
		}
		if dv == nil {
			dv = &domainValidation{Domain: d}
			missing = true
		}
		rep.Domains = append(rep.Domains, dv)
		if dv.Found && !dv.Valid && len(dv.Challenges) == 0 {
			missing = true
		}
	}
	rep.Notes = p.notes
	if missing {
		rep.Shape = shapeOf(root)
	}
	return rep, nil
}

// soleObject is the answer's one object: the root, or the only element
// of a root list.
func soleObject(v any) map[string]any {
	switch t := v.(type) {
	case map[string]any:
		return t
	case []any:
		if len(t) == 1 {
			m, _ := t[0].(map[string]any)
			return m
		}
	}
	return nil
}

func normName(s string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
}

func normWord(s string) string {
	return strings.NewReplacer("-", "_", " ", "_").Replace(strings.ToLower(strings.TrimSpace(s)))
}

func isValidWord(s string) bool { return slices.Contains(validWords, normWord(s)) }

// maxNotes bounds what one answer adds to the log.
const maxNotes = 20

func (p *vparser) note(s string) {
	switch {
	case len(p.notes) < maxNotes:
		p.notes = append(p.notes, s)
	case len(p.notes) == maxNotes:
		p.notes = append(p.notes, "(more notes left out)")
	}
}

// match returns the requested name s stands for.
func (p *vparser) match(s string) (string, bool) {
	d, ok := p.want[normName(s)]
	return d, ok
}

// walk looks for the requested domains' objects under v. inside is the
// domain whose object v is part of ("" at first): within it only the
// strong domain keys count (an artefact's "host" or "name" is not a
// domain object), and only for other domains (a SAN listed under the
// main name's object).
func (p *vparser) walk(v any, key string, depth int, inside string) {
	if depth > maxDepth {
		p.note("answer nested deeper than " + fmt.Sprint(maxDepth) + " levels; the rest ignored")
		return
	}
	switch t := v.(type) {
	case map[string]any:
		keys := domainKeys
		if inside != "" {
			keys = strongDomainKeys
		}
		// A field naming a requested domain makes this its object.
		for _, dk := range keys {
			if d, ok := p.match(scalar(t[dk])); ok && d != inside {
				p.domainObject(d, t, key)
				for _, k := range sortedKeys(t) {
					p.walk(t[k], k, depth+1, d)
				}
				return
			}
		}
		for _, k := range sortedKeys(t) {
			if d, ok := p.match(k); ok && d != inside {
				switch c := t[k].(type) {
				case map[string]any:
					p.domainObject(d, c, "")
					p.walk(c, k, depth+1, d)
				case string:
					p.domainObject(d, map[string]any{"status": c}, "")
				case bool:
					p.domainObject(d, map[string]any{"validated": c}, "")
				default:
					p.note(fmt.Sprintf("the entry for %s is a %T", d, c))
				}
				continue
			}
			p.walk(t[k], k, depth+1, inside)
		}
	case []any:
		for _, el := range t {
			p.walk(el, key, depth+1, inside)
		}
	}
}

// domainObject reads one domain's object (merged when listed twice);
// hint is the key it was found under, when it names a method ("dns_txt").
func (p *vparser) domainObject(d string, m map[string]any, hint string) {
	dv := p.found[d]
	if dv == nil {
		dv = &domainValidation{Domain: d}
		p.found[d] = dv
	}
	dv.Found = true
	if st := firstString(m, statusKeys); st != "" {
		dv.Status = st
		dv.Valid = dv.Valid || isValidWord(st)
	}
	for _, k := range boolKeys {
		if b, ok := m[k].(bool); ok && b {
			dv.Valid = true
		}
	}
	if s := firstString(m, detailKeys); s != "" {
		dv.Detail = oneLine(truncate(s, 300))
	}
	if s := firstString(m, methodKeys); s != "" {
		dv.Method = strings.ToUpper(s)
	}
	for _, ch := range p.collect(d, m, hint, 0) {
		if !slices.Contains(dv.Challenges, ch) {
			dv.Challenges = append(dv.Challenges, ch)
		}
	}
}

// collect reads the artefacts of node and its sub-objects; hint is the
// path of keys leading to node inside the domain object.
func (p *vparser) collect(d string, node map[string]any, hint string, depth int) []dcv.Challenge {
	if depth > maxDepth {
		return nil
	}
	var out []dcv.Challenge
	s := map[string]string{}
	for k, v := range node {
		switch t := v.(type) {
		case string:
			s[strings.ToLower(k)] = t
		case []any:
			if txt := lines(t); txt != "" {
				s[strings.ToLower(k)] = txt
			}
		}
	}
	base := strings.TrimPrefix(d, "*.")
	var expires time.Time
	if e := first(s, expiresKeys...); e != "" {
		expires, _ = parseTime(e)
	}
	h := strings.ToLower(hint)

	// DNS.
	typ := strings.ToUpper(first(s, "dns_type", "record_type", "dns_record_type", "rr_type", "rrtype", "type"))
	if typ != "CNAME" && typ != "TXT" {
		typ = "" // "type" may name the method (DNS, FILE)
	}
	if typ == "" {
		switch {
		case strings.Contains(h, "cname"):
			typ = "CNAME"
		case strings.Contains(h, "txt"):
			typ = "TXT"
		}
	}
	name := first(s, "dns_record", "dns_name", "dns_host", "dns_record_name", "record_name", "record_host",
		"cname_name", "cname_host", "cname_record", "txt_name", "txt_host", "txt_record")
	value := first(s, "dns_value", "dns_target", "dns_record_value", "record_value", "record_target",
		"cname_value", "cname_target", "cname_points_to", "txt_value", "dns_content")
	if typ != "" || containsAny(h, "dns", "cname", "txt") {
		if name == "" {
			name = first(s, "host", "hostname", "name", "record", "owner", "fqdn")
		}
		if value == "" {
			value = first(s, "value", "target", "points_to", "pointsto", "point", "content", "data", "rdata")
		}
	}
	if name != "" && value != "" && !strings.ContainsAny(name, " /") {
		if typ == "" {
			if looksLikeHost(value) {
				typ = "CNAME"
			} else {
				typ = "TXT"
			}
			p.note(fmt.Sprintf("%s: the record type at %q is not said; read as %s", d, keyOr(hint), typ))
		}
		ch := dcv.Challenge{Domain: base, RecordName: normName(name), Value: strings.TrimSpace(value), Expires: expires}
		if typ == "CNAME" {
			ch.Method, ch.Value = dcv.DNSCNAME, normName(value)
		} else {
			ch.Method = dcv.DNSTXT
		}
		out = append(out, ch)
	}

	// File.
	fileCtx := containsAny(h, "file", "http")
	pathish := first(s, "file_path", "http_path", "file_url", "http_url", "file_location", "file_uri")
	fname := first(s, "file_name", "filename", "http_file_name", "http_filename")
	content := first(s, "file_content", "file_contents", "http_content", "http_body", "file_body")
	if !fileCtx && pathish == "" && (strings.Contains(s["path"], "/.well-known/") || strings.Contains(s["url"], "/.well-known/")) {
		fileCtx = true
	}
	if fileCtx {
		if pathish == "" {
			pathish = first(s, "path", "url", "location", "uri", "link")
		}
		if fname == "" {
			fname = first(s, "name")
		}
		if content == "" {
			content = first(s, "content", "contents", "body", "text", "value", "data", "token")
		}
	}
	if pathish != "" || fname != "" {
		if ch, ok := p.fileChallenge(d, pathish, fname, content, hint); ok {
			ch.Expires = expires
			out = append(out, ch)
		}
	}

	// Email.
	email := first(s, "approver_email", "approver_email_address", "email_address", "email", "dcv_email", "validation_email")
	if email == "" && containsAny(h, "email", "approver") {
		email = first(s, "address", "value")
	}
	if strings.Contains(email, "@") && !strings.ContainsAny(email, " ") {
		out = append(out, dcv.Challenge{Domain: base, Method: dcv.Email, EmailAddress: email, Expires: expires})
	}

	for _, k := range sortedKeys(node) {
		sub := strings.TrimPrefix(hint+"/"+k, "/")
		switch t := node[k].(type) {
		case map[string]any:
			out = append(out, p.collect(d, t, sub, depth+1)...)
		case []any:
			for _, el := range t {
				if m, ok := el.(map[string]any); ok {
					out = append(out, p.collect(d, m, sub, depth+1)...)
				}
			}
		}
	}
	return out
}

// fileChallenge builds the HTTP file the answer describes.
func (p *vparser) fileChallenge(d, pathish, fname, content, hint string) (dcv.Challenge, bool) {
	where := keyOr(hint)
	if strings.HasPrefix(d, "*.") {
		p.note(d + ": a file cannot prove a wildcard name; the file offered is ignored")
		return dcv.Challenge{}, false
	}
	host := d
	var path string
	switch {
	case strings.Contains(pathish, "://"):
		u, err := url.Parse(pathish)
		if err != nil || u.Path == "" {
			p.note(fmt.Sprintf("%s: unreadable file URL at %q", d, where))
			return dcv.Challenge{}, false
		}
		path = u.Path
		if h := normName(u.Hostname()); h != "" && h != d {
			if !looksLikeHost(h) {
				p.note(fmt.Sprintf("%s: the file URL at %q names no host name", d, where))
				return dcv.Challenge{}, false
			}
			p.note(fmt.Sprintf("%s: the file is to be served on %s, as the answer says", d, h))
			host = h
		}
	case strings.HasPrefix(pathish, "/"):
		path = pathish
	case pathish == "" && fname != "" && !strings.ContainsAny(fname, "/\\ "):
		path = "/.well-known/pki-validation/" + fname
		p.note(fmt.Sprintf("%s: only a file name at %q; served under /.well-known/pki-validation/", d, where))
	default:
		p.note(fmt.Sprintf("%s: unreadable file location at %q", d, where))
		return dcv.Challenge{}, false
	}
	// A path that only starts under /.well-known/ ("/.well-known/../x",
	// "//x", "/.well-known/a/./b") is not under it once a web root is
	// joined to it (found by FuzzValidationDetails).
	if !strings.HasPrefix(path, "/.well-known/") || pathpkg.Clean(path) != path {
		p.note(fmt.Sprintf("%s: the file path at %q is not under /.well-known/; ignored", d, where))
		return dcv.Challenge{}, false
	}
	if content == "" {
		p.note(fmt.Sprintf("%s: the file at %q has no content", d, where))
		return dcv.Challenge{}, false
	}
	return dcv.Challenge{Domain: host, Method: dcv.HTTPFile, Path: path, Content: content}, true
}

func keyOr(hint string) string {
	if hint == "" {
		return "(domain object)"
	}
	return hint
}

// lines joins a list of strings as the lines of a file.
func lines(a []any) string {
	var parts []string
	for _, x := range a {
		s, ok := x.(string)
		if !ok {
			return ""
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "\n")
}

func first(s map[string]string, keys ...string) string {
	for _, k := range keys {
		if v := strings.TrimSpace(s[k]); v != "" {
			return s[k]
		}
	}
	return ""
}

func firstString(m map[string]any, keys []string) string {
	for _, k := range keys {
		if v := strings.TrimSpace(scalar(m[k])); v != "" {
			return v
		}
	}
	return ""
}

func containsAny(s string, subs ...string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}

// looksLikeHost: a DNS name (a CNAME target), not a token.
func looksLikeHost(s string) bool {
	s = normName(s)
	if !strings.Contains(s, ".") || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// shapeOf lists the answer's key paths (no values), for the log.
func shapeOf(v any) string {
	var paths []string
	var walk func(v any, path string, depth int)
	walk = func(v any, path string, depth int) {
		if len(paths) >= 60 || depth > 8 {
			return
		}
		switch t := v.(type) {
		case map[string]any:
			if len(t) == 0 {
				paths = append(paths, path+"{}")
			}
			for _, k := range sortedKeys(t) {
				walk(t[k], path+"."+k, depth+1)
			}
		case []any:
			if len(t) == 0 {
				paths = append(paths, path+"[]")
			} else {
				walk(t[0], path+"[]", depth+1)
			}
		default:
			paths = append(paths, fmt.Sprintf("%s:%s", path, kind(t)))
		}
	}
	walk(v, "", 0)
	if len(paths) == 0 {
		return "(empty)"
	}
	return strings.Join(paths, " ")
}

func kind(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "bool"
	case nil:
		return "null"
	}
	return "?"
}
