package commands_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"selfreset/commands"
	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/internal/testkit"
)

// countedSnapshots counts the snapshot reads of the store it wraps.
type countedSnapshots struct {
	eventstore.SnapshotStore
	reads atomic.Int64
}

func (c *countedSnapshots) ReadSnapshot(ctx context.Context, stream string) (eventstore.Snapshot, error) {
	c.reads.Add(1)
	return c.SnapshotStore.ReadSnapshot(ctx, stream)
}

// TestRememberedAccountsSeeOtherWriters: a handler that remembers an account's fold reads
// no snapshot for it again, and still decides on everything another process appended
// meanwhile (here an administrator's lock, then a wrong password), exactly as a handler
// that folds the stream in full.
func TestRememberedAccountsSeeOtherWriters(t *testing.T) {
	f, ss := snapshotFixture(t)
	ctx := context.Background()
	counted := &countedSnapshots{SnapshotStore: ss}
	h := testkit.Handler(t, f.store, f.clock, f.keys, func(c *commands.Config) { c.Snapshots = counted })
	other := f.h // another replica: its appends are news to h
	same := func(t *testing.T, what string) {
		t.Helper()
		sameAsFullFold(t, f, h, what)
	}

	same(t, "first load")
	readsAfterFirst := counted.reads.Load()
	if readsAfterFirst == 0 {
		t.Fatal("the first load read no snapshot: the test does not see the snapshot path")
	}
	for range 20 { // refusals decided by h itself, folded on from memory
		if _, err := h.RequestResetToken(ctx, commands.RequestResetToken{Provider: f.code, Login: "jane", Email: "stranger@example.org"}); err == nil {
			t.Fatal("a wrong email was granted a token")
		}
	}
	same(t, "after h's own refusals")

	admin := domain.Actor{Provider: f.code, Login: "admin"}
	must(t, other.AdminLock(ctx, commands.UserCommand{Actor: admin, Provider: f.code, Login: "jane"}))
	same(t, "after another process's admin lock")
	if _, err := h.RequestResetToken(ctx, commands.RequestResetToken{Provider: f.code, Login: "jane", Email: recovery}); err == nil {
		t.Fatal("an admin-locked account was granted a token by the handler that remembered it unlocked")
	}
	must(t, other.AdminUnlock(ctx, commands.UserCommand{Actor: admin, Provider: f.code, Login: "jane"}))
	if _, err := other.Login(ctx, commands.Login{Provider: f.code, Login: "jane", Password: "wrong"}); !errors.Is(err, domain.ErrInvalidCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	same(t, "after another process's unlock and a wrong password")
	if got := counted.reads.Load(); got != readsAfterFirst {
		t.Fatalf("%d snapshot reads after the first load, want none: the account is remembered", got-readsAfterFirst)
	}
}

// countedReads counts the stream reads of the store it wraps, and reads several streams
// in one call as an adapter that can would (eventstore.StreamsReader).
type countedReads struct {
	eventstore.Store
	single, batched atomic.Int64
}

func (c *countedReads) ReadStream(ctx context.Context, stream string, from uint64) ([]eventstore.RecordedEvent, error) {
	c.single.Add(1)
	return c.Store.ReadStream(ctx, stream, from)
}

func (c *countedReads) ReadStreams(ctx context.Context, reads []eventstore.StreamRead) ([]eventstore.StreamTail, error) {
	c.batched.Add(1)
	return eventstore.ReadStreams(ctx, c.Store, reads)
}

// TestADecisionReadsItsProviderAndAccountInOneCall: once a handler remembers an account,
// a decision on it reads the provider's and the account's tails in one call, and still
// decides on what another process appended to the account meanwhile.
func TestADecisionReadsItsProviderAndAccountInOneCall(t *testing.T) {
	f := newFixture(t)
	f.configuredUser(t)
	ctx := context.Background()
	reads := &countedReads{Store: f.store}
	h := testkit.Handler(t, reads, f.clock, f.keys)
	wrongEmail := commands.RequestResetToken{Provider: f.code, Login: "jane", Email: "stranger@example.org"}
	if _, err := h.RequestResetToken(ctx, wrongEmail); err == nil {
		t.Fatal("a wrong email was granted a token")
	}
	reads.single.Store(0)
	reads.batched.Store(0)

	admin := domain.Actor{Provider: f.code, Login: "admin"}
	must(t, f.h.AdminLock(ctx, commands.UserCommand{Actor: admin, Provider: f.code, Login: "jane"}))
	if _, err := h.RequestResetToken(ctx, commands.RequestResetToken{Provider: f.code, Login: "jane", Email: recovery}); err == nil {
		t.Fatal("an account another process admin-locked was granted a token")
	}
	if s, b := reads.single.Load(), reads.batched.Load(); s != 0 || b != 1 {
		t.Fatalf("the decision made %d single reads and %d multi-stream reads, want 0 and 1", s, b)
	}
}

// TestAnAccountNotRememberedIsReadWithItsProvider: a handler that does not remember the
// account reads it from the start in the call that reads the provider. An unknown login
// and a short account then cost no other read (no snapshot either); a long one is
// folded from its snapshot as before. Every fold is the full fold's.
func TestAnAccountNotRememberedIsReadWithItsProvider(t *testing.T) {
	f, ss := snapshotFixture(t)
	ctx := context.Background()
	reads := &countedReads{Store: f.store}
	snaps := &countedSnapshots{SnapshotStore: ss}
	fresh := func() *commands.Handler {
		reads.single.Store(0)
		reads.batched.Store(0)
		snaps.reads.Store(0)
		return testkit.Handler(t, reads, f.clock, f.keys, func(c *commands.Config) { c.Snapshots = snaps })
	}
	expect := func(t *testing.T, what string, single, batched, snapshots int64) {
		t.Helper()
		if s, b, n := reads.single.Load(), reads.batched.Load(), snaps.reads.Load(); s != single || b != batched || n != snapshots {
			t.Errorf("%s: %d single reads, %d multi-stream reads, %d snapshot reads; want %d, %d and %d", what, s, b, n, single, batched, snapshots)
		}
	}
	wrongEmail := commands.RequestResetToken{Provider: f.code, Login: "jane", Email: "stranger@example.org"}

	if _, err := fresh().RequestResetToken(ctx, commands.RequestResetToken{Provider: f.code, Login: "nobody", Email: "x@example.org"}); !errors.Is(err, domain.ErrUnknownAccount) {
		t.Fatalf("unknown login: %v", err)
	}
	expect(t, "unknown login", 0, 1, 0)

	h := fresh()
	if _, err := h.RequestResetToken(ctx, wrongEmail); err == nil {
		t.Fatal("a wrong email was granted a token")
	}
	expect(t, "short account", 0, 1, 0)
	sameAsFullFold(t, f, h, "short account read ahead")

	for range 40 {
		if _, err := f.h.RequestResetToken(ctx, wrongEmail); err == nil {
			t.Fatal("a wrong email was granted a token")
		}
	}
	h = fresh()
	if _, err := h.RequestResetToken(ctx, wrongEmail); err == nil {
		t.Fatal("a wrong email was granted a token")
	}
	if b, n := reads.batched.Load(), snaps.reads.Load(); b != 1 || n != 1 {
		t.Errorf("long account: %d multi-stream reads and %d snapshot reads, want 1 and 1", b, n)
	}
	sameAsFullFold(t, f, h, "long account folded from its snapshot")
}

// countedCalls counts the reads, appends and updates of the store it wraps, which must
// implement eventstore.Updater.
type countedCalls struct {
	countedReads
	up               eventstore.Updater
	appends, updates atomic.Int64
}

func (c *countedCalls) Append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	c.appends.Add(1)
	return c.countedReads.Append(ctx, stream, expected, events...)
}

func (c *countedCalls) Update(ctx context.Context, stream string, from uint64, also []eventstore.StreamRead,
	decide func(eventstore.StreamTail, []eventstore.StreamTail) ([]eventstore.EventData, error)) (eventstore.AppendResult, error) {
	c.updates.Add(1)
	return c.up.Update(ctx, stream, from, also, decide)
}

// TestAQuickDecisionReadsAndAppendsUnderTheLock: on an account the handler remembers, a
// Forgot Password decision reads and appends in one Update of a store that can, sees
// what another process appended, and a redelivery of it appends nothing.
func TestAQuickDecisionReadsAndAppendsUnderTheLock(t *testing.T) {
	f := newFixture(t)
	up, ok := f.store.(eventstore.Updater)
	if !ok {
		t.Skipf("needs an event store that implements eventstore.Updater (PostgreSQL, the full run); %T does not", f.store)
	}
	f.configuredUser(t)
	ctx := context.Background()
	calls := &countedCalls{countedReads: countedReads{Store: f.store}, up: up}
	h := testkit.Handler(t, calls, f.clock, f.keys)
	wrongEmail := commands.RequestResetToken{Provider: f.code, Login: "jane", Email: "stranger@example.org"}
	if _, err := h.RequestResetToken(ctx, wrongEmail); err == nil {
		t.Fatal("a wrong email was granted a token")
	}
	if n := calls.updates.Load(); n != 0 {
		t.Fatalf("%d updates for an account the handler did not remember yet, want 0", n)
	}
	admin := domain.Actor{Provider: f.code, Login: "admin"}
	must(t, f.h.AdminLock(ctx, commands.UserCommand{Actor: admin, Provider: f.code, Login: "jane"}))
	stream := domain.UserStream(f.code, "jane")
	before, err := f.store.ReadStream(ctx, stream, 0)
	must(t, err)
	calls.single.Store(0)
	calls.batched.Store(0)
	calls.appends.Store(0)

	redelivered := commands.WithCommandID(ctx, uuid.New())
	if _, err := h.RequestResetToken(redelivered, commands.RequestResetToken{Provider: f.code, Login: "jane", Email: recovery}); err == nil {
		t.Fatal("an account another process admin-locked was granted a token")
	}
	if u, s, b, a := calls.updates.Load(), calls.single.Load(), calls.batched.Load(), calls.appends.Load(); u != 1 || s+b+a != 0 {
		t.Fatalf("the decision made %d updates, %d single reads, %d multi-stream reads and %d appends; want 1 update alone", u, s, b, a)
	}
	after, err := f.store.ReadStream(ctx, stream, 0)
	must(t, err)
	if len(after) != len(before)+1 || after[len(after)-1].Type != "ResetRequestRejected" {
		t.Fatalf("the stream went from %d to %d events (last %s), want the refusal appended", len(before), len(after), after[len(after)-1].Type)
	}
	sameAsFullFold(t, f, h, "after a decision under the lock")
	if _, err := h.RequestResetToken(redelivered, commands.RequestResetToken{Provider: f.code, Login: "jane", Email: recovery}); !errors.Is(err, commands.ErrAlreadyDecided) {
		t.Fatalf("the redelivered decision: %v, want ErrAlreadyDecided", err)
	}
	again, err := f.store.ReadStream(ctx, stream, 0)
	must(t, err)
	if len(again) != len(after) {
		t.Fatalf("a redelivery appended %d events", len(again)-len(after))
	}
}

// tailsSeen wraps an Updater and records how many events of the stream's own tail each
// decision it runs was given.
type tailsSeen struct {
	countedCalls
	mu    sync.Mutex
	tails []int
}

func (c *tailsSeen) Update(ctx context.Context, stream string, from uint64, also []eventstore.StreamRead,
	decide func(eventstore.StreamTail, []eventstore.StreamTail) ([]eventstore.EventData, error)) (eventstore.AppendResult, error) {
	return c.countedCalls.Update(ctx, stream, from, also, func(tail eventstore.StreamTail, also []eventstore.StreamTail) ([]eventstore.EventData, error) {
		c.mu.Lock()
		c.tails = append(c.tails, len(tail.Events))
		c.mu.Unlock()
		return decide(tail, also)
	})
}

// TestADecisionRemembersWhatItAppended: after a decision under the lock, the handler
// remembers the account at the head it left, so the next decision on it is given no
// event to fold (not its own last one read back), and every fold is still the full
// fold's. The store can then decide it on the heads it remembers (eventstore/postgres).
func TestADecisionRemembersWhatItAppended(t *testing.T) {
	f := newFixture(t)
	up, ok := f.store.(eventstore.Updater)
	if !ok {
		t.Skipf("needs an event store that implements eventstore.Updater (PostgreSQL, the full run); %T does not", f.store)
	}
	f.configuredUser(t)
	ctx := context.Background()
	calls := &tailsSeen{countedCalls: countedCalls{countedReads: countedReads{Store: f.store}, up: up}}
	h := testkit.Handler(t, calls, f.clock, f.keys)
	wrongEmail := commands.RequestResetToken{Provider: f.code, Login: "jane", Email: "stranger@example.org"}
	const decisions = 4
	for i := range decisions + 1 { // the first folds the account; the rest decide under the lock
		if _, err := h.RequestResetToken(ctx, wrongEmail); err == nil {
			t.Fatalf("decision %d: a wrong email was granted a token", i)
		}
	}
	calls.mu.Lock()
	tails := slices.Clone(calls.tails)
	calls.mu.Unlock()
	// The first command appended the usual way (the account was not remembered yet),
	// which moves only its own view on: the first Update folds that event.
	want := make([]int, decisions)
	want[0] = 1
	if !slices.Equal(tails, want) {
		t.Errorf("the decisions under the lock folded tails of %v events, want %v", tails, want)
	}
	sameAsFullFold(t, f, h, "after the decisions") // a load, which folds any tail there is
}
