package testkit

import (
	"sync"
	"time"

	"selfreset/domain"
)

var _ domain.Clock = (*Clock)(nil)

// Clock is a movable test clock, safe for concurrent use. It satisfies domain.Clock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

func (c *Clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *Clock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }
func (c *Clock) Set(t time.Time)     { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }
