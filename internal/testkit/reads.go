package testkit

import (
	"context"
	"maps"
	"sync"
	"testing"

	"selfreset/eventstore"
)

// snapshotting is a store that keeps snapshots too (every adapter but EventStoreDB).
type snapshotting interface {
	eventstore.Store
	eventstore.SnapshotStore
}

// ReadCounter wraps a store and counts ReadStream calls per stream, so that tests can
// hold a command to one read of each stream it touches.
type ReadCounter struct {
	snapshotting
	mu    sync.Mutex
	reads map[string]int
}

// CountReads wraps store.
func CountReads(store interface {
	eventstore.Store
	eventstore.SnapshotStore
}) *ReadCounter {
	return &ReadCounter{snapshotting: store, reads: map[string]int{}}
}

// ReadStream counts the read and passes it on.
func (c *ReadCounter) ReadStream(ctx context.Context, stream string, from uint64) ([]eventstore.RecordedEvent, error) {
	c.mu.Lock()
	c.reads[stream]++
	c.mu.Unlock()
	return c.snapshotting.ReadStream(ctx, stream, from)
}

// BatchedReadCounter is a ReadCounter that also reads several streams in one call
// (eventstore.StreamsReader), as the Postgres adapter does, so that the commands take
// their batched path on any store; it counts each stream of such a call as read.
type BatchedReadCounter struct {
	*ReadCounter
}

// CountReadsBatched wraps store.
func CountReadsBatched(store interface {
	eventstore.Store
	eventstore.SnapshotStore
}) BatchedReadCounter {
	return BatchedReadCounter{CountReads(store)}
}

// ReadStreams counts each stream of reads and passes them on in one call.
func (c BatchedReadCounter) ReadStreams(ctx context.Context, reads []eventstore.StreamRead) ([]eventstore.StreamTail, error) {
	c.mu.Lock()
	for _, r := range reads {
		c.reads[r.Stream]++
	}
	c.mu.Unlock()
	return eventstore.ReadStreams(ctx, c.snapshotting, reads)
}

// Take returns the reads per stream since the last Take and starts counting afresh.
func (c *ReadCounter) Take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := maps.Clone(c.reads)
	clear(c.reads)
	return out
}

// StreamRevision is the revision of stream's last event, read from store: the check a
// test makes that a command appended nothing (or how far a stream has grown).
func StreamRevision(t testing.TB, store eventstore.Store, stream string) uint64 {
	t.Helper()
	events, err := store.ReadStream(context.Background(), stream, 0)
	if err != nil {
		t.Fatalf("read %s: %v", stream, err)
	}
	return events[len(events)-1].Revision
}
