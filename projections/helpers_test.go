package projections

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/commands"
	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/eventstore/postgres"
	"selfreset/internal/testdb"
	"selfreset/password"
	"selfreset/secret"
)

// testTimeout bounds every test that talks to Postgres.
const testTimeout = 90 * time.Second

// t0 is the test clock's start.
var t0 = time.Date(2025, 3, 10, 9, 0, 0, 0, time.UTC)

// clock is a movable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.now = t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// env is one test's world: a fresh database holding the event store and the read models,
// a command handler on a test clock, and the keyring (to derive codes and tokens as the
// mailer would).
type env struct {
	t     *testing.T
	ctx   context.Context
	store *postgres.Store
	pool  *pgxpool.Pool
	cmd   *commands.Handler
	clock *clock
	keys  *secret.Keyring
	logs  *syncBuffer
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	store, err := postgres.Open(ctx, testdb.New(t), postgres.WithPollInterval(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := Migrate(ctx, store.Pool()); err != nil {
		t.Fatal(err)
	}
	hasher, err := password.NewHasher(password.Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := secret.NewKeyring("k1", map[string][]byte{"k1": bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: t0}
	logs := &syncBuffer{}
	cmd := commands.New(commands.Config{
		Store: store, Clock: clk, Hasher: hasher, Secrets: keys, Common: password.NewCommonList(),
		Policy: domain.DefaultPolicy(), Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	return &env{t: t, ctx: ctx, store: store, pool: store.Pool(), cmd: cmd, clock: clk, keys: keys, logs: logs}
}

// runner returns a Runner with test-sized intervals.
func (e *env) runner(projections []Projection, mutate ...func(*Config)) *Runner {
	e.t.Helper()
	cfg := Config{
		Store: e.store, Pool: e.pool, Projections: projections,
		Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Retry:  RetryConfig{MaxAttempts: 3, InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond},
		Feed: FeedConfig{LockPollInterval: 50 * time.Millisecond, RedeliveryDelay: 10 * time.Millisecond,
			ResubscribeDelay: 50 * time.Millisecond},
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
// still commit).
func (e *env) lastAppended() eventstore.Position {
	e.t.Helper()
	var c, p int64
	err := e.pool.QueryRow(e.ctx, `SELECT tx_id::text::bigint, seq FROM events ORDER BY tx_id DESC, seq DESC LIMIT 1`).Scan(&c, &p)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Start
	}
	e.must(err)
	return posFromDB(c, p)
}

// waitVisible polls until the feed shows every event appended so far.
func (e *env) waitVisible() eventstore.Position {
	e.t.Helper()
	want := e.lastAppended()
	deadline := time.Now().Add(60 * time.Second)
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

// waitCaughtUp polls until every named consumer's checkpoint is the last appended event.
func (e *env) waitCaughtUp(names ...string) {
	e.t.Helper()
	target := e.lastAppended()
	deadline := time.Now().Add(60 * time.Second)
	for {
		behind := []string{}
		for _, n := range names {
			cp, err := readCheckpoint(e.ctx, e.pool, n)
			if err != nil {
				e.t.Fatal(err)
			}
			if cp != target {
				behind = append(behind, fmt.Sprintf("%s at %s", n, cp))
			}
		}
		if len(behind) == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("consumers did not reach %s: %s\nlogs:\n%s", target, strings.Join(behind, ", "), e.logs.String())
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

// dumpTable returns every row of table (a sanitized, possibly qualified name) as JSON text,
// sorted: two tables with equal dumps hold the same rows.
func (e *env) dumpTable(table string) []string {
	e.t.Helper()
	rows, err := e.pool.Query(e.ctx, `SELECT row_to_json(t)::text AS j FROM `+table+` t ORDER BY j`)
	if err != nil {
		e.t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// dumps returns the dumps of every live table of models, by table name.
func (e *env) dumps(models []ReadModel) map[string][]string {
	e.t.Helper()
	out := map[string][]string{}
	for _, m := range models {
		for _, table := range m.Tables() {
			out[table] = e.dumpTable(pgx.Identifier{table}.Sanitize())
		}
	}
	return out
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
	if len(sh.parked) > 0 {
		e.t.Fatalf("fresh rebuild parked %d events: first %s", len(sh.parked), sh.parked[0].cause)
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
// twice, the duplicate would fail every retry and end up parked.
type strictLog struct{}

func (strictLog) Name() string     { return "strict_log" }
func (strictLog) Tables() []string { return []string{"strict_log"} }
func (strictLog) Apply(ctx context.Context, tx pgx.Tx, e Envelope) error {
	_, err := tx.Exec(ctx, `INSERT INTO strict_log (event_id, type, stream, revision) VALUES ($1, $2, $3, $4)`,
		e.Record.ID, e.Record.Type, e.Record.Stream, int64(e.Record.Revision))
	return err
}

func (e *env) createStrictLog() {
	e.t.Helper()
	_, err := e.pool.Exec(e.ctx, `CREATE TABLE strict_log (event_id uuid PRIMARY KEY, type text NOT NULL,
		stream text NOT NULL, revision bigint NOT NULL)`)
	e.must(err)
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

// allEvents is the whole feed.
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
