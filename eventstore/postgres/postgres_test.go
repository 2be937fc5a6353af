package postgres

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

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
	all, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM eventstore_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(all) {
		t.Fatalf("eventstore_migrations has %d rows, want %d", n, len(all))
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
	if _, err := appendTx(ctx, slow, "slow", eventstore.NoStream, []eventstore.EventData{late}); err != nil {
		t.Fatal(err)
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
	// Other tests' transactions on the server can hold the feed back too: poll, bounded.
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
