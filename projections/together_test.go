package projections

import (
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

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
	lockConns := map[*pgx.Conn]bool{}
	tracer := &testkit.Trips{Keep: func(conn *pgx.Conn, sql string) bool {
		if strings.Contains(sql, "pg_try_advisory_lock") {
			lockConns[conn] = true
			return false
		}
		return lockConns[conn]
	}}
	pool := testkit.TracedPool(t, e.pool, tracer)
	models := append(ReadModels(), strictLog{})
	r := e.runner(asProjections(models...), func(c *Config) { c.Pool = pool })
	rn := e.start(r)
	defer rn.stop(t)
	e.registerAcme()
	e.waitCaughtUp(r.names()...)
	tracer.Take()

	const passes = 4
	for i := range passes {
		e.must(e.cmd.RegisterUser(e.ctx, commands.RegisterUser{Actor: operator, Provider: e.acme,
			Login: "user" + string(rune('a'+i)), DisplayName: "User", Password: pw}))
		e.waitCaughtUp(r.names()...)
	}
	// The read models' reads go out as statements of their own (after what the pass had
	// queued); the writes, moves, BEGIN and COMMIT in the batches. A pass may find a second
	// batch of events waiting (other tests' events on a shared store), but a batch per
	// consumer per pass would be at least len(models) * passes.
	_, batches := tracer.Take()
	if batches < passes || batches >= 2*passes {
		t.Errorf("%d passes of %d consumers: %d batches on the lock connections, want %d to %d",
			passes, len(models), batches, passes, 2*passes-1)
	}
	if n := len(lockConns); n != 1 {
		t.Errorf("the consumers held their locks on %d connections, want 1", n)
	}
	if n, want := e.strictLogged(), len(e.ownEvents()); n != want {
		t.Errorf("strict_log holds %d of this test's events, want %d", n, want)
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
