package projections

import (
	"encoding/json"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"selfreset/eventstore"
)

func TestMessageRoundTrip(t *testing.T) {
	rec := eventstore.RecordedEvent{
		ID: uuid.New(), Type: "PasswordChanged", SchemaVersion: 2, Stream: "user-acme-alice", Revision: 7,
		Position:   eventstore.Position{Commit: 41, Prepare: 40},
		OccurredAt: time.Date(2024, 3, 1, 12, 30, 15, 123456789, time.UTC),
		Data:       json.RawMessage(`{"method":"self_reset"}`),
		Metadata:   eventstore.Metadata{Actor: "user:acme/alice", CorrelationID: "c1", ClientIP: "192.0.2.1", Chain: "h"},
	}
	msg, err := NewMessage(rec)
	if err != nil {
		t.Fatal(err)
	}
	if msg.UUID != rec.ID.String() {
		t.Errorf("message UUID %q, want the event id %s", msg.UUID, rec.ID)
	}
	for key, want := range map[string]string{
		MetaType: rec.Type, MetaStream: rec.Stream, MetaRevision: strconv.FormatUint(rec.Revision, 10),
		MetaPosition: rec.Position.String(),
	} {
		if got := msg.Metadata.Get(key); got != want {
			t.Errorf("metadata %s = %q, want %q", key, got, want)
		}
	}
	got, err := RecordFromMessage(msg)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rec) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, rec)
	}
}
