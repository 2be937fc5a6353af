// Package eventstore is the port between the command side and whatever stores events:
// append to a stream under an expected revision, read a stream back, and read or
// follow the global feed from a position. Adapters live in sub-packages
// (eventstore/postgres, eventstore/esdb, and eventstore/memory for tests) and must all
// pass eventstore/storetest.
package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// ErrConflict is returned by Append when the stream is not at the expected revision.
// Every adapter maps its own concurrency error to this one value.
var ErrConflict = errors.New("eventstore: wrong expected revision")

// ErrStreamNotFound is returned by ReadStream for a stream that has no events.
var ErrStreamNotFound = errors.New("eventstore: stream not found")

// ErrUnknownEventType is returned by a Codec asked to decode a type it does not know.
var ErrUnknownEventType = errors.New("eventstore: unknown event type")

// ExpectedRevision states what the writer believes the stream looks like.
type ExpectedRevision struct {
	kind     expectedKind
	revision uint64
}

type expectedKind uint8

const (
	expectAny expectedKind = iota
	expectNoStream
	expectExists
	expectExact
)

var (
	// Any appends whatever the stream holds.
	Any = ExpectedRevision{kind: expectAny}
	// NoStream appends only if the stream has no events yet.
	NoStream = ExpectedRevision{kind: expectNoStream}
	// StreamExists appends only if the stream already has events.
	StreamExists = ExpectedRevision{kind: expectExists}
)

// Exact appends only if the stream's last event has revision rev (0-based).
func Exact(rev uint64) ExpectedRevision { return ExpectedRevision{kind: expectExact, revision: rev} }

// IsAny, IsNoStream, IsStreamExists and Revision let adapters translate the value.
func (e ExpectedRevision) IsAny() bool          { return e.kind == expectAny }
func (e ExpectedRevision) IsNoStream() bool     { return e.kind == expectNoStream }
func (e ExpectedRevision) IsStreamExists() bool { return e.kind == expectExists }

// Revision reports the exact revision expected, and false when the expectation is not exact.
func (e ExpectedRevision) Revision() (uint64, bool) { return e.revision, e.kind == expectExact }

// Check tells whether a stream whose last revision is current (exists=false: no events)
// satisfies the expectation. Adapters that check revisions themselves use it so that
// every adapter agrees on the rules.
func (e ExpectedRevision) Check(current uint64, exists bool) bool {
	switch e.kind {
	case expectNoStream:
		return !exists
	case expectExists:
		return exists
	case expectExact:
		return exists && current == e.revision
	default:
		return true
	}
}

func (e ExpectedRevision) String() string {
	switch e.kind {
	case expectNoStream:
		return "no-stream"
	case expectExists:
		return "stream-exists"
	case expectExact:
		return fmt.Sprintf("revision %d", e.revision)
	default:
		return "any"
	}
}

// Position is a place in the global feed. It is a commit/prepare pair because that is what
// EventStoreDB uses; the Postgres adapter stores (transaction id, sequence) in the same two
// fields. Positions compare commit first, then prepare. The zero Position is the start.
type Position struct {
	Commit  uint64 `json:"commit"`
	Prepare uint64 `json:"prepare"`
}

// Start is the position before the first event.
var Start = Position{}

// Less reports whether p comes before q in the global feed.
func (p Position) Less(q Position) bool {
	if p.Commit != q.Commit {
		return p.Commit < q.Commit
	}
	return p.Prepare < q.Prepare
}

func (p Position) String() string { return fmt.Sprintf("%d/%d", p.Commit, p.Prepare) }

// Metadata travels with every event: who caused it, why and from where.
type Metadata struct {
	Actor         string `json:"actor,omitempty"`
	CorrelationID string `json:"correlation_id,omitempty"`
	CausationID   string `json:"causation_id,omitempty"`
	ClientIP      string `json:"client_ip,omitempty"`
	UserAgent     string `json:"user_agent,omitempty"`
	// Chain is the event's link in its stream's hash chain (eventstore/chain), set by the
	// adapter's Append; whatever a caller puts here is replaced.
	Chain string `json:"chain,omitempty"`
}

// EventData is an event on its way into the store.
type EventData struct {
	ID            uuid.UUID
	Type          string
	SchemaVersion int
	// OccurredAt is the domain time of the decision (from the injected clock).
	OccurredAt time.Time
	Data       json.RawMessage
	Metadata   Metadata
}

// RecordedEvent is an event as the store gives it back.
type RecordedEvent struct {
	ID            uuid.UUID
	Type          string
	SchemaVersion int
	Stream        string
	Revision      uint64
	Position      Position
	OccurredAt    time.Time
	Data          json.RawMessage
	Metadata      Metadata
}

// AppendResult says where the last appended event landed.
type AppendResult struct {
	NextRevision uint64   // revision of the stream's last event after the append
	Position     Position // global position of the last appended event
}

// Handler receives events from a subscription. Returning an error stops the subscription
// with that error.
type Handler func(ctx context.Context, e RecordedEvent) error

// Store is the port. Implementations are safe for concurrent use.
type Store interface {
	// Append writes events to stream atomically if expected holds, else returns an error
	// wrapping ErrConflict. A retried append whose event IDs are all stored already is a
	// no-op returning the original result (as in EventStoreDB, where this holds for a
	// whole batch retried at the same expected revision).
	Append(ctx context.Context, stream string, expected ExpectedRevision, events ...EventData) (AppendResult, error)
	// ReadStream returns the events of stream from revision `from` on, in revision order
	// (empty when `from` is past the end), or an error wrapping ErrStreamNotFound if the
	// stream has no events.
	ReadStream(ctx context.Context, stream string, from uint64) ([]RecordedEvent, error)
	// ReadAll returns at most limit events of the global feed strictly after `after`,
	// in feed order. It never returns an event that a later call could place before one
	// it already returned: a reader that resumes from the last position it saw misses nothing.
	// An appended event may take a moment to appear here (Postgres shows it once every
	// older append to the store has ended), so consumers must not expect to read their own writes.
	// limit must be positive.
	ReadAll(ctx context.Context, after Position, limit int) ([]RecordedEvent, error)
	// SubscribeAll delivers every event strictly after `after`, first the history then live
	// appends, until ctx ends (it then returns ctx.Err()) or handle returns an error.
	SubscribeAll(ctx context.Context, after Position, handle Handler) error
	// Head is the position of the newest event readable in the feed (Start when empty);
	// like ReadAll it may trail the position an Append just returned.
	Head(ctx context.Context) (Position, error)
	Close()
}

// StreamRead asks for a stream's events from revision From on (ReadStreams), at most
// Max of them when Max is positive.
type StreamRead struct {
	Stream string
	From   uint64
	Max    int
}

// StreamTail is what ReadStream answers for one StreamRead (cut to its Max): the events,
// or Found false where ReadStream returns ErrStreamNotFound.
type StreamTail struct {
	Events []RecordedEvent
	Found  bool
}

// StreamsReader is implemented by adapters that read several streams in one round trip
// (a command folds its account and its provider before every decision). Callers use
// ReadStreams, which falls back to one ReadStream after another.
type StreamsReader interface {
	// ReadStreams answers each read as ReadStream would, in order; an error other than
	// a missing stream fails them all.
	ReadStreams(ctx context.Context, reads []StreamRead) ([]StreamTail, error)
}

// ReadStreams reads each of reads as ReadStream would: in one call when s is a
// StreamsReader, else one stream after another.
func ReadStreams(ctx context.Context, s Store, reads []StreamRead) ([]StreamTail, error) {
	if r, ok := s.(StreamsReader); ok {
		return r.ReadStreams(ctx, reads)
	}
	out := make([]StreamTail, len(reads))
	for i, r := range reads {
		events, err := s.ReadStream(ctx, r.Stream, r.From)
		switch {
		case errors.Is(err, ErrStreamNotFound):
		case err != nil:
			return nil, err
		default:
			if r.Max > 0 && len(events) > r.Max {
				events = events[:r.Max]
			}
			out[i] = StreamTail{Events: events, Found: true}
		}
	}
	return out, nil
}

// Updater is implemented by adapters that can read a stream and append to it in one
// transaction that holds the stream's lock throughout, in the round trips of an append:
// a decision taken on what was read cannot conflict with another writer. Callers find it
// by type assertion and otherwise read, then append under an expected revision.
type Updater interface {
	// Update locks stream, reads it from revision from on and each of also (unlocked,
	// as ReadStreams would), then calls decide with what it read. The events decide
	// returns are appended right after the stream's last event, in the same transaction,
	// and their result returned. When decide returns an error or no events, nothing is
	// written and Update returns decide's error and a zero AppendResult. The lock is held
	// while decide runs: it must not wait on anything slow. An adapter may run decide on
	// a goroutine of its own, next to other Updates' decisions, and more than once (an
	// attempt that failed is tried again): it decides on what it is given and nothing else.
	Update(ctx context.Context, stream string, from uint64, also []StreamRead,
		decide func(tail StreamTail, also []StreamTail) ([]EventData, error)) (AppendResult, error)
}

// Snapshot is a cached fold of a stream up to Revision: Data is the state its owner
// encoded, Schema the version of that encoding (owners ignore snapshots of another
// schema and fold the stream in full). A snapshot is never the record: the stream is,
// and a missing or stale snapshot only costs a longer read.
type Snapshot struct {
	Revision uint64
	Schema   string
	Data     json.RawMessage
}

// ErrSnapshotNotFound is returned by ReadSnapshot when the stream has no snapshot.
var ErrSnapshotNotFound = errors.New("eventstore: snapshot not found")

// SnapshotStore keeps the latest snapshot of each stream beside the events. Adapters
// that have one implement it on their Store; callers find it by type assertion and fold
// the stream in full without it.
type SnapshotStore interface {
	// ReadSnapshot returns the stream's snapshot, or an error wrapping ErrSnapshotNotFound.
	ReadSnapshot(ctx context.Context, stream string) (Snapshot, error)
	// WriteSnapshot stores snap as the stream's snapshot unless one at a later revision
	// is stored already (racing writers keep the newest; an older one is dropped
	// silently). Data must be valid JSON.
	WriteSnapshot(ctx context.Context, stream string, snap Snapshot) error
}

// ValidateSnapshot refuses a snapshot no adapter may store: an empty stream name, data
// that is not JSON. Every SnapshotStore calls it, so they all refuse the same input.
func ValidateSnapshot(stream string, snap Snapshot) error {
	if stream == "" {
		return errors.New("eventstore: write snapshot: empty stream name")
	}
	if !json.Valid(snap.Data) {
		return fmt.Errorf("eventstore: write snapshot of %q: data is not valid JSON", stream)
	}
	return nil
}

// ValidateAppend refuses an append no adapter may store, before anything is stored: an
// empty stream name, an event without id or type, an id twice in one append, data that is
// not JSON. Every adapter calls it, so they all refuse the same input.
func ValidateAppend(stream string, events []EventData) error {
	if stream == "" {
		return errors.New("eventstore: append: empty stream name")
	}
	seen := make(map[uuid.UUID]bool, len(events))
	for i, e := range events {
		switch {
		case e.ID == uuid.Nil:
			return fmt.Errorf("eventstore: append to %q: event %d has no id", stream, i)
		case e.Type == "":
			return fmt.Errorf("eventstore: append to %q: event %d has no type", stream, i)
		case seen[e.ID]:
			return fmt.Errorf("eventstore: append to %q: event id %s appears twice in one append", stream, e.ID)
		case len(e.Data) > 0 && !json.Valid(e.Data):
			return fmt.Errorf("eventstore: append to %q: event %d (%s): data is not valid JSON", stream, i, e.Type)
		}
		seen[e.ID] = true
	}
	return nil
}
