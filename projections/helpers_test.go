package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/commands"
	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/internal/testdb"
	"selfreset/internal/testkit"
	"selfreset/internal/teststore"
	"selfreset/secret"
)

// testTimeout bounds every test that talks to Postgres, and waitLimit each wait for the
// feed or the consumers to reach the last event. On EventStoreDB they are longer: the
// runners and rebuilds there start with the whole shared history, every earlier run's
// events included.
var testTimeout, waitLimit = 90 * time.Second, 60 * time.Second

func init() {
	if teststore.Shared() {
		testTimeout, waitLimit = 5*time.Minute, 4*time.Minute
	}
}

// t0 is the test clock's start.
var t0 = time.Date(2025, 3, 10, 9, 0, 0, 0, time.UTC)

// env is one test's world: a fresh database holding the read models, the event store, a
// command handler on a test clock, and the keyring (to derive codes and tokens as the
// mailer would).
//
// The event store is the Postgres one in the same fresh database, or, with
// SELFRESET_EVENTSTORE_URL set, the shared EventStoreDB (internal/teststore). Its global
// feed then also holds other tests' events and those of earlier runs, before, between and
// after this test's own, and the runners apply them all. So the tests work in providers of
// their own (acme, nope, late) and look only at their own events (ownEvents) and at the
// rows and parked events of their own providers (dumps, ownParked, query filters); on
// Postgres those filters keep everything, and fail the test if they would not.
type env struct {
	t     *testing.T
	ctx   context.Context
	store eventstore.Store
	pool  *pgxpool.Pool // the test's database: read models, checkpoints (and, on Postgres, the events)
	cmd   *commands.Handler
	clock *testkit.Clock
	keys  *secret.Keyring
	logs  *testkit.Buffer

	shared           bool   // the event store is the shared EventStoreDB
	acme, nope, late string // this test's provider codes ("ACME", "NOPE", "LATE" on Postgres)
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	dbURL := testdb.New(t)
	store := teststore.New(t, dbURL)
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	keys := testkit.Keyring(t, "k1")
	clk := testkit.NewClock(t0)
	logs := &testkit.Buffer{}
	cmd := testkit.Handler(t, store, clk, keys, func(c *commands.Config) { c.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
	return &env{t: t, ctx: ctx, store: store, pool: pool, cmd: cmd, clock: clk, keys: keys, logs: logs,
		shared: teststore.Shared(), acme: teststore.ProviderCode(t, "ACME"), nope: teststore.ProviderCode(t, "NOPE"),
		late: teststore.ProviderCode(t, "LATE")}
}

// runner returns a Runner with test-sized intervals.
func (e *env) runner(projections []Projection, mutate ...func(*Config)) *Runner {
	e.t.Helper()
	cfg := Config{
		Store: e.store, Pool: e.pool, Projections: projections,
		Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Retry:  RetryConfig{MaxAttempts: 3, InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond},
		Feed: FeedConfig{LockPollInterval: 50 * time.Millisecond, RedeliveryDelay: 10 * time.Millisecond,
			ResubscribeDelay: 50 * time.Millisecond,
			// Small batches, so that a history of a few dozen events is applied in several
			// and a crash on the nth event of a run still leaves work for the next run.
			BatchSize: 3},
		CloseTimeout: 10 * time.Second,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// asProjections types read models (or any projections) for Config.Projections.
func asProjections[T Projection](ms ...T) []Projection {
	out := make([]Projection, len(ms))
	for i, m := range ms {
		out[i] = m
	}
	return out
}

// running is a Runner started in the background.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func (e *env) start(r *Runner) *running {
	ctx, cancel := context.WithCancel(e.ctx)
	rn := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { rn.done <- r.Run(ctx) }()
	return rn
}

// stop cancels the runner and waits for Run to return.
func (rn *running) stop(t *testing.T) {
	t.Helper()
	rn.cancel()
	rn.wait(t)
}

// wait waits for Run to return (after a cancel from elsewhere).
func (rn *running) wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-rn.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of its cancel")
	}
}

// lastAppended is the position of the newest event in the store, whether or not the
// feed shows it yet (the Postgres feed holds an event back while an older append may
// still commit). On EventStoreDB it is the feed's head: an append shows in $all as soon as
// it returns, so the head is at or after every event this test appended (and other tests'
// events may come after those).
func (e *env) lastAppended() eventstore.Position {
	e.t.Helper()
	if e.shared {
		head, err := e.store.Head(e.ctx)
		e.must(err)
		return head
	}
	// Postgres only: the events table is in the test's database.
	var c, p int64
	err := e.pool.QueryRow(e.ctx, `SELECT tx_id::text::bigint, seq FROM events ORDER BY tx_id DESC, seq DESC LIMIT 1`).Scan(&c, &p)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Start
	}
	e.must(err)
	return posFromDB(c, p)
}

// waitVisible polls until the feed shows every event appended so far, and returns the
// position of the newest (on EventStoreDB, at once: see lastAppended).
func (e *env) waitVisible() eventstore.Position {
	e.t.Helper()
	want := e.lastAppended()
	if e.shared {
		return want
	}
	deadline := time.Now().Add(waitLimit)
	for {
		head, err := e.store.Head(e.ctx)
		e.must(err)
		if head == want {
			return want
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the feed's head stayed at %s, want %s", head, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitCaughtUp polls until every named consumer's checkpoint is at the last appended event
// (or, on a shared EventStoreDB that others keep appending to, past it).
func (e *env) waitCaughtUp(names ...string) {
	e.t.Helper()
	target := e.lastAppended()
	deadline := time.Now().Add(waitLimit)
	for {
		behind := []string{}
		for _, n := range names {
			cp, err := readCheckpoint(e.ctx, e.pool, n)
			if err != nil {
				e.t.Fatal(err)
			}
			if cp.Less(target) {
				behind = append(behind, fmt.Sprintf("%s at %s", n, cp))
			}
		}
		if len(behind) == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("consumers did not reach %s within %s: %s\nlogs:\n%s", target, waitLimit, strings.Join(behind, ", "), e.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runToHead runs r until its consumers reach the head, then stops it.
func (e *env) runToHead(r *Runner) {
	e.t.Helper()
	rn := e.start(r)
	e.waitCaughtUp(r.names()...)
	rn.stop(e.t)
}

// dumpTable returns every row of table (a sanitized, possibly qualified name) that belongs
// to one of this test's providers as JSON text, sorted: two tables with equal dumps hold
// the same rows. Every table the tests dump has the provider in a column "provider" (or
// "code", for providers). Rows of other providers come from other tests' events on the
// shared EventStoreDB, and a live table and a rebuild made a moment later need not hold
// the same of those; on Postgres there are none.
func (e *env) dumpTable(table string) []string {
	e.t.Helper()
	rows, err := e.pool.Query(e.ctx, `SELECT row_to_json(t)::text AS j FROM `+table+` t ORDER BY j`)
	if err != nil {
		e.t.Fatal(err)
	}
	all, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, j := range all {
		var row struct {
			Provider *string `json:"provider"`
			Code     *string `json:"code"`
		}
		e.must(json.Unmarshal([]byte(j), &row))
		p := row.Provider
		if p == nil {
			p = row.Code
		}
		if p == nil {
			e.t.Fatalf("%s has no provider or code column to tell this test's rows by: %s", table, j)
		}
		if e.isOwn(*p) {
			out = append(out, j)
		} else if !e.shared {
			e.t.Fatalf("%s: a row of provider %q on a private event store: %s", table, *p, j)
		}
	}
	return out
}

// dumps returns the dumps of every live table of models, by table name. models must own
// every table of Schema, whatever the tables: the test fails on one they do not, since
// nothing would show that a rebuild reproduces it.
func (e *env) dumps(models []ReadModel) map[string][]string {
	e.t.Helper()
	out := map[string][]string{}
	for _, m := range models {
		for _, table := range m.Tables() {
			schema, ok, err := tableSchema(e.ctx, e.pool, table)
			e.must(err)
			if !ok {
				e.t.Fatalf("read model %s: no table %s", m.Name(), table)
			}
			out[table] = e.dumpTable(pgx.Identifier{schema, table}.Sanitize())
		}
	}
	for _, table := range e.schemaTables() {
		if _, ok := out[table]; !ok {
			e.t.Fatalf("table %s.%s belongs to none of the read models compared", Schema, table)
		}
	}
	return out
}

// schemaTables lists every table in Schema (views left out: they are computed from the
// tables).
func (e *env) schemaTables() []string {
	e.t.Helper()
	rows, err := e.pool.Query(e.ctx, `SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY 1`, Schema)
	e.must(err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	e.must(err)
	if len(tables) == 0 {
		e.t.Fatalf("schema %s has no tables", Schema)
	}
	return tables
}

// freshRebuild replays the whole history into shadow tables (without touching the live
// ones) and returns their dumps: what the read models must hold.
func (e *env) freshRebuild(r *Runner, models []ReadModel) map[string][]string {
	e.t.Helper()
	e.waitVisible()
	sh, err := r.newShadow(e.ctx, models)
	if err != nil {
		e.t.Fatal(err)
	}
	defer sh.drop(r)
	if _, err := r.catchUp(e.ctx, sh, eventstore.Start); err != nil {
		e.t.Fatal(err)
	}
	// On the shared EventStoreDB the history also holds other tests' events that no read
	// model takes (TestPoisonEventsAreParked's, of earlier runs too, and the Raw events of
	// a TestFeed since removed).
	for _, p := range sh.parked {
		if e.own(p.rec) {
			e.t.Fatalf("fresh rebuild parked %s of %s: %s", p.rec.Type, p.rec.Stream, p.cause)
		}
	}
	// A page applied event by event after ApplyPage failed would hide a broken ApplyPage
	// behind Apply's rows. (On EventStoreDB other tests' poison events fail pages.)
	if sh.pagesRetried != 0 && !e.shared {
		e.t.Fatalf("fresh rebuild: %d pages failed and were applied event by event", sh.pagesRetried)
	}
	out := map[string][]string{}
	i := 0
	for _, m := range models {
		for _, table := range m.Tables() {
			out[table] = e.dumpTable(sh.tables[i].shadow)
			i++
		}
	}
	return out
}

// sameDumps fails the test if the two sets of dumps differ, showing the first difference.
func sameDumps(t *testing.T, what string, got, want map[string][]string) {
	t.Helper()
	for table, w := range want {
		g := got[table]
		if len(g) != len(w) {
			t.Errorf("%s: table %s has %d rows, want %d\ngot:  %s\nwant: %s", what, table, len(g), len(w),
				strings.Join(g, "\n      "), strings.Join(w, "\n      "))
			continue
		}
		for i := range w {
			if g[i] != w[i] {
				t.Errorf("%s: table %s differs at row %d\ngot:  %s\nwant: %s", what, table, i, g[i], w[i])
				break
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s: %d tables, want %d", what, len(got), len(want))
	}
}

// must fails the test on err.
func (e *env) must(err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
}

// refused expects a refusal with the given domain code.
func (e *env) refused(err error, code string) {
	e.t.Helper()
	if domain.Code(err) != code {
		e.t.Fatalf("got error %v (code %q), want code %q", err, domain.Code(err), code)
	}
}

// strictLog is a test read model that fails on a second application of any event (plain
// INSERT under a primary key): if a crash, retry, replay or rebuild ever applied an event
// twice, the duplicate would fail every retry and end up parked. It records each event's
// provider (teststore.EventProvider), so that tests can count their own events.
type strictLog struct{}

func (strictLog) Name() string     { return "strict_log" }
func (strictLog) Tables() []string { return []string{"strict_log"} }
func (strictLog) Apply(ctx context.Context, tx pgx.Tx, e Envelope) error {
	_, err := tx.Exec(ctx, `INSERT INTO strict_log (event_id, type, stream, revision, provider) VALUES ($1, $2, $3, $4, $5)`,
		e.Record.ID, e.Record.Type, e.Record.Stream, int64(e.Record.Revision), teststore.EventProvider(e.Record))
	return err
}

func (e *env) createStrictLog() {
	e.t.Helper()
	_, err := e.pool.Exec(e.ctx, `CREATE TABLE strict_log (event_id uuid PRIMARY KEY, type text NOT NULL,
		stream text NOT NULL, revision bigint NOT NULL, provider text NOT NULL)`)
	e.must(err)
}

// strictLogged counts strict_log's rows of this test's events.
func (e *env) strictLogged() int {
	e.t.Helper()
	return e.count(`SELECT count(*) FROM strict_log WHERE provider = ANY($1)`, e.codes())
}

// count runs a count query.
func (e *env) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(e.ctx, sql, args...).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// codes are this test's provider codes.
func (e *env) codes() []string { return []string{e.acme, e.nope, e.late} }

// isOwn reports whether code is one of this test's providers.
func (e *env) isOwn(code string) bool { return slices.Contains(e.codes(), code) }

// own reports whether r is an event of this test: of one of its providers' streams, or a
// request for one of its codes on the unmatched-requests stream.
func (e *env) own(r eventstore.RecordedEvent) bool { return e.isOwn(teststore.EventProvider(r)) }

// ownEvents is this test's part of the whole feed, in feed order. On Postgres that is the
// whole feed (the test fails if own would leave anything out); on EventStoreDB other
// tests' events are left out.
func (e *env) ownEvents() []eventstore.RecordedEvent {
	e.t.Helper()
	all := e.allEvents()
	var out []eventstore.RecordedEvent
	for _, r := range all {
		if e.own(r) {
			out = append(out, r)
		} else if !e.shared {
			e.t.Fatalf("%s of %s is not this test's, on a private event store (providers %v)", r.Type, r.Stream, e.codes())
		}
	}
	return out
}

// parkedRow is a row of parked_events.
type parkedRow struct {
	Consumer, EventID, Stream, Type string
	Attempts                        int
	Error                           string
}

// ownParked returns the parked_events rows of this test's events, by consumer, type and
// event id. On the shared EventStoreDB the runners also park other tests' events (those no
// read model takes, and the poison test's consumer fails on everyone's).
func (e *env) ownParked() []parkedRow {
	e.t.Helper()
	rows := query[parkedRow](e.t, e, `SELECT consumer, event_id::text, stream, event_type, attempts, error
		FROM parked_events ORDER BY consumer, event_type, event_id`)
	var ownIDs map[string]bool // read when needed: an unmatched request's provider is in its data
	var out []parkedRow
	for _, r := range rows {
		own := e.isOwn(teststore.StreamProvider(r.Stream))
		if !own && domain.IsUnmatchedStream(r.Stream) {
			if ownIDs == nil {
				ownIDs = map[string]bool{}
				for _, rec := range e.ownEvents() {
					ownIDs[rec.ID.String()] = true
				}
			}
			own = ownIDs[r.EventID]
		}
		if own {
			out = append(out, r)
		} else if !e.shared {
			e.t.Fatalf("parked %s of %s is not this test's, on a private event store", r.Type, r.Stream)
		}
	}
	return out
}

// ownParkedEvents keeps this test's events of a ParkedEvents list.
func (e *env) ownParkedEvents(list []ParkedEvent) []ParkedEvent {
	e.t.Helper()
	own := map[string]bool{}
	for _, r := range e.ownParked() {
		own[r.Consumer+"/"+r.EventID] = true
	}
	var out []ParkedEvent
	for _, p := range list {
		if own[p.Consumer+"/"+p.EventID] {
			out = append(out, p)
		}
	}
	return out
}

// allEvents is the whole feed (on EventStoreDB, of every test and run: see ownEvents).
func (e *env) allEvents() []eventstore.RecordedEvent {
	e.t.Helper()
	e.waitVisible()
	var out []eventstore.RecordedEvent
	pos := eventstore.Start
	for {
		page, err := e.store.ReadAll(e.ctx, pos, 500)
		if err != nil {
			e.t.Fatal(err)
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		pos = page[len(page)-1].Position
	}
}

var errCrash = errors.New("simulated crash")
