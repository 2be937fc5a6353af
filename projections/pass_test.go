package projections

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"selfreset/commands"
	"selfreset/internal/testkit"
)

// lockConnTrips counts what the connections that took consumer locks send: every batch,
// and the statements (sent alone or queued in a batch) that count says count (nil: all).
// conns tells how many connections took consumer locks.
func lockConnTrips(count func(sql string) bool) (trips *testkit.Trips, conns func() int) {
	lockConns := map[*pgx.Conn]bool{}
	var n atomic.Int32 // read outside the tracer's lock
	trips = &testkit.Trips{Keep: func(conn *pgx.Conn, sql string) bool {
		if strings.Contains(sql, "pg_try_advisory_lock") {
			if !lockConns[conn] {
				lockConns[conn] = true
				n.Add(1)
			}
			return false
		}
		return lockConns[conn] && (sql == "" || count == nil || count(sql))
	}}
	return trips, func() int { return int(n.Load()) }
}

// TestAPassIsOneBatch: once a session knows its checkpoint, a consumer whose writes are
// pipelined applies each pass (here one event at a time) in one batch on its lock
// connection, with no statement of its own: BEGIN, the checkpoint's move, the writes and
// COMMIT travel together.
func TestAPassIsOneBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createStrictLog()
	tracer, _ := lockConnTrips(nil)
	pool := testkit.TracedPool(t, e.pool, tracer)

	r := e.runner(asProjections(strictLog{}), func(c *Config) { c.Pool = pool })
	rn := e.start(r)
	defer rn.stop(t)
	e.must(e.cmd.RegisterProvider(e.ctx, commands.RegisterProvider{Actor: operator, Code: e.acme, Name: "Acme", AllowSelfReset: true}))
	e.waitCaughtUp(r.names()...)
	tracer.Take()

	const passes = 4
	for i := range passes {
		e.must(e.cmd.RegisterUser(e.ctx, commands.RegisterUser{Actor: operator, Provider: e.acme,
			Login: "user" + string(rune('a'+i)), DisplayName: "User", Password: pw}))
		e.waitCaughtUp(r.names()...)
	}
	statements, batches := tracer.Take()
	if statements != 0 || batches < passes {
		t.Errorf("%d events applied one at a time: %d statements and %d batches on the lock connection, want 0 and at least %d",
			passes, statements, batches, passes)
	}
	if n, want := e.strictLogged(), len(e.ownEvents()); n != want {
		t.Errorf("strict_log holds %d of this test's events, want %d", n, want)
	}
}

// TestAMovedCheckpointIsNoticed: while the session believes its checkpoint is at an
// event, something else (as a rebuild does) holds the checkpoint row, moves it past the
// next event, and commits. The session's pipelined pass must find the checkpoint moved,
// write nothing, and go the locking way: the event the other writer covered is skipped,
// and the one after it applied once.
func TestAMovedCheckpointIsNoticed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createStrictLog()
	var mu sync.Mutex
	skipped := map[string]bool{}
	r := e.runner(asProjections(strictLog{}), func(c *Config) {
		c.hooks.skipped = func(_ string, env Envelope) {
			mu.Lock()
			skipped[env.Record.ID.String()] = true
			mu.Unlock()
		}
	})
	rn := e.start(r)
	defer rn.stop(t)
	e.must(e.cmd.RegisterProvider(e.ctx, commands.RegisterProvider{Actor: operator, Code: e.acme, Name: "Acme", AllowSelfReset: true}))
	e.waitCaughtUp(r.names()...)

	other, err := e.pool.Begin(e.ctx)
	e.must(err)
	defer func() { _ = other.Rollback(e.ctx) }()
	_, err = lockCheckpoint(e.ctx, other, strictLog{}.Name())
	e.must(err)
	e.must(e.cmd.RegisterUser(e.ctx, commands.RegisterUser{Actor: operator, Provider: e.acme, Login: "covered", DisplayName: "Covered", Password: pw}))
	e.waitVisible()
	own := e.ownEvents()
	covered := own[len(own)-1]
	_, err = other.Exec(e.ctx, `UPDATE projection_checkpoints SET commit = $2, prepare = $3 WHERE consumer = $1`,
		strictLog{}.Name(), int64(covered.Position.Commit), int64(covered.Position.Prepare))
	e.must(err)
	e.must(other.Commit(e.ctx))
	e.must(e.cmd.RegisterUser(e.ctx, commands.RegisterUser{Actor: operator, Provider: e.acme, Login: "after", DisplayName: "After", Password: pw}))
	e.waitCaughtUp(r.names()...)

	coveredID := covered.ID.String()
	if n := e.count(`SELECT count(*) FROM strict_log WHERE event_id = $1`, coveredID); n != 0 {
		t.Errorf("the event the other writer covered was applied %d times, want 0", n)
	}
	mu.Lock()
	wasSkipped := skipped[coveredID]
	mu.Unlock()
	if !wasSkipped {
		t.Error("the covered event was not skipped under the locked checkpoint")
	}
	if n, want := e.strictLogged(), len(e.ownEvents())-1; n != want {
		t.Errorf("strict_log holds %d of this test's events, want %d (all but the covered one)", n, want)
	}
	if n := len(e.ownParked()); n != 0 {
		t.Errorf("%d events parked", n)
	}
}
