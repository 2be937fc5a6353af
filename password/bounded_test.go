package password_test

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"selfreset/password"
)

// gauge is an inner hasher that counts how many of its calls run at once. Each call
// waits on release, so the test decides when computations finish instead of timing them.
type gauge struct {
	now, peak, calls atomic.Int64
	started          chan struct{}
	release          chan struct{}
}

func newGauge() *gauge {
	return &gauge{started: make(chan struct{}, 100), release: make(chan struct{})}
}

func (g *gauge) run() {
	n := g.now.Add(1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			break
		}
	}
	g.calls.Add(1)
	g.started <- struct{}{}
	<-g.release
	g.now.Add(-1)
}

func (g *gauge) Hash(pw string) (string, error) { g.run(); return "h:" + pw, nil }

func (g *gauge) Verify(pw, hash string) (bool, error) { g.run(); return hash == "h:"+pw, nil }

func TestBoundedNeverRunsMoreThanItsSlots(t *testing.T) {
	g := newGauge()
	b := password.NewBounded(g, 2)
	if b.Slots() != 2 {
		t.Fatalf("slots %d", b.Slots())
	}
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			var err error
			if i%2 == 0 {
				_, err = b.Hash(t.Context(), "pw")
			} else {
				_, err = b.Verify(t.Context(), "pw", "h:pw")
			}
			errs <- err
		})
	}
	// Both slots fill before anything finishes; from then on each finish admits one waiter.
	// After each start, the number running must still be at most 2.
	for i := range n {
		<-g.started
		if now := g.now.Load(); now > 2 {
			t.Errorf("%d computations at once, slots 2", now)
		}
		if i > 0 {
			g.release <- struct{}{}
		}
	}
	g.release <- struct{}{}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if g.calls.Load() != n || g.peak.Load() != 2 {
		t.Errorf("%d calls, peak %d in flight; want %d calls, peak 2", g.calls.Load(), g.peak.Load(), n)
	}
}

func TestBoundedWaiterLeavesWhenItsContextEnds(t *testing.T) {
	g := newGauge()
	b := password.NewBounded(g, 2)
	// Occupy both slots.
	var busy sync.WaitGroup
	for range 2 {
		busy.Go(func() { _, _ = b.Hash(context.Background(), "x") })
		<-g.started
	}

	for _, tc := range []struct {
		name string
		// end makes ctx end while the caller waits in line.
		ctx  func() (context.Context, context.CancelFunc)
		end  func(cancel context.CancelFunc)
		want error
	}{
		{name: "cancelled", want: context.Canceled,
			ctx: func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
			end: func(cancel context.CancelFunc) { cancel() }},
		{name: "deadline", want: context.DeadlineExceeded,
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 20*time.Millisecond)
			},
			end: func(context.CancelFunc) {}}, // the timer ends it
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := tc.ctx()
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := b.Verify(ctx, "pw", "h:pw")
				done <- err
			}()
			tc.end(cancel)
			// Nothing frees a slot meanwhile, so only the context can end the wait.
			if err := <-done; !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if g.calls.Load() != 2 {
				t.Errorf("the caller that gave up ran its computation anyway (%d calls)", g.calls.Load())
			}
		})
	}

	// An expired deadline is refused at once with DeadlineExceeded, even with no waiters.
	ctx, cancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer cancel()
	if _, err := b.Hash(ctx, "pw"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("expired deadline: %v", err)
	}

	close(g.release)
	busy.Wait()
	// The slots the cancelled waiters never took are free again.
	if ok, err := b.Verify(context.Background(), "pw", "h:pw"); !ok || err != nil {
		t.Errorf("after the queue emptied: %v, %v", ok, err)
	}
}

func TestBoundedReportsEveryWait(t *testing.T) {
	g := newGauge()
	var (
		mu    sync.Mutex
		waits []time.Duration
	)
	b := password.NewBounded(g, 1, password.ObserveWait(func(d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		waits = append(waits, d)
	}))
	// The first takes the only slot at once; the second waits until the first is let go,
	// and a third gives up while waiting. Each of the three is reported once.
	first := make(chan struct{})
	go func() { _, _ = b.Hash(context.Background(), "a"); close(first) }()
	<-g.started
	second := make(chan struct{})
	go func() { _, _ = b.Verify(context.Background(), "b", "h:b"); close(second) }()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Hash(ctx, "c"); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled waiter got %v", err)
	}
	// The second is in line (or about to be); letting the first go admits it.
	g.release <- struct{}{}
	<-first
	<-g.started
	g.release <- struct{}{}
	<-second
	mu.Lock()
	defer mu.Unlock()
	if len(waits) != 3 {
		t.Fatalf("%d waits reported, want 3 (two computations and one that gave up)", len(waits))
	}
	// The second waited for the first to be released, so some wait is not zero.
	if slices.Max(waits) <= 0 {
		t.Errorf("waits %v: the one in line reported no wait", waits)
	}
}

// The default leaves half the CPUs to everything else, and always allows one hash.
func TestDefaultSlotsAreHalfTheCPUs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for procs, want := range map[int]int{1: 1, 2: 1, 3: 1, 4: 2, 16: 8} {
		runtime.GOMAXPROCS(procs)
		if got := password.DefaultSlots(); got != want {
			t.Errorf("GOMAXPROCS %d: %d slots, want %d", procs, got, want)
		}
		if got := password.NewBounded(newGauge(), 0).Slots(); got != want {
			t.Errorf("GOMAXPROCS %d: NewBounded(0) has %d slots, want %d", procs, got, want)
		}
	}
}
