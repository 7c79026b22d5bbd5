// Package failpoint crashes certd at named points of its work, for the
// kill campaigns that check nothing is lost or bought twice at any
// instant. It is off unless the environment names a point:
//
//	CERTD_FAILPOINT=name      the process kills itself (SIGKILL) the first
//	                          time it reaches name
//	CERTD_FAILPOINT=name:N    ... the N-th time
//
// With the variable unset, Hit costs one environment lookup. The points
// are listed in Points; a campaign crashes at each in turn.
package failpoint

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// The points certd passes, in the order an issuance passes them.
const (
	ClaimBeforePublish = "claim-before-publish" // claim token stored, not yet published
	DCVAfterJournal    = "dcv-after-journal"    // artefact journaled, not yet published
	DCVAfterPublish    = "dcv-after-publish"    // artefact published, not yet marked so
	OrderBeforeSubmit  = "order-before-submit"  // sent_at stored, request not yet sent
	OrderAfterSubmit   = "order-after-submit"   // the CA answered, its reference not yet stored
	OrderAfterVersion  = "order-after-version"  // certificate stored, order not yet ended
	DeployBeforeSwitch = "deploy-before-switch" // new version written, live link not yet switched
	DeployAfterSwitch  = "deploy-after-switch"  // live link switched, store not yet told
)

// LeaseKeeperStalled is not a kill: with CERTD_FAILPOINT=lease-keeper-stalled
// a fleet host never renews a lease it holds (as if the goroutine that
// renews were starved), so that a test sees the store's fencing, not the
// renewal, refuse the late writes of a host paused past its lease.
const LeaseKeeperStalled = "lease-keeper-stalled"

// Active reports whether CERTD_FAILPOINT names the behaviour name.
func Active(name string) bool {
	spec := os.Getenv("CERTD_FAILPOINT")
	return spec != "" && spec == name
}

// Points lists every point.
func Points() []string {
	return []string{ClaimBeforePublish, DCVAfterJournal, DCVAfterPublish, OrderBeforeSubmit, OrderAfterSubmit,
		OrderAfterVersion, DeployBeforeSwitch, DeployAfterSwitch}
}

// hits counts, per point, how often this process reached it; only used
// when CERTD_FAILPOINT is set.
var hits sync.Map // name -> *int64 (guarded by mu)

var mu sync.Mutex

// Hit kills the process at once when CERTD_FAILPOINT names this point and
// its count is reached.
func Hit(name string) {
	spec := os.Getenv("CERTD_FAILPOINT")
	if spec == "" {
		return
	}
	want, nth, _ := strings.Cut(spec, ":")
	if want != name {
		return
	}
	n := 1
	if v, err := strconv.Atoi(nth); err == nil && v > 0 {
		n = v
	}
	mu.Lock()
	c, _ := hits.LoadOrStore(name, new(int64))
	count := c.(*int64)
	*count++
	reached := *count >= int64(n)
	mu.Unlock()
	if reached {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL cannot be caught: never return
	}
}
