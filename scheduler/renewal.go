package scheduler

import "time"

// EmergencyFraction is the part of a certificate's lifetime below which
// renewal is an emergency: it overrides every policy, and `certd status`
// exits non-zero.
const EmergencyFraction = 1.0 / 20.0

// Policy is when to renew: with RemainingFraction of the lifetime left, or
// Before the expiry when set.
type Policy struct {
	RemainingFraction float64
	Before            time.Duration
}

// RenewalTime is when a certificate valid from notBefore to notAfter should
// be renewed under p. jitter in [0, 1) moves it earlier by up to a tenth of
// the renewal window so that a fleet issued together does not renew
// together. The result always lies in [notBefore, EmergencyTime]: a policy
// that asks for later renewal is capped, so emergency renewal is never the
// first attempt.
func RenewalTime(notBefore, notAfter time.Time, p Policy, jitter float64) time.Time {
	life := notAfter.Sub(notBefore)
	if life <= 0 {
		return notBefore
	}
	window := time.Duration(float64(life) * p.RemainingFraction)
	if p.Before > 0 {
		window = p.Before
	}
	window = min(max(window, time.Duration(float64(life)*EmergencyFraction)), life)
	window += time.Duration(float64(window) * 0.1 * min(max(jitter, 0), 1))
	at := notAfter.Add(-window)
	emergency := EmergencyTime(notBefore, notAfter)
	if at.After(emergency) {
		at = emergency
	}
	if at.Before(notBefore) {
		at = notBefore
	}
	return at
}

// EmergencyTime is when only EmergencyFraction of the lifetime is left.
func EmergencyTime(notBefore, notAfter time.Time) time.Time {
	life := notAfter.Sub(notBefore)
	return notAfter.Add(-time.Duration(float64(life) * EmergencyFraction))
}

// InEmergency reports whether a certificate is inside its emergency window
// (or already expired) at now.
func InEmergency(notBefore, notAfter, now time.Time) bool {
	return !now.Before(EmergencyTime(notBefore, notAfter))
}
