package config

import (
	"reflect"
	"sort"
)

// Pos is where the reference was written (its key path included), for
// messages about it.
func (s Secret) Pos() Pos { return s.origin }

var secretType = reflect.TypeOf(Secret{})

// Secrets returns every set secret reference held in v (a plug-in's
// decoded settings, the notify section, ...), found through exported
// fields, pointers, slices and maps, in a stable order.
func Secrets(v any) []Secret {
	var out []Secret
	walkSecrets(reflect.ValueOf(v), func(s *Secret) { out = append(out, *s) })
	return out
}

// walkSecrets calls fn with every set Secret reachable from rv; fn may
// change it when rv is addressable (a map's values are not).
func walkSecrets(rv reflect.Value, fn func(*Secret)) {
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !rv.IsNil() {
			walkSecrets(rv.Elem(), fn)
		}
	case reflect.Struct:
		if rv.Type() == secretType {
			s := rv.Interface().(Secret)
			if !s.IsSet() {
				return
			}
			if rv.CanAddr() {
				fn(rv.Addr().Interface().(*Secret))
			} else {
				fn(&s)
			}
			return
		}
		for i := 0; i < rv.NumField(); i++ {
			if rv.Type().Field(i).IsExported() {
				walkSecrets(rv.Field(i), fn)
			}
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < rv.Len(); i++ {
			walkSecrets(rv.Index(i), fn)
		}
	case reflect.Map:
		keys := rv.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, k := range keys {
			walkSecrets(rv.MapIndex(k), fn)
		}
	}
}

// FileNamer is implemented by a plug-in's decoded settings that name files
// certd reads when it builds the plug-in (a client certificate, a CA
// bundle), so that `certd check-config` can check them the way a start
// would read them.
type FileNamer interface {
	// Files maps each key, as written in the block ("client_cert"), to
	// the file it names; unset keys are left out or empty.
	Files() map[string]string
}

// KeyPos is where key (a path inside the plug-in's block, such as
// "client_cert") was written, with its full key path; the block's own
// position when it was not written.
func (p *Plugin) KeyPos(key string) Pos {
	if p.block == nil {
		pos := p.Pos
		pos.Path = p.Pos.Path + "." + key
		return pos
	}
	return p.block.Errorf(key, "").Pos
}
