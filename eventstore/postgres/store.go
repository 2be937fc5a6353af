// Package postgres implements the event store port on PostgreSQL (15 or later) with pgx.
//
// # Global order
//
// A bigserial is assigned when a row is inserted, but transactions commit in another
// order: a reader that resumed after seq N could miss an event with a smaller seq whose
// transaction committed later. So every row also records the id of the transaction that
// wrote it (tx_id, xid8), the feed is ordered by (tx_id, seq), and readers only see rows
// with tx_id below the xmin of their snapshot. Every transaction below xmin has ended, and
// any transaction that has not yet taken an id will get one above xmin, so once a reader has
// passed a position nothing can later appear before it. Position carries (tx_id, seq) as
// (Commit, Prepare).
//
// Within a stream the feed order must also be the revision order, so an append takes the
// stream's advisory lock as the very first statement of its transaction. Advisory locks do
// not assign a transaction id; the id is assigned by the first insert, after the previous
// writer of the stream has committed, and so is larger than that writer's id.
//
// Caveat: a transaction that has an id holds the feed back until it ends, whatever it does
// and in whichever database of the cluster it runs (ids are cluster-wide). Appends are
// short; keep every other transaction on the server short too, or subscribers stall behind
// it (they resume, losing nothing, when it ends).
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"selfreset/eventstore"
)

// notifyChannel is the channel appends notify on commit, so that subscribers wake up
// without waiting for their next poll. Notifications are per database.
const notifyChannel = "eventstore_events"

const (
	defaultPollInterval = 500 * time.Millisecond
	defaultPageSize     = 256
)

// Option configures a Store.
type Option func(*config)

type config struct {
	pollInterval time.Duration
	pageSize     int
}

// WithPollInterval sets how often a subscription looks for new events when no
// notification arrives (default 500ms). Notifications can be lost when the listening
// connection drops, so polling is the fallback, never the only mechanism.
func WithPollInterval(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.pollInterval = d
		}
	}
}

// WithPageSize sets how many events a subscription reads per query (default 256).
func WithPageSize(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.pageSize = n
		}
	}
}

// Store is the PostgreSQL event store. It is safe for concurrent use.
type Store struct {
	pool     *pgxpool.Pool
	ownsPool bool
	cfg      config
}

var _ eventstore.Store = (*Store)(nil)

// Open connects a new pool to databaseURL and checks that the server answers. It does not
// create the schema: call Migrate (or `selfreset migrate`) for that.
func Open(ctx context.Context, databaseURL string, opts ...Option) (*Store, error) {
	pool, err := pgxpool.New(ctx, databaseURL)
	if err != nil {
		return nil, fmt.Errorf("eventstore/postgres: open: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("eventstore/postgres: open: %w", err)
	}
	s := New(pool, opts...)
	s.ownsPool = true
	return s, nil
}

// New returns a store on an existing pool. The caller keeps ownership of the pool:
// Close does not close it.
func New(pool *pgxpool.Pool, opts ...Option) *Store {
	cfg := config{pollInterval: defaultPollInterval, pageSize: defaultPageSize}
	for _, o := range opts {
		o(&cfg)
	}
	return &Store{pool: pool, cfg: cfg}
}

// Pool returns the store's pool, for packages that keep their own tables in the same
// database (read models, checkpoints).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close closes the pool if Open created it.
func (s *Store) Close() {
	if s.ownsPool {
		s.pool.Close()
	}
}

// Append implements eventstore.Store.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	if err := validate(stream, events); err != nil {
		return eventstore.AppendResult{}, err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("eventstore/postgres: append to %q: %w", stream, err)
	}
	defer func() { _ = tx.Rollback(ctx) }() // no-op after Commit
	res, err := appendTx(ctx, tx, stream, expected, events)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return eventstore.AppendResult{}, wrapErr("append to "+quote(stream)+": commit", err)
	}
	return res, nil
}

func validate(stream string, events []eventstore.EventData) error {
	if stream == "" {
		return errors.New("eventstore/postgres: append: empty stream name")
	}
	seen := make(map[uuid.UUID]bool, len(events))
	for i, e := range events {
		switch {
		case e.ID == uuid.Nil:
			return fmt.Errorf("eventstore/postgres: append to %q: event %d has no id", stream, i)
		case e.Type == "":
			return fmt.Errorf("eventstore/postgres: append to %q: event %d has no type", stream, i)
		case seen[e.ID]:
			return fmt.Errorf("eventstore/postgres: append to %q: event id %s appears twice in one append", stream, e.ID)
		case len(e.Data) > 0 && !json.Valid(e.Data):
			return fmt.Errorf("eventstore/postgres: append to %q: event %d (%s): data is not valid JSON", stream, i, e.Type)
		}
		seen[e.ID] = true
	}
	return nil
}

// appendTx does the work of Append inside tx, which must not have written anything yet
// (it must not have a transaction id before the stream lock is held).
func appendTx(ctx context.Context, tx pgx.Tx, stream string, expected eventstore.ExpectedRevision, events []eventstore.EventData) (eventstore.AppendResult, error) {
	what := "append to " + quote(stream)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, stream); err != nil {
		return eventstore.AppendResult{}, wrapErr(what+": lock stream", err)
	}
	// Read under the lock, in a fresh statement snapshot: the previous writer has committed.
	var current int64
	exists := true
	err := tx.QueryRow(ctx, `SELECT revision FROM streams WHERE stream = $1`, stream).Scan(&current)
	if errors.Is(err, pgx.ErrNoRows) {
		exists = false
	} else if err != nil {
		return eventstore.AppendResult{}, wrapErr(what+": read revision", err)
	}

	// Idempotency: events already in the stream are skipped; if all are, the append is a
	// retry of one that succeeded and answers as it did.
	if exists && len(events) > 0 {
		stored, last, err := storedEvents(ctx, tx, stream, events)
		if err != nil {
			return eventstore.AppendResult{}, wrapErr(what+": check event ids", err)
		}
		if len(stored) == len(events) {
			return last, nil
		}
		if len(stored) > 0 {
			fresh := make([]eventstore.EventData, 0, len(events)-len(stored))
			for _, e := range events {
				if !stored[e.ID] {
					fresh = append(fresh, e)
				}
			}
			events = fresh
		}
	}

	if !expected.Check(uint64(current), exists) {
		state := "no stream"
		if exists {
			state = fmt.Sprintf("revision %d", current)
		}
		return eventstore.AppendResult{}, fmt.Errorf("eventstore/postgres: %s: expected %s, stream is at %s: %w", what, expected, state, eventstore.ErrConflict)
	}
	if len(events) == 0 {
		return eventstore.AppendResult{NextRevision: uint64(current)}, nil // Position unknown: nothing written
	}

	next := int64(-1)
	if exists {
		next = current
	}
	// One statement per event so that seq follows revision order within the append.
	batch := &pgx.Batch{}
	for _, e := range events {
		next++
		data := e.Data
		if len(data) == 0 {
			data = json.RawMessage("null")
		}
		batch.Queue(`INSERT INTO events (event_id, type, schema_version, stream, revision, occurred_at, data, metadata)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING tx_id, seq`,
			e.ID, e.Type, e.SchemaVersion, stream, next, e.OccurredAt, data, e.Metadata)
	}
	batch.Queue(`INSERT INTO streams (stream, revision) VALUES ($1, $2)
		ON CONFLICT (stream) DO UPDATE SET revision = EXCLUDED.revision`, stream, next)
	// The payload is the position of the last event, so a subscriber knows what to wait for.
	batch.Queue(`SELECT pg_notify($1, pg_current_xact_id()::text || '/' || currval(pg_get_serial_sequence('events', 'seq'))::text)`, notifyChannel)

	br := tx.SendBatch(ctx, batch)
	var txID uint64
	var seq int64
	for range events {
		if err := br.QueryRow().Scan(&txID, &seq); err != nil {
			_ = br.Close()
			return eventstore.AppendResult{}, wrapErr(what+": insert", err)
		}
	}
	if err := br.Close(); err != nil {
		return eventstore.AppendResult{}, wrapErr(what, err)
	}
	return eventstore.AppendResult{
		NextRevision: uint64(next),
		Position:     eventstore.Position{Commit: txID, Prepare: uint64(seq)},
	}, nil
}

// storedEvents reports which of events are already in stream, and the append result of
// the latest of them.
func storedEvents(ctx context.Context, tx pgx.Tx, stream string, events []eventstore.EventData) (map[uuid.UUID]bool, eventstore.AppendResult, error) {
	ids := make([]uuid.UUID, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	rows, err := tx.Query(ctx, `SELECT event_id, revision, tx_id, seq FROM events
		WHERE stream = $1 AND event_id = ANY($2) ORDER BY revision`, stream, ids)
	if err != nil {
		return nil, eventstore.AppendResult{}, err
	}
	stored := map[uuid.UUID]bool{}
	var last eventstore.AppendResult
	var (
		id       uuid.UUID
		rev, seq int64
		txID     uint64
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &rev, &txID, &seq}, func() error {
		stored[id] = true
		last = eventstore.AppendResult{NextRevision: uint64(rev), Position: eventstore.Position{Commit: txID, Prepare: uint64(seq)}}
		return nil
	})
	return stored, last, err
}

const eventColumns = `event_id, type, schema_version, stream, revision, tx_id, seq, occurred_at, data, metadata`

func scanEvent(row pgx.CollectableRow) (eventstore.RecordedEvent, error) {
	var (
		e        eventstore.RecordedEvent
		rev, seq int64
		txID     uint64
		data     []byte
		meta     []byte
	)
	if err := row.Scan(&e.ID, &e.Type, &e.SchemaVersion, &e.Stream, &rev, &txID, &seq, &e.OccurredAt, &data, &meta); err != nil {
		return e, err
	}
	if err := json.Unmarshal(meta, &e.Metadata); err != nil {
		return e, fmt.Errorf("event %s: metadata: %w", e.ID, err)
	}
	e.Revision = uint64(rev)
	e.Position = eventstore.Position{Commit: txID, Prepare: uint64(seq)}
	e.OccurredAt = e.OccurredAt.UTC()
	e.Data = json.RawMessage(data)
	return e, nil
}

// ReadStream implements eventstore.Store. Stream reads are not held back by the feed's
// watermark: a stream's committed events are read as soon as they are committed.
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64) ([]eventstore.RecordedEvent, error) {
	events, err := s.readStream(ctx, stream, from)
	if err != nil || len(events) > 0 {
		return events, err
	}
	// Nothing read: the stream is missing, or ends before from, or was created since the
	// read began. Each statement has its own snapshot, so look at the stream row first and
	// then read again: a stream row seen implies its events are visible to the next read.
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM streams WHERE stream = $1)`, stream).Scan(&exists); err != nil {
		return nil, wrapErr("read stream "+quote(stream), err)
	}
	if !exists {
		return nil, fmt.Errorf("eventstore/postgres: read stream %q: %w", stream, eventstore.ErrStreamNotFound)
	}
	return s.readStream(ctx, stream, from)
}

func (s *Store) readStream(ctx context.Context, stream string, from uint64) ([]eventstore.RecordedEvent, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+eventColumns+` FROM events
		WHERE stream = $1 AND revision >= $2 ORDER BY revision`, stream, clampInt64(from))
	if err != nil {
		return nil, wrapErr("read stream "+quote(stream), err)
	}
	events, err := pgx.CollectRows(rows, scanEvent)
	if err != nil {
		return nil, wrapErr("read stream "+quote(stream), err)
	}
	return events, nil
}

// ReadAll implements eventstore.Store. It reads only rows of transactions below the
// snapshot's xmin (see the package comment), so an event committed by a transaction that
// started before the newest one read shows up in a later call, never before a position
// already returned.
func (s *Store) ReadAll(ctx context.Context, after eventstore.Position, limit int) ([]eventstore.RecordedEvent, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("eventstore/postgres: read all: limit %d is not positive", limit)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+eventColumns+` FROM events
		WHERE (tx_id, seq) > ($1::xid8, $2::bigint)
		  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
		ORDER BY tx_id, seq
		LIMIT $3`, after.Commit, clampInt64(after.Prepare), limit)
	if err != nil {
		return nil, wrapErr("read all", err)
	}
	events, err := pgx.CollectRows(rows, scanEvent)
	if err != nil {
		return nil, wrapErr("read all", err)
	}
	return events, nil
}

// Head implements eventstore.Store: the last position ReadAll can currently reach.
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	var txID uint64
	var seq int64
	err := s.pool.QueryRow(ctx, `SELECT tx_id, seq FROM events
		WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())
		ORDER BY tx_id DESC, seq DESC LIMIT 1`).Scan(&txID, &seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Start, nil
	}
	if err != nil {
		return eventstore.Start, wrapErr("head", err)
	}
	return eventstore.Position{Commit: txID, Prepare: uint64(seq)}, nil
}

// wrapErr prefixes err and makes a unique violation an ErrConflict: the stream lock makes
// one impossible between appenders, so one means a racing writer that bypassed it, or an
// event id already used in another stream.
func wrapErr(what string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return fmt.Errorf("eventstore/postgres: %s: %s: %w (%w)", what, pgErr.ConstraintName, eventstore.ErrConflict, err)
	}
	return fmt.Errorf("eventstore/postgres: %s: %w", what, err)
}

func quote(s string) string { return fmt.Sprintf("%q", s) }

func clampInt64(v uint64) int64 {
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}
