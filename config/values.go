package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written as a string: Go's units ("90m",
// "720h") plus "d" for days ("30d", "1d12h"). Negative durations are refused.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String renders the duration in Go's notation.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a duration such as \"720h\" or \"30d\", got %s", kindName(n))
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// ParseDuration parses Go duration syntax extended with a "d" (24h) unit.
func ParseDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("invalid duration %q (use units d, h, m, s, as in \"30d\" or \"12h\")", s)
	if s == "" || strings.HasPrefix(s, "-") {
		return 0, bad
	}
	if s == "0" {
		return 0, nil
	}
	var total time.Duration
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		j := i
		for j < len(rest) && (rest[j] < '0' || rest[j] > '9') && rest[j] != '.' {
			j++
		}
		if i == 0 || j == i {
			return 0, bad
		}
		num, unit := rest[:i], rest[i:j]
		rest = rest[j:]
		if unit == "d" {
			days, err := strconv.ParseFloat(num, 64)
			if err != nil || days > 1e5 {
				return 0, bad
			}
			total += time.Duration(days * float64(24*time.Hour))
			continue
		}
		part, err := time.ParseDuration(num + unit)
		if err != nil {
			return 0, bad
		}
		total += part
	}
	return total, nil
}

// FileMode is a permission mode written in octal, as a string ("0640") or
// a number (640 and 0640 both mean rw-r-----).
type FileMode os.FileMode

// UnmarshalYAML implements yaml.Unmarshaler.
func (m *FileMode) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected an octal mode such as \"0640\", got %s", kindName(n))
	}
	s := strings.TrimPrefix(strings.TrimPrefix(n.Value, "0o"), "0O")
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o777 {
		return fmt.Errorf("invalid file mode %q (expected octal permissions such as \"0640\")", n.Value)
	}
	*m = FileMode(v)
	return nil
}

// Mode returns the value as an os.FileMode.
func (m FileMode) Mode() os.FileMode { return os.FileMode(m) }

// Argv is a command as a list of arguments, run without a shell.
type Argv []string

// UnmarshalYAML implements yaml.Unmarshaler.
func (a *Argv) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return fmt.Errorf("a command must be a list of arguments run without a shell, such as [nginx, -t], not the string %q", n.Value)
	}
	var s []string
	if n.Kind != yaml.SequenceNode || n.Decode(&s) != nil {
		return fmt.Errorf("expected a list of arguments such as [nginx, -t], got %s", kindName(n))
	}
	if len(s) == 0 {
		*a = Argv{} // an empty list: no command (check: [] turns a default check off)
		return nil
	}
	if s[0] == "" {
		return errors.New("a command needs at least the program to run")
	}
	*a = s
	return nil
}

// Secret is a reference to a credential, never the credential itself:
//
//	file:/etc/certd/atlas-secret   (a file readable by its owner only;
//	                                a bare absolute path means the same;
//	                                relative paths are relative to the
//	                                configuration file)
//	env:CERTD_ATLAS_SECRET         (an environment variable)
//	credential:atlas-secret        (a systemd credential, LoadCredential=,
//	                                read from $CREDENTIALS_DIRECTORY)
//
// Inline secrets are refused so that configuration files can be shared,
// printed and committed without leaking anything.
type Secret struct {
	Scheme string // "file", "env" or "credential"
	Ref    string // the path, variable name or credential name
	origin Pos
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.Value == "" {
		return fmt.Errorf("expected a secret reference (file:PATH, env:NAME or credential:NAME), got %s", kindName(n))
	}
	scheme, ref, ok := strings.Cut(n.Value, ":")
	switch {
	case strings.HasPrefix(n.Value, "/"):
		scheme, ref = "file", n.Value
	case !ok || (scheme != "file" && scheme != "env" && scheme != "credential"):
		// Do not echo the value back: it may be the secret itself.
		return errors.New("inline secrets are not accepted; write file:PATH, env:NAME or credential:NAME")
	}
	if ref == "" {
		return fmt.Errorf("%s: reference is empty", scheme)
	}
	s.Scheme, s.Ref = scheme, ref
	return nil
}

func (s *Secret) afterDecode(pos Pos, errs *errorList) {
	s.origin = pos
	if s.Scheme != "file" {
		return
	}
	if !filepath.IsAbs(s.Ref) && pos.File != "" {
		s.Ref = filepath.Join(filepath.Dir(pos.File), s.Ref)
	}
	if err := checkSecretFile(s.Ref); err != nil {
		errs.add(pos, "%s", err.Error())
	}
}

// IsSet reports whether a reference was configured.
func (s Secret) IsSet() bool { return s.Scheme != "" }

// String describes the reference (never the value).
func (s Secret) String() string {
	if !s.IsSet() {
		return "(unset)"
	}
	return s.Scheme + ":" + s.Ref
}

func checkSecretFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("secret file %s does not exist", path)
		}
		return fmt.Errorf("secret file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("secret file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("secret file %s is readable by group or others (mode %04o); chmod 600 it", path, perm)
	}
	return nil
}

// Resolve reads the secret. The error names the reference and where it was
// configured, never the value.
func (s Secret) Resolve() (SecretValue, error) {
	fail := func(format string, args ...any) (SecretValue, error) {
		return SecretValue{}, fmt.Errorf("%s: %s: %s", s.origin, s.origin.Path, fmt.Sprintf(format, args...))
	}
	switch s.Scheme {
	case "file":
		if err := checkSecretFile(s.Ref); err != nil {
			return fail("%v", err)
		}
		b, err := os.ReadFile(s.Ref)
		if err != nil {
			return fail("reading secret file: %v", err)
		}
		return NewSecretValue(strings.TrimRight(string(b), "\r\n")), nil
	case "env":
		v, ok := os.LookupEnv(s.Ref)
		if !ok {
			return fail("environment variable %s is not set", s.Ref)
		}
		return NewSecretValue(v), nil
	case "credential":
		dir := os.Getenv("CREDENTIALS_DIRECTORY")
		if dir == "" {
			return fail("credential %s: $CREDENTIALS_DIRECTORY is not set (credential: works under systemd with LoadCredential=)", s.Ref)
		}
		if strings.ContainsRune(s.Ref, '/') {
			return fail("credential name %q must not contain a slash", s.Ref)
		}
		b, err := os.ReadFile(filepath.Join(dir, s.Ref))
		if err != nil {
			return fail("reading credential %s: %v", s.Ref, err)
		}
		return NewSecretValue(strings.TrimRight(string(b), "\r\n")), nil
	case "":
		return fail("no secret configured")
	}
	return fail("unknown secret scheme %q", s.Scheme)
}

// SecretValue holds a resolved credential. Every printer sees "[REDACTED]":
// fmt verbs, JSON, zap's reflection and Stringer encoders. Only Reveal
// gives the value, for the one call that sends it to its CA or provider.
//
// The value sits behind a function, not in a string field: a printer
// that walks a struct by reflection and cannot call the methods above (an
// unexported field holding a SecretValue, printed with %+v or %d) finds
// only a function, which fmt prints as its address.
type SecretValue struct{ v func() string }

// NewSecretValue wraps a credential that came from elsewhere (tests, the
// demo) so that it is redacted like one read from configuration.
func NewSecretValue(v string) SecretValue { return SecretValue{v: func() string { return v }} }

// Reveal returns the credential itself ("" for the zero value).
func (s SecretValue) Reveal() string {
	if s.v == nil {
		return ""
	}
	return s.v()
}

// String implements fmt.Stringer.
func (s SecretValue) String() string { return "[REDACTED]" }

// GoString implements fmt.GoStringer.
func (s SecretValue) GoString() string { return "[REDACTED]" }

// Format makes every fmt verb print the redaction.
func (s SecretValue) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte("[REDACTED]")) }

// MarshalJSON implements json.Marshaler.
func (s SecretValue) MarshalJSON() ([]byte, error) { return []byte(`"[REDACTED]"`), nil }

// MarshalText implements encoding.TextMarshaler.
func (s SecretValue) MarshalText() ([]byte, error) { return []byte("[REDACTED]"), nil }

// Block is a plug-in's section of the configuration (one account, DNS
// provider or HTTP target): its "type" selects the plug-in, which decodes
// the rest of the block into its own struct with Decode, just as strictly
// as the rest of the file.
type Block struct {
	Type    string
	node    *yaml.Node
	pos     Pos
	typePos Pos
	// common are keys every block of its kind takes (account limits), read
	// by the loader and hidden from the plug-in's decoder.
	common map[string]bool
	// positions of keys inside the block, filled by Decode.
	keys map[string]Pos
	// unknown keys written in the block, by the path they sit under.
	unknown map[string][]string
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *Block) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("expected a mapping with a type key, got %s", kindName(n))
	}
	b.node = n
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "type" {
			if n.Content[i+1].Kind != yaml.ScalarNode {
				return errors.New("type must be a string")
			}
			b.Type = n.Content[i+1].Value
			b.typePos = Pos{Line: n.Content[i].Line, Col: n.Content[i].Column}
		}
	}
	return nil
}

func (b *Block) afterDecode(pos Pos, _ *errorList) {
	b.pos = pos
	if b.typePos.Line == 0 {
		b.typePos = pos
	}
	b.typePos.File, b.typePos.Path = pos.File, joinPath(pos.Path, "type")
	b.keys = map[string]Pos{}
}

// Pos is where the block starts.
func (b *Block) Pos() Pos { return b.pos }

// Decode decodes every key of the block except "type" into v, a pointer to
// the plug-in's config struct. Unknown keys are errors. The error, if any,
// is an Errors naming file:line and the full key path.
func (b *Block) Decode(v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("config: Block.Decode needs a non-nil pointer, got %T", v)
	}
	errs := &errorList{}
	skip := map[string]bool{"type": true}
	for k := range b.common {
		skip[k] = true
	}
	d := &decoder{file: b.pos.File, errs: errs, pos: map[string]Pos{}, skip: skip, unknown: map[string][]string{}}
	if b.node != nil {
		d.decode(b.node, rv.Elem(), "", nil)
	}
	b.unknown = d.unknown
	for k, p := range d.pos {
		p.Path = subPath(b.pos.Path, k)
		b.keys[k] = p
	}
	for _, e := range errs.errs {
		e.Pos.Path = subPath(b.pos.Path, e.Pos.Path)
	}
	// Secrets name their full key path too (accounts.atlas.api_key), in
	// the errors Resolve returns and wherever they are listed.
	walkSecrets(rv, func(s *Secret) {
		if s.origin.Path == "" {
			s.origin.Path = b.pos.Path
		} else if !strings.HasPrefix(s.origin.Path, b.pos.Path+".") {
			s.origin.Path = b.pos.Path + "." + s.origin.Path
		}
	})
	return errs.err()
}

// subPath places rel, a key path inside a block ("eab.kid", `["a b"]`),
// under the block's own path. (joinPath would quote "eab.kid" as one key.)
func subPath(base, rel string) string {
	switch {
	case rel == "":
		return base
	case strings.HasPrefix(rel, "["):
		return base + rel
	}
	return base + "." + rel
}

// Errorf returns a positioned error about key (a path inside the block such
// as "url" or "eab.kid"; "" for the block itself). A key that was not
// written is reported at the block's own position.
func (b *Block) Errorf(key, format string, args ...any) *Error {
	p, ok := b.keys[key]
	if !ok {
		p = b.pos
		p.Path = subPath(b.pos.Path, key)
	}
	return &Error{Pos: p, Msg: fmt.Sprintf(format, args...)}
}
