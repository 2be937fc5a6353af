package projections

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"selfreset/eventstore"
)

// The runner's own statements (tables in migrations/0001_runner.up.sql).
const (
	sqlSelectCheckpoint = `SELECT commit, prepare FROM projection_checkpoints WHERE consumer = $1`
	sqlLockCheckpoint   = `SELECT commit, prepare FROM projection_checkpoints WHERE consumer = $1 FOR UPDATE`
	sqlCreateCheckpoint = `INSERT INTO projection_checkpoints (consumer, commit, prepare, updated_at)
		VALUES ($1, 0, 0, CURRENT_TIMESTAMP) ON CONFLICT (consumer) DO NOTHING`
	// Compare-and-set: only moves a checkpoint that is where the caller read it.
	sqlAdvanceCheckpoint = `UPDATE projection_checkpoints SET commit = $2, prepare = $3, updated_at = CURRENT_TIMESTAMP
		WHERE consumer = $1 AND commit = $4 AND prepare = $5`
	sqlInsertParked = `INSERT INTO parked_events
		(consumer, event_id, stream, revision, commit, prepare, event_type, error, attempts, parked_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CURRENT_TIMESTAMP)
		ON CONFLICT (consumer, event_id) DO NOTHING`
	sqlUnparkThrough = `DELETE FROM parked_events WHERE consumer = $1 AND (commit, prepare) <= ($2, $3)`
)

// errCheckpointMoved means the compare-and-set found the checkpoint elsewhere: someone
// moved it although the row was locked (a bug, or a manual edit). The transaction is
// rolled back and the event retried.
var errCheckpointMoved = errors.New("projections: checkpoint moved under a locked row")

// dbPos converts a feed position to the two bigint columns.
func dbPos(p eventstore.Position) (commit, prepare int64, err error) {
	if p.Commit > math.MaxInt64 || p.Prepare > math.MaxInt64 {
		return 0, 0, fmt.Errorf("projections: position %s does not fit in bigint columns", p)
	}
	return int64(p.Commit), int64(p.Prepare), nil
}

func posFromDB(commit, prepare int64) eventstore.Position {
	return eventstore.Position{Commit: uint64(max(commit, 0)), Prepare: uint64(max(prepare, 0))}
}

// queryRower is what both a pool and a transaction offer.
type queryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// readCheckpoint returns a consumer's checkpoint (Start when it has none yet).
func readCheckpoint(ctx context.Context, db queryRower, consumer string) (eventstore.Position, error) {
	var c, p int64
	err := db.QueryRow(ctx, sqlSelectCheckpoint, consumer).Scan(&c, &p)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Start, nil
	}
	if err != nil {
		return eventstore.Start, fmt.Errorf("projections: read checkpoint of %s: %w", consumer, err)
	}
	return posFromDB(c, p), nil
}

// lockCheckpoint locks a consumer's checkpoint row for the rest of tx, creating it at
// Start if missing, and returns the position it holds.
func lockCheckpoint(ctx context.Context, tx pgx.Tx, consumer string) (eventstore.Position, error) {
	for range 2 {
		var c, p int64
		err := tx.QueryRow(ctx, sqlLockCheckpoint, consumer).Scan(&c, &p)
		if err == nil {
			return posFromDB(c, p), nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return eventstore.Start, fmt.Errorf("projections: lock checkpoint of %s: %w", consumer, err)
		}
		if _, err := tx.Exec(ctx, sqlCreateCheckpoint, consumer); err != nil {
			return eventstore.Start, fmt.Errorf("projections: create checkpoint of %s: %w", consumer, err)
		}
	}
	return eventstore.Start, fmt.Errorf("projections: checkpoint of %s vanished", consumer)
}

// advanceCheckpoint moves a locked checkpoint from prev to next.
func advanceCheckpoint(ctx context.Context, tx pgx.Tx, consumer string, prev, next eventstore.Position) error {
	pc, pp, err := dbPos(prev)
	if err != nil {
		return err
	}
	nc, np, err := dbPos(next)
	if err != nil {
		return err
	}
	tag, err := tx.Exec(ctx, sqlAdvanceCheckpoint, consumer, nc, np, pc, pp)
	if err != nil {
		return fmt.Errorf("projections: advance checkpoint of %s: %w", consumer, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("%w (consumer %s, expected %s)", errCheckpointMoved, consumer, prev)
	}
	return nil
}

// ParkedEvent is an event a consumer gave up on.
type ParkedEvent struct {
	Consumer  string
	EventID   string
	Stream    string
	Revision  uint64
	Position  eventstore.Position
	EventType string
	Error     string
	Attempts  int
	ParkedAt  time.Time
}

func insertParked(ctx context.Context, tx pgx.Tx, consumer string, r eventstore.RecordedEvent, cause string, attempts int) error {
	c, p, err := dbPos(r.Position)
	if err != nil {
		return err
	}
	rev := int64(min(r.Revision, math.MaxInt64))
	if _, err := tx.Exec(ctx, sqlInsertParked, consumer, r.ID, r.Stream, rev, c, p, r.Type, cause, attempts); err != nil {
		return fmt.Errorf("projections: park event %s for %s: %w", r.ID, consumer, err)
	}
	return nil
}
