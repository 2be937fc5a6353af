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
