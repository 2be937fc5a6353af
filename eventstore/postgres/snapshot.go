package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"selfreset/eventstore"
)

var _ eventstore.SnapshotStore = (*Store)(nil)

// ReadSnapshot implements eventstore.SnapshotStore.
func (s *Store) ReadSnapshot(ctx context.Context, stream string) (eventstore.Snapshot, error) {
	var (
		snap eventstore.Snapshot
		rev  int64
		data []byte
	)
	err := s.pool.QueryRow(ctx, `SELECT revision, schema, data FROM snapshots WHERE stream = $1`, stream).Scan(&rev, &snap.Schema, &data)
	if errors.Is(err, pgx.ErrNoRows) {
		return snap, fmt.Errorf("eventstore/postgres: read snapshot of %q: %w", stream, eventstore.ErrSnapshotNotFound)
	}
	if err != nil {
		return snap, wrapErr("read snapshot of "+quote(stream), err)
	}
	snap.Revision, snap.Data = uint64(rev), json.RawMessage(data)
	return snap, nil
}

// WriteSnapshot implements eventstore.SnapshotStore: one upsert that keeps the row with
// the later revision, so racing writers need no lock and never move a snapshot back.
func (s *Store) WriteSnapshot(ctx context.Context, stream string, snap eventstore.Snapshot) error {
	if err := eventstore.ValidateSnapshot(stream, snap); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO snapshots (stream, revision, schema, data) VALUES ($1, $2, $3, $4)
		ON CONFLICT (stream) DO UPDATE SET revision = EXCLUDED.revision, schema = EXCLUDED.schema,
			data = EXCLUDED.data, taken_at = now()
		WHERE snapshots.revision <= EXCLUDED.revision`,
		stream, clampInt64(snap.Revision), snap.Schema, []byte(snap.Data))
	if err != nil {
		return wrapErr("write snapshot of "+quote(stream), err)
	}
	return nil
}
