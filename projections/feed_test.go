package projections

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"selfreset/commands"
	"selfreset/eventstore"
	"selfreset/internal/testkit"
)

// recorder is a consumer that records the ids of this test's events it applied.
type recorder struct {
	name string
	own  func(eventstore.RecordedEvent) bool
	mu   sync.Mutex
	ids  []uuid.UUID
}

func (r *recorder) Name() string { return r.name }

func (r *recorder) Apply(_ context.Context, _ pgx.Tx, e Envelope) error {
	if r.own(e.Record) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.ids = append(r.ids, e.Record.ID)
	}
	return nil
}

func (r *recorder) applied() []uuid.UUID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ids)
}

// registerAcme registers the test's provider acme: one event.
func (e *env) registerAcme() {
	e.t.Helper()
	e.must(e.cmd.RegisterProvider(e.ctx, commands.RegisterProvider{Actor: operator, Code: e.acme, Name: "Acme", AllowSelfReset: true}))
}

// waitLog polls until logs holds text.
func (e *env) waitLog(logs *testkit.Buffer, text string) {
	e.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !strings.Contains(logs.String(), text) {
		if time.Now().After(deadline) {
			e.t.Fatalf("no %q in the logs within %s:\n%s", text, waitLimit, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// terminateLockHolder ends the server session that holds consumer's advisory lock, as a
// crash of its process or a broken network would, and reports whether there was one.
func (e *env) terminateLockHolder(consumer string) bool {
	e.t.Helper()
	var ended bool
	err := e.pool.QueryRow(e.ctx, `SELECT COALESCE(bool_or(pg_terminate_backend(pid)), false) FROM pg_locks
		WHERE locktype = 'advisory' AND granted
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND ((classid::bigint << 32) | objid::bigint) = hashtextextended($1, 0)`, lockKey(consumer)).Scan(&ended)
	e.must(err)
	return ended
}

// TestConsumerLockTakeover runs one consumer in three runners, as replicas would. The
// second waits while the first holds the lock; when the first's lock connection dies, the
// second takes over from the stored checkpoint; when the second stops, the third, waiting
// by then, takes over. Every event is applied once, in order, by whichever held the lock.
// (The first would wait for the lock again after its ResubscribeDelay; that is set beyond
// the test, so that it cannot race the second for the lock.)
func TestConsumerLockTakeover(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const name = "takeover"
	var logs [3]*testkit.Buffer
	var recs [3]*recorder
	var runs [3]*running
	start := func(i int, mutate ...func(*Config)) {
		logs[i], recs[i] = &testkit.Buffer{}, &recorder{name: name, own: e.own}
		mutate = append(mutate, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(logs[i], nil)) })
		runs[i] = e.start(e.runner([]Projection{recs[i]}, mutate...))
	}
	applied := func(i int) int { return len(recs[i].applied()) }
	register := func(login string) {
		t.Helper()
		e.must(e.cmd.RegisterUser(e.ctx, commands.RegisterUser{Actor: operator, Provider: e.acme, Login: login,
			DisplayName: login, Password: pw}))
		e.waitCaughtUp(name)
	}
	e.registerAcme()

	start(0, func(c *Config) { c.Feed.ResubscribeDelay = 2 * testTimeout })
	defer runs[0].stop(t)
	e.waitCaughtUp(name)
	start(1)
	e.waitLog(logs[1], "waiting for its lock")
	register("one")
	if n := applied(1); n != 0 {
		t.Fatalf("the waiting runner applied %d events while another held the lock", n)
	}

	// The holder's connection dies: the waiting runner takes over.
	if !e.terminateLockHolder(name) {
		t.Fatal("no session held the consumer lock")
	}
	e.waitLog(logs[1], "consumer lock acquired")
	e.waitLog(logs[0], "feed interrupted")
	start(2)
	defer runs[2].stop(t)
	e.waitLog(logs[2], "waiting for its lock")
	register("two")
	if n := applied(2); n != 0 {
		t.Fatalf("the third runner applied %d events while the second held the lock", n)
	}

	// The second stops: the third takes over.
	runs[1].stop(t)
	e.waitLog(logs[2], "consumer lock acquired")
	register("three")

	var want, got []uuid.UUID
	for _, r := range e.ownEvents() {
		want = append(want, r.ID)
	}
	for _, r := range recs {
		got = append(got, r.applied()...)
	}
	if !slices.Equal(got, want) {
		t.Errorf("applied, in the order the lock passed,\n%v\nwant every event once, in feed order,\n%v", got, want)
	}
	for i := range recs {
		if applied(i) == 0 {
			t.Errorf("runner %d applied no event", i+1)
		}
	}
}

// blinking is a consumer whose Apply fails on one event the first failures times with an
// error of the database's (a serialization failure), not of the event.
type blinking struct {
	target   func(eventstore.RecordedEvent) bool
	failures int
	mu       sync.Mutex
	tries    int
	applied  int
}

func (*blinking) Name() string { return "blinking" }

func (b *blinking) Apply(_ context.Context, _ pgx.Tx, e Envelope) error {
	if !b.target(e.Record) {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tries++
	if b.tries <= b.failures {
		return &pgconn.PgError{Code: "40001", Message: "could not serialize access"}
	}
	b.applied++
	return nil
}

// TestInfrastructureFailuresAreRetriedNotParked: an event that keeps failing for the
// database's reasons outlasts the retries (3 attempts here) and is tried again after
// RedeliveryDelay, with a fresh count, until it is applied; it is never parked.
func TestInfrastructureFailuresAreRetriedNotParked(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.registerAcme()
	e.must(e.cmd.RegisterUser(e.ctx, commands.RegisterUser{Actor: operator, Provider: e.acme, Login: "zed",
		DisplayName: "Zed", Password: pw}))
	target := e.ownEvents()[0].ID
	bl := &blinking{target: func(r eventstore.RecordedEvent) bool { return r.ID == target }, failures: 5}
	e.runToHead(e.runner([]Projection{bl}))

	bl.mu.Lock()
	defer bl.mu.Unlock()
	// 3 attempts (the first maybe inside a batch), then 3 more after the redelivery: the
	// sixth succeeds.
	if bl.tries != 6 || bl.applied != 1 {
		t.Errorf("tried %d times, applied %d times; want 6 and 1", bl.tries, bl.applied)
	}
	if n := len(e.ownParked()); n != 0 {
		t.Errorf("%d events parked", n)
	}
	if !strings.Contains(e.logs.String(), "trying it again") {
		t.Errorf("the redelivery was not logged:\n%s", e.logs.String())
	}
}

// lockHolder records, for every event, whether its transaction runs on the connection
// that holds the consumer's advisory lock, and counts the events own says are the test's.
type lockHolder struct {
	own     func(eventstore.RecordedEvent) bool
	mu      sync.Mutex
	applied int
	fenced  int
	mine    int
	async   int // transactions that committed without waiting for the WAL flush
}

func (*lockHolder) Name() string { return "lock_holder" }

func (l *lockHolder) Apply(ctx context.Context, tx pgx.Tx, e Envelope) error {
	var held, async bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'
		AND pid = pg_backend_pid() AND granted), current_setting('synchronous_commit') = 'off'`).Scan(&held, &async); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.applied++
	if l.own(e.Record) {
		l.mine++
	}
	if held {
		l.fenced++
	}
	if async {
		l.async++
	}
	return nil
}

// TestConsumerWritesOnItsLockConnection: a consumer's transactions run on the connection
// that holds its lock, so they stop the moment the lock is lost, and consumers waiting on a
// checkpoint row never take connections from the pool.
func TestConsumerWritesOnItsLockConnection(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.registerAcme()
	l := &lockHolder{own: e.own}
	e.runToHead(e.runner([]Projection{l}))
	l.mu.Lock()
	defer l.mu.Unlock()
	// Every event counts for the fencing, other tests' on EventStoreDB too.
	if l.mine != 2 || l.fenced != l.applied || (!e.shared && l.applied != 2) {
		t.Errorf("%d of %d transactions ran on the lock's connection (%d of this test's events, want 2)", l.fenced, l.applied, l.mine)
	}
	// A lost commit takes the checkpoint back with the rows, so the consumer never waits
	// for the flush.
	if l.async != l.applied {
		t.Errorf("%d of %d transactions ran with synchronous_commit off", l.async, l.applied)
	}
}

// TestABatchIsSizedToTheBuffer: next sizes a batch to the events buffered when it starts,
// not to BatchSize; a batch of one event holding 500 slots was 40% of serve's
// allocations under load.
func TestABatchIsSizedToTheBuffer(t *testing.T) {
	f := &feed{cfg: FeedConfig{BatchSize: 500, LockPollInterval: time.Hour},
		events: make(chan eventstore.RecordedEvent, 500), failed: make(chan error, 1)}
	for _, n := range []int{1, 3, 500} {
		for range n {
			f.events <- eventstore.RecordedEvent{}
		}
		batch, err := f.next(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) != n || cap(batch) != n {
			t.Errorf("%d buffered: a batch of %d with room for %d, want %d and %d", n, len(batch), cap(batch), n, n)
		}
	}
}
