package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"selfreset/eventstore"
)

// snapFixture is a fixture whose store keeps snapshots.
type snapFixture struct {
	*fixture
	ss eventstore.SnapshotStore
}

func (f *snapFixture) read(t *testing.T, stream string) (eventstore.Snapshot, error) {
	t.Helper()
	return f.ss.ReadSnapshot(f.ctx, stream)
}

func (f *snapFixture) write(t *testing.T, stream string, rev uint64, data string) {
	t.Helper()
	if err := f.ss.WriteSnapshot(f.ctx, stream, eventstore.Snapshot{Revision: rev, Schema: "v1", Data: json.RawMessage(data)}); err != nil {
		t.Fatalf("WriteSnapshot(%s, %d): %v", stream, rev, err)
	}
}

// want fails t unless stream's snapshot is at rev with data.
func (f *snapFixture) want(t *testing.T, stream string, rev uint64, data string) {
	t.Helper()
	got, err := f.read(t, stream)
	if err != nil {
		t.Fatalf("ReadSnapshot(%s): %v", stream, err)
	}
	if got.Revision != rev || got.Schema != "v1" || !jsonEqual(got.Data, json.RawMessage(data)) {
		t.Fatalf("ReadSnapshot(%s) = revision %d schema %q data %s, want revision %d schema v1 data %s",
			stream, got.Revision, got.Schema, got.Data, rev, data)
	}
}

// testSnapshots checks eventstore.SnapshotStore, for adapters that implement it (an
// adapter without one makes its callers fold in full, which the other tests cover).
func testSnapshots(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	f := setup(t, newStore)
	ss, ok := f.store.(eventstore.SnapshotStore)
	if !ok {
		t.Skipf("%T does not implement eventstore.SnapshotStore; its callers fold streams in full", f.store)
	}
	sf := &snapFixture{f, ss}
	read, write, want := sf.read, sf.write, sf.want

	t.Run("missing is ErrSnapshotNotFound", func(t *testing.T) {
		if _, err := read(t, f.stream("none")); !errors.Is(err, eventstore.ErrSnapshotNotFound) {
			t.Fatalf("ReadSnapshot of a stream without one: %v, want ErrSnapshotNotFound", err)
		}
	})
	t.Run("round-trips and is per stream", func(t *testing.T) {
		a, b := f.stream("snap-a"), f.stream("snap-b")
		write(t, a, 3, `{"n": 3, "s": "ä"}`)
		write(t, b, 7, `{"n": 7}`)
		want(t, a, 3, `{"n": 3, "s": "ä"}`)
		want(t, b, 7, `{"n": 7}`)
	})
	t.Run("a later revision replaces, an earlier one is dropped", func(t *testing.T) {
		s := f.stream("snap-order")
		write(t, s, 5, `{"n": 5}`)
		write(t, s, 9, `{"n": 9}`)
		write(t, s, 6, `{"n": 6}`)
		want(t, s, 9, `{"n": 9}`)
	})
	t.Run("invalid JSON is refused and changes nothing", func(t *testing.T) {
		s := f.stream("snap-bad")
		write(t, s, 1, `{"n": 1}`)
		if err := ss.WriteSnapshot(f.ctx, s, eventstore.Snapshot{Revision: 2, Schema: "v1", Data: json.RawMessage(`{`)}); err == nil {
			t.Fatal("WriteSnapshot accepted invalid JSON")
		}
		want(t, s, 1, `{"n": 1}`)
	})
	t.Run("does not touch the stream or the feed", func(t *testing.T) {
		s := f.stream("snap-events")
		f.append(s, eventstore.NoStream, newEvents("E", 2)...)
		write(t, s, 1, `{"n": 2}`)
		if got := f.readStream(s, 0); len(got) != 2 {
			t.Fatalf("stream holds %d events after a snapshot, want 2", len(got))
		}
		f.append(s, eventstore.Exact(1), newEvent("E", 2))
	})
	t.Run("concurrent writers keep the newest", func(t *testing.T) {
		s := f.stream("snap-race")
		const writers = 8
		var wg sync.WaitGroup
		errs := make([]error, writers)
		for i := range writers {
			wg.Go(func() {
				errs[i] = ss.WriteSnapshot(f.ctx, s, eventstore.Snapshot{Revision: uint64(i), Schema: "v1", Data: json.RawMessage(fmt.Sprintf(`{"n": %d}`, i))})
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("writer %d: %v", i, err)
			}
		}
		want(t, s, writers-1, fmt.Sprintf(`{"n": %d}`, writers-1))
	})
}
