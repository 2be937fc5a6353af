package domain

import "time"

// Clock tells the time. Deciders take now as an argument; the shells around them (commands,
// HTTP, mail, rate limits, metrics, audit) read it from one Clock, so a test moves a single
// fake one (internal/testkit.Clock) and every package sees the same time.
type Clock interface {
	Now() time.Time
}

// SystemClock is the real clock, in UTC.
type SystemClock struct{}

// Now returns the current time in UTC.
func (SystemClock) Now() time.Time { return time.Now().UTC() }
