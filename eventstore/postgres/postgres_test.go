package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"selfreset/eventstore"
	"selfreset/eventstore/storetest"
	"selfreset/internal/testdb"
)

// openStore opens a migrated store on a fresh database, closed when t ends.
func openStore(t *testing.T, opts ...Option) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, testdb.New(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestContract runs the suite on one database shared by all subtests, as EventStoreDB
// would be: it also shows that the suite copes with a store that already holds events.
func TestContract(t *testing.T) {
	s := openStore(t)
	storetest.Run(t, func(*testing.T) eventstore.Store { return s })
}

func TestMigrateIsIdempotent(t *testing.T) {
	s := openStore(t) // migrated once
	ctx := t.Context()
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	// Concurrent runs take turns instead of racing on CREATE TABLE.
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- s.Migrate(ctx) }()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Migrate: %v", err)
		}
	}
	// golang-migrate keeps one row: the newest version applied, and whether it is dirty.
	all, err := fs.Glob(migrationFiles, "migrations/*.up.sql")
	if err != nil {
		t.Fatal(err)
	}
	var version int
	var dirty bool
	if err := s.Pool().QueryRow(ctx, `SELECT version, dirty FROM eventstore_migrations`).Scan(&version, &dirty); err != nil {
		t.Fatal(err)
	}
	if version != len(all) || dirty {
		t.Fatalf("eventstore_migrations at version %d (dirty %v), want %d", version, dirty, len(all))
	}
	if _, err := s.Append(ctx, "after-migrate", eventstore.NoStream, event("Migrated")); err != nil {
		t.Fatalf("append after migrating: %v", err)
	}
}

func TestHeadOfEmptyStoreIsStart(t *testing.T) {
	s := openStore(t)
	head, err := s.Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if head != eventstore.Start {
		t.Fatalf("Head = %v, want Start", head)
	}
}

// TestLateCommitIsNotSkipped is the global-order trap itself: a transaction takes its
// sequence number first but commits after a later one. A reader must not pass the later
// event while the earlier transaction is open, and must then see both in (tx_id, seq) order.
func TestLateCommitIsNotSkipped(t *testing.T) {
	s := openStore(t, WithPollInterval(50*time.Millisecond))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	delivered := make(chan eventstore.RecordedEvent, 10)
	subErr := make(chan error, 1)
	subCtx, stop := context.WithCancel(ctx)
	defer func() { stop(); <-subErr }()
	go func() {
		subErr <- s.SubscribeAll(subCtx, eventstore.Start, func(_ context.Context, e eventstore.RecordedEvent) error {
			delivered <- e
			return nil
		})
	}()

	slow, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = slow.Rollback(ctx) }()
	late := event("Late")
	lateRes, _, err := appendIn(ctx, slow, "slow", eventstore.NoStream, []eventstore.EventData{late}, false)
	if err != nil {
		t.Fatal(err)
	}
	// The open append shows in pg_locks as the watermark looks for it: a two-key advisory
	// lock of streamLockClass on the stream in this database, held with its transaction id.
	var held bool
	if err := s.Pool().QueryRow(ctx, `SELECT EXISTS (
		SELECT 1 FROM pg_locks a JOIN pg_locks x USING (virtualtransaction)
		WHERE a.locktype = 'advisory' AND a.granted AND a.classid = $1::int8::oid AND a.objsubid = 2
		  AND a.objid = (hashtext('slow')::int8 & 4294967295)::oid
		  AND a.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND x.locktype = 'transactionid' AND x.mode = 'ExclusiveLock' AND x.granted
		  AND x.transactionid = $2::xid8::xid)`, streamLockClass, lateRes.Position.Commit).Scan(&held); err != nil {
		t.Fatal(err)
	}
	if !held {
		t.Fatalf("pg_locks does not show the open append's stream lock with its transaction id")
	}
	if w, err := s.watermark(ctx); err != nil || w > lateRes.Position.Commit {
		t.Fatalf("watermark while an append is open = %d, %v; want at most its id %d", w, err, lateRes.Position.Commit)
	}
	early := event("Early")
	if _, err := s.Append(ctx, "fast", eventstore.NoStream, early); err != nil {
		t.Fatal(err)
	}

	// The fast event is committed, yet invisible in the feed while the slow one is open.
	if got, err := s.ReadAll(ctx, eventstore.Start, 10); err != nil || len(got) != 0 {
		t.Fatalf("ReadAll while a transaction is open = %d events, %v; want none", len(got), err)
	}
	if head, err := s.Head(ctx); err != nil || head != eventstore.Start {
		t.Fatalf("Head while a transaction is open = %v, %v; want Start", head, err)
	}
	select {
	case e := <-delivered:
		t.Fatalf("subscriber got %s while an older transaction was open", e.Type)
	case <-time.After(200 * time.Millisecond): // several poll intervals and a NOTIFY
	}

	if err := slow.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// A transaction elsewhere that has its id but not yet its id lock can hold the feed back
	// for a moment (see the package comment): poll, bounded.
	var got []eventstore.RecordedEvent
	for {
		if got, err = s.ReadAll(ctx, eventstore.Start, 10); err != nil {
			t.Fatal(err)
		}
		if len(got) >= 2 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("ReadAll after commit = %v, want [Late Early]", types(got))
		case <-time.After(10 * time.Millisecond):
		}
	}
	if len(got) != 2 || got[0].ID != late.ID || got[1].ID != early.ID {
		t.Fatalf("ReadAll after commit = %v, want [Late Early]", types(got))
	}
	for i, want := range []uuid.UUID{late.ID, early.ID} {
		select {
		case e := <-delivered:
			if e.ID != want {
				t.Fatalf("subscriber event %d = %s, want %s", i, e.ID, want)
			}
		case <-ctx.Done():
			t.Fatalf("subscriber did not deliver event %d", i)
		}
	}
}

// TestUnrelatedTransactionsDoNotStallTheFeed parks transactions that the snapshot's xmin
// would wait for (they have ids older than the appended event's) but that append nothing
// to this store: a write and an open append in another database, a write in this one, and
// a write in this one holding other advisory locks. The feed must show the event all the same.
func TestUnrelatedTransactionsDoNotStallTheFeed(t *testing.T) {
	const bound = 5 * time.Second
	s := openStore(t, WithPollInterval(50*time.Millisecond))
	other := openStore(t) // another database on the same server
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, st := range []*Store{s, other} {
		if _, err := st.Pool().Exec(ctx, `CREATE TABLE unrelated (n int)`); err != nil {
			t.Fatal(err)
		}
	}

	// park runs do in a transaction on a connection of its own, leaves the transaction
	// open and returns it with its id.
	type parkedTx struct {
		what string
		tx   pgx.Tx
		id   uint64
	}
	var parked []parkedTx
	park := func(st *Store, what string, do func(tx pgx.Tx) error) {
		t.Helper()
		conn, err := pgx.ConnectConfig(ctx, st.Pool().Config().ConnConfig.Copy())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close(context.Background()) }) // rolls back if still open
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var id uint64
		if err := do(tx); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if err := tx.QueryRow(ctx, `SELECT pg_current_xact_id()`).Scan(&id); err != nil {
			t.Fatal(err)
		}
		parked = append(parked, parkedTx{what, tx, id})
	}
	write := func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO unrelated VALUES (1)`)
		return err
	}
	park(other, "a write in another database", write)
	park(other, "an append in another database", func(tx pgx.Tx) error {
		_, _, err := appendIn(ctx, tx, "here", eventstore.NoStream, []eventstore.EventData{event("Elsewhere")}, false)
		return err
	})
	park(s, "a write in this database", write)
	park(s, "a write holding other advisory locks in this database", func(tx pgx.Tx) error {
		// The migration lock (single key) and a two-key lock of another class, on the same key.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('selfreset.eventstore.migrate', 0)),
			pg_advisory_xact_lock(1, hashtext('here'))`); err != nil {
			return err
		}
		return write(tx)
	})
	defer func() {
		for _, p := range parked {
			_ = p.tx.Rollback(context.Background())
		}
	}()

	// They do hold the snapshot's xmin back: the old watermark would stall.
	var xmin uint64
	if err := s.Pool().QueryRow(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot())`).Scan(&xmin); err != nil {
		t.Fatal(err)
	}
	for _, p := range parked {
		if xmin > p.id {
			t.Fatalf("xmin %d is above the id %d of %s, which is still open", xmin, p.id, p.what)
		}
	}

	delivered := make(chan eventstore.RecordedEvent, 10)
	subErr := make(chan error, 1)
	subCtx, stop := context.WithCancel(ctx)
	defer func() { stop(); <-subErr }()
	go func() {
		subErr <- s.SubscribeAll(subCtx, eventstore.Start, func(_ context.Context, e eventstore.RecordedEvent) error {
			delivered <- e
			return nil
		})
	}()

	e := event("Here")
	res, err := s.Append(ctx, "here", eventstore.NoStream, e)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for _, p := range parked {
		if p.id >= res.Position.Commit {
			t.Fatalf("%s has id %d, not older than the append's %d", p.what, p.id, res.Position.Commit)
		}
	}

	deadline := time.After(bound)
	for {
		got, err := s.ReadAll(ctx, eventstore.Start, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) > 0 {
			if len(got) != 1 || got[0].ID != e.ID {
				t.Fatalf("ReadAll = %v, want [Here]", types(got))
			}
			break
		}
		select {
		case <-deadline:
			t.Fatalf("ReadAll did not show the event within %v while unrelated transactions were open", bound)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Logf("ReadAll showed the event after %v", time.Since(start))
	for {
		head, err := s.Head(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if head == res.Position {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("Head = %v after %v, want %v", head, bound, res.Position)
		case <-time.After(10 * time.Millisecond):
		}
	}
	select {
	case got := <-delivered:
		if got.ID != e.ID {
			t.Fatalf("subscriber got %s, want Here", got.Type)
		}
	case <-deadline:
		t.Fatalf("subscriber did not deliver the event within %v while unrelated transactions were open", bound)
	}
	t.Logf("Head and SubscribeAll showed the event after %v", time.Since(start))
}

func event(typ string) eventstore.EventData {
	return eventstore.EventData{ID: uuid.New(), Type: typ, SchemaVersion: 1, OccurredAt: time.Now(), Data: json.RawMessage(`{}`)}
}

func types(events []eventstore.RecordedEvent) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.Type
	}
	return out
}

// An insert that fails inside the append's second batch (an event id another stream
// holds) rolls the whole append back and answers ErrConflict; a refused expectation and a
// retry of a stored append end their transaction too. Each gives its connection back out
// of the transaction, so the pool keeps it instead of closing it and dialling anew.
func TestUnwrittenAppendsRollBackAndKeepTheirConnection(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	taken := event("Taken")
	held, err := s.Append(ctx, "holder", eventstore.NoStream, taken)
	if err != nil {
		t.Fatal(err)
	}
	s.notify.wait() // the announcement has given its connection back
	dialled := s.pool.Stat().NewConnsCount()
	for range 3 {
		_, err := s.Append(ctx, "borrower", eventstore.Any, event("Fresh"), taken)
		if !errors.Is(err, eventstore.ErrConflict) {
			t.Fatalf("append of an id another stream holds: %v, want ErrConflict", err)
		}
		if _, err := s.Append(ctx, "holder", eventstore.NoStream, event("Again")); !errors.Is(err, eventstore.ErrConflict) {
			t.Fatalf("append under a refused expectation: %v, want ErrConflict", err)
		}
		if res, err := s.Append(ctx, "holder", eventstore.NoStream, taken); err != nil || res != held {
			t.Fatalf("retry of a stored append: %+v, %v; want %+v", res, err, held)
		}
	}
	if n := s.pool.Stat().NewConnsCount(); n != dialled {
		t.Errorf("%d connections dialled for 9 unwritten appends one after another, want none: one was given back inside its transaction", n-dialled)
	}
	if _, err := s.ReadStream(ctx, "borrower", 0); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("the failed appends left something behind: %v", err)
	}
	res, err := s.Append(ctx, "borrower", eventstore.NoStream, event("Fresh"))
	if err != nil || res.NextRevision != 0 {
		t.Fatalf("append after the failures: %+v, %v", res, err)
	}
}
