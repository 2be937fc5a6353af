package reset

import (
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// A claim is four statements: BEGIN, the SELECT … FOR UPDATE SKIP LOCKED, the DELETE of
// the decided rows, COMMIT. watermill-sql sends them one at a time, four round trips
// per batch, each a wake-up of serve and PostgreSQL. pipelinedBeginner's transactions
// send BEGIN in one batch with the SELECT, and hold the statements executed after it
// (the DELETE) to send them in one batch with the COMMIT: two round trips. Nothing a
// claim reads depends on them: watermill-sql only logs what the DELETE reports.

const beginClaim = "BEGIN ISOLATION LEVEL READ COMMITTED"

// pipelinedBeginner begins claim transactions on connections of pool.
type pipelinedBeginner struct {
	pool *pgxpool.Pool
}

var _ wsql.Beginner = pipelinedBeginner{}

// BeginTx takes a connection and sends nothing yet. Only the claims' READ COMMITTED,
// read-write transactions are supported (queueSchema.SubscribeIsolationLevel).
func (b pipelinedBeginner) BeginTx(ctx context.Context, opts *stdsql.TxOptions) (wsql.Tx, error) {
	if opts == nil || opts.Isolation != stdsql.LevelReadCommitted || opts.ReadOnly {
		return nil, fmt.Errorf("reset: claim transactions are READ COMMITTED and read-write, not %+v", opts)
	}
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("reset: claim: %w", err)
	}
	return &claimTx{conn: conn, ctx: ctx}, nil
}

func (b pipelinedBeginner) ExecContext(ctx context.Context, query string, args ...any) (wsql.Result, error) {
	tag, err := b.pool.Exec(ctx, query, args...)
	return execResult{tag}, err
}

func (b pipelinedBeginner) QueryContext(ctx context.Context, query string, args ...any) (wsql.Rows, error) {
	rows, err := b.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return &batchRows{Rows: rows}, nil
}

// claimTx is one claim transaction: begun lazily, its executed statements held back
// until the next query or the commit.
type claimTx struct {
	conn    *pgxpool.Conn
	ctx     context.Context
	begun   bool        // BEGIN has been sent
	held    []heldQuery // executed, not yet sent
	open    *batchRows  // the rows of the last query, until read or closed
	settled bool        // committed or rolled back: the connection is back in the pool
}

type heldQuery struct {
	sql  string
	args []any
}

// ExecContext holds the statement: it goes with the next query or the COMMIT, whose error
// is then its error. What it affected is not known before.
func (t *claimTx) ExecContext(_ context.Context, query string, args ...any) (wsql.Result, error) {
	if t.settled {
		return nil, stdsql.ErrTxDone
	}
	t.held = append(t.held, heldQuery{query, args})
	return heldResult{}, nil
}

// QueryContext sends, in one batch, BEGIN if not sent yet, the statements held, and query.
func (t *claimTx) QueryContext(ctx context.Context, query string, args ...any) (wsql.Rows, error) {
	if t.settled {
		return nil, stdsql.ErrTxDone
	}
	if err := t.closeRows(); err != nil {
		return nil, err
	}
	b := t.batch()
	b.Queue(query, args...)
	br := t.conn.SendBatch(ctx, b)
	for range b.Len() - 1 {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return nil, err
		}
	}
	rows, err := br.Query()
	if err != nil {
		_ = br.Close()
		return nil, err
	}
	t.open = &batchRows{Rows: rows, br: br}
	return t.open, nil
}

// batch starts a batch with BEGIN (the first time) and the statements held.
func (t *claimTx) batch() *pgx.Batch {
	b := &pgx.Batch{}
	if !t.begun {
		b.Queue(beginClaim)
		t.begun = true
	}
	for _, h := range t.held {
		b.Queue(h.sql, h.args...)
	}
	t.held = nil
	return b
}

// Commit sends the statements held and COMMIT in one batch. A claim that sent nothing
// has nothing to commit.
func (t *claimTx) Commit() error {
	if t.settled {
		return stdsql.ErrTxDone
	}
	defer t.release()
	if err := t.closeRows(); err != nil {
		return err
	}
	if !t.begun && len(t.held) == 0 {
		return nil
	}
	b := t.batch()
	b.Queue("COMMIT")
	br := t.conn.SendBatch(t.ctx, b)
	var err error
	for range b.Len() {
		var tag pgconn.CommandTag
		if tag, err = br.Exec(); err != nil {
			break
		}
		if tag.String() == "ROLLBACK" { // COMMIT of a failed transaction
			err = pgx.ErrTxCommitRollback
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}

// Rollback ends the transaction, dropping what was held.
func (t *claimTx) Rollback() error {
	if t.settled {
		return stdsql.ErrTxDone
	}
	defer t.release()
	_ = t.closeRows()
	return nil // release rolls back whatever was begun
}

// closeRows closes the last query's rows and its batch, so the connection can take more.
func (t *claimTx) closeRows() error {
	if t.open == nil {
		return nil
	}
	err := t.open.Close()
	t.open = nil
	return err
}

// release gives the connection back, rolling back a transaction left open (a failed
// statement, a rollback); if that fails too, pgxpool closes the connection.
func (t *claimTx) release() {
	t.settled = true
	if t.conn.Conn().PgConn().TxStatus() != 'I' {
		_, _ = t.conn.Exec(context.WithoutCancel(t.ctx), "ROLLBACK")
	}
	t.conn.Release()
}

// batchRows are a query's rows, with the batch they came in: read to the end or closed,
// both are done with.
type batchRows struct {
	pgx.Rows
	br  pgx.BatchResults // nil for a query sent alone
	err error
}

func (r *batchRows) Next() bool {
	if r.Rows == nil {
		return false
	}
	if r.Rows.Next() {
		return true
	}
	_ = r.Close()
	return false
}

func (r *batchRows) Close() error {
	if r.Rows == nil {
		return r.err
	}
	r.Rows.Close()
	r.err = r.Rows.Err()
	if r.br != nil {
		if err := r.br.Close(); r.err == nil {
			r.err = err
		}
	}
	r.Rows = nil
	return r.err
}

func (r *batchRows) Scan(dest ...any) error {
	if r.Rows == nil {
		return errors.New("reset: scan of closed rows")
	}
	return r.Rows.Scan(dest...)
}

type execResult struct{ tag pgconn.CommandTag }

func (r execResult) RowsAffected() (int64, error) { return r.tag.RowsAffected(), nil }

// heldResult answers for a statement not yet sent.
type heldResult struct{}

var errHeld = errors.New("reset: the statement is sent with the commit; what it affected is not known before")

func (heldResult) RowsAffected() (int64, error) { return 0, errHeld }
