// Package memory implements the event store port in process memory, for tests that
// should not need a database. It keeps the same rules as the other adapters (expected
// revisions, the idempotent-retry rule, the per-stream hash chain of eventstore/chain,
// snapshots) and passes eventstore/storetest, but nothing survives the process: it is
// never a production store.
//
// One mutex orders every append, so the feed is simply the slice of events in append
// order and an event's global position is its index plus one (in both halves of the
// Position, so that positions compare the same whichever half a reader looks at).
// Subscribers wait on a channel that every append closes and replaces.
package memory

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/google/uuid"

	"selfreset/eventstore"
	"selfreset/eventstore/chain"
)

// ErrClosed is returned by every call on a Store after Close, and by its subscriptions
// when Close ends them.
var ErrClosed = errors.New("eventstore/memory: store is closed")

// Store is the in-memory event store. The zero value is not usable: call New.
type Store struct {
	mu        sync.Mutex
	feed      []eventstore.RecordedEvent // in append order; feed[i] is at position i+1
	streams   map[string][]int           // stream -> indexes into feed, in revision order
	ids       map[uuid.UUID]int          // event id -> index into feed (ids are unique store-wide)
	snapshots map[string]eventstore.Snapshot
	changed   chan struct{} // closed (and replaced) by every append and by Close
	closed    bool
}

var (
	_ eventstore.Store         = (*Store)(nil)
	_ eventstore.SnapshotStore = (*Store)(nil)
)

// New returns an empty store.
func New() *Store {
	return &Store{
		streams:   map[string][]int{},
		ids:       map[uuid.UUID]int{},
		snapshots: map[string]eventstore.Snapshot{},
		changed:   make(chan struct{}),
	}
}

func position(index int) eventstore.Position {
	return eventstore.Position{Commit: uint64(index) + 1, Prepare: uint64(index) + 1}
}

// clone returns a copy of e that shares no memory with the store's copy, so that callers
// cannot edit stored events.
func clone(e eventstore.RecordedEvent) eventstore.RecordedEvent {
	e.Data = bytes.Clone(e.Data)
	return e
}

// Append implements eventstore.Store.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("eventstore/memory: append to %q: %w", stream, err)
	}
	if err := eventstore.ValidateAppend(stream, events); err != nil {
		return eventstore.AppendResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return eventstore.AppendResult{}, ErrClosed
	}
	revs := s.streams[stream]
	exists := len(revs) > 0
	var current uint64
	if exists {
		current = uint64(len(revs) - 1)
	}

	fresh, last, err := s.unstored(stream, events)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	if len(events) > 0 && len(fresh) == 0 {
		return eventstore.AppendResult{NextRevision: last.Revision, Position: last.Position}, nil
	}

	if !expected.Check(current, exists) {
		state := "no stream"
		if exists {
			state = fmt.Sprintf("revision %d", current)
		}
		return eventstore.AppendResult{}, fmt.Errorf("eventstore/memory: append to %q: expected %s, stream is at %s: %w", stream, expected, state, eventstore.ErrConflict)
	}
	if len(fresh) == 0 {
		return eventstore.AppendResult{NextRevision: current}, nil // Position unknown: nothing written
	}

	first, prev := uint64(0), ""
	if exists {
		first = current + 1
		prev = s.feed[revs[len(revs)-1]].Metadata.Chain
	}
	// fresh is already a copy: the caller's slice stays as given.
	if _, err := chain.Link(stream, first, prev, fresh); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("eventstore/memory: append to %q: %w", stream, err)
	}
	end := s.write(stream, first, fresh)
	return eventstore.AppendResult{NextRevision: end.Revision, Position: end.Position}, nil
}

// unstored returns the events not yet stored, and the latest of those in stream already.
// Idempotency, as in the other adapters: events already in this stream are skipped, and
// if all are, the append is a retry of one that succeeded and answers as it did. An id
// stored in another stream is a conflict (Postgres: a unique violation). s.mu must be held.
func (s *Store) unstored(stream string, events []eventstore.EventData) ([]eventstore.EventData, *eventstore.RecordedEvent, error) {
	fresh := make([]eventstore.EventData, 0, len(events))
	var last *eventstore.RecordedEvent
	for _, e := range events {
		i, ok := s.ids[e.ID]
		if !ok {
			fresh = append(fresh, e)
			continue
		}
		if s.feed[i].Stream != stream {
			return nil, nil, fmt.Errorf("eventstore/memory: append to %q: event id %s is stored in another stream: %w", stream, e.ID, eventstore.ErrConflict)
		}
		if last == nil || last.Revision < s.feed[i].Revision {
			last = &s.feed[i]
		}
	}
	return fresh, last, nil
}

// write stores events at revisions first, first+1, … of stream, wakes the subscribers
// and returns the last event written. s.mu must be held.
func (s *Store) write(stream string, first uint64, events []eventstore.EventData) eventstore.RecordedEvent {
	for k, e := range events {
		data := bytes.Clone(e.Data)
		if len(bytes.TrimSpace(data)) == 0 {
			data = json.RawMessage("null")
		}
		i := len(s.feed)
		s.feed = append(s.feed, eventstore.RecordedEvent{
			ID:            e.ID,
			Type:          e.Type,
			SchemaVersion: e.SchemaVersion,
			Stream:        stream,
			Revision:      first + uint64(k),
			Position:      position(i),
			OccurredAt:    e.OccurredAt.UTC(),
			Data:          data,
			Metadata:      e.Metadata,
		})
		s.streams[stream] = append(s.streams[stream], i)
		s.ids[e.ID] = i
	}
	s.broadcast()
	return s.feed[len(s.feed)-1]
}

// broadcast wakes every waiting subscriber. s.mu must be held.
func (s *Store) broadcast() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// ReadStream implements eventstore.Store.
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64) ([]eventstore.RecordedEvent, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("eventstore/memory: read stream %q: %w", stream, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	revs, ok := s.streams[stream]
	if !ok {
		return nil, fmt.Errorf("eventstore/memory: read stream %q: %w", stream, eventstore.ErrStreamNotFound)
	}
	if from >= uint64(len(revs)) {
		return []eventstore.RecordedEvent{}, nil
	}
	out := make([]eventstore.RecordedEvent, 0, uint64(len(revs))-from)
	for _, i := range revs[from:] {
		out = append(out, clone(s.feed[i]))
	}
	return out, nil
}

// ReadAll implements eventstore.Store. Appends are visible in the feed as soon as they
// return: the mutex makes feed order and append order one.
func (s *Store) ReadAll(ctx context.Context, after eventstore.Position, limit int) ([]eventstore.RecordedEvent, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("eventstore/memory: read all: limit %d is not positive", limit)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("eventstore/memory: read all: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	return s.after(after, limit), nil
}

// after copies at most limit feed events strictly after pos. s.mu must be held.
func (s *Store) after(pos eventstore.Position, limit int) []eventstore.RecordedEvent {
	i := sort.Search(len(s.feed), func(i int) bool { return pos.Less(s.feed[i].Position) })
	n := min(limit, len(s.feed)-i)
	out := make([]eventstore.RecordedEvent, n)
	for k := range out {
		out[k] = clone(s.feed[i+k])
	}
	return out
}

// pageSize bounds how many events a subscription copies under the lock at a time.
const pageSize = 256

// SubscribeAll implements eventstore.Store. It copies a page under the lock and delivers
// it without, so a slow handler never holds up appends; when it has caught up it waits
// for the next append's broadcast.
func (s *Store) SubscribeAll(ctx context.Context, after eventstore.Position, handle eventstore.Handler) error {
	pos := after
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return ErrClosed
		}
		page := s.after(pos, pageSize)
		changed := s.changed
		s.mu.Unlock()

		for _, e := range page {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := handle(ctx, e); err != nil {
				return err
			}
			pos = e.Position
		}
		if len(page) == pageSize {
			continue // more may be waiting already
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Head implements eventstore.Store.
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.Start, fmt.Errorf("eventstore/memory: head: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return eventstore.Start, ErrClosed
	}
	if len(s.feed) == 0 {
		return eventstore.Start, nil
	}
	return s.feed[len(s.feed)-1].Position, nil
}

// Close implements eventstore.Store: later calls fail with ErrClosed and running
// subscriptions end with it. Closing twice is harmless.
func (s *Store) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.broadcast()
}

// ReadSnapshot implements eventstore.SnapshotStore.
func (s *Store) ReadSnapshot(ctx context.Context, stream string) (eventstore.Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.Snapshot{}, fmt.Errorf("eventstore/memory: read snapshot of %q: %w", stream, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return eventstore.Snapshot{}, ErrClosed
	}
	snap, ok := s.snapshots[stream]
	if !ok {
		return eventstore.Snapshot{}, fmt.Errorf("eventstore/memory: read snapshot of %q: %w", stream, eventstore.ErrSnapshotNotFound)
	}
	snap.Data = bytes.Clone(snap.Data)
	return snap, nil
}

// WriteSnapshot implements eventstore.SnapshotStore: a snapshot at an earlier revision
// than the stored one is dropped, so racing writers keep the newest.
func (s *Store) WriteSnapshot(ctx context.Context, stream string, snap eventstore.Snapshot) error {
	if err := eventstore.ValidateSnapshot(stream, snap); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("eventstore/memory: write snapshot of %q: %w", stream, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if old, ok := s.snapshots[stream]; ok && old.Revision > snap.Revision {
		return nil
	}
	snap.Data = bytes.Clone(snap.Data)
	s.snapshots[stream] = snap
	return nil
}
