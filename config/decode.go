package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

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
			d.errs.add(d.at(k, kp), "unknown key %q (expected one of: %s)", k.Value, strings.Join(names, ", "))
			continue
		}
		d.decode(val, v.Field(idx), kp, k)
	}
	if pd, ok := v.Addr().Interface().(postDecoder); ok {
		pd.afterDecode(d.pos[path], d.errs)
	}
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
