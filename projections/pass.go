package projections

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"selfreset/eventstore"
)

// sqlMoveCheckpoint moves a checkpoint from where the session left it or fails the
// transaction with checkpointMovedCode (migrations/0008_checkpoint_move.up.sql).
const sqlMoveCheckpoint = `SELECT projection_checkpoint_move($1, $2, $3, $4, $5)`

// checkpointMovedCode is the SQLSTATE projection_checkpoint_move raises.
const checkpointMovedCode = "SR409"

// cursor is where a session believes its consumer's checkpoint is: where it read it at
// the start, then wherever its own commits moved it. Only a rebuild moves it behind the
// session's back, and the move's compare-and-set catches that.
type cursor struct {
	pos   eventstore.Position
	known bool
}

// pipelined reports whether the Runner may pipeline p's writes (ReadModel, WriteOnly).
func pipelined(p Projection) bool {
	switch p.(type) {
	case ReadModel, WriteOnly:
		return true
	}
	return false
}

// applyPipelined is one pass over envs in a single round trip for a consumer whose writes
// are pipelined and whose session knows its checkpoint (from): BEGIN, the checkpoint's
// move from there, the writes and COMMIT go out as one batch; an Apply that reads sends
// what is queued first. The locking path (lockCheckpoint, the compare-and-set) cost five
// round trips a pass for each of the five consumers. It returns the new checkpoint, or
// errCheckpointMoved when the checkpoint was not at from (nothing was written then); any
// other error is processBatch's answer, as the locking path gives it.
func (r *Runner) applyPipelined(ctx context.Context, conn *pgx.Conn, p Projection, from eventstore.Position, envs []Envelope) (eventstore.Position, string, error) {
	name := p.Name()
	to := envs[len(envs)-1].Record.Position // the feed delivers in order
	if !from.Less(to) {
		return from, "", nil // nothing after the checkpoint (the feed starts past it)
	}
	parts := []passPart{{p: p, from: from}}
	if _, tried, err := r.pipelinedPass(ctx, conn, parts, envs); err != nil {
		if err = movedOr(err, name, from); errors.Is(err, errCheckpointMoved) {
			return from, "", err
		}
		tried, err = batchFailed(ctx, conn, name, tried, err)
		return from, tried, err
	}
	return to, "", nil
}

// passPart is one consumer's share of a pipelined pass: from is where its checkpoint is,
// and applied what the pass applied to it.
type passPart struct {
	p       Projection
	from    eventstore.Position
	applied []Envelope
}

// pipelinedPass applies envs to each of parts in one transaction on conn, sent in one
// round trip unless an Apply reads: BEGIN, then for each part its checkpoint's move from
// part.from to the last of envs (the compare-and-set fails the transaction if the
// checkpoint was elsewhere) and its writes, then COMMIT. conn is a session's (lockConnect),
// whose search_path has the read-model schema first already. On failure nothing is
// written; failed is the index of the part whose Apply failed (at the event tried), or -1.
func (r *Runner) pipelinedPass(ctx context.Context, conn *pgx.Conn, parts []passPart, envs []Envelope) (failed int, tried string, err error) {
	tc, tp, err := dbPos(envs[len(envs)-1].Record.Position)
	if err != nil {
		return -1, "", err
	}
	defer func() {
		if conn.PgConn().TxStatus() != 'I' {
			_, _ = conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	tx := &pipelinedTx{Tx: connTx{conn}}
	tx.queued.Queue("BEGIN")
	for i := range parts {
		part := &parts[i]
		fc, fp, err := dbPos(part.from)
		if err != nil {
			return -1, "", err
		}
		tx.queued.Queue(sqlMoveCheckpoint, part.p.Name(), fc, fp, tc, tp)
		if part.applied, tried, err = r.applyPart(ctx, tx, part.p, part.from, envs); err != nil {
			return i, tried, err
		}
	}
	for _, part := range parts {
		if err := r.beforeCommit(part.p.Name(), part.applied); err != nil {
			return -1, "", err
		}
	}
	tx.queued.Queue("COMMIT")
	if err := tx.flush(ctx); err != nil {
		return -1, "", err
	}
	for _, part := range parts {
		r.afterCommit(part.p.Name(), part.applied)
	}
	return -1, "", nil
}

// batchApplier is a ReadModel whose live pass writes its events together: the fact
// tables insert a pass's rows in one statement per table instead of one per event.
// ApplyBatch must leave the tables as Apply on each event in order would, and like Apply
// change nothing when applied again. A pass that fails is applied event by event.
type batchApplier interface {
	ApplyBatch(ctx context.Context, tx pgx.Tx, events []Envelope) error
}

// applyPart applies to p, in tx, the events of envs after from: with ApplyBatch when p
// has it (tried is then empty: no one event had its attempt), else as applyEach does.
func (r *Runner) applyPart(ctx context.Context, tx pgx.Tx, p Projection, from eventstore.Position, envs []Envelope) (applied []Envelope, tried string, err error) {
	ba, ok := p.(batchApplier)
	if !ok {
		return r.applyEach(ctx, tx, p, from, envs)
	}
	defer recoverApply(&err)
	applied = r.pastCheckpoint(p, from, envs)
	if len(applied) == 0 {
		return nil, "", nil
	}
	if err := ba.ApplyBatch(ctx, tx, applied); err != nil {
		first, last := applied[0].Record, applied[len(applied)-1].Record
		return nil, "", fmt.Errorf("apply %d events (%s at %s to %s at %s): %w", len(applied), first.ID, first.Position, last.ID, last.Position, err)
	}
	return applied, "", nil
}

// movedOr turns projection_checkpoint_move's failure into errCheckpointMoved.
func movedOr(err error, consumer string, from eventstore.Position) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == checkpointMovedCode {
		return fmt.Errorf("%w (consumer %s, expected %s)", errCheckpointMoved, consumer, from)
	}
	return err
}

// connTx is the pgx.Tx a pipelinedTx writes through when the batch itself begins and
// commits the transaction (applyPipelined): its statements go straight to the
// connection.
type connTx struct{ c *pgx.Conn }

var _ pgx.Tx = connTx{}

// errNoSavepoints: Apply in a pipelined pass cannot open a nested transaction.
var errNoSavepoints = errors.New("projections: no savepoints in a pipelined consumer pass")

func (t connTx) Begin(context.Context) (pgx.Tx, error) { return nil, errNoSavepoints }

func (t connTx) Commit(ctx context.Context) error {
	tag, err := t.c.Exec(ctx, "COMMIT")
	if err == nil && tag.String() == "ROLLBACK" {
		return pgx.ErrTxCommitRollback
	}
	return err
}

func (t connTx) Rollback(ctx context.Context) error {
	if t.c.PgConn().TxStatus() == 'I' {
		return nil
	}
	_, err := t.c.Exec(ctx, "ROLLBACK")
	return err
}

func (t connTx) CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	return t.c.CopyFrom(ctx, table, cols, src)
}

func (t connTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	return t.c.SendBatch(ctx, b)
}

// LargeObjects is not offered: no projection stores large objects.
func (t connTx) LargeObjects() pgx.LargeObjects {
	panic("projections: no large objects in a pipelined consumer pass")
}

func (t connTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	return t.c.Prepare(ctx, name, sql)
}

func (t connTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return t.c.Exec(ctx, sql, args...)
}

func (t connTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return t.c.Query(ctx, sql, args...)
}

func (t connTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return t.c.QueryRow(ctx, sql, args...)
}

func (t connTx) Conn() *pgx.Conn { return t.c }
