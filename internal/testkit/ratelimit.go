package testkit

import (
	"context"
	"sync"
	"time"

	"selfreset/domain"
	"selfreset/ratelimit"
)

// RateLimiter keeps ratelimit's budgets in memory: the http tests' limiter on the tier
// without a database. It makes the decisions *ratelimit.Limiter makes (the same GCRA
// over the Limit's Interval and Tolerance, at the same microsecond resolution), which
// ratelimit's tests check by running the rule's tests on both; what only PostgreSQL
// does (hashed keys, cleanup, sharing between replicas) is not here.
type RateLimiter struct {
	clock domain.Clock
	mu    sync.Mutex
	full  map[string]time.Time // per key, when its bucket is full again
}

// NewRateLimiter returns an empty in-memory limiter reading time from clock.
func NewRateLimiter(clock domain.Clock) *RateLimiter {
	return &RateLimiter{clock: clock, full: map[string]time.Time{}}
}

// Allow spends one request of key's budget, as (*ratelimit.Limiter).Allow does.
func (r *RateLimiter) Allow(_ context.Context, key string, l ratelimit.Limit) (ratelimit.Decision, error) {
	if l.Rate <= 0 || l.Period <= 0 {
		return ratelimit.Decision{Allowed: true}, nil
	}
	now := r.clock.Now().UTC().Truncate(time.Microsecond)
	interval, tolerance := l.Interval(), l.Tolerance()
	r.mu.Lock()
	defer r.mu.Unlock()
	fullAt, ok := r.full[key]
	if !ok || fullAt.Before(now) {
		fullAt = now
	}
	if next := fullAt.Add(interval); !next.After(now.Add(tolerance)) {
		r.full[key] = next
		return ratelimit.Decision{Allowed: true}, nil
	}
	return ratelimit.Decision{RetryAfter: max(fullAt.Add(interval-tolerance).Sub(now), time.Microsecond)}, nil
}
