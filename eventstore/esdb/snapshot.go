package esdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	esdbc "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"selfreset/eventstore"
)

var _ eventstore.SnapshotStore = (*Store)(nil)

// Snapshots live in a stream of their own per stream, named snapshotStreamPrefix + the
// stream, whose metadata keeps only the newest event ($maxCount 1) so the server scavenges
// the older ones. The filter leaves these streams out of the feed, whatever the prefixes.
const (
	snapshotStreamPrefix = "snapshot-"
	snapshotEventType    = "Snapshot"
	// maxSnapshotAttempts bounds the read-compare-append loop of racing writers.
	maxSnapshotAttempts = 16
)

func snapshotStream(stream string) string { return snapshotStreamPrefix + stream }

// isSnapshotStream reports whether a stream holds snapshots rather than events.
func isSnapshotStream(stream string) bool { return strings.HasPrefix(stream, snapshotStreamPrefix) }

// snapshotRecord is the stored form: EventStoreDB has no columns, so the revision and
// schema travel in the event's data beside the state.
type snapshotRecord struct {
	Revision uint64          `json:"revision"`
	Schema   string          `json:"schema"`
	Data     json.RawMessage `json:"data"`
}

// ReadSnapshot implements eventstore.SnapshotStore: the last event of the snapshot stream.
func (s *Store) ReadSnapshot(ctx context.Context, stream string) (eventstore.Snapshot, error) {
	rec, _, ok, err := s.lastSnapshot(ctx, stream)
	if err != nil {
		return eventstore.Snapshot{}, err
	}
	if !ok {
		return eventstore.Snapshot{}, fmt.Errorf("esdb: read snapshot of %q: %w", stream, eventstore.ErrSnapshotNotFound)
	}
	return eventstore.Snapshot{Revision: rec.Revision, Schema: rec.Schema, Data: rec.Data}, nil
}

// WriteSnapshot implements eventstore.SnapshotStore: it appends at the snapshot stream's
// revision it read, and only when the snapshot there is not newer, so racing writers
// retry against each other and a snapshot never moves back.
func (s *Store) WriteSnapshot(ctx context.Context, stream string, snap eventstore.Snapshot) error {
	if err := eventstore.ValidateSnapshot(stream, snap); err != nil {
		return err
	}
	data, err := json.Marshal(snapshotRecord{Revision: snap.Revision, Schema: snap.Schema, Data: snap.Data})
	if err != nil {
		return fmt.Errorf("esdb: write snapshot of %q: %w", stream, err)
	}
	for range maxSnapshotAttempts {
		cur, rev, ok, err := s.lastSnapshot(ctx, stream)
		if err != nil {
			return err
		}
		if ok && cur.Revision > snap.Revision {
			return nil // a newer snapshot is already there
		}
		var expected esdbc.ExpectedRevision = esdbc.NoStream{}
		if ok {
			expected = esdbc.Revision(rev)
		}
		err = s.appendSnapshot(ctx, stream, expected, data, !ok)
		if isErrorCode(err, esdbc.ErrorCodeWrongExpectedVersion) {
			continue // another writer got in first: compare again
		}
		return err
	}
	return fmt.Errorf("esdb: write snapshot of %q: %w", stream, eventstore.ErrConflict)
}

// appendSnapshot appends one snapshot event; the first one also sets $maxCount 1.
func (s *Store) appendSnapshot(ctx context.Context, stream string, expected esdbc.ExpectedRevision, data []byte, first bool) error {
	c := s.conn()
	ev := esdbc.EventData{EventID: uuid.New(), EventType: snapshotEventType, ContentType: esdbc.ContentTypeJson, Data: data}
	if _, err := c.AppendToStream(ctx, snapshotStream(stream), esdbc.AppendToStreamOptions{ExpectedRevision: expected}, ev); err != nil {
		s.noteErr(c, err)
		if isErrorCode(err, esdbc.ErrorCodeWrongExpectedVersion) {
			return err
		}
		return withCtx(ctx, fmt.Errorf("esdb: write snapshot of %q: %w", stream, err))
	}
	if first {
		var meta esdbc.StreamMetadata
		meta.SetMaxCount(1)
		if _, err := c.SetStreamMetadata(ctx, snapshotStream(stream), esdbc.AppendToStreamOptions{}, meta); err != nil {
			s.noteErr(c, err)
			return withCtx(ctx, fmt.Errorf("esdb: limit the snapshots of %q to one: %w", stream, err))
		}
	}
	return nil
}

// lastSnapshot reads the newest snapshot of stream and the snapshot stream's revision.
func (s *Store) lastSnapshot(ctx context.Context, stream string) (snapshotRecord, uint64, bool, error) {
	c := s.conn()
	rs, err := c.ReadStream(ctx, snapshotStream(stream), esdbc.ReadStreamOptions{Direction: esdbc.Backwards, From: esdbc.End{}}, 1)
	if err != nil {
		s.noteErr(c, err)
		return snapshotRecord{}, 0, false, withCtx(ctx, fmt.Errorf("esdb: read snapshot of %q: %w", stream, err))
	}
	defer rs.Close()
	ev, err := rs.Recv()
	if errors.Is(err, io.EOF) || (err != nil && errors.Is(mapReadError(stream, err), eventstore.ErrStreamNotFound)) {
		return snapshotRecord{}, 0, false, nil
	}
	if err != nil {
		s.noteErr(c, err)
		return snapshotRecord{}, 0, false, withCtx(ctx, fmt.Errorf("esdb: read snapshot of %q: %w", stream, err))
	}
	r := ev.OriginalEvent()
	var rec snapshotRecord
	if err := json.Unmarshal(r.Data, &rec); err != nil {
		return snapshotRecord{}, 0, false, fmt.Errorf("esdb: snapshot of %q is not readable: %w", stream, err)
	}
	return rec, r.EventNumber, true, nil
}
