package reset

import (
	"context"
	stdsql "database/sql"
	"runtime"
	"testing"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"

	"selfreset/domain"
	"selfreset/internal/testkit"
)

// heldTime is a yieldGate's clock that moves only when the test says.
type heldTime struct{ tick chan time.Time }

func (h heldTime) after(time.Duration) <-chan time.Time { return h.tick }

// entered starts an enter in the background and tells when it returns.
func entered(ctx context.Context, g *yieldGate) <-chan error {
	done := make(chan error, 1)
	go func() { done <- g.enter(ctx) }()
	return done
}

func mustNotReturn(t *testing.T, what string, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("%s returned (%v) while it should wait", what, err)
	case <-time.After(20 * time.Millisecond):
	}
}

func mustReturn(t *testing.T, what string, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s still waits", what)
	}
}

func TestDecisionsGiveWayToASaturatedFront(t *testing.T) {
	ctx := t.Context()
	now := testkit.NewClock(time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC))
	front := NewFront(now)
	clock := heldTime{tick: make(chan time.Time)}
	g := newYieldGate(front)
	g.after = clock.after
	busy := answersPerCPU*runtime.GOMAXPROCS(0) + 1

	// Not saturated: decisions run side by side.
	for range 3 {
		mustReturn(t, "a decision beside an idle front", entered(ctx, g))
	}
	for range 3 {
		g.leave()
	}

	// Saturated: one at a time.
	var done []func()
	for range busy {
		done = append(done, front.answer())
	}
	mustReturn(t, "the first decision", entered(ctx, g))
	second := entered(ctx, g)
	mustNotReturn(t, "a second decision beside a saturated front", second)
	clock.tick <- time.Now() // it looks again: still saturated
	mustNotReturn(t, "a second decision after a recheck", second)
	g.leave()
	mustReturn(t, "the second decision once the first left", second)

	// The front calms down: a waiting decision goes at its first look after frontHold.
	third := entered(ctx, g)
	mustNotReturn(t, "a third decision", third)
	for _, d := range done {
		d()
	}
	now.Add(frontHold - time.Millisecond)
	clock.tick <- time.Now()
	mustNotReturn(t, "a third decision within frontHold of the burst", third)
	now.Add(time.Millisecond)
	clock.tick <- time.Now()
	mustReturn(t, "the third decision once the front is no longer saturated", third)

	// A waiting decision whose context ends stops waiting.
	for range busy {
		front.answer()
	}
	cctx, cancel := context.WithCancel(ctx)
	fourth := entered(cctx, g)
	mustNotReturn(t, "a fourth decision", fourth)
	cancel()
	select {
	case err := <-fourth:
		if err == nil {
			t.Fatal("a cancelled wait entered")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled wait still waits")
	}
}

// The count of answers in progress dips below the mark within a burst: the front stays
// saturated for frontHold after it was last over the mark, and a new answer over the
// mark starts the hold again.
func TestTheFrontStaysSaturatedThroughADip(t *testing.T) {
	now := testkit.NewClock(time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC))
	front := NewFront(now)
	if front.saturated() {
		t.Fatal("a Front that has answered nothing is saturated")
	}
	mark := front.mark
	var done []func()
	for range mark {
		done = append(done, front.answer())
	}
	if front.saturated() {
		t.Fatalf("saturated at %d answers in progress, the mark itself", mark)
	}
	done = append(done, front.answer())
	if !front.saturated() {
		t.Fatal("not saturated over the mark")
	}
	done[0]()
	now.Add(frontHold / 2)
	if !front.saturated() {
		t.Fatal("not saturated in a dip within frontHold")
	}
	front.answer() // over the mark again: the hold starts anew
	done[1]()
	now.Add(frontHold - time.Millisecond)
	if !front.saturated() {
		t.Fatal("not saturated within frontHold of the last time over the mark")
	}
	now.Add(time.Millisecond)
	if front.saturated() {
		t.Fatal("still saturated frontHold after the last time over the mark")
	}
}

func TestANilFrontNeverSaturates(t *testing.T) {
	var f *Front
	f.answer()()
	if f.answering() != 0 || f.saturated() {
		t.Fatal("a nil Front counts answers")
	}
}

// fakeBeginner begins transactions that do nothing.
type fakeBeginner struct{ wsql.Beginner }

type fakeTx struct{ wsql.Tx }

func (fakeBeginner) BeginTx(context.Context, *stdsql.TxOptions) (wsql.Tx, error) {
	return fakeTx{}, nil
}
func (fakeTx) Commit() error   { return nil }
func (fakeTx) Rollback() error { return stdsql.ErrTxDone }

// The intake's claims pass the gate: while the front is saturated, a second claim's BEGIN
// waits for the first claim's transaction to end, however it ends, and ending it twice
// (watermill rolls back after a failed commit) leaves the gate once.
func TestClaimsWaitAtTheGateWhileTheFrontIsSaturated(t *testing.T) {
	ctx := t.Context()
	front := NewFront(nil)
	for range answersPerCPU*runtime.GOMAXPROCS(0) + 1 {
		front.answer()
	}
	g := newYieldGate(front)
	g.after = heldTime{tick: make(chan time.Time)}.after
	b := gatedBeginner{Beginner: fakeBeginner{}, gate: g}
	begin := func() (<-chan wsql.Tx, <-chan error) {
		txs, errs := make(chan wsql.Tx, 1), make(chan error, 1)
		go func() {
			tx, err := b.BeginTx(ctx, nil)
			txs <- tx
			errs <- err
		}()
		return txs, errs
	}
	firstTx, firstErr := begin()
	mustReturn(t, "the first claim", firstErr)
	first := <-firstTx
	secondTx, secondErr := begin()
	mustNotReturn(t, "a second claim", secondErr)
	_ = first.Commit()
	mustReturn(t, "the second claim once the first committed", secondErr)
	second := <-secondTx
	thirdTx, thirdErr := begin()
	mustNotReturn(t, "a third claim beside the second", thirdErr)
	_ = second.Rollback()
	mustReturn(t, "the third claim once the second rolled back", thirdErr)
	third := <-thirdTx
	_, fourthErr := begin()
	_ = third.Commit()
	_ = third.Rollback() // again: must not let a fifth claim in beside the fourth
	mustReturn(t, "the fourth claim once the third ended", fourthErr)
	_, fifthErr := begin()
	mustNotReturn(t, "a fifth claim beside the fourth", fifthErr)
}

// blockingSender holds every Send until release is closed.
type blockingSender struct{ sending, release chan struct{} }

func (b blockingSender) Send(context.Context, any) error {
	b.sending <- struct{}{}
	<-b.release
	return nil
}

// stubPolicy is the Commands a Service needs for answering: only the policy.
type stubPolicy struct{ Commands }

func (stubPolicy) Policy() domain.Policy { return domain.DefaultPolicy() }

func TestTheServiceCountsTheAnswersInProgress(t *testing.T) {
	front := NewFront(nil)
	send := blockingSender{sending: make(chan struct{}), release: make(chan struct{})}
	svc, err := New(Config{Commands: stubPolicy{}, Keyring: testKeyring(t, "k1", "k1"), Intake: send, Front: front})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	go func() {
		_, err := svc.RequestReset(t.Context(), "ACME", "jdoe", "j@example.org")
		done <- err
	}()
	<-send.sending
	if got := front.answering(); got != 1 {
		t.Fatalf("%d answers in progress during a Forgot Password, want 1", got)
	}
	close(send.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := front.answering(); got != 0 {
		t.Fatalf("%d answers in progress after it, want 0", got)
	}
}
