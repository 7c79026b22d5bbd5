package scheduler_test

import (
	"testing"
	"time"

	"github.com/certd/certd/deploy"
	"github.com/certd/certd/scheduler"
	"github.com/certd/certd/store"
)

func TestReissueChecks(t *testing.T) {
	nb := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	na := nb.Add(90 * 24 * time.Hour)
	good := func() scheduler.Facts {
		return scheduler.Facts{
			Now:      nb.Add(10 * 24 * time.Hour),
			Cert:     store.Certificate{SpecHash: "h", Current: &store.Version{NotBefore: nb, NotAfter: na, Fingerprint: "fp"}},
			SpecHash: "h",
			Live:     deploy.LiveState{Fingerprint: "fp", KeyMatches: true},
			Policy:   scheduler.Policy{RemainingFraction: 1.0 / 3},
		}
	}
	cases := []struct {
		name   string
		mod    func(*scheduler.Facts)
		check  string
		action string
	}{
		{"healthy", func(*scheduler.Facts) {}, "", ""},
		{"never issued", func(f *scheduler.Facts) { f.Cert.Current = nil }, "never-issued", scheduler.ActionIssue},
		{"names changed", func(f *scheduler.Facts) { f.SpecHash = "other" }, "names-or-key-type-changed", scheduler.ActionReissue},
		{"revoked", func(f *scheduler.Facts) { f.Revoked = true }, "revoked", scheduler.ActionReissue},
		{"files missing", func(f *scheduler.Facts) { f.Live = deploy.LiveState{Missing: true} }, "files-missing", scheduler.ActionRedeploy},
		{"files altered", func(f *scheduler.Facts) { f.Live.Fingerprint = "someone-else" }, "files-altered", scheduler.ActionRedeploy},
		{"key mismatch", func(f *scheduler.Facts) { f.Live.KeyMatches = false }, "key-mismatch", scheduler.ActionRedeploy},
		{"renewal due", func(f *scheduler.Facts) { f.Now = nb.Add(61 * 24 * time.Hour) }, "renewal-due", scheduler.ActionRenew},
		{"emergency beats altered files", func(f *scheduler.Facts) { f.Now = na.Add(-time.Hour); f.Live.Fingerprint = "x" }, "emergency", scheduler.ActionRenew},
		{"changed names beat missing files", func(f *scheduler.Facts) { f.SpecHash = "x"; f.Live.Missing = true }, "names-or-key-type-changed", scheduler.ActionReissue},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := good()
			c.mod(&f)
			got, due := scheduler.Decide(f)
			if c.check == "" {
				if due {
					t.Fatalf("due for %s", got.Name)
				}
				return
			}
			if !due || got.Name != c.check || got.Action != c.action {
				t.Fatalf("got %s/%s (due %v), want %s/%s", got.Name, got.Action, due, c.check, c.action)
			}
		})
	}
}
