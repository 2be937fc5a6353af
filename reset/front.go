package reset

import (
	"context"
	stdsql "database/sql"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"

	"selfreset/domain"
)

// Front counts the Forgot Password and Resend answers in progress in this process
// (Service), for the intake worker of the same process to give way to (WorkerConfig.Front).
//
// Why: in one process on a few cores, the answers and the decisions share the CPUs. A
// person waits for the answer; the decision only has to come before the mail, and the
// durable intake exists so that it can wait. Measured with the HTTP harness at c = 32 on
// 2 cores, 8 deciding at once left the answers 0.24 of the insert floor with a p99 of
// 68 ms, 2 deciding at once 0.37 and 48 ms (docs/benchmarks.md). So while the answers
// saturate the process, one decision runs at a time, and the rest wait for the burst to
// end; the backlog is decided at full concurrency afterwards.
//
// The gate is at the claim (gatedBeginner), not in the handler: a subscriber waiting with
// its batch claimed would hold a transaction open through the whole burst, and with it the
// oldest snapshot, so that no row deleted meanwhile could be vacuumed. Measured, the two
// places gained the answers about the same (a seventh), so the one that holds nothing open
// was kept.
//
// A burst is not an instant: the count of answers in progress flickers below the mark
// while a burst goes on (at c = 32 most of the harness's requests are on their way in or
// out at any moment), and each dip let every subscriber claim. So the front stays
// saturated for frontHold after the count was last over the mark. Measured at c = 32, the
// answers rose from about 0.2 to 0.3 of the insert floor, the decisions during the burst
// fell by more than half and those sustained over burst and backlog by about 5%
// (docs/benchmarks.md, thirteenth session).
type Front struct {
	clock domain.Clock
	// mark is the count of answers in progress above which the front is saturated: they
	// are queueing for the CPUs (answersPerCPU per CPU the process runs on).
	mark       int
	inProgress atomic.Int64
	overAt     atomic.Int64 // Unix nanoseconds when the count was last over the mark
}

// NewFront returns a Front counting nothing yet, telling the time by clock (nil: the
// system's).
func NewFront(clock domain.Clock) *Front {
	if clock == nil {
		clock = domain.SystemClock{}
	}
	return &Front{clock: clock, mark: answersPerCPU * runtime.GOMAXPROCS(0)}
}

// answer counts one answer in progress until the returned func is called.
func (f *Front) answer() func() {
	if f == nil {
		return func() {}
	}
	if f.inProgress.Add(1) > int64(f.mark) {
		f.overAt.Store(f.clock.Now().UnixNano())
	}
	return func() { f.inProgress.Add(-1) }
}

// answering is how many answers are in progress (0 for a nil Front).
func (f *Front) answering() int {
	if f == nil {
		return 0
	}
	return int(f.inProgress.Load())
}

// saturated reports whether more answers are in progress than the mark, or were within
// frontHold.
func (f *Front) saturated() bool {
	if f == nil {
		return false
	}
	if f.answering() > f.mark {
		return true
	}
	over := f.overAt.Load()
	return over != 0 && f.clock.Now().UnixNano()-over < int64(frontHold)
}

const (
	// answersPerCPU: more answers in progress than this per CPU is a saturated front.
	// At c = 8 on 2 cores the harness keeps up to 8 in progress, at c = 32 up to 32.
	answersPerCPU = 4
	// decideWhileSaturated is how many claims (a batch of decisions each) run at once
	// while the front is saturated.
	decideWhileSaturated = 1
	// frontRecheck is how often a waiting claim looks again whether the front is still
	// saturated (a claim ending wakes it too).
	frontRecheck = 5 * time.Millisecond
	// frontHold is how long the front stays saturated after the answers in progress were
	// last over the mark.
	frontHold = 100 * time.Millisecond
)

// yieldGate lets the intake's claims run while the front is not saturated, and one at a
// time while it is (a claim lasts until its batch is decided).
type yieldGate struct {
	front *Front
	after func(time.Duration) <-chan time.Time // time.After; tests hold the time

	mu      sync.Mutex
	running int
	left    chan struct{} // closed when a decision leaves
}

func newYieldGate(front *Front) *yieldGate {
	return &yieldGate{front: front, after: time.After, left: make(chan struct{})}
}

// enter waits until a claim may run (or ctx ends); leave must follow a nil error.
func (g *yieldGate) enter(ctx context.Context) error {
	for {
		g.mu.Lock()
		if g.running < decideWhileSaturated || !g.front.saturated() {
			g.running++
			g.mu.Unlock()
			return nil
		}
		left := g.left
		g.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-left:
		case <-g.after(frontRecheck):
		}
	}
}

func (g *yieldGate) leave() {
	g.mu.Lock()
	g.running--
	close(g.left)
	g.left = make(chan struct{})
	g.mu.Unlock()
}

// gatedBeginner passes the intake subscribers' claim transactions through the gate: a
// claim waits before its BEGIN, and leaves the gate when it commits or rolls back.
type gatedBeginner struct {
	wsql.Beginner
	gate *yieldGate
}

func (b gatedBeginner) BeginTx(ctx context.Context, opts *stdsql.TxOptions) (wsql.Tx, error) {
	if err := b.gate.enter(ctx); err != nil {
		return nil, err
	}
	tx, err := b.Beginner.BeginTx(ctx, opts)
	if err != nil {
		b.gate.leave()
		return nil, err
	}
	return &gatedTx{Tx: tx, leave: sync.OnceFunc(b.gate.leave)}, nil
}

// gatedTx is a claim transaction; whichever of Commit and Rollback comes first leaves the gate.
type gatedTx struct {
	wsql.Tx
	leave func()
}

func (t *gatedTx) Commit() error {
	defer t.leave()
	return t.Tx.Commit()
}

func (t *gatedTx) Rollback() error {
	defer t.leave()
	return t.Tx.Rollback()
}
