package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Decoder decodes one plug-in block (an account, DNS provider or HTTP
// target of a given type) into the plug-in's own validated config struct.
// It should return an Errors (use Block.Decode and Block.Errorf) so that
// every problem is reported with its file:line.
type Decoder func(b *Block) (any, error)

// Options are what the loader needs from the rest of certd: for each kind
// of plug-in, the table from type name to decoder. A type missing from its
// table is an error.
type Options struct {
	Accounts map[string]Decoder
	DNS      map[string]Decoder
	HTTP     map[string]Decoder
}

// ConfDir is the name of the folder beside the main file whose *.yaml and
// *.yml files are loaded after it, in lexical order.
const ConfDir = "conf.d"

// Load reads the main configuration file at path and the conf.d folder
// beside it, and validates the whole. On any problem it returns an Errors
// with every problem found, and no Config: a configuration is used whole or
// not at all.
//
// A configuration that lists no certificate is refused unless its main
// file says allow_empty: true: certd retires every stored certificate the
// configuration does not list, so an empty or truncated file, or a conf.d
// folder that lost its files, must not pass for an intended one.
func Load(path string, opts Options) (*Config, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		// Named as a place, like every other problem, rather than as
		// read(2)'s EISDIR.
		return nil, Errors{{Pos: Pos{File: path}, Msg: "is a directory, not a configuration file; name the main file (certd.yaml) in it"}}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	l := newLoader(opts)
	l.requireCerts = true
	l.main(path, data)
	dir := filepath.Join(filepath.Dir(path), ConfDir)
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	var frags []string
	for _, e := range entries {
		if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") && !strings.HasPrefix(e.Name(), ".") {
			frags = append(frags, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(frags)
	for _, f := range frags {
		fd, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading configuration: %w", err)
		}
		l.fragment(f, fd)
	}
	return l.finish()
}

// Parse loads a configuration from memory, as Load does without a conf.d
// folder, except that a configuration without certificates is accepted
// (tests and tools decode a single block this way). name is used in error
// positions and to resolve relative paths.
func Parse(name string, data []byte, opts Options) (*Config, error) {
	l := newLoader(opts)
	l.main(name, data)
	return l.finish()
}

type loader struct {
	opts Options
	// requireCerts refuses a configuration without certificates unless it
	// allows it (Load).
	requireCerts bool
	errs         errorList
	pos          map[string]map[string]Pos      // file -> key path -> position
	unknown      map[string]map[string][]string // file -> key path -> unknown keys under it
	defaults     *Defaults
	mainFile     string
	cfg          *Config
	blocks       [3]map[string]*Block // accounts, dns, http
}

func newLoader(opts Options) *loader {
	return &loader{
		opts:    opts,
		pos:     map[string]map[string]Pos{},
		unknown: map[string]map[string][]string{},
		cfg: &Config{
			Accounts: map[string]*Plugin{},
			DNS:      map[string]*Plugin{},
			HTTP:     map[string]*Plugin{},
		},
		blocks: [3]map[string]*Block{{}, {}, {}},
	}
}

func (l *loader) decodeFile(file string, data []byte, into any, skip map[string]bool) bool {
	l.cfg.Files = append(l.cfg.Files, file)
	root, err := parseYAML(file, data)
	if err != nil {
		l.errs.errs = append(l.errs.errs, err.(Errors)...)
		return false
	}
	d := &decoder{file: file, errs: &l.errs, pos: map[string]Pos{}, skip: skip, unknown: map[string][]string{}}
	l.pos[file] = d.pos
	l.unknown[file] = d.unknown
	if len(root.Content) == 0 {
		return true // an empty file is an empty configuration
	}
	d.decode(root, reflect.ValueOf(into).Elem(), "", nil)
	return true
}

func (l *loader) main(file string, data []byte) {
	var m mainFile
	if !l.decodeFile(file, data, &m, nil) {
		return
	}
	l.cfg.Schedule = m.Schedule
	l.cfg.AllowEmpty = m.AllowEmpty
	l.cfg.PendingGrace = m.PendingGrace
	l.cfg.Workers = m.Workers
	l.cfg.Store = m.Store
	l.cfg.Fleet = m.Fleet
	l.cfg.Log = m.Log
	l.cfg.Metrics = m.Metrics
	l.cfg.DCV = m.DCV
	l.cfg.Notify = m.Notify
	l.defaults = m.Defaults
	l.add(file, m.Accounts, m.DNS, m.HTTP, m.Certificates)
	l.checkSettings(file)
	l.mainFile = file
}

func (l *loader) fragment(file string, data []byte) {
	// Daemon-wide keys are named as such rather than as unknown.
	mainOnly := map[string]bool{}
	for _, k := range []string{"schedule", "store", "fleet", "log", "metrics", "defaults", "allow_empty", "pending_grace"} {
		mainOnly[k] = true
	}
	var f fragment
	if !l.decodeFile(file, data, &f, mainOnly) {
		return
	}
	if root, err := parseYAML(file, data); err == nil && len(root.Content) > 0 && root.Content[0].Kind == yaml.MappingNode {
		n := root.Content[0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; mainOnly[k.Value] {
				l.errs.add(Pos{File: file, Line: k.Line, Col: k.Column, Path: k.Value}, "only the main configuration file may set %s", k.Value)
			}
		}
	}
	l.add(file, f.Accounts, f.DNS, f.HTTP, f.Certificates)
}

func (l *loader) add(file string, accounts, dns, http map[string]*Block, certs []*Certificate) {
	for i, m := range []map[string]*Block{accounts, dns, http} {
		kind := [...]string{"account", "DNS provider", "HTTP target"}[i]
		names := make([]string, 0, len(m))
		for name := range m {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			b := m[name]
			if b == nil || b.node == nil {
				continue // null, or not a mapping: already reported
			}
			if prev, ok := l.blocks[i][name]; ok {
				l.errs.add(b.Pos(), "%s %q is already defined at %s", kind, name, prev.Pos())
				continue
			}
			l.blocks[i][name] = b
		}
	}
	for i, c := range certs {
		if c == nil {
			continue
		}
		c.Pos = l.pos[file][fmt.Sprintf("certificates[%d]", i)]
		l.cfg.Certificates = append(l.cfg.Certificates, c)
	}
}

// at returns the position of path in file, or of its nearest written
// ancestor when the key itself was not written (a missing required key is
// reported where its parent is). The returned Path is always path.
func (l *loader) at(file, path string) Pos {
	idx := l.pos[file]
	for p := path; ; {
		if pos, ok := idx[p]; ok {
			pos.Path = path
			return pos
		}
		cut := strings.LastIndexAny(p, ".[")
		if cut <= 0 {
			return Pos{File: file, Line: 1, Col: 1, Path: path}
		}
		p = p[:cut]
	}
}

// errAt reports a problem with path in file, unless path was not written
// because a misspelling of it was (the unknown key's error says so).
func (l *loader) errAt(file, path, format string, args ...any) {
	if misspelt(l.pos[file], l.unknown[file], path) {
		return
	}
	l.errs.add(l.at(file, path), format, args...)
}

func (l *loader) finish() (*Config, error) {
	l.decodePlugins()
	l.checkDefaults()
	l.checkDCVSettings()
	l.checkCertificates()
	l.checkNotEmpty()
	l.checkFleetLease()
	if err := l.errs.err(); err != nil {
		return nil, dedupe(err.(Errors))
	}
	return l.cfg, nil
}

// checkNotEmpty refuses a configuration without any certificate unless
// it says so: a 0-byte or truncated file, or a conf.d folder that lost its
// files, would otherwise retire every certificate certd manages.
func (l *loader) checkNotEmpty() {
	if !l.requireCerts || l.mainFile == "" || len(l.cfg.Certificates) > 0 || l.cfg.AllowEmpty {
		return
	}
	l.errAt(l.mainFile, "certificates", "no certificate is configured (an empty or truncated file?): certd would retire every certificate it manages; "+
		"list the certificates, or write allow_empty: true to run with none")
}

func dedupe(es Errors) Errors {
	seen := map[string]bool{}
	out := es[:0]
	for _, e := range es {
		if k := e.Error(); !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	return out
}

func (l *loader) decodePlugins() {
	tables := [3]map[string]Decoder{l.opts.Accounts, l.opts.DNS, l.opts.HTTP}
	dests := [3]map[string]*Plugin{l.cfg.Accounts, l.cfg.DNS, l.cfg.HTTP}
	for i := range tables {
		for name, b := range l.blocks[i] {
			var limits AccountLimits
			if i == 0 {
				limits = l.accountLimits(b)
			}
			typePos := b.typePos
			if typePos.File == "" {
				continue // the block did not decode; its error names its place
			}
			if b.Type == "" {
				l.errs.add(typePos, "missing type (one of: %s)", strings.Join(sortedKeys(tables[i]), ", "))
				continue
			}
			dec, ok := tables[i][b.Type]
			if !ok {
				l.errs.add(typePos, "unknown type %q (one of: %s)", b.Type, strings.Join(sortedKeys(tables[i]), ", "))
				continue
			}
			settings, err := dec(b)
			if err != nil {
				var es Errors
				var e *Error
				switch {
				case errors.As(err, &es):
					l.errs.errs = append(l.errs.errs, es...)
				case errors.As(err, &e):
					l.errs.errs = append(l.errs.errs, e)
				default:
					l.errs.add(b.Pos(), "%v", err)
				}
				continue
			}
			dests[i][name] = &Plugin{Name: name, Type: b.Type, Pos: b.Pos(), Settings: settings, Limits: limits, block: b}
		}
	}
}

// accountLimits reads the keys every account takes and hides them from
// the CA's own decoder.
func (l *loader) accountLimits(b *Block) AccountLimits {
	lim := AccountLimits{MaxConcurrent: 4, OrderWait: DefaultOrderWait}
	b.common = map[string]bool{"max_concurrent": true, "rate_limit": true, "burst": true, "order_wait": true, "request_timeout": true, "per_host_keys": true}
	if b.node == nil {
		return lim
	}
	var only struct {
		MaxConcurrent  *int      `yaml:"max_concurrent"`
		RateLimit      *float64  `yaml:"rate_limit"`
		Burst          *int      `yaml:"burst"`
		OrderWait      *Duration `yaml:"order_wait"`
		RequestTimeout *Duration `yaml:"request_timeout"`
		PerHostKeys    *bool     `yaml:"per_host_keys"`
	}
	picked := &yaml.Node{Kind: yaml.MappingNode, Line: b.node.Line, Column: b.node.Column}
	for i := 0; i+1 < len(b.node.Content); i += 2 {
		if b.common[b.node.Content[i].Value] {
			picked.Content = append(picked.Content, b.node.Content[i], b.node.Content[i+1])
		}
	}
	d := &decoder{file: b.pos.File, errs: &l.errs, pos: map[string]Pos{}}
	d.decode(picked, reflect.ValueOf(&only).Elem(), b.pos.Path, nil)
	at := func(key string) Pos {
		p := d.pos[joinPath(b.pos.Path, key)]
		p.Path = joinPath(b.pos.Path, key)
		return p
	}
	if only.MaxConcurrent != nil {
		if *only.MaxConcurrent < 1 {
			l.errs.add(at("max_concurrent"), "must be 1 or more")
		}
		lim.MaxConcurrent = *only.MaxConcurrent
	}
	if only.RateLimit != nil {
		if *only.RateLimit < 0 {
			l.errs.add(at("rate_limit"), "must be 0 (no limit) or more requests per second")
		}
		lim.RateLimit = *only.RateLimit
	}
	if only.Burst != nil {
		if *only.Burst < 1 {
			l.errs.add(at("burst"), "must be 1 or more")
		}
		lim.Burst = *only.Burst
	}
	if only.OrderWait != nil {
		if *only.OrderWait < 0 || *only.OrderWait > Duration(600e9) {
			l.errs.add(at("order_wait"), "must be between 0 and 10m")
		}
		lim.OrderWait = *only.OrderWait
	}
	if only.RequestTimeout != nil {
		if *only.RequestTimeout < Duration(1e9) || *only.RequestTimeout > Duration(600e9) {
			l.errs.add(at("request_timeout"), "must be between 1s and 10m")
		}
		lim.RequestTimeout = *only.RequestTimeout
	}
	if only.PerHostKeys != nil {
		lim.PerHostKeys = *only.PerHostKeys
		if lim.PerHostKeys && !l.cfg.Store.Postgres.IsSet() {
			l.errs.add(at("per_host_keys"), "needs fleet mode (store.postgres): on one host, its keys never leave it already")
		}
	}
	if lim.Burst == 0 {
		lim.Burst = max(1, int(lim.RateLimit))
	}
	return lim
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		return []string{"none defined"}
	}
	return keys
}

// checkFleetLease: a CA request must fit in a lease, or a host could
// still be waiting for a CA's answer when another host takes its work.
func (l *loader) checkFleetLease() {
	if !l.cfg.Store.Postgres.IsSet() || l.mainFile == "" {
		return
	}
	names := sortedKeys(l.cfg.Accounts)
	for _, name := range names {
		a := l.cfg.Accounts[name]
		if a == nil {
			continue
		}
		rt := a.Limits.RequestTimeout.D()
		if rt == 0 {
			rt = time.Minute
		}
		if l.cfg.Fleet.Lease.D() < rt+10*time.Second {
			l.errAt(l.mainFile, "fleet.lease", "%s is too short for account %s: a lease must exceed its request_timeout (%s) by at least 10s, so no CA request outlives the lease it was sent under",
				l.cfg.Fleet.Lease.D(), name, rt)
		}
	}
}
