package config

import (
	"bytes"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// decoder turns a YAML node tree into Go values strictly: unknown keys,
// duplicate keys and values of the wrong kind are all errors, and every
// error names the file, line and key path. It keeps going after an error so
// that one load reports every problem at once.
type decoder struct {
	file string
	errs *errorList
	// pos maps a key path to where its value was written.
	pos map[string]Pos
	// skip lists top-level keys of the node being decoded that belong to
	// someone else (the "type" key of a plug-in block).
	skip map[string]bool
	// unknown maps a key path to the unknown keys written under it, so
	// that a check of a key that was not written can tell it was misspelt.
	unknown map[string][]string
}

// postDecoder is implemented by config's own value types that need to know
// where they were written (to resolve relative paths, to name the place in
// a later error) or must check themselves once decoded.
type postDecoder interface {
	afterDecode(pos Pos, errs *errorList)
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

func (d *decoder) at(n *yaml.Node, path string) Pos {
	return Pos{File: d.file, Line: n.Line, Col: n.Column, Path: path}
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// decode decodes n into v. keyNode, when not nil, is the mapping key that
// introduced n; its position is the one recorded for path, since that is
// the line an operator looks for.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string, keyNode *yaml.Node) {
	for n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	posNode := n
	if keyNode != nil {
		posNode = keyNode
	}
	pos := d.at(posNode, path)
	d.pos[path] = pos

	if v.Kind() != reflect.Pointer && v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.errs.add(d.at(n, path), "%s", err.Error())
			return
		}
		if pd, ok := v.Addr().Interface().(postDecoder); ok {
			pd.afterDecode(pos, d.errs)
		}
		return
	}
	if isNull(n) {
		return
	}

	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path, keyNode)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errs.add(d.at(n, path), "expected a list, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i), nil)
		}
		v.Set(s)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.errs.add(d.at(n, path), "expected a string, got %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		b, err := strconv.ParseBool(n.Value)
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || err != nil {
			d.errs.add(d.at(n, path), "expected true or false, got %s", kindName(n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		i, err := strconv.ParseInt(n.Value, 10, 64)
		if n.Kind != yaml.ScalarNode || err != nil || v.OverflowInt(i) {
			d.errs.add(d.at(n, path), "expected a whole number, got %s", kindName(n))
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		f, err := strconv.ParseFloat(n.Value, 64)
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!float" && n.Tag != "!!int") || err != nil {
			d.errs.add(d.at(n, path), "expected a number, got %s", kindName(n))
			return
		}
		v.SetFloat(f)
	default:
		// A schema type the decoder does not know is a programming error,
		// reported like any other so that it cannot pass silently.
		d.errs.add(d.at(n, path), "internal: cannot decode into %s", v.Type())
	}
}

func joinPath(path, key string) string {
	if strings.ContainsAny(key, ".[]\" ") {
		key = strconv.Quote(key)
		if path == "" {
			return "[" + key + "]"
		}
		return path + "[" + key + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlFields maps the YAML key of every exported field of t to its index.
func yamlFields(t reflect.Type) (map[string]int, []string) {
	fields := map[string]int{}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if !f.IsExported() || tag == "-" || tag == "" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		fields[name] = i
		names = append(names, name)
	}
	sort.Strings(names)
	return fields, names
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errs.add(d.at(n, path), "expected a mapping, got %s", kindName(n))
		return
	}
	fields, names := yamlFields(v.Type())
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		kp := joinPath(path, k.Value)
		if k.Kind != yaml.ScalarNode {
			d.errs.add(d.at(k, path), "keys must be plain strings")
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			d.errs.add(d.at(k, kp), "duplicate key (first set at line %d)", prev.Line)
			continue
		}
		seen[k.Value] = k
		if path == "" && d.skip[k.Value] {
			continue
		}
		idx, ok := fields[k.Value]
		if !ok {
			if d.unknown != nil {
				d.unknown[path] = append(d.unknown[path], k.Value)
			}
			hint := ""
			for _, name := range names {
				if misspelling(k.Value, name) {
					hint = "did you mean " + name + "? "
					break
				}
			}
			d.errs.add(d.at(k, kp), "unknown key %q (%sexpected one of: %s)", k.Value, hint, strings.Join(names, ", "))
			continue
		}
		d.decode(val, v.Field(idx), kp, k)
	}
	if pd, ok := v.Addr().Interface().(postDecoder); ok {
		pd.afterDecode(d.pos[path], d.errs)
	}
}

// misspelt reports whether key at path was not written because an
// unknown key written beside it is a misspelling of it. A check that key
// is missing then adds nothing to the unknown key's own error ("did you
// mean"), and would be read first, since it is reported where the parent
// starts.
func misspelt(written map[string]Pos, unknown map[string][]string, path string) bool {
	if _, ok := written[path]; ok {
		return false
	}
	parent, key := "", path
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		parent, key = path[:i], path[i+1:]
	}
	for _, u := range unknown[parent] {
		if misspelling(u, key) {
			return true
		}
	}
	return false
}

// misspelling reports whether the written key is a likely slip for the
// expected one: the same but for case, '_' or '-', or one edit away (two
// for keys of five characters or more), a swap of neighbours counting as
// one.
func misspelling(written, expected string) bool {
	if written == expected {
		return false
	}
	fold := func(s string) string { return strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(s)) }
	if fold(written) == fold(expected) {
		return true
	}
	limit := 1
	if min(len(written), len(expected)) >= 5 {
		limit = 2
	}
	return editDistance(written, expected) <= limit
}

// editDistance is the optimal string alignment distance between a and b
// (insertions, deletions, substitutions and swaps of adjacent bytes).
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return max(len(a), len(b)) // not a key worth comparing
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errs.add(d.at(n, path), "expected a mapping, got %s", kindName(n))
		return
	}
	if v.Type().Key().Kind() != reflect.String {
		d.errs.add(d.at(n, path), "internal: map keys must be strings")
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		kp := joinPath(path, k.Value)
		if k.Kind != yaml.ScalarNode || k.Value == "" {
			d.errs.add(d.at(k, path), "keys must be non-empty plain strings")
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			d.errs.add(d.at(k, kp), "duplicate key (first set at line %d)", prev.Line)
			continue
		}
		seen[k.Value] = k
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(val, elem, kp, k)
		v.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), elem)
	}
}

// parseYAML parses one document, turning a syntax error into a positioned
// Error.
func parseYAML(file string, data []byte) (*yaml.Node, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		e := syntaxError(file, err)
		if l, c := problemAt(data, e.Msg); l > 0 {
			e.Pos.Line, e.Pos.Col = l, c
		}
		if l := tabLine(data); l > 0 && strings.Contains(e.Msg, "tab") {
			e.Pos.Line, e.Msg = l, "invalid YAML: a tab is used for indentation; YAML indents with spaces"
		}
		return nil, Errors{e}
	}
	return &root, nil
}

// syntaxError turns yaml.v3's "yaml: line N: msg" into a positioned Error.
func syntaxError(file string, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, tail, ok := strings.Cut(rest, ":"); ok {
			if l, perr := strconv.Atoi(num); perr == nil {
				line, msg = l, strings.TrimSpace(tail)
			}
		}
	}
	return &Error{Pos: Pos{File: file, Line: line, Col: 1}, Msg: "invalid YAML: " + msg}
}

// maxProblemScan bounds the parses problemAt spends on one file.
const maxProblemScan = 2000

// problemAt finds the line (and, for bytes that are not text, the column)
// of a syntax error, since yaml.v3's own line cannot be trusted: a parser
// error names the line before the one it concerns, a scanner error whose
// construct began on line 1 names where the input ended, and a reader
// error (control characters, invalid UTF-8: binary garbage) names none.
// The place is the first line from which every longer prefix of the input
// fails with the same message; a prefix that ends inside a construct later
// closed fails only up to the line that closes it. msg is the message
// syntaxError made of the whole input's error.
func problemAt(data []byte, msg string) (line, col int) {
	var ends []int // ends[n-1] is the end of line n, newline included
	for i := 0; i < len(data); {
		j := bytes.IndexByte(data[i:], '\n')
		if j < 0 {
			i = len(data)
		} else {
			i += j + 1
		}
		ends = append(ends, i)
	}
	if len(ends) > maxProblemScan {
		return 0, 0
	}
	fails := func(n int) bool {
		var root yaml.Node
		err := yaml.Unmarshal(data[:ends[n-1]], &root)
		return err != nil && syntaxError("", err).Msg == msg
	}
	for n := len(ends); n >= 1 && fails(n); n-- {
		line = n
	}
	if line == 0 {
		return 0, 0
	}
	start := 0
	if line > 1 {
		start = ends[line-2]
	}
	return line, badByteCol(data[start:ends[line-1]])
}

// badByteCol is the 1-based column of the first byte in line that YAML
// does not take as text (invalid UTF-8, a control character), or 1.
func badByteCol(line []byte) int {
	for i := 0; i < len(line); {
		r, size := utf8.DecodeRune(line[i:])
		if r == utf8.RuneError && size <= 1 || r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0x7f {
			return utf8.RuneCount(line[:i]) + 1
		}
		i += size
	}
	return 1
}

// tabLine returns the first line indented with a tab (1-based), or 0.
// yaml.v3 reports such errors at the line before, which misleads.
func tabLine(data []byte) int {
	for i, line := range strings.Split(string(data), "\n") {
		indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
		if strings.Contains(indent, "\t") && strings.TrimSpace(line) != "" {
			return i + 1
		}
	}
	return 0
}
