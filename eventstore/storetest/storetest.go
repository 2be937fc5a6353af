// Package storetest is the contract every eventstore adapter must pass. It runs against a
// shared store that may already hold events and may be written by others at the same time
// (EventStoreDB cannot be wiped): every subtest writes only to streams of its own, named
// "sttest<random hex>-<name>", and looks at the global feed only from the store's head
// before it wrote, ignoring other streams' events. Adapters that filter the feed by stream
// prefix can rely on the "sttest" prefix.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"selfreset/eventstore"
	"selfreset/eventstore/chain"
)

// timeout bounds every subtest, so that a broken adapter fails instead of hanging.
const timeout = 60 * time.Second

// Run runs the contract suite. newStore may be called by every subtest; it may return the
// same shared store each time or a fresh one, and owns its clean-up (t.Cleanup).
func Run(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	t.Run("Append", func(t *testing.T) { testAppend(t, newStore) })
	t.Run("ReadStream", func(t *testing.T) { testReadStream(t, newStore) })
	t.Run("Idempotency", func(t *testing.T) { testIdempotency(t, newStore) })
	t.Run("ReadAll", func(t *testing.T) { testReadAll(t, newStore) })
	t.Run("SubscribeAll", func(t *testing.T) { testSubscribeAll(t, newStore) })
	t.Run("Concurrency", func(t *testing.T) { testConcurrency(t, newStore) })
	t.Run("Chain", func(t *testing.T) { testChain(t, newStore) })
	t.Run("Snapshots", func(t *testing.T) { testSnapshots(t, newStore) })
	t.Run("Update", func(t *testing.T) { testUpdate(t, newStore) })
	t.Run("Redelivered", func(t *testing.T) { testRedelivered(t, newStore) })
}

// fixture is one subtest's view of the store: a context with a deadline and a stream
// prefix nobody else uses.
type fixture struct {
	t      *testing.T
	ctx    context.Context
	store  eventstore.Store
	prefix string
}

func setup(t *testing.T, newStore func(t *testing.T) eventstore.Store) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return &fixture{t: t, ctx: ctx, store: newStore(t), prefix: "sttest" + hex.EncodeToString(b) + "-"}
}

// in returns the fixture for a nested subtest: same store, prefix and deadline, but
// failures reported on t (FailNow must run on the goroutine of its own test).
func (f *fixture) in(t *testing.T) *fixture {
	g := *f
	g.t = t
	return &g
}

func (f *fixture) stream(name string) string { return f.prefix + name }

func (f *fixture) head() eventstore.Position {
	f.t.Helper()
	p, err := f.store.Head(f.ctx)
	if err != nil {
		f.t.Fatalf("Head: %v", err)
	}
	return p
}

func (f *fixture) append(stream string, expected eventstore.ExpectedRevision, events ...eventstore.EventData) eventstore.AppendResult {
	f.t.Helper()
	res, err := f.store.Append(f.ctx, stream, expected, events...)
	if err != nil {
		f.t.Fatalf("Append(%s, %s): %v", stream, expected, err)
	}
	return res
}

func (f *fixture) readStream(stream string, from uint64) []eventstore.RecordedEvent {
	f.t.Helper()
	evs, err := f.store.ReadStream(f.ctx, stream, from)
	if err != nil {
		f.t.Fatalf("ReadStream(%s, %d): %v", stream, from, err)
	}
	return evs
}

// readFeed pages through the feed from after with the given page size until it has seen
// want events of this fixture's streams, and returns those. Appends can take a moment to
// become readable in the feed (Postgres: until older transactions end), so an empty page
// means "poll again", bounded by the fixture's deadline. Every page must hold only events
// strictly after the previous one and at most limit events.
func (f *fixture) readFeed(after eventstore.Position, limit, want int) []eventstore.RecordedEvent {
	f.t.Helper()
	var own []eventstore.RecordedEvent
	pos := after
	for len(own) < want {
		page, err := f.store.ReadAll(f.ctx, pos, limit)
		if err != nil {
			f.t.Fatalf("ReadAll(%v, %d): %v", pos, limit, err)
		}
		if len(page) > limit {
			f.t.Fatalf("ReadAll(%v, %d) returned %d events", pos, limit, len(page))
		}
		for _, e := range page {
			if !pos.Less(e.Position) {
				f.t.Fatalf("ReadAll(%v): event at %v is not after %v", after, e.Position, pos)
			}
			pos = e.Position
			if strings.HasPrefix(e.Stream, f.prefix) {
				own = append(own, e)
			}
		}
		if len(page) == 0 {
			select {
			case <-f.ctx.Done():
				f.t.Fatalf("feed from %v: saw %d of %d events before the deadline", after, len(own), want)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return own
}

// baseTime has sub-millisecond digits and a non-UTC zone, to check that OccurredAt comes
// back in UTC and exact to the millisecond.
func baseTime() time.Time {
	return time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.FixedZone("UTC+2", 2*60*60))
}

func newEvent(typ string, n int) eventstore.EventData {
	return eventstore.EventData{
		ID:            uuid.New(),
		Type:          typ,
		SchemaVersion: 1,
		OccurredAt:    baseTime().Add(time.Duration(n) * time.Second),
		Data:          json.RawMessage(fmt.Sprintf(`{"n": %d}`, n)),
		Metadata:      eventstore.Metadata{Actor: "storetest", CorrelationID: fmt.Sprintf("corr-%d", n)},
	}
}

func newEvents(typ string, count int) []eventstore.EventData {
	out := make([]eventstore.EventData, count)
	for i := range out {
		out[i] = newEvent(typ, i)
	}
	return out
}

func dataIDs(events []eventstore.EventData) []uuid.UUID {
	out := make([]uuid.UUID, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

func recordedIDs(events []eventstore.RecordedEvent) []uuid.UUID {
	out := make([]uuid.UUID, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func testAppend(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	cases := []struct {
		name     string
		prior    int // events in the stream before the append
		expected eventstore.ExpectedRevision
		count    int
		conflict bool
		wantNext uint64
	}{
		{name: "NoStream creates a stream", prior: 0, expected: eventstore.NoStream, count: 2, wantNext: 1},
		{name: "NoStream on an existing stream conflicts", prior: 1, expected: eventstore.NoStream, count: 1, conflict: true},
		{name: "Exact current revision appends", prior: 3, expected: eventstore.Exact(2), count: 2, wantNext: 4},
		{name: "Exact older revision conflicts", prior: 3, expected: eventstore.Exact(1), count: 1, conflict: true},
		{name: "Exact newer revision conflicts", prior: 3, expected: eventstore.Exact(3), count: 1, conflict: true},
		{name: "Exact on a missing stream conflicts", prior: 0, expected: eventstore.Exact(0), count: 1, conflict: true},
		{name: "StreamExists on a missing stream conflicts", prior: 0, expected: eventstore.StreamExists, count: 1, conflict: true},
		{name: "StreamExists on an existing stream appends", prior: 2, expected: eventstore.StreamExists, count: 1, wantNext: 2},
		{name: "Any on a missing stream appends", prior: 0, expected: eventstore.Any, count: 1, wantNext: 0},
		{name: "Any on an existing stream appends", prior: 2, expected: eventstore.Any, count: 3, wantNext: 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := setup(t, newStore)
			s := f.stream("append")
			prior := newEvents("Prior", tc.prior)
			if tc.prior > 0 {
				f.append(s, eventstore.NoStream, prior...)
			}
			headBefore := f.head()
			events := newEvents("Appended", tc.count)
			res, err := f.store.Append(f.ctx, s, tc.expected, events...)
			if tc.conflict {
				if !errors.Is(err, eventstore.ErrConflict) {
					t.Fatalf("Append(%s) = %v, want ErrConflict", tc.expected, err)
				}
				// A rejected append writes nothing.
				got, err := f.store.ReadStream(f.ctx, s, 0)
				if tc.prior == 0 {
					if !errors.Is(err, eventstore.ErrStreamNotFound) {
						t.Fatalf("after the conflict ReadStream = %d events, %v; want ErrStreamNotFound", len(got), err)
					}
					return
				}
				if err != nil {
					t.Fatalf("ReadStream: %v", err)
				}
				if !reflect.DeepEqual(recordedIDs(got), dataIDs(prior)) {
					t.Fatalf("after the conflict the stream holds %v, want %v", recordedIDs(got), dataIDs(prior))
				}
				return
			}
			if err != nil {
				t.Fatalf("Append(%s): %v", tc.expected, err)
			}
			if res.NextRevision != tc.wantNext {
				t.Errorf("NextRevision = %d, want %d", res.NextRevision, tc.wantNext)
			}
			if res.Position == eventstore.Start || !headBefore.Less(res.Position) {
				t.Errorf("Position = %v, want one after the head before the append (%v)", res.Position, headBefore)
			}
			got := f.readStream(s, 0)
			want := append(dataIDs(prior), dataIDs(events)...)
			if !reflect.DeepEqual(recordedIDs(got), want) {
				t.Fatalf("stream holds %v, want %v", recordedIDs(got), want)
			}
		})
	}

	t.Run("Exact chain of appends", func(t *testing.T) { testExactChain(t, newStore) })
}

func testExactChain(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	f := setup(t, newStore)
	s := f.stream("chain")
	res := f.append(s, eventstore.NoStream, newEvent("First", 0))
	for i := 1; i <= 5; i++ {
		next := f.append(s, eventstore.Exact(res.NextRevision), newEvent("Next", i))
		if next.NextRevision != res.NextRevision+1 {
			t.Fatalf("append %d: NextRevision = %d, want %d", i, next.NextRevision, res.NextRevision+1)
		}
		if !res.Position.Less(next.Position) {
			t.Fatalf("append %d: Position %v is not after %v", i, next.Position, res.Position)
		}
		res = next
	}
	if _, err := f.store.Append(f.ctx, s, eventstore.Exact(res.NextRevision-1), newEvent("Stale", 9)); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("stale Exact: %v, want ErrConflict", err)
	}
}

// envelopeEvents use every envelope field, with data and times that catch lossy
// encodings (key order, escapes, sub-millisecond times).
func envelopeEvents() []eventstore.EventData {
	return []eventstore.EventData{
		{
			ID:            uuid.New(),
			Type:          "ThingHappened",
			SchemaVersion: 3,
			OccurredAt:    baseTime(),
			Data:          json.RawMessage(`{"b": [1, 2.5, {"c": null}], "a": "x\u00e9y", "t": true}`),
			Metadata: eventstore.Metadata{
				Actor:         "admin@ACME",
				CorrelationID: uuid.NewString(),
				CausationID:   uuid.NewString(),
				ClientIP:      "2001:db8::1",
				UserAgent:     "Mozilla/5.0 (X11; Linux x86_64) storetest",
			},
		},
		{
			ID:            uuid.New(),
			Type:          "OtherThing",
			SchemaVersion: 1,
			OccurredAt:    baseTime().Add(1500 * time.Microsecond),
			Data:          json.RawMessage(`{}`),
			Metadata:      eventstore.Metadata{Actor: "system"},
		},
		{
			ID:            uuid.New(),
			Type:          "ThingHappened",
			SchemaVersion: 2,
			OccurredAt:    time.Date(2030, 1, 2, 3, 4, 5, 6_000_000, time.UTC),
			Data:          json.RawMessage(`{"nested": {"deep": ["x"]}}`),
			Metadata:      eventstore.Metadata{ClientIP: "192.0.2.7"},
		},
	}
}

func testReadStream(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	f := setup(t, newStore)
	s := f.stream("roundtrip")
	events := envelopeEvents()
	f.append(s, eventstore.NoStream, events[:2]...)
	f.append(s, eventstore.Exact(1), events[2:]...)

	t.Run("round-trips every envelope field in revision order", func(t *testing.T) {
		f := f.in(t)
		got := f.readStream(s, 0)
		if len(got) != len(events) {
			t.Fatalf("read %d events, want %d", len(got), len(events))
		}
		for i, g := range got {
			w := events[i]
			if g.ID != w.ID || g.Type != w.Type || g.SchemaVersion != w.SchemaVersion || g.Stream != s || g.Revision != uint64(i) {
				t.Errorf("event %d: got id %s type %q v%d stream %q revision %d, want %s %q v%d %q %d",
					i, g.ID, g.Type, g.SchemaVersion, g.Stream, g.Revision, w.ID, w.Type, w.SchemaVersion, s, i)
			}
			if g.Position == eventstore.Start {
				t.Errorf("event %d: zero position", i)
			}
			if i > 0 && !got[i-1].Position.Less(g.Position) {
				t.Errorf("event %d: position %v is not after %v", i, g.Position, got[i-1].Position)
			}
			if g.OccurredAt.Location() != time.UTC {
				t.Errorf("event %d: OccurredAt in %v, want UTC", i, g.OccurredAt.Location())
			}
			if !g.OccurredAt.Truncate(time.Millisecond).Equal(w.OccurredAt.Truncate(time.Millisecond)) {
				t.Errorf("event %d: OccurredAt = %v, want %v (to the millisecond)", i, g.OccurredAt, w.OccurredAt.UTC())
			}
			if !jsonEqual(g.Data, w.Data) {
				t.Errorf("event %d: Data = %s, want %s", i, g.Data, w.Data)
			}
			if gm := withoutChain(g.Metadata); gm != w.Metadata {
				t.Errorf("event %d: Metadata = %+v, want %+v (apart from the chain)", i, gm, w.Metadata)
			}
		}
		checkChain(t, s, got)
	})

	t.Run("from skips earlier revisions", func(t *testing.T) {
		f := f.in(t)
		for from := uint64(0); from <= 4; from++ {
			got := f.readStream(s, from)
			var want []uuid.UUID
			if from < uint64(len(events)) {
				want = dataIDs(events[from:])
			}
			if len(got) != len(want) || (len(want) > 0 && !reflect.DeepEqual(recordedIDs(got), want)) {
				t.Errorf("from %d: got %v, want %v", from, recordedIDs(got), want)
			}
			for i, g := range got {
				if g.Revision != from+uint64(i) {
					t.Errorf("from %d: event %d has revision %d", from, i, g.Revision)
				}
			}
		}
	})

	t.Run("missing stream is ErrStreamNotFound", func(t *testing.T) {
		f := f.in(t)
		got, err := f.store.ReadStream(f.ctx, f.stream("missing"), 0)
		if !errors.Is(err, eventstore.ErrStreamNotFound) {
			t.Fatalf("ReadStream(missing) = %d events, %v; want ErrStreamNotFound", len(got), err)
		}
	})

	t.Run("ReadStreams answers each read as ReadStream, cut to its Max", func(t *testing.T) { testReadStreams(f.in(t), s) })
}

// testReadStreams reads s (five events) and a missing stream through eventstore.ReadStreams.
func testReadStreams(f *fixture, s string) {
	t := f.t
	reads := []eventstore.StreamRead{{Stream: s, From: 0}, {Stream: f.stream("missing"), From: 0},
		{Stream: s, From: 2}, {Stream: s, From: 9}, {Stream: s, From: 1},
		{Stream: s, From: 0, Max: 2}, {Stream: s, From: 1, Max: 10}, {Stream: f.stream("missing"), Max: 1}}
	got, err := eventstore.ReadStreams(f.ctx, f.store, reads)
	if err != nil {
		t.Fatalf("ReadStreams: %v", err)
	}
	if len(got) != len(reads) {
		t.Fatalf("ReadStreams answered %d reads, want %d", len(got), len(reads))
	}
	for i, r := range reads {
		want, err := f.store.ReadStream(f.ctx, r.Stream, r.From)
		if r.Max > 0 && len(want) > r.Max {
			want = want[:r.Max]
		}
		if found := !errors.Is(err, eventstore.ErrStreamNotFound); got[i].Found != found {
			t.Errorf("read %d (%s from %d): Found = %v, ReadStream says %v (%v)", i, r.Stream, r.From, got[i].Found, found, err)
		}
		if !reflect.DeepEqual(recordedIDs(got[i].Events), recordedIDs(want)) {
			t.Errorf("read %d (%s from %d): %v, ReadStream gives %v", i, r.Stream, r.From, recordedIDs(got[i].Events), recordedIDs(want))
		}
		for j, e := range got[i].Events {
			if e.Revision != r.From+uint64(j) || e.Stream != r.Stream || e.Position != want[j].Position {
				t.Errorf("read %d: event %d at %s revision %d position %v, want %s revision %d position %v",
					i, j, e.Stream, e.Revision, e.Position, r.Stream, r.From+uint64(j), want[j].Position)
			}
		}
	}
}

func testIdempotency(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	t.Run("re-appending the same ids with NoStream is a no-op", func(t *testing.T) {
		f := setup(t, newStore)
		s := f.stream("idem")
		headBefore := f.head()
		events := newEvents("Once", 2)
		first := f.append(s, eventstore.NoStream, events...)
		again, err := f.store.Append(f.ctx, s, eventstore.NoStream, events...)
		if err != nil {
			t.Fatalf("retried append: %v", err)
		}
		if again.NextRevision != first.NextRevision {
			t.Errorf("retried append: NextRevision = %d, want %d", again.NextRevision, first.NextRevision)
		}
		if got := f.readStream(s, 0); !reflect.DeepEqual(recordedIDs(got), dataIDs(events)) {
			t.Fatalf("stream holds %v, want %v", recordedIDs(got), dataIDs(events))
		}
		// A marker appended after the retry bounds the feed check: nothing of ours between.
		marker := newEvent("Marker", 9)
		f.append(f.stream("marker"), eventstore.NoStream, marker)
		own := f.readFeed(headBefore, 100, 3)
		want := append(dataIDs(events), marker.ID)
		if !reflect.DeepEqual(recordedIDs(own), want) {
			t.Fatalf("feed holds %v, want %v", recordedIDs(own), want)
		}
	})

	t.Run("re-appending the same ids with Exact is a no-op", func(t *testing.T) {
		f := setup(t, newStore)
		s := f.stream("idem")
		f.append(s, eventstore.NoStream, newEvent("First", 0))
		e := newEvent("Second", 1)
		first := f.append(s, eventstore.Exact(0), e)
		again, err := f.store.Append(f.ctx, s, eventstore.Exact(0), e)
		if err != nil {
			t.Fatalf("retried append: %v", err)
		}
		if again.NextRevision != first.NextRevision {
			t.Errorf("retried append: NextRevision = %d, want %d", again.NextRevision, first.NextRevision)
		}
		if got := f.readStream(s, 0); len(got) != 2 {
			t.Fatalf("stream holds %d events, want 2", len(got))
		}
	})
}

// appendInterleaved appends to a, b and c in turn, one append after the other, and
// returns the ids in the order the feed must hold them.
func appendInterleaved(f *fixture, a, b, c string) []uuid.UUID {
	// Appended one after the other, so feed order is this order.
	type write struct {
		stream   string
		expected eventstore.ExpectedRevision
		events   []eventstore.EventData
	}
	writes := []write{
		{a, eventstore.NoStream, newEvents("A", 2)},
		{b, eventstore.NoStream, newEvents("B", 1)},
		{a, eventstore.Exact(1), newEvents("A", 1)},
		{c, eventstore.Any, newEvents("C", 3)},
		{b, eventstore.StreamExists, newEvents("B", 2)},
	}
	var want []uuid.UUID
	for _, w := range writes {
		f.append(w.stream, w.expected, w.events...)
		want = append(want, dataIDs(w.events)...)
	}
	return want
}

// checkFeedMatchesStreams compares the feed's events of each stream with ReadStream's.
func checkFeedMatchesStreams(t *testing.T, f *fixture, feed []eventstore.RecordedEvent, streams ...string) {
	t.Helper()
	for _, s := range streams {
		var fromFeed []eventstore.RecordedEvent
		for _, e := range feed {
			if e.Stream == s {
				fromFeed = append(fromFeed, e)
			}
		}
		fromStream := f.readStream(s, 0)
		if len(fromFeed) != len(fromStream) {
			t.Fatalf("%s: feed has %d events, stream %d", s, len(fromFeed), len(fromStream))
		}
		for i := range fromStream {
			g, w := fromFeed[i], fromStream[i]
			if g.ID != w.ID || g.Revision != w.Revision || g.Position != w.Position || g.Type != w.Type ||
				g.SchemaVersion != w.SchemaVersion || !g.OccurredAt.Equal(w.OccurredAt) || g.Metadata != w.Metadata || !jsonEqual(g.Data, w.Data) {
				t.Errorf("%s event %d: feed %+v, stream %+v", s, i, g, w)
			}
		}
	}
}

func testReadAll(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	f := setup(t, newStore)
	a, b, c := f.stream("a"), f.stream("b"), f.stream("c")
	headBefore := f.head()

	want := appendInterleaved(f, a, b, c)
	own := f.readFeed(headBefore, 1000, len(want))

	t.Run("returns events in append order", func(t *testing.T) {
		if !reflect.DeepEqual(recordedIDs(own), want) {
			t.Fatalf("feed holds %v, want %v", recordedIDs(own), want)
		}
	})

	t.Run("positions strictly increase", func(t *testing.T) {
		f := f.in(t)
		page, err := f.store.ReadAll(f.ctx, headBefore, 1000)
		if err != nil {
			t.Fatalf("ReadAll: %v", err)
		}
		prev := headBefore
		for _, e := range page {
			if !prev.Less(e.Position) {
				t.Fatalf("position %v follows %v", e.Position, prev)
			}
			prev = e.Position
		}
	})

	t.Run("agrees with ReadStream", func(t *testing.T) {
		f := f.in(t)
		checkFeedMatchesStreams(t, f, own, a, b, c)
	})

	t.Run("returns only events after the position", func(t *testing.T) {
		f := f.in(t)
		for _, k := range []int{0, 4, len(own) - 2} {
			after := own[k].Position
			rest := f.readFeed(after, 1000, len(own)-k-1)
			if !reflect.DeepEqual(recordedIDs(rest), want[k+1:]) {
				t.Errorf("after event %d: got %v, want %v", k, recordedIDs(rest), want[k+1:])
			}
		}
	})

	t.Run("respects limit", func(t *testing.T) {
		f := f.in(t)
		for _, limit := range []int{1, 3} {
			page, err := f.store.ReadAll(f.ctx, headBefore, limit)
			if err != nil {
				t.Fatalf("ReadAll(limit %d): %v", limit, err)
			}
			// At least len(want) events are readable after headBefore.
			if len(page) != limit {
				t.Errorf("ReadAll(limit %d) returned %d events", limit, len(page))
			}
		}
	})

	t.Run("paging visits every event once", func(t *testing.T) {
		f := f.in(t)
		// readFeed resumes each page from the last position seen and checks they increase.
		paged := f.readFeed(headBefore, 2, len(want))
		if !reflect.DeepEqual(recordedIDs(paged), want) {
			t.Fatalf("paging by 2: got %v, want %v", recordedIDs(paged), want)
		}
	})

	t.Run("Head covers the appended events", func(t *testing.T) {
		f := f.in(t)
		head := f.head()
		if head.Less(own[len(own)-1].Position) {
			t.Errorf("Head %v is before the last appended event at %v", head, own[len(own)-1].Position)
		}
		if !headBefore.Less(own[0].Position) {
			t.Errorf("first appended event at %v is not after the earlier Head %v", own[0].Position, headBefore)
		}
	})
}

// collector is a subscription handler that keeps this fixture's events and checks what
// the contract promises of any delivery: strictly increasing positions and, per stream,
// revisions 0, 1, 2... with nothing skipped, repeated or out of order.
type collector struct {
	prefix string
	mu     sync.Mutex
	own    []eventstore.RecordedEvent
	last   *eventstore.Position
	next   map[string]uint64
	strict bool // streams must be seen from revision 0
	wake   chan struct{}
}

func newCollector(prefix string, strict bool) *collector {
	return &collector{prefix: prefix, next: map[string]uint64{}, strict: strict, wake: make(chan struct{}, 1)}
}

func (c *collector) handle(_ context.Context, e eventstore.RecordedEvent) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last != nil && !c.last.Less(e.Position) {
		return fmt.Errorf("storetest: event at %v delivered after %v", e.Position, *c.last)
	}
	p := e.Position
	c.last = &p
	if !strings.HasPrefix(e.Stream, c.prefix) {
		return nil
	}
	if want, seen := c.next[e.Stream]; (seen || c.strict) && e.Revision != want {
		return fmt.Errorf("storetest: %s: delivered revision %d, want %d (skipped, repeated or out of order)", e.Stream, e.Revision, want)
	}
	c.next[e.Stream] = e.Revision + 1
	c.own = append(c.own, e)
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

// waitFor waits until n events of the fixture have been delivered, and returns them.
func (c *collector) waitFor(f *fixture, sub *subscription, n int) []eventstore.RecordedEvent {
	f.t.Helper()
	for {
		c.mu.Lock()
		if len(c.own) >= n {
			out := append([]eventstore.RecordedEvent(nil), c.own...)
			c.mu.Unlock()
			return out
		}
		got := len(c.own)
		c.mu.Unlock()
		select {
		case <-c.wake:
		case <-sub.done:
			f.t.Fatalf("subscription ended after %d of %d events: %v", got, n, sub.err)
		case <-f.ctx.Done():
			f.t.Fatalf("timed out after %d of %d events", got, n)
		}
	}
}

// subscription runs SubscribeAll in a goroutine; it is cancelled and awaited at clean-up.
type subscription struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before done is closed
}

func subscribe(ctx context.Context, f *fixture, after eventstore.Position, handle eventstore.Handler) *subscription {
	ctx, cancel := context.WithCancel(ctx)
	sub := &subscription{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(sub.done)
		sub.err = f.store.SubscribeAll(ctx, after, handle)
	}()
	f.t.Cleanup(func() {
		cancel()
		select {
		case <-sub.done:
		case <-time.After(timeout):
			f.t.Errorf("SubscribeAll did not return after its context was cancelled")
		}
	})
	return sub
}

// endsWith fails f's test unless the subscription ends, before the deadline, with want.
func (sub *subscription) endsWith(f *fixture, want error) {
	f.t.Helper()
	select {
	case <-sub.done:
		if !errors.Is(sub.err, want) {
			f.t.Fatalf("SubscribeAll returned %v, want %v", sub.err, want)
		}
	case <-f.ctx.Done():
		f.t.Fatalf("SubscribeAll did not return before the deadline")
	}
}

func testSubscribeAll(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	t.Run("delivers history then live appends", func(t *testing.T) { testSubscribeHistoryThenLive(t, newStore) })

	t.Run("starts strictly after the given position", func(t *testing.T) { testSubscribeAfter(t, newStore) })

	t.Run("returns ctx.Err when the context ends", func(t *testing.T) { testSubscribeContextEnds(t, newStore) })

	t.Run("returns the handler's error", func(t *testing.T) { testSubscribeHandlerError(t, newStore) })
}

func testSubscribeHistoryThenLive(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	f := setup(t, newStore)
	s1, s2 := f.stream("one"), f.stream("two")
	headBefore := f.head()
	history := newEvents("History", 3)
	f.append(s1, eventstore.NoStream, history[:2]...)
	f.append(s2, eventstore.NoStream, history[2])

	col := newCollector(f.prefix, true)
	sub := subscribe(f.ctx, f, headBefore, col.handle)
	col.waitFor(f, sub, 3)

	live := newEvents("Live", 3)
	f.append(s1, eventstore.Exact(1), live[0])
	f.append(s2, eventstore.Any, live[1:]...)
	got := col.waitFor(f, sub, 6)
	want := append(dataIDs(history), dataIDs(live)...)
	if !reflect.DeepEqual(recordedIDs(got), want) {
		t.Fatalf("delivered %v, want %v", recordedIDs(got), want)
	}
	sub.cancel()
	sub.endsWith(f, context.Canceled)
}

func testSubscribeAfter(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	f := setup(t, newStore)
	s := f.stream("from")
	headBefore := f.head()
	events := newEvents("E", 3)
	f.append(s, eventstore.NoStream, events...)
	own := f.readFeed(headBefore, 100, 3)

	col := newCollector(f.prefix, false)
	sub := subscribe(f.ctx, f, own[1].Position, col.handle)
	col.waitFor(f, sub, 1)
	later := newEvent("E", 3)
	f.append(s, eventstore.Exact(2), later)
	got := col.waitFor(f, sub, 2)
	want := []uuid.UUID{events[2].ID, later.ID}
	if !reflect.DeepEqual(recordedIDs(got), want) {
		t.Fatalf("delivered %v, want %v", recordedIDs(got), want)
	}
}

func testSubscribeContextEnds(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	f := setup(t, newStore)
	headBefore := f.head()
	f.append(f.stream("marker"), eventstore.NoStream, newEvent("Marker", 0))

	t.Run("cancelled while live", func(t *testing.T) {
		f := f.in(t)
		col := newCollector(f.prefix, true)
		sub := subscribe(f.ctx, f, headBefore, col.handle)
		col.waitFor(f, sub, 1) // caught up
		sub.cancel()
		sub.endsWith(f, context.Canceled)
	})
	t.Run("already cancelled", func(t *testing.T) {
		f := f.in(t)
		ctx, cancel := context.WithCancel(f.ctx)
		cancel()
		sub := subscribe(ctx, f, headBefore, newCollector(f.prefix, true).handle)
		sub.endsWith(f, context.Canceled)
	})
	t.Run("deadline passes", func(t *testing.T) {
		f := f.in(t)
		ctx, cancel := context.WithTimeout(f.ctx, 200*time.Millisecond)
		defer cancel()
		sub := subscribe(ctx, f, headBefore, newCollector(f.prefix, true).handle)
		sub.endsWith(f, context.DeadlineExceeded)
	})
}

func testSubscribeHandlerError(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	f := setup(t, newStore)
	s := f.stream("boom")
	headBefore := f.head()
	errBoom := errors.New("storetest: boom")
	history, live := newEvent("History", 0), newEvent("Live", 1)
	f.append(s, eventstore.NoStream, history)

	failOn := func(id uuid.UUID, col *collector) eventstore.Handler {
		return func(ctx context.Context, e eventstore.RecordedEvent) error {
			if e.ID == id {
				return errBoom
			}
			return col.handle(ctx, e)
		}
	}
	t.Run("on a history event", func(t *testing.T) {
		f := f.in(t)
		sub := subscribe(f.ctx, f, headBefore, failOn(history.ID, newCollector(f.prefix, true)))
		sub.endsWith(f, errBoom)
	})
	t.Run("on a live event", func(t *testing.T) {
		f := f.in(t)
		col := newCollector(f.prefix, true)
		sub := subscribe(f.ctx, f, headBefore, failOn(live.ID, col))
		col.waitFor(f, sub, 1)
		f.append(s, eventstore.Exact(0), live)
		sub.endsWith(f, errBoom)
	})
}

func testConcurrency(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	t.Run("concurrent appenders with a subscriber and a paging reader", func(t *testing.T) { testConcurrentWritersAndReaders(t, newStore) })

	t.Run("concurrent Exact appends: one wins, the rest conflict", func(t *testing.T) { testConcurrentExact(t, newStore) })

	t.Run("concurrent NoStream appends: one wins, the rest conflict", func(t *testing.T) { testConcurrentNoStream(t, newStore) })
}

func testConcurrentWritersAndReaders(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	const (
		writers         = 8
		perWriter       = 500 // events to the writer's own stream
		sharedPerWriter = 25  // events to the one shared stream
		total           = writers * (perWriter + sharedPerWriter)
	)
	f := setup(t, newStore)
	shared := f.stream("shared")
	headBefore := f.head()

	sub := newCollector(f.prefix, true)
	subscription := subscribe(f.ctx, f, headBefore, sub.handle)

	// A second reader pages through ReadAll while the writers run.
	pager := newCollector(f.prefix, true)
	pagerDone := make(chan error, 1)
	go func() { pagerDone <- pageUntil(f, headBefore, 50, total, pager) }()

	written := runWriters(t, f, writers, perWriter, sharedPerWriter, shared)
	for w, ids := range written {
		got := f.readStream(f.stream(fmt.Sprintf("w%d", w)), 0)
		if !reflect.DeepEqual(recordedIDs(got), ids) {
			t.Fatalf("writer %d: stream holds %d events, not the %d written in order", w, len(got), len(ids))
		}
	}
	if got := f.readStream(shared, 0); len(got) != writers*sharedPerWriter {
		t.Fatalf("shared stream holds %d events, want %d", len(got), writers*sharedPerWriter)
	}

	sub.waitFor(f, subscription, total)
	select {
	case err := <-pagerDone:
		if err != nil {
			t.Fatalf("paging reader: %v", err)
		}
	case <-f.ctx.Done():
		t.Fatalf("paging reader did not finish before the deadline")
	}

	// Anything delivered twice would arrive before this sentinel.
	sentinel := newEvent("Sentinel", 0)
	f.append(f.stream("sentinel"), eventstore.NoStream, sentinel)
	got := sub.waitFor(f, subscription, total+1)
	if len(got) != total+1 || got[total].ID != sentinel.ID {
		t.Fatalf("subscriber saw %d events before the sentinel, want %d", len(got)-1, total)
	}
	for _, col := range []*collector{sub, pager} {
		col.mu.Lock()
		for w := range writers {
			if n := col.next[f.stream(fmt.Sprintf("w%d", w))]; n != perWriter {
				t.Errorf("writer %d: reader saw %d events, want %d", w, n, perWriter)
			}
		}
		if n := col.next[shared]; n != writers*sharedPerWriter {
			t.Errorf("shared stream: reader saw %d events, want %d", n, writers*sharedPerWriter)
		}
		col.mu.Unlock()
	}
}

func testConcurrentExact(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	const racers, rounds = 8, 5
	f := setup(t, newStore)
	s := f.stream("race")
	f.append(s, eventstore.NoStream, newEvent("First", 0))
	for round := range rounds {
		errs := race(f, racers, func(int) error {
			_, err := f.store.Append(f.ctx, s, eventstore.Exact(uint64(round)), newEvent("Racer", round))
			return err
		})
		checkOneWinner(t, fmt.Sprintf("round %d", round), errs)
	}
	if got := f.readStream(s, 0); len(got) != rounds+1 {
		t.Fatalf("stream holds %d events, want %d", len(got), rounds+1)
	}
}

func testConcurrentNoStream(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	const racers, rounds = 8, 5
	f := setup(t, newStore)
	for round := range rounds {
		s := f.stream(fmt.Sprintf("create%d", round))
		errs := race(f, racers, func(int) error {
			_, err := f.store.Append(f.ctx, s, eventstore.NoStream, newEvent("Created", round))
			return err
		})
		checkOneWinner(t, s, errs)
		if got := f.readStream(s, 0); len(got) != 1 {
			t.Fatalf("%s holds %d events, want 1", s, len(got))
		}
	}
}

// runWriters runs writeMany for writers writers at once and returns what each wrote to
// its own stream.
func runWriters(t *testing.T, f *fixture, writers, perWriter, sharedPerWriter int, shared string) [][]uuid.UUID {
	t.Helper()
	written := make([][]uuid.UUID, writers)
	errs := race(f, writers, func(w int) error {
		var err error
		written[w], err = writeMany(f, w, perWriter, sharedPerWriter, shared)
		return err
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return written
}

// writeMany appends perWriter events to writer w's own stream in batches of 1 to 4 with
// Exact revisions, and sharedCount single events to the shared stream: even writers with
// Any, odd writers with an Exact revision read just before, retried on conflict.
// It returns the ids written to the own stream, in order.
func writeMany(f *fixture, w, perWriter, sharedCount int, shared string) ([]uuid.UUID, error) {
	own := f.stream(fmt.Sprintf("w%d", w))
	ids := make([]uuid.UUID, 0, perWriter)
	expected := eventstore.NoStream
	sharedEvery := perWriter / sharedCount
	nextShared := 0
	for batch := 0; len(ids) < perWriter; batch++ {
		n := min(1+(batch+w)%4, perWriter-len(ids))
		events := make([]eventstore.EventData, n)
		for i := range events {
			events[i] = newEvent(fmt.Sprintf("W%d", w), len(ids)+i)
		}
		res, err := f.store.Append(f.ctx, own, expected, events...)
		if err != nil {
			return ids, fmt.Errorf("writer %d: append to own stream: %w", w, err)
		}
		ids = append(ids, dataIDs(events)...)
		expected = eventstore.Exact(res.NextRevision)

		for nextShared < sharedCount && len(ids) >= nextShared*sharedEvery {
			if err := appendShared(f, shared, w%2 == 0, newEvent(fmt.Sprintf("S%d", w), nextShared)); err != nil {
				return ids, fmt.Errorf("writer %d: %w", w, err)
			}
			nextShared++
		}
	}
	return ids, nil
}

func appendShared(f *fixture, shared string, useAny bool, e eventstore.EventData) error {
	if useAny {
		_, err := f.store.Append(f.ctx, shared, eventstore.Any, e)
		return err
	}
	for attempt := 0; ; attempt++ {
		expected := eventstore.NoStream
		evs, err := f.store.ReadStream(f.ctx, shared, 0)
		switch {
		case err == nil:
			expected = eventstore.Exact(evs[len(evs)-1].Revision)
		case !errors.Is(err, eventstore.ErrStreamNotFound):
			return fmt.Errorf("read shared stream: %w", err)
		}
		_, err = f.store.Append(f.ctx, shared, expected, e)
		if err == nil || !errors.Is(err, eventstore.ErrConflict) {
			return err
		}
		if attempt == 1000 {
			return fmt.Errorf("append to shared stream: still conflicting after %d attempts: %w", attempt, err)
		}
	}
}

// pageUntil feeds col from ReadAll pages until it holds want events of the fixture.
func pageUntil(f *fixture, after eventstore.Position, limit, want int, col *collector) error {
	pos := after
	for {
		col.mu.Lock()
		got := len(col.own)
		col.mu.Unlock()
		if got >= want {
			return nil
		}
		page, err := f.store.ReadAll(f.ctx, pos, limit)
		if err != nil {
			return err
		}
		for _, e := range page {
			if err := col.handle(f.ctx, e); err != nil {
				return err
			}
			pos = e.Position
		}
		if len(page) == 0 {
			select {
			case <-f.ctx.Done():
				return fmt.Errorf("saw %d of %d events before the deadline", got, want)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
}

// race runs fn(0) to fn(n-1) in n goroutines released at once and returns their errors.
func race(f *fixture, n int, fn func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

func checkOneWinner(t *testing.T, what string, errs []error) {
	t.Helper()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, eventstore.ErrConflict):
			t.Fatalf("%s: racer failed with %v, want ErrConflict", what, err)
		}
	}
	if wins != 1 {
		t.Fatalf("%s: %d racers won, want exactly 1", what, wins)
	}
}

func withoutChain(m eventstore.Metadata) eventstore.Metadata {
	m.Chain = ""
	return m
}

// checkChain fails t unless events, the whole of stream in revision order, form an
// unbroken hash chain.
func checkChain(t *testing.T, stream string, events []eventstore.RecordedEvent) {
	t.Helper()
	prev := ""
	for i, e := range events {
		if e.Revision != uint64(i) {
			t.Fatalf("%s: event %d has revision %d", stream, i, e.Revision)
		}
		want, err := chain.Hash(chain.OfRecorded(e), prev)
		if err != nil {
			t.Fatalf("%s@%d: %v", stream, e.Revision, err)
		}
		if e.Metadata.Chain != want {
			t.Fatalf("%s@%d: chain = %q, want %q", stream, e.Revision, e.Metadata.Chain, want)
		}
		prev = want
	}
}

// checkStreamChain fails f's test unless stream holds want events that form an unbroken
// hash chain.
func (f *fixture) checkStreamChain(stream string, want int) {
	f.t.Helper()
	got := f.readStream(stream, 0)
	if len(got) != want {
		f.t.Fatalf("%s holds %d events, want %d", stream, len(got), want)
	}
	checkChain(f.t, stream, got)
}

func testChain(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	t.Run("each append links to the stream's last event", func(t *testing.T) {
		f := setup(t, newStore)
		s := f.stream("chained")
		res := f.append(s, eventstore.NoStream, newEvents("A", 3)...)
		res = f.append(s, eventstore.Exact(res.NextRevision), newEvents("B", 1)...)
		f.append(s, eventstore.Any, newEvents("C", 2)...)
		f.append(s, eventstore.StreamExists, newEvents("D", 1)...)
		f.checkStreamChain(s, 7)
	})

	t.Run("a chain value given by the caller is replaced", func(t *testing.T) {
		f := setup(t, newStore)
		s := f.stream("forged")
		e := newEvent("Forged", 0)
		e.Metadata.Chain = strings.Repeat("0", chain.HashLen)
		f.append(s, eventstore.NoStream, e)
		f.checkStreamChain(s, 1)
	})

	t.Run("an idempotent retry leaves the chain as it was", func(t *testing.T) {
		f := setup(t, newStore)
		s := f.stream("retry")
		events := newEvents("R", 2)
		f.append(s, eventstore.NoStream, events...)
		f.append(s, eventstore.Any, newEvents("S", 1)...)
		f.append(s, eventstore.NoStream, events...)
		f.checkStreamChain(s, 3)
	})

	t.Run("concurrent Any appends chain without forks", func(t *testing.T) {
		f := setup(t, newStore)
		s := f.stream("any")
		const writers, each = 6, 8
		errs := race(f, writers, func(int) error {
			for i := range each {
				n := 1 + i%2
				if _, err := f.store.Append(f.ctx, s, eventstore.Any, newEvents("Any", n)...); err != nil {
					return err
				}
			}
			return nil
		})
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("Any append: %v", err)
		}
		f.checkStreamChain(s, writers*(each/2)*3)
	})
}

// testUpdate is the contract of the optional eventstore.Updater.
func testUpdate(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	f := setup(t, newStore)
	up, ok := f.store.(eventstore.Updater)
	if !ok {
		t.Skipf("%T does not implement the optional eventstore.Updater", f.store)
	}
	s, other := f.stream("updated"), f.stream("other")
	f.append(s, eventstore.NoStream, newEvents("Before", 3)...)
	f.append(other, eventstore.NoStream, newEvents("Other", 2)...)

	t.Run("reads as ReadStreams and appends after the stream's last event", func(t *testing.T) {
		f := f.in(t)
		also := []eventstore.StreamRead{{Stream: other, From: 1}, {Stream: f.stream("missing")}, {Stream: other, Max: 1}}
		added := []eventstore.EventData{newEvent("Decided", 10), newEvent("Decided", 11)}
		var gotTail eventstore.StreamTail
		var gotAlso []eventstore.StreamTail
		res, err := up.Update(f.ctx, s, 1, also, func(tail eventstore.StreamTail, others []eventstore.StreamTail) ([]eventstore.EventData, error) {
			gotTail, gotAlso = tail, others
			return added, nil
		})
		if err != nil {
			t.Fatalf("Update: %v", err)
		}
		if !gotTail.Found || !reflect.DeepEqual(recordedIDs(gotTail.Events), recordedIDs(f.readStream(s, 1)[:2])) {
			t.Errorf("decide got the tail %v (found %v), want revisions 1 and 2", recordedIDs(gotTail.Events), gotTail.Found)
		}
		if len(gotAlso) != 3 || !gotAlso[0].Found || len(gotAlso[0].Events) != 1 || gotAlso[0].Events[0].Revision != 1 || gotAlso[1].Found ||
			!gotAlso[2].Found || len(gotAlso[2].Events) != 1 || gotAlso[2].Events[0].Revision != 0 {
			t.Errorf("decide got the other streams %+v, want %s from 1 (one event), a missing one, and %s's first event alone", gotAlso, other, other)
		}
		if res.NextRevision != 4 || res.Position == eventstore.Start {
			t.Errorf("Update = %+v, want revision 4 and a position", res)
		}
		got := f.readStream(s, 0)
		if len(got) != 5 || !reflect.DeepEqual(recordedIDs(got[3:]), dataIDs(added)) || got[4].Position != res.Position {
			t.Fatalf("stream after Update: %v, want the 3 events before and then %v at %v", recordedIDs(got), dataIDs(added), res.Position)
		}
		checkChain(t, s, got)
	})

	t.Run("a refusal or no events writes nothing", func(t *testing.T) {
		f := f.in(t)
		refused := errors.New("refused")
		for _, tc := range []struct {
			name   string
			events []eventstore.EventData
			err    error
		}{{"refusal", []eventstore.EventData{newEvent("Never", 0)}, refused}, {"no events", nil, nil}} {
			before := len(f.readStream(s, 0))
			res, err := up.Update(f.ctx, s, 0, nil, func(eventstore.StreamTail, []eventstore.StreamTail) ([]eventstore.EventData, error) {
				return tc.events, tc.err
			})
			if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) || res != (eventstore.AppendResult{}) {
				t.Errorf("%s: Update = %+v, %v; want a zero result and %v", tc.name, res, err, tc.err)
			}
			if after := len(f.readStream(s, 0)); after != before {
				t.Errorf("%s: the stream went from %d events to %d", tc.name, before, after)
			}
		}
	})

	t.Run("creates a missing stream", func(t *testing.T) {
		f := f.in(t)
		fresh := f.stream("created")
		res, err := up.Update(f.ctx, fresh, 0, nil, func(tail eventstore.StreamTail, _ []eventstore.StreamTail) ([]eventstore.EventData, error) {
			if tail.Found {
				t.Errorf("a missing stream was found: %v", recordedIDs(tail.Events))
			}
			return []eventstore.EventData{newEvent("Created", 0)}, nil
		})
		if err != nil || res.NextRevision != 0 {
			t.Fatalf("Update of a missing stream = %+v, %v; want revision 0", res, err)
		}
		checkChain(t, fresh, f.readStream(fresh, 0))
	})

	t.Run("concurrent updates of one stream never conflict", func(t *testing.T) { testConcurrentUpdates(f.in(t), up) })
	t.Run("concurrent updates of many streams each decide on their own", func(t *testing.T) { testUpdatesOfManyStreams(f.in(t), up) })
}

// testUpdatesOfManyStreams races updates of several streams, two per stream, each
// refusing or appending as its stream and the stream it also reads stand: an adapter
// that runs updates together (the Postgres one, in one transaction) must still give each
// its own tails, append after its own head and answer it alone.
func testUpdatesOfManyStreams(f *fixture, up eventstore.Updater) {
	t := f.t
	const streams = 6
	refused := errors.New("refused")
	names := make([]string, streams)
	for i := range names {
		names[i] = f.stream(fmt.Sprintf("many-%d", i))
		f.append(names[i], eventstore.NoStream, newEvents("Before", i+1)...)
	}
	errs := race(f, 2*streams, func(r int) error {
		i := r % streams
		next := names[(i+1)%streams]
		_, err := up.Update(f.ctx, names[i], 0, []eventstore.StreamRead{{Stream: next}},
			func(tail eventstore.StreamTail, also []eventstore.StreamTail) ([]eventstore.EventData, error) {
				if i == 0 {
					return nil, refused
				}
				// N is what this stream held; M what the next one held before the race.
				m := 0
				for _, e := range also[0].Events {
					if e.Type == "Before" {
						m++
					}
				}
				return []eventstore.EventData{newEvent("Decided", len(tail.Events)*100+m)}, nil
			})
		return err
	})
	for r, err := range errs {
		if want := error(nil); r%streams == 0 {
			want = refused
			if !errors.Is(err, want) {
				t.Errorf("racer %d on %s: %v, want the refusal", r, names[0], err)
			}
		} else if err != nil {
			t.Errorf("racer %d on %s: %v", r, names[r%streams], err)
		}
	}
	for i, name := range names {
		got := f.readStream(name, 0)
		before, want := i+1, i+1
		if i > 0 {
			want += 2
		}
		if len(got) != want {
			t.Fatalf("%s holds %d events, want %d", name, len(got), want)
		}
		for k, e := range got[before:] {
			var d struct{ N int }
			if err := json.Unmarshal(e.Data, &d); err != nil {
				t.Fatal(err)
			}
			if here, there := (before + k), (i+1)%streams+1; d.N != here*100+there {
				t.Errorf("%s: decision %d saw %d events here and %d in the next stream, want %d and %d", name, k, d.N/100, d.N%100, here, there)
			}
		}
		checkChain(t, name, got)
	}
}

// testConcurrentUpdates races updates of one stream, each appending how many events it read.
func testConcurrentUpdates(f *fixture, up eventstore.Updater) {
	t := f.t
	const racers = 8
	counted := f.stream("counted")
	errs := race(f, racers, func(i int) error {
		_, err := up.Update(f.ctx, counted, 0, nil, func(tail eventstore.StreamTail, _ []eventstore.StreamTail) ([]eventstore.EventData, error) {
			// Each decision sees every earlier one: the stream is locked from the read on.
			return []eventstore.EventData{newEvent("Counted", len(tail.Events))}, nil
		})
		return err
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("racer %d: %v", i, err)
		}
	}
	got := f.readStream(counted, 0)
	if len(got) != racers {
		t.Fatalf("stream holds %d events, want %d", len(got), racers)
	}
	for i, e := range got {
		var d struct{ N int }
		if err := json.Unmarshal(e.Data, &d); err != nil || d.N != i {
			t.Errorf("event %d was decided on %d events before it (%v), want %d", i, d.N, err, i)
		}
	}
	checkChain(t, counted, got)
}

// testRedelivered: writes marked eventstore.WithRedelivery, which an adapter may commit
// without waiting for stable storage, are stored, chained, idempotent and in the feed
// like any other.
func testRedelivered(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	f := setup(t, newStore)
	ctx := eventstore.WithRedelivery(f.ctx)
	s := f.stream("redelivered")
	before := f.head()
	queued := newEvents("Queued", 2)
	for range 2 { // the second is a redelivery: a no-op
		if _, err := f.store.Append(ctx, s, eventstore.NoStream, queued...); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	want := dataIDs(queued)
	if up, ok := f.store.(eventstore.Updater); ok {
		decided := []eventstore.EventData{newEvent("Decided", 2)}
		if _, err := up.Update(ctx, s, 2, nil, func(eventstore.StreamTail, []eventstore.StreamTail) ([]eventstore.EventData, error) {
			return decided, nil
		}); err != nil {
			t.Fatalf("Update: %v", err)
		}
		want = append(want, dataIDs(decided)...)
	}
	got := f.readStream(s, 0)
	if !reflect.DeepEqual(recordedIDs(got), want) {
		t.Fatalf("stream holds %v, want %v", recordedIDs(got), want)
	}
	checkChain(t, s, got)
	checkFeedMatchesStreams(t, f, f.readFeed(before, 10, len(want)), s)
}
