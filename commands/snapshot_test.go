package commands_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"selfreset/commands"
	"selfreset/domain"
	"selfreset/eventstore"
	"selfreset/internal/testkit"
)

// hidden hides the store's snapshots: a handler over it folds every stream in full.
type hidden struct{ eventstore.Store }

// waitSnapshot waits (bounded) until the stream's snapshot covers at least revision rev,
// calling load before each look: snapshots are written in the background after the load
// that calls for one, and a load that finds a write of the stream on its way leaves the
// next one to a later load.
func waitSnapshot(t *testing.T, ss eventstore.SnapshotStore, stream string, rev uint64, load func()) eventstore.Snapshot {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		load()
		snap, err := ss.ReadSnapshot(ctx, stream)
		if err == nil && snap.Revision >= rev {
			return snap
		}
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot of %s at revision %d or later (last: %+v, %v)", stream, rev, snap.Revision, err)
		}
		time.Sleep(10 * time.Millisecond) // waiting for a background write, not timing logic
	}
}

// snapshotFixture is newFixture with jane configured, on a store that keeps snapshots.
func snapshotFixture(t *testing.T) (*fixture, eventstore.SnapshotStore) {
	t.Helper()
	f := newFixture(t)
	ss, ok := f.store.(eventstore.SnapshotStore)
	if !ok {
		t.Skipf("%T keeps no snapshots (the EventStoreDB adapter folds in full)", f.store)
	}
	f.configuredUser(t)
	return f, ss
}

// sameAsFullFold fails unless h loads jane as a handler that folds her stream in full does.
func sameAsFullFold(t *testing.T, f *fixture, h *commands.Handler, what string) {
	t.Helper()
	ctx := context.Background()
	got, err := h.LoadUser(ctx, f.code, "jane")
	must(t, err)
	want, err := testkit.Handler(t, hidden{f.store}, f.clock, f.keys).LoadUser(ctx, f.code, "jane")
	must(t, err)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: loaded %+v\nfull fold %+v", what, got, want)
	}
}

func TestSnapshotsKeepDecisionsAndRedeliveries(t *testing.T) {
	f, ss := snapshotFixture(t)
	ctx := context.Background()
	stream := domain.UserStream(f.code, "jane")

	// A handler remembers the accounts it loaded (and reads no snapshot for them again):
	// fresh ones, as another process would be, load through the snapshot.
	fresh := func() *commands.Handler { return testkit.Handler(t, f.store, f.clock, f.keys) }
	same := func(t *testing.T, what string) {
		t.Helper()
		sameAsFullFold(t, f, fresh(), what)
	}

	// A request decided under a command id, then a long run of wrong emails.
	cmd := uuid.New()
	req := commands.RequestResetToken{Provider: f.code, Login: "jane", Email: recovery}
	_, err := f.h.RequestResetToken(commands.WithCommandID(ctx, cmd), req)
	must(t, err)
	for range 100 {
		if _, err := f.h.RequestResetToken(ctx, commands.RequestResetToken{Provider: f.code, Login: "jane", Email: "stranger@example.org"}); err == nil {
			t.Fatal("a wrong email was granted a token")
		}
	}
	last := testkit.StreamRevision(t, f.store, stream)
	// A load that folds 32 events or more past the last snapshot written writes one; one
	// that finds the previous write still on its way leaves it to the next load (a slow
	// write on a busy machine), so the wait loads again each time it looks.
	snap := waitSnapshot(t, ss, stream, last-31, func() {
		_, err := f.h.LoadUser(ctx, f.code, "jane")
		must(t, err)
	})
	same(t, "after a snapshot")

	// The redelivered command finds its decision although the snapshot covers it.
	if _, err := fresh().RequestResetToken(commands.WithCommandID(ctx, cmd), req); !errors.Is(err, commands.ErrAlreadyDecided) {
		t.Fatalf("redelivery after a snapshot: %v, want ErrAlreadyDecided", err)
	}

	// Decisions through the snapshot: a wrong password counts on, a reset works.
	if _, err := f.h.Login(ctx, commands.Login{Provider: f.code, Login: "jane", Password: "wrong"}); !errors.Is(err, domain.ErrInvalidCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	same(t, "after a wrong password")

	// Snapshots that must not be believed: another schema, undecodable data, another
	// user's state. Each is ignored and the stream folded in full.
	other, err := f.h.LoadUser(ctx, f.code, "admin")
	must(t, err)
	otherData, err := json.Marshal(map[string]any{"user": other})
	must(t, err)
	locked := map[string]any{"user": domain.User{Provider: f.code, Login: "jane", Registered: true, AdminLocked: true}}
	lockedData, err := json.Marshal(locked)
	must(t, err)
	for _, bad := range []eventstore.Snapshot{
		{Revision: snap.Revision + 1, Schema: "user/0/old", Data: lockedData},
		{Revision: snap.Revision + 2, Schema: snap.Schema, Data: json.RawMessage(`{"user": 5}`)},
		{Revision: snap.Revision + 3, Schema: snap.Schema, Data: otherData},
	} {
		must(t, ss.WriteSnapshot(ctx, stream, bad))
		same(t, "snapshot "+string(bad.Data[:min(len(bad.Data), 40)])+" of schema "+bad.Schema)
	}
}

// TestSnapshotsUnderConcurrentRefusals: racing wrong passwords on an account long enough
// to be loaded from snapshots (written meanwhile) still lock it with exactly one
// AccountLocked, and the loaded state is the full fold's.
func TestSnapshotsUnderConcurrentRefusals(t *testing.T) {
	f, _ := snapshotFixture(t)
	ctx := context.Background()
	for range 60 {
		if _, err := f.h.RequestResetToken(ctx, commands.RequestResetToken{Provider: f.code, Login: "jane", Email: "stranger@example.org"}); err == nil {
			t.Fatal("a wrong email was granted a token")
		}
	}
	const racers = 20
	var wg sync.WaitGroup
	for range racers {
		wg.Go(func() {
			if _, err := f.h.Login(ctx, commands.Login{Provider: f.code, Login: "jane", Password: "wrong"}); !errors.Is(err, domain.ErrInvalidCredentials) {
				t.Errorf("wrong password: %v", err)
			}
		})
	}
	wg.Wait()
	if n := countEvents(t, f, domain.UserStream(f.code, "jane"), "AccountLocked"); n != 1 {
		t.Fatalf("%d AccountLocked recorded, want exactly 1", n)
	}
	got, err := f.h.LoadUser(ctx, f.code, "jane")
	must(t, err)
	want, err := testkit.Handler(t, hidden{f.store}, f.clock, f.keys).LoadUser(ctx, f.code, "jane")
	must(t, err)
	// Every racer is recorded; those that loaded the account after the lock are refused as
	// locked, which the count of wrong passwords leaves out.
	if n := countEvents(t, f, domain.UserStream(f.code, "jane"), "LoginFailed"); n != racers {
		t.Errorf("%d LoginFailed recorded, want %d", n, racers)
	}
	if !reflect.DeepEqual(got, want) || !got.Locked || got.FailedLogins < domain.DefaultPolicy().MaxFailedLogins {
		t.Fatalf("after the race: loaded %+v, full fold %+v", got, want)
	}
}
