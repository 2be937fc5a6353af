// Package postgres implements the event store port on PostgreSQL (15 or later) with pgx.
//
// # Global order
//
// A bigserial is assigned when a row is inserted, but transactions commit in another
// order: a reader that resumed after seq N could miss an event with a smaller seq whose
// transaction committed later. So every row also records the id of the transaction that
// wrote it (tx_id, xid8), the feed is ordered by (tx_id, seq), and readers only see rows
// with tx_id below a watermark W under which no append can still commit (below). Position
// carries (tx_id, seq) as (Commit, Prepare).
//
// Within a stream the feed order must also be the revision order, so an append takes the
// stream's advisory lock as the very first statement of its transaction. Advisory locks do
// not assign a transaction id; the id is assigned by the first insert, after the previous
// writer of the stream has committed, and so is larger than that writer's id.
//
// # Watermark
//
// The snapshot's xmin would do as W, but it is cluster-wide: any transaction with an id, in
// any database and whatever it does, would hold every reader back until it ended. W waits
// only for appends to this database. The stream lock is a two-key advisory lock of class
// streamLockClass, which pg_locks shows with the database it was taken in, and every
// transaction with an id holds an ExclusiveLock on that id. One statement, whose snapshot S
// is taken before it reads pg_locks, computes
//
//	W = least(xmax(S), the smallest id in xip(S) that may still be an append)
//
// An id in xip(S) may still be an append if pg_locks shows its lock held by a transaction
// that holds a stream lock in this database, or if pg_locks does not show its lock at all
// while some transaction holds a stream lock here without pg_locks showing an id lock for
// it. The rows are read by later statements, with later snapshots.
//
// Why no append T with id x < W can commit after such a read: x < xmax(S), so either T had
// ended at S, or x is in xip(S) and did not count. T takes its stream lock before it gets
// an id and keeps it to the end, and pg_locks is one consistent view of the lock table.
// If pg_locks showed x's lock, its holder held no stream lock, so T had released it
// already. If it did not, T, had it still been running, would have been a stream-lock
// holder with an id but no id lock shown, and there was none. Either way T had ended when
// pg_locks was read, and locks are released only once the commit is visible, so the read
// sees all of its rows (none if it rolled back). An append that had no id at S gets one at
// or above xmax(S), so at or above W.
//
// W errs low only while an append is between taking its stream lock and showing its id
// lock (it has no id yet, or has one and not yet its lock): then an id that S saw in
// progress and that ended before pg_locks was read counts, for that one read. Transactions
// that end between the two reads are common under load (every consumer's checkpoint is one),
// and without this second rule each of them held W below events already committed.
//
// So every writer of the events table must hold the stream lock from before it gets a
// transaction id until it ends: a script or migration that inserts events any other way
// could commit below a position a reader has already passed. On a hot standby pg_locks
// does not show the primary's locks, so there W falls back to the snapshot's xmin (and any
// transaction with an id on the primary holds readers of the standby back).
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/singleflight"

	"selfreset/eventstore"
	"selfreset/eventstore/chain"
	"selfreset/internal/pguuid"
)

// notifyChannel is the channel appends are announced on once committed (announcer), so
// that subscribers wake up without waiting for their next poll. Notifications are per
// database.
const notifyChannel = "eventstore_events"

// streamLockClass is the first key of every stream lock,
// pg_advisory_xact_lock(streamLockClass, hashtext(stream)). pg_locks shows two-key advisory
// locks with classid = the first key, objid = the second and objsubid = 2, which is how
// the watermark tells appends from other transactions. (Single-key advisory locks, such as
// the migration locks and the projections' consumer locks, have objsubid = 1.)
const streamLockClass = 0x5E1F

var (
	lockStreamSQL = `SELECT pg_advisory_xact_lock(` + strconv.Itoa(streamLockClass) + `, hashtext($1))`

	// watermarkSQL computes W (see the package comment) from the statement's own snapshot.
	watermarkSQL = watermarkQuery("pg_current_snapshot()")
)

// watermarkQuery computes W from the snapshot the SQL expression snapshot gives, which
// must be taken before the statement reads pg_locks. pg_lock_status() runs only if the
// snapshot shows a transaction in progress, and at most once (materialized).
func watermarkQuery(snapshot string) string {
	return `WITH locks AS MATERIALIZED (
		SELECT locktype, database, classid, objsubid, virtualtransaction, transactionid, mode
		FROM pg_catalog.pg_locks
		WHERE granted AND locktype IN ('advisory', 'transactionid')
	), appenders AS MATERIALIZED (
		SELECT a.virtualtransaction FROM locks a
		WHERE a.locktype = 'advisory' AND a.classid = ` + strconv.Itoa(streamLockClass) + ` AND a.objsubid = 2
		  AND a.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
	), ids AS MATERIALIZED (
		SELECT t.transactionid, t.virtualtransaction,
			EXISTS (SELECT 1 FROM appenders a WHERE a.virtualtransaction = t.virtualtransaction) AS appends
		FROM locks t
		WHERE t.locktype = 'transactionid' AND t.mode = 'ExclusiveLock'
	)
	SELECT CASE WHEN pg_is_in_recovery() THEN pg_snapshot_xmin(s)
		ELSE least(pg_snapshot_xmax(s), (
			SELECT min(x) FROM pg_snapshot_xip(s) AS x
			WHERE x::xid IN (SELECT transactionid FROM ids WHERE appends)
			   OR (NOT EXISTS (SELECT 1 FROM ids WHERE ids.transactionid = x::xid)
				   AND EXISTS (SELECT 1 FROM appenders p WHERE NOT EXISTS (
					   SELECT 1 FROM ids WHERE ids.virtualtransaction = p.virtualtransaction)))))
		END
	FROM (SELECT ` + snapshot + ` AS s) AS snap`
}

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
	notify   *announcer
	listen   *notices
	marks    *watermarks
	updates  updateQueue // Updates waiting for a group transaction (group.go)
	heads    headCache   // the stream heads Updates last saw (heads.go)

	// pages shares a feed read among the readers that ask for the same page at the same
	// time (readAll): every consumer of a process wakes on the same NOTIFY, shares one
	// watermark query, and then, at the head, asks for the same page.
	pages     singleflight.Group
	pageReads sync.WaitGroup
	pageRuns  atomic.Int64 // how many page queries have run (tests)
}

var (
	_ eventstore.Store         = (*Store)(nil)
	_ eventstore.StreamsReader = (*Store)(nil)
	_ eventstore.Updater       = (*Store)(nil)
)

// Open connects a new pool to databaseURL and checks that the server answers. It does not
// create the schema: call Migrate (or `selfreset migrate`) for that.
func Open(ctx context.Context, databaseURL string, opts ...Option) (*Store, error) {
	pool, err := pguuid.NewPool(ctx, databaseURL)
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
	s := &Store{pool: pool, cfg: cfg, notify: &announcer{pool: pool},
		listen: newNotices(pool.Config().ConnConfig, cfg.pollInterval)}
	s.marks = newWatermarks(s.queryWatermark)
	return s
}

// Pool returns the store's pool, for packages that keep their own tables in the same
// database (read models, checkpoints).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close waits for the group transactions of Updates and a NOTIFY on their way, closes
// the listening connection (a subscription still running is left to poll) and waits for
// the watermark and page queries running, then closes the pool if Open created it.
func (s *Store) Close() {
	s.updates.wg.Wait()
	s.notify.wait()
	s.listen.close()
	s.marks.wait()
	s.pageReads.Wait()
	if s.ownsPool {
		s.pool.Close()
	}
}

// Append implements eventstore.Store, in two round trips: the first opens the
// transaction, takes the stream lock and reads the stream's head and which of the events
// it holds already; the second inserts, moves the head and commits. Each is one pipelined
// batch: PostgreSQL runs its statements one after another, each with a snapshot of its
// own, as if they had been sent one at a time (so the head is read after the lock is
// held). One by one they cost six round trips, each a wake-up of both processes.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	if err := eventstore.ValidateAppend(stream, events); err != nil {
		return eventstore.AppendResult{}, err
	}
	defer s.heads.forget(stream) // an Update of it reads it again
	return s.write(ctx, "append to "+quote(stream), func(conn *pgx.Conn) (eventstore.AppendResult, bool, error) {
		return appendIn(ctx, conn, stream, expected, events, true)
	})
}

// write runs a transaction that appends (appendIn, updateIn) on a connection of the
// pool, which it begins and, having written, commits; wrote says whether it did. A
// transaction left open (nothing written: a retry, a conflict, a refusal; or a failed
// statement) is rolled back here: pgxpool would close a connection given back so, and
// this keeps it (if the ROLLBACK fails too, the pool closes it). Subscribers are told of
// what was written once it is committed.
func (s *Store) write(ctx context.Context, what string, tx func(conn *pgx.Conn) (eventstore.AppendResult, bool, error)) (eventstore.AppendResult, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("eventstore/postgres: %s: %w", what, err)
	}
	defer conn.Release()
	res, wrote, err := tx(conn.Conn())
	if conn.Conn().PgConn().TxStatus() != 'I' {
		_, _ = conn.Exec(ctx, "ROLLBACK")
	}
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	if wrote {
		s.notify.announce(res.Position)
	}
	return res, nil
}

// batchSender is what appendIn needs of a connection or an open transaction.
type batchSender interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// appendIn does the work of Append on q. With own set, its first batch begins the
// transaction, and its last commits it when there is something to write; otherwise (a
// retry, a conflict, an error) the caller rolls it back. Without, q is a transaction the
// caller opened and ends, which must not have written anything yet: it must not have a
// transaction id before the stream lock is held (tests hold an append open this way).
// wrote tells whether events were inserted (and, with own, committed).
func appendIn(ctx context.Context, q batchSender, stream string, expected eventstore.ExpectedRevision, events []eventstore.EventData, own bool) (res eventstore.AppendResult, wrote bool, err error) {
	what := "append to " + quote(stream)
	head, stored, last, err := lockHead(ctx, q, stream, events, own)
	if err != nil {
		return eventstore.AppendResult{}, false, wrapErr(what, err)
	}
	// Idempotency: events already in the stream are skipped; if all are, the append is a
	// retry of one that succeeded and answers as it did.
	if len(stored) > 0 {
		if events = unstored(events, stored); len(events) == 0 {
			return last, false, nil
		}
	}
	if !expected.Check(uint64(head.revision), head.exists) {
		state := "no stream"
		if head.exists {
			state = fmt.Sprintf("revision %d", head.revision)
		}
		return eventstore.AppendResult{}, false, fmt.Errorf("eventstore/postgres: %s: expected %s, stream is at %s: %w", what, expected, state, eventstore.ErrConflict)
	}
	if len(events) == 0 {
		return eventstore.AppendResult{NextRevision: uint64(head.revision)}, false, nil // Position unknown: nothing written
	}
	next := head.revision + 1
	if !head.exists {
		next = 0
	}
	// Link a copy: the caller's slice stays as given.
	events = append([]eventstore.EventData(nil), events...)
	if _, err := chain.Link(stream, uint64(next), head.chain, events); err != nil {
		return eventstore.AppendResult{}, false, fmt.Errorf("eventstore/postgres: %s: %w", what, err)
	}
	res, err = insertEvents(ctx, q, stream, next, events, own)
	if err != nil {
		return eventstore.AppendResult{}, false, wrapErr(what, err)
	}
	return res, true, nil
}

// streamHead is a stream's state when an append begins.
type streamHead struct {
	exists   bool
	revision int64  // the last event's revision (when exists)
	chain    string // the last event's chain value ("" before chaining began)
}

// lockHead (after a BEGIN when begin is set) takes the stream lock, then reads the
// stream's head under it and which of events the stream holds already, with the append
// result of the latest of those.
func lockHead(ctx context.Context, q batchSender, stream string, events []eventstore.EventData, begin bool) (streamHead, map[uuid.UUID]bool, eventstore.AppendResult, error) {
	ids := make([]uuid.UUID, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	b := &pgx.Batch{}
	if begin {
		b.Queue("BEGIN")
	}
	// Every statement of an append looks rows up by a unique key, so it is planned on the
	// index whatever the statistics say, and the plan kept. Left to choose, PostgreSQL
	// planned the stored-ids check of a 1,000-event append as a sequential scan, on a
	// table it had never analyzed (autovacuum off, or a fresh restore) or while the table
	// was still small, and kept that plan as the table grew: 2 s an append at 600,000
	// events.
	b.Queue(planSQL)
	// The stream lock comes first, before anything that could assign a transaction id: the
	// id of an append must be larger than that of the stream's previous writer, and the
	// watermark relies on an append holding the lock for as long as it has an id.
	b.Queue(lockStreamSQL, stream)
	// Read under the lock, in a later statement's snapshot: the previous writer has
	// committed. The last event's chain value comes with it: new events link to it
	// (eventstore/chain).
	b.Queue(headSQL, stream)
	// Only event_id in the WHERE clause: with the stream there too, a generic plan (pgx
	// prepares its statements) can walk the stream's (stream, revision) index, which costs
	// in proportion to the stream's length. Events of other streams are skipped below.
	b.Queue(`SELECT event_id, stream, revision, tx_id, seq FROM events
		WHERE event_id = ANY($1) ORDER BY revision`, ids)
	br := q.SendBatch(ctx, b)
	head, stored, last, err := readHead(br, stream, begin)
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return head, stored, last, err
}

// headSQL reads a stream's last revision and that event's chain value.
const headSQL = `SELECT s.revision, e.metadata->>'chain' FROM streams s
	LEFT JOIN events e ON e.stream = s.stream AND e.revision = s.revision
	WHERE s.stream = $1`

// planSQL sets the planner for an append's statements (see lockHead).
const planSQL = `SELECT set_config('enable_seqscan', 'off', true), set_config('plan_cache_mode', 'force_generic_plan', true)`

// scanHead reads headSQL's answer.
func scanHead(row pgx.Row) (streamHead, error) {
	var prevChain *string
	head := streamHead{exists: true}
	switch err := row.Scan(&head.revision, &prevChain); {
	case errors.Is(err, pgx.ErrNoRows):
		return streamHead{}, nil
	case err != nil:
		return streamHead{}, fmt.Errorf("read revision: %w", err)
	case prevChain != nil:
		head.chain = *prevChain
	}
	return head, nil
}

// readHead reads the results of lockHead's batch.
func readHead(br pgx.BatchResults, stream string, begin bool) (streamHead, map[uuid.UUID]bool, eventstore.AppendResult, error) {
	if begin {
		if _, err := br.Exec(); err != nil {
			return streamHead{}, nil, eventstore.AppendResult{}, fmt.Errorf("begin: %w", err)
		}
	}
	if _, err := br.Exec(); err != nil {
		return streamHead{}, nil, eventstore.AppendResult{}, fmt.Errorf("planner settings: %w", err)
	}
	if _, err := br.Exec(); err != nil {
		return streamHead{}, nil, eventstore.AppendResult{}, fmt.Errorf("lock stream: %w", err)
	}
	head, err := scanHead(br.QueryRow())
	if err != nil {
		return streamHead{}, nil, eventstore.AppendResult{}, err
	}
	rows, err := br.Query()
	if err != nil {
		return streamHead{}, nil, eventstore.AppendResult{}, fmt.Errorf("check event ids: %w", err)
	}
	stored := map[uuid.UUID]bool{}
	var last eventstore.AppendResult
	var (
		id       uuid.UUID
		in       string
		rev, seq int64
		txID     uint64
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &in, &rev, &txID, &seq}, func() error {
		if in != stream {
			return nil
		}
		stored[id] = true
		last = eventstore.AppendResult{NextRevision: uint64(rev), Position: eventstore.Position{Commit: txID, Prepare: uint64(seq)}}
		return nil
	})
	if err != nil {
		return streamHead{}, nil, eventstore.AppendResult{}, fmt.Errorf("check event ids: %w", err)
	}
	return head, stored, last, nil
}

// unstored returns the events whose ids are not in stored.
func unstored(events []eventstore.EventData, stored map[uuid.UUID]bool) []eventstore.EventData {
	fresh := make([]eventstore.EventData, 0, len(events))
	for _, e := range events {
		if !stored[e.ID] {
			fresh = append(fresh, e)
		}
	}
	return fresh
}

// insertEvents writes events at revisions first, first+1, … and moves the stream's head,
// in one batch that commits too when commit is set. Subscribers are notified after the
// commit (announcer).
func insertEvents(ctx context.Context, q batchSender, stream string, first int64, events []eventstore.EventData, commit bool) (eventstore.AppendResult, error) {
	b := &pgx.Batch{}
	queueInsert(b, stream, first, events)
	if commit {
		queueCommit(b, ctx)
	}
	br := q.SendBatch(ctx, b)
	res, err := readInsert(br, first, len(events))
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	return res, nil
}

// asyncCommitSQL lets the transaction's COMMIT return before its WAL is flushed.
// PostgreSQL writes and flushes the WAL in order, so a commit lost in a crash takes
// every later one with it (https://www.postgresql.org/docs/15/wal-async-commit.html).
const asyncCommitSQL = `SET LOCAL synchronous_commit = off`

// queueCommit queues the COMMIT of a transaction that wrote events, one write under
// each of writers (the callers' contexts). It waits for its WAL flush unless every write
// is redone until acknowledged (eventstore.Redelivered): then each acknowledgement comes
// later in the WAL, so a crash that loses the commit loses them too, and the commands are
// decided again.
func queueCommit(b *pgx.Batch, writers ...context.Context) {
	if !slices.ContainsFunc(writers, func(ctx context.Context) bool { return !eventstore.Redelivered(ctx) }) {
		b.Queue(asyncCommitSQL)
	}
	b.Queue("COMMIT")
}

// queueInsert queues the statements that write events at revisions first, first+1, …
// and move the stream's head: one statement per event, so that seq follows revision
// order within the append.
func queueInsert(b *pgx.Batch, stream string, first int64, events []eventstore.EventData) {
	next := first - 1
	for _, e := range events {
		next++
		data := e.Data
		if len(data) == 0 {
			data = json.RawMessage("null")
		}
		b.Queue(`INSERT INTO events (event_id, type, schema_version, stream, revision, occurred_at, data, metadata)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING tx_id, seq`,
			e.ID, e.Type, e.SchemaVersion, stream, next, e.OccurredAt, data, e.Metadata)
	}
	b.Queue(`INSERT INTO streams (stream, revision) VALUES ($1, $2)
		ON CONFLICT (stream) DO UPDATE SET revision = EXCLUDED.revision`, stream, next)
}

// readInsert reads the results of queueInsert's n events written from revision first on:
// the append's result.
func readInsert(br pgx.BatchResults, first int64, n int) (eventstore.AppendResult, error) {
	var txID uint64
	var seq int64
	for range n {
		if err := br.QueryRow().Scan(&txID, &seq); err != nil {
			return eventstore.AppendResult{}, fmt.Errorf("insert: %w", err)
		}
	}
	if _, err := br.Exec(); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("move the head: %w", err)
	}
	return eventstore.AppendResult{
		NextRevision: uint64(first + int64(n) - 1),
		Position:     eventstore.Position{Commit: txID, Prepare: uint64(seq)},
	}, nil
}

const eventColumns = `event_id, type, schema_version, stream, revision, tx_id, seq, occurred_at, data, metadata`

// streamEventColumns are eventColumns of the events table joined as e.
var streamEventColumns = "e." + strings.ReplaceAll(eventColumns, ", ", ", e.")

func scanEvent(row pgx.CollectableRow) (eventstore.RecordedEvent, error) { return scanEventAfter(row) }

// scanEventAfter scans a row whose event columns come after those of lead, into lead.
func scanEventAfter(row pgx.CollectableRow, lead ...any) (eventstore.RecordedEvent, error) {
	var (
		e        eventstore.RecordedEvent
		rev, seq int64
		txID     uint64
		data     []byte
		meta     []byte
	)
	if err := row.Scan(append(lead, &e.ID, &e.Type, &e.SchemaVersion, &e.Stream, &rev, &txID, &seq, &e.OccurredAt, &data, &meta)...); err != nil {
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
//
// One statement tells a missing stream from one with nothing at or after from: the
// stream's row, joined with its events from there on, comes back once with no event
// when there are none. (The stream's row and its events commit together, so the one
// snapshot sees both or neither.) A fold reads its tail after a snapshot or a cached
// revision on every command, and that tail is usually empty: this used to cost three
// statements (the read, a look at the stream row, the read again).
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64) ([]eventstore.RecordedEvent, error) {
	rows, err := s.pool.Query(ctx, readStreamSQL, stream, clampInt64(from), nil)
	if err != nil {
		return nil, wrapErr("read stream "+quote(stream), err)
	}
	tail, err := scanTail(rows)
	if err != nil {
		return nil, wrapErr("read stream "+quote(stream), err)
	}
	if !tail.Found {
		return nil, fmt.Errorf("eventstore/postgres: read stream %q: %w", stream, eventstore.ErrStreamNotFound)
	}
	return tail.Events, nil
}

// readStreamSQL is ReadStream's statement ($1 the stream, $2 the first revision, $3 at
// most this many events, NULL for all).
var readStreamSQL = `SELECT ` + streamEventColumns + ` FROM streams s
	LEFT JOIN events e ON e.stream = s.stream AND e.revision >= $2
	WHERE s.stream = $1 ORDER BY e.revision LIMIT $3`

// scanTail reads and closes the rows of readStreamSQL.
func scanTail(rows pgx.Rows) (eventstore.StreamTail, error) {
	defer rows.Close()
	var tail eventstore.StreamTail
	for rows.Next() {
		tail.Found = true
		if rows.RawValues()[0] == nil {
			continue // the stream's row alone: nothing at or after from
		}
		e, err := scanEvent(rows)
		if err != nil {
			return eventstore.StreamTail{}, err
		}
		tail.Events = append(tail.Events, e)
	}
	return tail, rows.Err()
}

// ReadStreams implements eventstore.StreamsReader: ReadStream's statement once per
// stream, in one pipelined batch, so one round trip whatever the number of streams. Each
// statement has a snapshot of its own, as separate reads would.
func (s *Store) ReadStreams(ctx context.Context, reads []eventstore.StreamRead) ([]eventstore.StreamTail, error) {
	b := &pgx.Batch{}
	queueReads(b, reads)
	br := s.pool.SendBatch(ctx, b)
	out, err := readTails(br, len(reads))
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, wrapErr("read streams", err)
	}
	return out, nil
}

// queueReads queues readStreamSQL for each of reads.
func queueReads(b *pgx.Batch, reads []eventstore.StreamRead) {
	for _, r := range reads {
		var limit *int
		if r.Max > 0 {
			limit = &r.Max
		}
		b.Queue(readStreamSQL, r.Stream, clampInt64(r.From), limit)
	}
}

// readTails reads the next n results of br, each readStreamSQL's.
func readTails(br pgx.BatchResults, n int) ([]eventstore.StreamTail, error) {
	tails := make([]eventstore.StreamTail, n)
	for i := range tails {
		rows, err := br.Query()
		if err == nil {
			tails[i], err = scanTail(rows)
		}
		if err != nil {
			return nil, fmt.Errorf("read stream %d of %d: %w", i+1, n, err)
		}
	}
	return tails, nil
}

// ReadAll implements eventstore.Store. It reads only rows below the watermark (see the
// package comment), so an event whose append is still open, or committed after an older
// one that is, shows up in a later call, never before a position already returned.
func (s *Store) ReadAll(ctx context.Context, after eventstore.Position, limit int) ([]eventstore.RecordedEvent, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("eventstore/postgres: read all: limit %d is not positive", limit)
	}
	w, err := s.watermark(ctx)
	if err != nil {
		return nil, wrapErr("read all", err)
	}
	return s.readAll(ctx, after, limit, w)
}

// watermark returns W: every append whose transaction id is below it had ended when
// watermark was called, so a statement run afterwards sees its rows. A W may be used for
// several reads, only ever after it was computed. Concurrent callers share one query
// (watermarks); a subscription's pass (subscriptionWatermark) also waits a moment for the
// others of its process.
func (s *Store) watermark(ctx context.Context) (uint64, error) { return s.marks.get(ctx, false) }

// subscriptionWatermark is watermark for a subscription's pass.
func (s *Store) subscriptionWatermark(ctx context.Context) (uint64, error) {
	return s.marks.get(ctx, true)
}

// queryWatermark runs the watermark query.
func (s *Store) queryWatermark(ctx context.Context) (uint64, error) {
	var w uint64
	if err := s.pool.QueryRow(ctx, watermarkSQL).Scan(&w); err != nil {
		return 0, fmt.Errorf("watermark: %w", err)
	}
	return w, nil
}

// readAll reads the feed after `after` below the watermark w, which must have been
// computed before this call. Readers asking for the same page at once share one query
// (pages); each gets its own slice.
func (s *Store) readAll(ctx context.Context, after eventstore.Position, limit int, w uint64) ([]eventstore.RecordedEvent, error) {
	key := fmt.Sprintf("%d.%d/%d/%d", after.Commit, after.Prepare, w, limit)
	page := s.pages.DoChan(key, func() (any, error) {
		s.pageReads.Add(1)
		defer s.pageReads.Done()
		s.pageRuns.Add(1)
		// It runs for every reader sharing it, on none's context; bounded like a watermark.
		qctx, cancel := context.WithTimeout(context.Background(), markTimeout)
		defer cancel()
		return s.queryPage(qctx, after, limit, w)
	})
	select {
	case r := <-page:
		if r.Err != nil {
			return nil, r.Err
		}
		return slices.Clone(r.Val.([]eventstore.RecordedEvent)), nil
	case <-ctx.Done():
		return nil, wrapErr("read all", ctx.Err())
	}
}

// queryPage runs readAll's query.
func (s *Store) queryPage(ctx context.Context, after eventstore.Position, limit int, w uint64) ([]eventstore.RecordedEvent, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+eventColumns+` FROM events
		WHERE (tx_id, seq) > ($1::xid8, $2::bigint) AND tx_id < $3::xid8
		ORDER BY tx_id, seq
		LIMIT $4`, after.Commit, clampInt64(after.Prepare), w, limit)
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
	w, err := s.watermark(ctx)
	if err != nil {
		return eventstore.Start, wrapErr("head", err)
	}
	var txID uint64
	var seq int64
	err = s.pool.QueryRow(ctx, `SELECT tx_id, seq FROM events WHERE tx_id < $1::xid8
		ORDER BY tx_id DESC, seq DESC LIMIT 1`, w).Scan(&txID, &seq)
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
