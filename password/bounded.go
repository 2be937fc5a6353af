package password

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sync/semaphore"
)

// Computer is the CPU- and memory-heavy part Bounded queues: *Hasher.
type Computer interface {
	Hash(password string) (string, error)
	Verify(password, hash string) (bool, error)
}

// Bounded runs at most n computations of its Computer at once. Each argon2id run holds
// its memory parameter (7 MiB by default) for its whole duration, so without a bound a
// burst of 50 logins or password changes would hold 50 × 7 MiB at once; with one, the
// extra callers wait in line (first come, first served) holding nothing but a goroutine.
// Running more at once than there are CPUs would not finish any sooner anyway. A slot is
// the memory of one of the Computer's own hashes (when it tells: Hasher.Memory); verifying
// a hash made with more memory (older parameters) takes as many slots as it needs, up to
// all n, so the memory held stays within n slots whatever the stored hashes.
//
// A caller whose context ends while it waits gets an error that wraps the context's
// (context.Canceled or context.DeadlineExceeded); the HTTP side answers it 503.
type Bounded struct {
	inner Computer
	slots *semaphore.Weighted
	n     int
	slot  int64 // memory of one slot (the inner Computer's own), 0 when it does not tell
	// waited, if set, is told how long each computation waited for its slot (metrics).
	waited func(time.Duration)
	// collect runs the garbage collector after each computation (CollectAfterEach).
	collect bool
}

// BoundedOption configures NewBounded.
type BoundedOption func(*Bounded)

// ObserveWait has f told how long each computation waited for a slot, whether it got one
// or its context ended first. f must be safe for concurrent use.
func ObserveWait(f func(time.Duration)) BoundedOption {
	return func(b *Bounded) { b.waited = f }
}

// CollectAfterEach has the garbage collector run after each computation, before its slot
// is given back. The argon2id block a computation allocates is garbage once it returns;
// collected at once, its memory is reused by the next computation instead of piling up
// until the collector's next turn, so peak memory stays near the live heap plus one
// block per slot. It costs a collection per computation (the blocks hold no pointers,
// so a collection only marks the rest of the heap): a process that hashes a lot and
// has little memory (serve) trades that CPU for the memory.
func CollectAfterEach() BoundedOption {
	return func(b *Bounded) { b.collect = true }
}

// NewBounded queues inner's computations through n slots; n ≤ 0 means DefaultSlots.
func NewBounded(inner Computer, n int, opts ...BoundedOption) *Bounded {
	if n <= 0 {
		n = DefaultSlots()
	}
	b := &Bounded{inner: inner, slots: semaphore.NewWeighted(int64(n)), n: n}
	if m, ok := inner.(interface{ Memory() int64 }); ok {
		b.slot = m.Memory()
	}
	for _, o := range opts {
		o(b)
	}
	return b
}

// DefaultSlots is one slot per two CPUs the Go scheduler uses (runtime.GOMAXPROCS), at
// least one. Each computation keeps a CPU busy for its whole run, so with a slot per CPU
// a burst of logins took every CPU from the answers, the decisions and PostgreSQL
// beside them; half leaves the rest their share, and holds one block less per two CPUs
// (on 2 CPUs serve's peak RSS under bench --http went from 59–63 MB to 51 MB; logins and
// reset flows a second were the same at 8 concurrent clients, about a third fewer at 32).
func DefaultSlots() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// Slots is how many computations may run at once.
func (b *Bounded) Slots() int { return b.n }

// Hash waits for a slot, then hashes password.
func (b *Bounded) Hash(ctx context.Context, password string) (string, error) {
	if err := b.acquire(ctx, 1); err != nil {
		return "", err
	}
	defer b.release(1)
	return b.inner.Hash(password)
}

// Verify waits for a slot, then checks password against hash (see Hasher.Verify).
func (b *Bounded) Verify(ctx context.Context, password, hash string) (bool, error) {
	w := b.weight(hash)
	if err := b.acquire(ctx, w); err != nil {
		return false, err
	}
	defer b.release(w)
	return b.inner.Verify(password, hash)
}

// weight is how many slots verifying hash takes: its memory in slots, from 1 to n.
func (b *Bounded) weight(hash string) int64 {
	m := hashMemory(hash)
	if b.slot <= 0 || m <= b.slot {
		return 1
	}
	return min(int64(b.n), (m+b.slot-1)/b.slot)
}

func (b *Bounded) release(w int64) {
	if b.collect {
		runtime.GC()
	}
	b.slots.Release(w)
}

func (b *Bounded) acquire(ctx context.Context, w int64) error {
	if b.waited != nil {
		defer func(start time.Time) { b.waited(time.Since(start)) }(time.Now())
	}
	if err := b.slots.Acquire(ctx, w); err != nil {
		return fmt.Errorf("password: waiting for a hashing slot: %w", err)
	}
	return nil
}
