package scheduler

import (
	"time"

	"github.com/certd/certd/deploy"
	"github.com/certd/certd/store"
)

// Facts are what the reissue checks look at for one certificate.
type Facts struct {
	Now      time.Time
	Cert     store.Certificate // with Current filled in
	SpecHash string            // what the configuration asks for now
	Live     deploy.LiveState  // what is on disk
	Revoked  bool
	Policy   Policy
}

// Check is one named reason to act on a certificate.
type Check struct {
	Name string
	// Action is ActionIssue, ActionReissue, ActionRenew or ActionRedeploy.
	Action string
	Due    func(f Facts) bool
}

// ActionRedeploy puts the stored current version back on disk: no order.
const ActionRedeploy = "redeploy"

// Checks is the chain, in order; the first that is due wins. Those that
// only need the files put back redeploy the stored version and never
// cost an order.
func Checks() []Check {
	return []Check{
		{"never-issued", ActionIssue, func(f Facts) bool { return f.Cert.Current == nil }},
		{"names-or-key-type-changed", ActionReissue, func(f Facts) bool { return f.Cert.SpecHash != f.SpecHash }},
		{"revoked", ActionReissue, func(f Facts) bool { return f.Revoked }},
		{"emergency", ActionRenew, func(f Facts) bool {
			return InEmergency(f.Cert.Current.NotBefore, f.Cert.Current.NotAfter, f.Now)
		}},
		{"files-missing", ActionRedeploy, func(f Facts) bool { return f.Live.Missing }},
		{"files-altered", ActionRedeploy, func(f Facts) bool { return f.Live.Fingerprint != f.Cert.Current.Fingerprint }},
		{"key-mismatch", ActionRedeploy, func(f Facts) bool { return !f.Live.KeyMatches }},
		{"renewal-due", ActionRenew, func(f Facts) bool {
			return !f.Now.Before(RenewalTime(f.Cert.Current.NotBefore, f.Cert.Current.NotAfter, f.Policy, 0))
		}},
	}
}

// Decide runs the chain and returns the first due check.
func Decide(f Facts) (Check, bool) {
	for _, c := range Checks() {
		if c.Due(f) {
			return c, true
		}
	}
	return Check{}, false
}
