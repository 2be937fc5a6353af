package testkit

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Trips counts what a pool's connections send: statements one at a time (Exec, Query,
// QueryRow) and pipelined batches, each a round trip to PostgreSQL. Set it as the pool's
// tracer (TracedPool).
type Trips struct {
	// Keep, when set, says whether a statement (its SQL), a batch (sql "") or a statement
	// queued in a batch (its SQL) sent on conn counts. It runs under the counter's lock,
	// so it may keep state of its own.
	Keep func(conn *pgx.Conn, sql string) bool

	mu                          sync.Mutex
	statements, batches, queued int
}

func (t *Trips) count(conn *pgx.Conn, sql string, n *int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.Keep == nil || t.Keep(conn, sql) {
		*n++
	}
}

// TraceQueryStart implements pgx.QueryTracer.
func (t *Trips) TraceQueryStart(ctx context.Context, conn *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	t.count(conn, d.SQL, &t.statements)
	return ctx
}

// TraceQueryEnd implements pgx.QueryTracer.
func (*Trips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TraceBatchStart implements pgx.BatchTracer.
func (t *Trips) TraceBatchStart(ctx context.Context, conn *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	t.count(conn, "", &t.batches)
	for _, q := range d.Batch.QueuedQueries {
		t.count(conn, q.SQL, &t.queued)
	}
	return ctx
}

// TraceBatchQuery implements pgx.BatchTracer.
func (*Trips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

// TraceBatchEnd implements pgx.BatchTracer.
func (*Trips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// Take returns the counts since the last Take and starts afresh.
func (t *Trips) Take() (statements, batches int) {
	statements, batches, _ = t.TakeAll()
	return statements, batches
}

// TakeAll is Take with the statements queued in those batches.
func (t *Trips) TakeAll() (statements, batches, queued int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	statements, batches, queued = t.statements, t.batches, t.queued
	t.statements, t.batches, t.queued = 0, 0, 0
	return statements, batches, queued
}

// TracedPool opens a pool on pool's database with pool's settings, changed by opts, and
// tracer on every connection; it is closed when the test ends.
func TracedPool(t testing.TB, pool *pgxpool.Pool, tracer pgx.QueryTracer, opts ...func(*pgxpool.Config)) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Tracer = tracer
	for _, o := range opts {
		o(cfg)
	}
	traced, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(traced.Close)
	return traced
}
