package config_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/certd/certd/config"
)

// A resolved secret never prints, even where a printer cannot call its
// methods: an unexported struct field, printed by reflection with any verb.
func TestSecretUnreachableByReflection(t *testing.T) {
	const canary = "CANARY-7f3a-secret"
	s := config.NewSecretValue(canary)
	type holder struct {
		token config.SecretValue
		Token config.SecretValue
		ptr   *config.SecretValue
	}
	h := holder{token: s, Token: s, ptr: &s}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%d", "%x", "%q", "%T"} {
		if out := fmt.Sprintf(verb, h); strings.Contains(out, canary) || strings.Contains(out, fmt.Sprintf("%x", canary)) {
			t.Errorf("%s prints the secret: %s", verb, out)
		}
		if out := fmt.Sprintf(verb, []any{h, &h, s}); strings.Contains(out, canary) {
			t.Errorf("%s of a slice prints the secret: %s", verb, out)
		}
	}
	b, _ := json.Marshal(h)
	if strings.Contains(string(b), canary) {
		t.Errorf("JSON: %s", b)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	zap.New(core).Info("x", zap.Any("h", h), zap.Reflect("r", h), zap.Any("s", s))
	for _, e := range logs.All() {
		if strings.Contains(fmt.Sprint(e.ContextMap()), canary) {
			t.Errorf("zap logs the secret: %v", e.ContextMap())
		}
	}
	if s.Reveal() != canary {
		t.Fatal("Reveal lost the value")
	}
}
