package postgres

import (
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"selfreset/eventstore"
	"selfreset/eventstore/chain"
	"selfreset/internal/testkit"
)

// tailsSeen is an Update decision that appends one event of type typ and records, for
// every time it runs, how many events its stream's tail and each other stream's held.
type tailsSeen struct {
	typ  string
	runs [][]int
}

func (d *tailsSeen) decide(tail eventstore.StreamTail, also []eventstore.StreamTail) ([]eventstore.EventData, error) {
	run := []int{len(tail.Events)}
	for _, a := range also {
		run = append(run, len(a.Events))
	}
	d.runs = append(d.runs, run)
	return []eventstore.EventData{event(d.typ)}, nil
}

// chainHolds checks that stream's events are linked, each to the one before it.
func chainHolds(t *testing.T, s *Store, stream string) []eventstore.RecordedEvent {
	t.Helper()
	events, err := s.ReadStream(t.Context(), stream, 0)
	if err != nil {
		t.Fatal(err)
	}
	prev := ""
	for _, e := range events {
		h, err := chain.Hash(chain.OfRecorded(e), prev)
		if err != nil {
			t.Fatal(err)
		}
		if h != e.Metadata.Chain {
			t.Fatalf("%s revision %d: chain %q, want %q", stream, e.Revision, e.Metadata.Chain, h)
		}
		prev = h
	}
	return events
}

// TestAnUpdateOnARememberedHeadIsOneRoundTrip: once an Update has seen a stream's head
// and the head of the stream it reads beside it, the next Update from there decides on
// them and writes in one batch: no read statement, one round trip. What it writes is
// what the two-trip way would have written, chained to the head.
func TestAnUpdateOnARememberedHeadIsOneRoundTrip(t *testing.T) {
	t.Parallel()
	base := openStore(t)
	// The NOTIFY after each commit goes on its own (announce.go), when it will.
	trips := &testkit.Trips{Keep: func(_ *pgx.Conn, sql string) bool { return !strings.Contains(sql, "pg_notify") }}
	s := New(testkit.TracedPool(t, base.pool, trips))
	t.Cleanup(s.Close)
	ctx := t.Context()
	if _, err := s.Append(ctx, "provider", eventstore.NoStream, event("Registered")); err != nil {
		t.Fatal(err)
	}
	beside := []eventstore.StreamRead{{Stream: "provider", From: 1}}
	d := &tailsSeen{typ: "Decided"}
	for from := range uint64(4) {
		trips.Take()
		res, err := s.Update(ctx, "account", from, beside, d.decide)
		if err != nil {
			t.Fatalf("update %d: %v", from, err)
		}
		if res.NextRevision != from {
			t.Fatalf("update %d wrote revision %d", from, res.NextRevision)
		}
		statements, batches := trips.Take()
		// The first reads the new stream and the provider's (two trips); the rest know
		// both heads.
		want := 1
		if from == 0 {
			want = 2
		}
		if statements != 0 || batches != want {
			t.Errorf("update %d: %d statements and %d batches, want 0 and %d", from, statements, batches, want)
		}
	}
	if want := [][]int{{0, 0}, {0, 0}, {0, 0}, {0, 0}}; !slices.EqualFunc(d.runs, want, slices.Equal) {
		t.Errorf("decisions saw tails %v, want %v", d.runs, want)
	}
	if events := chainHolds(t, s, "account"); len(events) != 4 {
		t.Errorf("the stream holds %d events, want 4", len(events))
	}
	if n := s.updates.stale.Load(); n != 0 {
		t.Errorf("%d groups found a remembered head moved, want 0", n)
	}
}

// TestAMovedHeadIsReadAgain: when another writer (another process, or an Append here)
// moved a stream after an Update remembered its head, the one-trip batch finds it moved,
// writes nothing, and the group is read and decided again: the decision then sees the
// other writer's event and its own lands after it, chained to it.
func TestAMovedHeadIsReadAgain(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		moved string // the stream the other writer appends to
	}{
		{"its own stream", "account"},
		{"a stream read beside it", "provider"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := openStore(t)
			other := New(s.pool) // another process: its own memory of heads
			t.Cleanup(other.Close)
			ctx := t.Context()
			if _, err := s.Append(ctx, "provider", eventstore.NoStream, event("Registered")); err != nil {
				t.Fatal(err)
			}
			beside := []eventstore.StreamRead{{Stream: "provider", From: 1}}
			warm := &tailsSeen{typ: "Decided"}
			for from := range uint64(3) {
				if _, err := s.Update(ctx, "account", from, beside, warm.decide); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := other.Append(ctx, tc.moved, eventstore.Any, event("Elsewhere")); err != nil {
				t.Fatal(err)
			}
			d := &tailsSeen{typ: "Decided"}
			res, err := s.Update(ctx, "account", 3, beside, d.decide)
			if err != nil {
				t.Fatal(err)
			}
			want := [][]int{{0, 0}, {0, 1}} // at once on the remembered heads, then again on what was read
			if tc.moved == "account" {
				want[1] = []int{1, 0}
			}
			if !slices.EqualFunc(d.runs, want, slices.Equal) {
				t.Errorf("the decision saw tails %v, want %v", d.runs, want)
			}
			if n := s.updates.stale.Load(); n != 1 {
				t.Errorf("%d groups found a remembered head moved, want 1", n)
			}
			events := chainHolds(t, s, "account")
			if got, want := types(events), []string{"Decided", "Decided", "Decided"}; tc.moved == "account" {
				want = append(want, "Elsewhere", "Decided")
				if !slices.Equal(got, want) {
					t.Errorf("the stream holds %v, want %v", got, want)
				}
			} else if want = append(want, "Decided"); !slices.Equal(got, want) {
				t.Errorf("the stream holds %v, want %v", got, want)
			}
			if res.NextRevision != uint64(len(events)-1) {
				t.Errorf("the update wrote revision %d, want %d", res.NextRevision, len(events)-1)
			}
		})
	}
}
