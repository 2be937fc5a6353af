package esdb

// Pure translations between the eventstore port and EventStore-Client-Go v4. Nothing here
// does I/O, so mapping_test.go checks all of it without a server.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	esdbc "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"selfreset/eventstore"
)

// expectedRevision maps the port's expectation to the client's.
func expectedRevision(e eventstore.ExpectedRevision) esdbc.ExpectedRevision {
	switch {
	case e.IsNoStream():
		return esdbc.NoStream{}
	case e.IsStreamExists():
		return esdbc.StreamExists{}
	}
	if rev, ok := e.Revision(); ok {
		return esdbc.Revision(rev)
	}
	return esdbc.Any{}
}

// wireMetadata is the user metadata stored with every event: our Metadata, flattened, plus
// the envelope fields EventStoreDB has no slot for. $correlationId and $causationId are the
// keys EventStoreDB's own projections ($by_correlation_id) read; they mirror ours.
type wireMetadata struct {
	eventstore.Metadata
	SchemaVersion   *int   `json:"schema_version,omitempty"`
	OccurredAt      string `json:"occurred_at,omitempty"`
	ESCorrelationID string `json:"$correlationId,omitempty"`
	ESCausationID   string `json:"$causationId,omitempty"`
}

// encodeMetadata builds the stored metadata of e: its Metadata, schema_version and
// occurred_at (RFC 3339 with nanoseconds, UTC).
func encodeMetadata(e eventstore.EventData) ([]byte, error) {
	v := e.SchemaVersion
	w := wireMetadata{
		Metadata:        e.Metadata,
		SchemaVersion:   &v,
		OccurredAt:      e.OccurredAt.UTC().Format(time.RFC3339Nano),
		ESCorrelationID: e.Metadata.CorrelationID,
		ESCausationID:   e.Metadata.CausationID,
	}
	return json.Marshal(w)
}

// decodedMetadata is what decodeMetadata recovers of the envelope.
type decodedMetadata struct {
	Metadata      eventstore.Metadata
	SchemaVersion int
	OccurredAt    time.Time
}

// decodeMetadata reads back what encodeMetadata wrote. Events written by other tools may
// lack metadata: a missing schema_version means 1, a missing occurred_at means the time
// the server recorded the event (created), and $correlationId/$causationId stand in for
// ours. Metadata that is there but not ours to read (not JSON, a bad time) is an error.
func decodeMetadata(raw []byte, created time.Time) (decodedMetadata, error) {
	out := decodedMetadata{SchemaVersion: 1, OccurredAt: created}
	if len(bytes.TrimSpace(raw)) == 0 {
		return out, nil
	}
	var w wireMetadata
	if err := json.Unmarshal(raw, &w); err != nil {
		return decodedMetadata{}, fmt.Errorf("metadata: %w", err)
	}
	out.Metadata = w.Metadata
	if out.Metadata.CorrelationID == "" {
		out.Metadata.CorrelationID = w.ESCorrelationID
	}
	if out.Metadata.CausationID == "" {
		out.Metadata.CausationID = w.ESCausationID
	}
	if w.SchemaVersion != nil {
		out.SchemaVersion = *w.SchemaVersion
	}
	if w.OccurredAt != "" {
		t, err := time.Parse(time.RFC3339Nano, w.OccurredAt)
		if err != nil {
			return decodedMetadata{}, fmt.Errorf("metadata: occurred_at: %w", err)
		}
		out.OccurredAt = t
	}
	return out, nil
}

// toEventData turns an event of ours into the client's. The event id is ours: EventStoreDB
// uses it for idempotent appends, so an event without one is refused rather than given a
// random id by the client (which it would do for uuid.Nil).
func toEventData(e eventstore.EventData) (esdbc.EventData, error) {
	if e.ID == uuid.Nil {
		return esdbc.EventData{}, fmt.Errorf("event %q has no id", e.Type)
	}
	if e.Type == "" {
		return esdbc.EventData{}, fmt.Errorf("event %s has no type", e.ID)
	}
	meta, err := encodeMetadata(e)
	if err != nil {
		return esdbc.EventData{}, fmt.Errorf("event %s: %w", e.ID, err)
	}
	return esdbc.EventData{
		EventID:     e.ID,
		EventType:   e.Type,
		ContentType: esdbc.ContentTypeJson,
		Data:        []byte(e.Data),
		Metadata:    meta,
	}, nil
}

// toRecorded turns a recorded event of the client's into ours.
func toRecorded(r *esdbc.RecordedEvent) (eventstore.RecordedEvent, error) {
	if r == nil {
		return eventstore.RecordedEvent{}, errors.New("esdb: empty recorded event")
	}
	meta, err := decodeMetadata(r.UserMetadata, r.CreatedDate)
	if err != nil {
		return eventstore.RecordedEvent{}, fmt.Errorf("esdb: %s@%d (%s): %w", r.StreamID, r.EventNumber, r.EventID, err)
	}
	var data json.RawMessage
	if len(r.Data) > 0 {
		data = json.RawMessage(r.Data)
	}
	return eventstore.RecordedEvent{
		ID:            r.EventID,
		Type:          r.EventType,
		SchemaVersion: meta.SchemaVersion,
		Stream:        r.StreamID,
		Revision:      r.EventNumber,
		Position:      toPosition(r.Position),
		OccurredAt:    meta.OccurredAt,
		Data:          data,
		Metadata:      meta.Metadata,
	}, nil
}

// toPosition maps a client position to ours. Servers before 22.x send (max, max) - the
// server's "no position" - for events read from a stream rather than from $all; that has
// no place in the feed, so it becomes the zero Position.
func toPosition(p esdbc.Position) eventstore.Position {
	if p.Commit == math.MaxUint64 || p.Prepare == math.MaxUint64 {
		return eventstore.Position{}
	}
	return eventstore.Position{Commit: p.Commit, Prepare: p.Prepare}
}

// fromPosition maps our position to where a $all read or subscription starts: the zero
// Position is the start of $all, anything else that exact log position.
func fromPosition(p eventstore.Position) esdbc.AllPosition {
	if p == eventstore.Start {
		return esdbc.Start{}
	}
	return esdbc.Position{Commit: p.Commit, Prepare: p.Prepare}
}

// appendResult maps the client's write result. NextExpectedVersion is the revision of the
// stream's last event; the position is the one the server reported for the write (zero when
// it reported none, as for an idempotent retry).
func appendResult(w *esdbc.WriteResult) eventstore.AppendResult {
	if w == nil {
		return eventstore.AppendResult{}
	}
	return eventstore.AppendResult{
		NextRevision: w.NextExpectedVersion,
		Position:     toPosition(esdbc.Position{Commit: w.CommitPosition, Prepare: w.PreparePosition}),
	}
}

// errorCode digs the client's error code out of err. The client wraps some of its errors
// with fmt.Errorf("...: %w") (e.g. client.go "could not construct append operation"), which
// esdb.FromError - a plain type assertion - does not see through, so this uses errors.As.
func errorCode(err error) (esdbc.ErrorCode, bool) {
	var e *esdbc.Error
	if errors.As(err, &e) {
		return e.Code(), true
	}
	return esdbc.ErrorCodeUnknown, false
}

func isErrorCode(err error, code esdbc.ErrorCode) bool {
	c, ok := errorCode(err)
	return ok && c == code
}

// withCtx makes an error caused by ctx ending say so: the client reports a cancelled or
// expired call as a gRPC status, which errors.Is does not match to context.Canceled or
// context.DeadlineExceeded.
func withCtx(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil || errors.Is(err, ctx.Err()) {
		return err
	}
	return fmt.Errorf("%w (%w)", err, ctx.Err())
}

// mapAppendError maps an append failure: a wrong expected version wraps
// eventstore.ErrConflict (and still the client's error), anything else is wrapped as is.
func mapAppendError(stream string, expected eventstore.ExpectedRevision, err error) error {
	code, _ := errorCode(err)
	return appendErrorFor(stream, expected, code, err)
}

// appendErrorFor is mapAppendError once the client's error code is known.
func appendErrorFor(stream string, expected eventstore.ExpectedRevision, code esdbc.ErrorCode, err error) error {
	if err == nil {
		return nil
	}
	if code == esdbc.ErrorCodeWrongExpectedVersion {
		return fmt.Errorf("esdb: append to %q expecting %s: %w: %w", stream, expected, eventstore.ErrConflict, err)
	}
	return fmt.Errorf("esdb: append to %q: %w", stream, err)
}

// mapReadError maps a stream read failure: a missing stream (ResourceNotFound, from the
// server's StreamNotFound answer) and a tombstoned one (StreamDeleted) both have no events
// to give, so both wrap eventstore.ErrStreamNotFound.
func mapReadError(stream string, err error) error {
	code, _ := errorCode(err)
	return readErrorFor(stream, code, err)
}

// readErrorFor is mapReadError once the client's error code is known.
func readErrorFor(stream string, code esdbc.ErrorCode, err error) error {
	if err == nil {
		return nil
	}
	if code == esdbc.ErrorCodeResourceNotFound || code == esdbc.ErrorCodeStreamDeleted {
		return fmt.Errorf("esdb: read %q: %w: %w", stream, eventstore.ErrStreamNotFound, err)
	}
	return fmt.Errorf("esdb: read %q: %w", stream, err)
}

// streamFilter says which events of $all belong to this service: those of a stream with
// one of the prefixes (any stream not starting with "$" when there are none), and never a
// system event (type starting with "$", e.g. a tombstone's $streamDeleted or a link's $>),
// nor a snapshot (snapshot.go).
type streamFilter struct {
	prefixes []string
}

func (f streamFilter) match(stream, eventType string) bool {
	if strings.HasPrefix(eventType, "$") || strings.HasPrefix(stream, "$") || stream == "" || isSnapshotStream(stream) {
		return false
	}
	if len(f.prefixes) == 0 {
		return true
	}
	for _, p := range f.prefixes {
		if strings.HasPrefix(stream, p) {
			return true
		}
	}
	return false
}

// subscriptionFilter is the server-side part of the filter for SubscribeToAll: a stream
// name prefix filter, or a stream name regex excluding system streams when there are no
// prefixes. The event type half is applied client-side (a server filter is either on
// stream names or on event types, not both).
func (f streamFilter) subscriptionFilter() *esdbc.SubscriptionFilter {
	if len(f.prefixes) > 0 {
		return &esdbc.SubscriptionFilter{Type: esdbc.StreamFilterType, Prefixes: append([]string(nil), f.prefixes...)}
	}
	return &esdbc.SubscriptionFilter{Type: esdbc.StreamFilterType, Regex: `^[^\$]`}
}
