package http

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// rateLimiter keeps one token bucket per key (a class of endpoint plus a client IP or an
// account), each allowing perMinute requests a minute with bursts of perMinute. The map
// is bounded: when it is full, buckets idle long enough to have refilled are dropped
// (forgetting them changes nothing), then arbitrary ones if it is still full.
type rateLimiter struct {
	perMinute int
	maxKeys   int

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

func newRateLimiter(perMinute, maxKeys int) *rateLimiter {
	if perMinute <= 0 {
		return nil
	}
	return &rateLimiter{perMinute: perMinute, maxKeys: maxKeys, buckets: map[string]*bucket{}}
}

// allow takes one token for key at now; when none is left it says how long to wait.
// A nil limiter allows everything.
func (l *rateLimiter) allow(key string, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.maxKeys {
			l.evict(now)
		}
		b = &bucket{lim: rate.NewLimiter(rate.Limit(float64(l.perMinute)/60), l.perMinute)}
		l.buckets[key] = b
	}
	b.last = now
	res := b.lim.ReserveN(now, 1)
	if !res.OK() {
		return false, time.Minute
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// refill is how long an untouched bucket takes to be full again.
const refill = time.Minute

func (l *rateLimiter) evict(now time.Time) {
	for k, b := range l.buckets {
		if now.Sub(b.last) >= refill {
			delete(l.buckets, k)
		}
	}
	// Still full: drop arbitrary buckets (map order is random) down to 90%.
	target := l.maxKeys * 9 / 10
	for k := range l.buckets {
		if len(l.buckets) <= target {
			break
		}
		delete(l.buckets, k)
	}
}

func (l *rateLimiter) size() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
