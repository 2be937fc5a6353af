package projections

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// pipelineMax bounds how many statements a pipelinedTx holds before it sends them.
const pipelineMax = 1000

// errPipelined marks the failure of a statement an earlier Exec queued.
var errPipelined = errors.New("pipelined statement failed")

// pipelinedTx is a pgx.Tx whose Exec calls are queued and sent to the server together
// (one round trip per pipelineMax statements instead of one each): applying a batch of
// events costs about as many round trips as the reads the models make. Anything that
// reads (Query, QueryRow, a savepoint, a copy) first sends what is queued, so the models
// see their own writes. Exec returns an empty command tag and no error; a failed
// statement surfaces at the next flush, which the caller must call before committing. It
// is only for ReadModels and WriteOnly projections, whose contract says Apply ignores
// command tags.
type pipelinedTx struct {
	pgx.Tx
	queued pgx.Batch
}

var _ pgx.Tx = (*pipelinedTx)(nil)

func (t *pipelinedTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	t.queued.Queue(sql, args...)
	if t.queued.Len() >= pipelineMax {
		return pgconn.CommandTag{}, t.flush(ctx)
	}
	return pgconn.CommandTag{}, nil
}

// flush sends the queued statements and returns the first error among them.
func (t *pipelinedTx) flush(ctx context.Context) error {
	n := t.queued.Len()
	if n == 0 {
		return nil
	}
	b := t.queued
	t.queued = pgx.Batch{}
	br := t.Tx.SendBatch(ctx, &b)
	var first error
	for range n {
		if _, err := br.Exec(); err != nil && first == nil {
			first = err
		}
	}
	if err := br.Close(); err != nil && first == nil {
		first = err
	}
	if first != nil {
		return fmt.Errorf("%w: %w", errPipelined, first)
	}
	return nil
}

func (t *pipelinedTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	return t.Tx.Query(ctx, sql, args...)
}

func (t *pipelinedTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := t.flush(ctx); err != nil {
		return errRow{err}
	}
	return t.Tx.QueryRow(ctx, sql, args...)
}

func (t *pipelinedTx) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	return t.Tx.Begin(ctx)
}

func (t *pipelinedTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if err := t.flush(ctx); err != nil {
		return errBatch{err}
	}
	return t.Tx.SendBatch(ctx, b)
}

func (t *pipelinedTx) CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	if err := t.flush(ctx); err != nil {
		return 0, err
	}
	return t.Tx.CopyFrom(ctx, table, cols, src)
}

func (t *pipelinedTx) Commit(ctx context.Context) error {
	if err := t.flush(ctx); err != nil {
		return err
	}
	return t.Tx.Commit(ctx)
}

// errRow is a pgx.Row that failed before it was sent.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// errBatch is a pgx.BatchResults that failed before it was sent.
type errBatch struct{ err error }

func (b errBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, b.err }
func (b errBatch) Query() (pgx.Rows, error)         { return nil, b.err }
func (b errBatch) QueryRow() pgx.Row                { return errRow(b) }
func (b errBatch) Close() error                     { return b.err }
func (errBatch) Tx() pgx.Tx                         { return nil }
