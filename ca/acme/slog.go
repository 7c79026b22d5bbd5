package acme

import (
	"context"
	"log/slog"

	"go.uber.org/zap"
)

// slogToZap hands acmez's log records (it logs through log/slog) to the
// issuer's zap logger, so that what acmez does on its own, such as
// retrying a request after a 5xx or a timeout, is seen. Only warnings and
// errors pass: acmez's debug records describe every HTTP exchange.
type slogToZap struct {
	log    *zap.Logger
	fields []zap.Field
	group  string
}

func newSlogLogger(log *zap.Logger) *slog.Logger {
	if log == nil {
		log = zap.NewNop()
	}
	return slog.New(&slogToZap{log: log.Named("acmez")})
}

func (h *slogToZap) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *slogToZap) Handle(_ context.Context, r slog.Record) error {
	fields := append([]zap.Field{}, h.fields...)
	r.Attrs(func(a slog.Attr) bool {
		fields = append(fields, h.field(a))
		return true
	})
	switch {
	case r.Level >= slog.LevelError:
		h.log.Error(r.Message, fields...)
	default:
		h.log.Warn(r.Message, fields...)
	}
	return nil
}

func (h *slogToZap) field(a slog.Attr) zap.Field {
	key := a.Key
	if h.group != "" {
		key = h.group + "." + key
	}
	return zap.Any(key, a.Value.Resolve().Any())
}

func (h *slogToZap) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *h
	n.fields = append([]zap.Field{}, h.fields...)
	for _, a := range attrs {
		n.fields = append(n.fields, h.field(a))
	}
	return &n
}

func (h *slogToZap) WithGroup(name string) slog.Handler {
	n := *h
	if n.group != "" {
		name = n.group + "." + name
	}
	n.group = name
	return &n
}
