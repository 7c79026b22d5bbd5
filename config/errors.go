package config

import (
	"fmt"
	"sort"
	"strings"
)

// Pos is where a value was written: the file, its line and column, and the
// key path from the document root (for example "certificates[2].domains[0]").
type Pos struct {
	File string
	Line int
	Col  int
	Path string
}

// String renders the position as "file:line:col".
func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Error is one problem in a configuration, tied to where it was written.
type Error struct {
	Pos Pos
	Msg string
}

func (e *Error) Error() string {
	if e.Pos.Path == "" {
		return fmt.Sprintf("%s: %s", e.Pos, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.Pos, e.Pos.Path, e.Msg)
}

// Errors is every problem found in one load. A configuration with any error
// is refused whole; the list is sorted by file and line.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

func (es Errors) sorted() Errors {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i].Pos, es[j].Pos
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	return es
}

// errorList collects problems during a load.
type errorList struct {
	errs Errors
}

func (l *errorList) add(pos Pos, format string, args ...any) {
	l.errs = append(l.errs, &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

func (l *errorList) err() error {
	if len(l.errs) == 0 {
		return nil
	}
	return l.errs.sorted()
}
