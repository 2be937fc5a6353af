package projections

import (
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"selfreset/commands"
	"selfreset/internal/testkit"
)

// TestConsumersShareOnePass: the consumers whose locks one process holds are fed by one
// session, on one connection, and each pass is one batch for all of them: five consumers
// cost a pass a round trip, not five. Every consumer still applies every event once.
func TestConsumersShareOnePass(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createStrictLog()
	begins, conns, tracer := beginsOnLockConns()
	pool := testkit.TracedPool(t, e.pool, tracer)
	models := append(ReadModels(), strictLog{})
	r := e.runner(asProjections(models...), func(c *Config) { c.Pool = pool })
	rn := e.start(r)
	defer rn.stop(t)
	e.registerAcme()
	e.waitCaughtUp(r.names()...)
	begins()

	const passes = 4
	for i := range passes {
		e.must(e.cmd.RegisterUser(e.ctx, commands.RegisterUser{Actor: operator, Provider: e.acme,
			Login: "user" + string(rune('a'+i)), DisplayName: "User", Password: pw}))
		e.waitCaughtUp(r.names()...)
	}
	// A pass may find a second batch of events waiting (other tests' events on a shared
	// store), but a transaction per consumer per pass would be len(models) * passes.
	if begins := begins(); begins < passes || begins >= 2*passes {
		t.Errorf("%d passes of %d consumers: %d transactions on the lock connections, want %d to %d",
			passes, len(models), begins, passes, 2*passes-1)
	}
	if n := conns(); n != 1 {
		t.Errorf("the consumers held their locks on %d connections, want 1", n)
	}
	if n, want := e.strictLogged(), len(e.ownEvents()); n != want {
		t.Errorf("strict_log holds %d of this test's events, want %d", n, want)
	}
	// pgx prepares a batch's statements before it runs the first, so a fresh connection
	// must find the models' tables before the pass's own search_path is set.
	if logs := e.logs.String(); strings.Contains(logs, "not applied") || strings.Contains(logs, "pass failed") {
		t.Errorf("a pass failed:\n%s", logs)
	}
	sameDumps(t, "after shared passes", e.dumps(models), e.freshRebuild(r, models))
}

// TestAHeldLockIsWaitedForAlone: a Runner whose consumers' locks are partly held by
// another process feeds the free ones at once and waits for the other; when it is
// released, the Runner takes it too. Each event reaches each consumer once.
func TestAHeldLockIsWaitedForAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	held := &recorder{name: "held", own: e.own}
	first := e.start(e.runner([]Projection{held}))
	e.registerAcme()
	e.waitCaughtUp("held")

	logs := &testkit.Buffer{}
	heldLater, free := &recorder{name: "held", own: e.own}, &recorder{name: "free", own: e.own}
	second := e.start(e.runner([]Projection{heldLater, free}, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(logs, nil)) }))
	defer second.stop(t)
	e.waitLog(logs, "waiting for its lock")
	e.must(e.cmd.RegisterUser(e.ctx, commands.RegisterUser{Actor: operator, Provider: e.acme, Login: "before", DisplayName: "Before", Password: pw}))
	e.waitCaughtUp("held", "free")
	if n := len(heldLater.applied()); n != 0 {
		t.Fatalf("the second runner applied %d events to the consumer the first held", n)
	}

	first.stop(t)
	e.waitLog(logs, "consumer lock acquired")
	e.must(e.cmd.RegisterUser(e.ctx, commands.RegisterUser{Actor: operator, Provider: e.acme, Login: "after", DisplayName: "After", Password: pw}))
	e.waitCaughtUp("held", "free")

	var want []uuid.UUID
	for _, r := range e.ownEvents() {
		want = append(want, r.ID)
	}
	if got := append(held.applied(), heldLater.applied()...); !slices.Equal(got, want) {
		t.Errorf("held applied, in the order the lock passed,\n%v\nwant every event once, in feed order,\n%v", got, want)
	}
	if got := free.applied(); !slices.Equal(got, want) {
		t.Errorf("free applied\n%v\nwant every event once, in feed order,\n%v", got, want)
	}
	if len(heldLater.applied()) == 0 {
		t.Error("the second runner never fed the consumer it waited for")
	}
}

// beginsOnLockConns counts the transactions begun on the connections that take consumer
// locks, in statements and in batches.
func beginsOnLockConns() (begins func() int, conns func() int, tracer *testkit.Trips) {
	tracer, conns = lockConnTrips(func(sql string) bool { return strings.HasPrefix(sql, "BEGIN") })
	return func() int {
		statements, _, queued := tracer.TakeAll()
		return statements + queued
	}, conns, tracer
}

// TestAConsumerFarBehindIsFedApart: a session feeds its consumers from the oldest of
// their checkpoints, so a consumer far behind the others (here one new to a history
// the other has applied) gets a session, and a lock connection, of its own, and the
// other is not held back while it catches up. Each applies every event once.
func TestAConsumerFarBehindIsFedApart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createStrictLog()
	e.writeHistory()
	e.runToHead(e.runner(asProjections(strictLog{})))

	tracer, conns := lockConnTrips(nil)
	pool := testkit.TracedPool(t, e.pool, tracer)
	fresh := &recorder{name: "fresh", own: e.own}
	r := e.runner([]Projection{strictLog{}, fresh}, func(c *Config) { c.Pool = pool })
	rn := e.start(r)
	defer rn.stop(t)
	e.waitCaughtUp(r.names()...)

	if n := conns(); n != 2 {
		t.Errorf("the consumers took their locks on %d connections, want 2 (one session each)", n)
	}
	var want []uuid.UUID
	for _, rec := range e.ownEvents() {
		want = append(want, rec.ID)
	}
	if got := fresh.applied(); !slices.Equal(got, want) {
		t.Errorf("the consumer behind applied %d events, want each of the %d once, in feed order", len(got), len(want))
	}
	if n, total := e.strictLogged(), len(want); n != total {
		t.Errorf("strict_log holds %d of this test's events, want %d", n, total)
	}
	if n := len(e.ownParked()); n != 0 {
		t.Errorf("%d events parked (one applied twice?)", n)
	}
}

// TestACheckpointMovedUnderASharedPassIsNoticed: one consumer's checkpoint is moved
// past an event behind its session's back (as a rebuild does) while the others' are not.
// The shared pass must write nothing; that consumer skips the event the move covered,
// and the other consumers (the read models, whose passes are shared with it) end as a
// rebuild of them would.
func TestACheckpointMovedUnderASharedPassIsNoticed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createStrictLog()
	others := ReadModels()
	r := e.runner(asProjections(append(others, strictLog{})...))
	rn := e.start(r)
	defer rn.stop(t)
	e.registerAcme()
	e.waitCaughtUp(r.names()...)

	tx, err := e.pool.Begin(e.ctx)
	e.must(err)
	defer func() { _ = tx.Rollback(e.ctx) }()
	_, err = lockCheckpoint(e.ctx, tx, strictLog{}.Name())
	e.must(err)
	e.must(e.cmd.RegisterUser(e.ctx, commands.RegisterUser{Actor: operator, Provider: e.acme, Login: "covered", DisplayName: "Covered", Password: pw}))
	e.waitVisible()
	own := e.ownEvents()
	covered := own[len(own)-1]
	_, err = tx.Exec(e.ctx, `UPDATE projection_checkpoints SET commit = $2, prepare = $3 WHERE consumer = $1`,
		strictLog{}.Name(), int64(covered.Position.Commit), int64(covered.Position.Prepare))
	e.must(err)
	e.must(tx.Commit(e.ctx))
	e.must(e.cmd.RegisterUser(e.ctx, commands.RegisterUser{Actor: operator, Provider: e.acme, Login: "after", DisplayName: "After", Password: pw}))
	e.waitCaughtUp(r.names()...)

	if n := e.count(`SELECT count(*) FROM strict_log WHERE event_id = $1`, covered.ID.String()); n != 0 {
		t.Errorf("the event the other writer covered was applied %d times, want 0", n)
	}
	if n, want := e.strictLogged(), len(e.ownEvents())-1; n != want {
		t.Errorf("strict_log holds %d of this test's events, want %d (all but the covered one)", n, want)
	}
	if n := len(e.ownParked()); n != 0 {
		t.Errorf("%d events parked", n)
	}
	sameDumps(t, "the other consumers", e.dumps(others), e.freshRebuild(r, others))
}
