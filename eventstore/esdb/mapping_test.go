package esdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	esdbc "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"selfreset/eventstore"
)

// clientError builds the client's *esdb.Error with a given code, as the client itself does
// for a server answer. The client exports no constructor (its fields are unexported), so
// this sets them by reflection; the client version is pinned in go.mod.
func clientError(t *testing.T, code esdbc.ErrorCode, inner error) *esdbc.Error {
	t.Helper()
	e := &esdbc.Error{}
	v := reflect.ValueOf(e).Elem()
	set := func(name string, val any) {
		f := v.FieldByName(name)
		if !f.IsValid() {
			t.Fatalf("esdb.Error has no field %q: the client changed, revisit this helper", name)
		}
		reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Set(reflect.ValueOf(val))
	}
	set("code", code)
	if inner != nil {
		set("err", inner)
	}
	if e.Code() != code {
		t.Fatalf("clientError: code %v, want %v", e.Code(), code)
	}
	return e
}

func TestExpectedRevision(t *testing.T) {
	cases := []struct {
		in   eventstore.ExpectedRevision
		want esdbc.ExpectedRevision
	}{
		{eventstore.Any, esdbc.Any{}},
		{eventstore.NoStream, esdbc.NoStream{}},
		{eventstore.StreamExists, esdbc.StreamExists{}},
		{eventstore.Exact(0), esdbc.Revision(0)},
		{eventstore.Exact(41), esdbc.Revision(41)},
		{eventstore.Exact(math.MaxUint64 - 1), esdbc.Revision(math.MaxUint64 - 1)},
	}
	for _, c := range cases {
		if got := expectedRevision(c.in); got != c.want {
			t.Errorf("expectedRevision(%s) = %#v, want %#v", c.in, got, c.want)
		}
	}
}

func sampleEvent() eventstore.EventData {
	return eventstore.EventData{
		ID:            uuid.MustParse("0b8f4c1e-6a0e-4e43-9c52-5f9d2f7a1b11"),
		Type:          "ResetTokenIssued",
		SchemaVersion: 3,
		OccurredAt:    time.Date(2025, 3, 9, 14, 5, 6, 123456789, time.FixedZone("CET", 3600)),
		Data:          json.RawMessage(`{"token_id":"t-1","expires_at":"2025-03-09T13:10:06Z"}`),
		Metadata: eventstore.Metadata{
			Actor:         "user:ACME/alice",
			CorrelationID: "corr-1",
			CausationID:   "cmd-1",
			ClientIP:      "203.0.113.7",
			UserAgent:     "Mozilla/5.0 (X11; Linux x86_64)",
		},
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	e := sampleEvent()
	raw, err := encodeMetadata(e)
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]any
	if err := json.Unmarshal(raw, &keys); err != nil {
		t.Fatalf("metadata is not a JSON object: %v\n%s", err, raw)
	}
	for k, want := range map[string]any{
		"actor":          "user:ACME/alice",
		"correlation_id": "corr-1",
		"causation_id":   "cmd-1",
		"client_ip":      "203.0.113.7",
		"user_agent":     "Mozilla/5.0 (X11; Linux x86_64)",
		"schema_version": float64(3),
		"occurred_at":    "2025-03-09T13:05:06.123456789Z",
		"$correlationId": "corr-1",
		"$causationId":   "cmd-1",
	} {
		if keys[k] != want {
			t.Errorf("metadata[%q] = %#v, want %#v", k, keys[k], want)
		}
	}

	created := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	got, err := decodeMetadata(raw, created)
	if err != nil {
		t.Fatal(err)
	}
	if got.Metadata != e.Metadata {
		t.Errorf("metadata = %+v, want %+v", got.Metadata, e.Metadata)
	}
	if got.SchemaVersion != 3 {
		t.Errorf("schema version = %d, want 3", got.SchemaVersion)
	}
	if !got.OccurredAt.Equal(e.OccurredAt) {
		t.Errorf("occurred at = %v, want %v", got.OccurredAt, e.OccurredAt)
	}
	if got.OccurredAt.Location() != time.UTC {
		t.Errorf("occurred at in %v, want UTC", got.OccurredAt.Location())
	}
}

func TestMetadataSchemaVersionZeroSurvives(t *testing.T) {
	e := sampleEvent()
	e.SchemaVersion = 0
	raw, err := encodeMetadata(e)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeMetadata(raw, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got.SchemaVersion != 0 {
		t.Errorf("schema version = %d, want 0 as written", got.SchemaVersion)
	}
}

func TestDecodeMetadataForeignEvents(t *testing.T) {
	created := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, raw := range []string{"", "  ", "{}"} {
		got, err := decodeMetadata([]byte(raw), created)
		if err != nil {
			t.Fatalf("decodeMetadata(%q): %v", raw, err)
		}
		if got.SchemaVersion != 1 || !got.OccurredAt.Equal(created) || got.Metadata != (eventstore.Metadata{}) {
			t.Errorf("decodeMetadata(%q) = %+v, want version 1, created time, empty metadata", raw, got)
		}
	}

	got, err := decodeMetadata([]byte(`{"$correlationId":"c","$causationId":"k","other":42}`), created)
	if err != nil {
		t.Fatal(err)
	}
	if got.Metadata.CorrelationID != "c" || got.Metadata.CausationID != "k" {
		t.Errorf("EventStoreDB's $correlationId/$causationId not used: %+v", got.Metadata)
	}

	got, err = decodeMetadata([]byte(`{"correlation_id":"ours","$correlationId":"theirs"}`), created)
	if err != nil {
		t.Fatal(err)
	}
	if got.Metadata.CorrelationID != "ours" {
		t.Errorf("correlation id = %q, want ours to win", got.Metadata.CorrelationID)
	}
}

func TestDecodeMetadataErrors(t *testing.T) {
	for _, raw := range []string{
		`not json`,
		`[1,2]`,
		`{"occurred_at":"yesterday"}`,
		`{"schema_version":"two"}`,
	} {
		if _, err := decodeMetadata([]byte(raw), time.Time{}); err == nil {
			t.Errorf("decodeMetadata(%q): no error", raw)
		}
	}
}

func TestToEventData(t *testing.T) {
	e := sampleEvent()
	d, err := toEventData(e)
	if err != nil {
		t.Fatal(err)
	}
	if d.EventID != e.ID || d.EventType != e.Type || d.ContentType != esdbc.ContentTypeJson {
		t.Errorf("toEventData = id %s type %q content %v", d.EventID, d.EventType, d.ContentType)
	}
	if string(d.Data) != string(e.Data) {
		t.Errorf("data = %s, want %s", d.Data, e.Data)
	}
	back, err := decodeMetadata(d.Metadata, time.Time{})
	if err != nil || back.Metadata != e.Metadata || back.SchemaVersion != e.SchemaVersion || !back.OccurredAt.Equal(e.OccurredAt) {
		t.Errorf("metadata does not round-trip: %+v, %v", back, err)
	}

	noID := sampleEvent()
	noID.ID = uuid.Nil
	if _, err := toEventData(noID); err == nil {
		t.Error("an event without id was accepted (the client would give it a random one, defeating idempotency)")
	}
	noType := sampleEvent()
	noType.Type = ""
	if _, err := toEventData(noType); err == nil {
		t.Error("an event without type was accepted")
	}
}

func TestToRecorded(t *testing.T) {
	e := sampleEvent()
	d, err := toEventData(e)
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2025, 3, 9, 13, 5, 7, 0, time.UTC)
	r := &esdbc.RecordedEvent{
		EventID:      d.EventID,
		EventType:    d.EventType,
		ContentType:  "application/json",
		StreamID:     "user-ACME-alice",
		EventNumber:  7,
		Position:     esdbc.Position{Commit: 4096, Prepare: 4000},
		CreatedDate:  created,
		Data:         d.Data,
		UserMetadata: d.Metadata,
	}
	got, err := toRecorded(r)
	if err != nil {
		t.Fatal(err)
	}
	want := eventstore.RecordedEvent{
		ID:            e.ID,
		Type:          e.Type,
		SchemaVersion: 3,
		Stream:        "user-ACME-alice",
		Revision:      7,
		Position:      eventstore.Position{Commit: 4096, Prepare: 4000},
		OccurredAt:    e.OccurredAt,
		Data:          e.Data,
		Metadata:      e.Metadata,
	}
	if !got.OccurredAt.Equal(want.OccurredAt) {
		t.Errorf("occurred at = %v, want %v", got.OccurredAt, want.OccurredAt)
	}
	got.OccurredAt, want.OccurredAt = time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("toRecorded =\n%+v\nwant\n%+v", got, want)
	}

	r.UserMetadata = []byte("{broken")
	if _, err := toRecorded(r); err == nil || !strings.Contains(err.Error(), "user-ACME-alice@7") {
		t.Errorf("broken metadata: err = %v, want one naming the event", err)
	}
	if _, err := toRecorded(nil); err == nil {
		t.Error("toRecorded(nil): no error")
	}
}

func TestPositions(t *testing.T) {
	if got := toPosition(esdbc.Position{Commit: 10, Prepare: 9}); got != (eventstore.Position{Commit: 10, Prepare: 9}) {
		t.Errorf("toPosition = %v", got)
	}
	// What servers before 22.x send for events read from a stream.
	if got := toPosition(esdbc.Position{Commit: math.MaxUint64, Prepare: math.MaxUint64}); got != eventstore.Start {
		t.Errorf("toPosition(end) = %v, want the zero position", got)
	}
	if got := fromPosition(eventstore.Start); got != (esdbc.Start{}) {
		t.Errorf("fromPosition(Start) = %#v, want esdb.Start{}", got)
	}
	if got := fromPosition(eventstore.Position{Commit: 5, Prepare: 3}); got != (esdbc.Position{Commit: 5, Prepare: 3}) {
		t.Errorf("fromPosition = %#v", got)
	}
	// Round trip, and order is kept.
	a, b := eventstore.Position{Commit: 100, Prepare: 90}, eventstore.Position{Commit: 100, Prepare: 95}
	for _, p := range []eventstore.Position{a, b} {
		if got := toPosition(fromPosition(p).(esdbc.Position)); got != p {
			t.Errorf("round trip of %v = %v", p, got)
		}
	}
	if !toPosition(fromPosition(a).(esdbc.Position)).Less(toPosition(fromPosition(b).(esdbc.Position))) {
		t.Error("order lost")
	}
}

func TestAppendResult(t *testing.T) {
	got := appendResult(&esdbc.WriteResult{CommitPosition: 2048, PreparePosition: 2000, NextExpectedVersion: 4})
	if got != (eventstore.AppendResult{NextRevision: 4, Position: eventstore.Position{Commit: 2048, Prepare: 2000}}) {
		t.Errorf("appendResult = %+v", got)
	}
	if got := appendResult(nil); got != (eventstore.AppendResult{}) {
		t.Errorf("appendResult(nil) = %+v", got)
	}
}

// The client's FromError reports ok=false for every non-nil error (errors.go), so
// `if e, ok := esdb.FromError(err); !ok { ... e.Code() ... }` is the way to use it; and it
// is a plain type assertion, so a wrapped client error reads as ErrorCodeUnknown. This test
// pins that behaviour: if an upgrade changes it, errorCode's comment needs revisiting.
func TestClientFromErrorQuirk(t *testing.T) {
	wev := clientError(t, esdbc.ErrorCodeWrongExpectedVersion, errors.New("wrong expected version"))
	if e, ok := esdbc.FromError(wev); ok || e.Code() != esdbc.ErrorCodeWrongExpectedVersion {
		t.Errorf("FromError(client error) = %v, %v", e, ok)
	}
	wrapped := fmt.Errorf("could not send append request. Reason: %w", wev)
	if e, ok := esdbc.FromError(wrapped); ok || e.Code() != esdbc.ErrorCodeUnknown {
		t.Errorf("FromError(wrapped) = code %v, %v; the client now unwraps", e.Code(), ok)
	}
	if _, ok := esdbc.FromError(nil); !ok {
		t.Error("FromError(nil) ok = false")
	}
}

func TestErrorCode(t *testing.T) {
	wev := clientError(t, esdbc.ErrorCodeWrongExpectedVersion, nil)
	for _, err := range []error{wev, fmt.Errorf("reason: %w", wev), fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", wev))} {
		if code, ok := errorCode(err); !ok || code != esdbc.ErrorCodeWrongExpectedVersion {
			t.Errorf("errorCode(%v) = %v, %v", err, code, ok)
		}
	}
	if _, ok := errorCode(errors.New("plain")); ok {
		t.Error("errorCode(plain error) ok = true")
	}
	if !isErrorCode(fmt.Errorf("x: %w", clientError(t, esdbc.ErrorCodeConnectionClosed, nil)), esdbc.ErrorCodeConnectionClosed) {
		t.Error("isErrorCode misses a wrapped ConnectionClosed")
	}
}

func TestMapAppendError(t *testing.T) {
	if mapAppendError("s", eventstore.Any, nil) != nil {
		t.Error("nil error mapped to non-nil")
	}
	wev := clientError(t, esdbc.ErrorCodeWrongExpectedVersion, errors.New("wrong expected version: expecting '0' but got '1'"))
	err := mapAppendError("user-ACME-alice", eventstore.Exact(0), wev)
	if !errors.Is(err, eventstore.ErrConflict) {
		t.Errorf("WrongExpectedVersion: %v does not wrap ErrConflict", err)
	}
	var ce *esdbc.Error
	if !errors.As(err, &ce) || ce.Code() != esdbc.ErrorCodeWrongExpectedVersion {
		t.Errorf("the client's error is lost: %v", err)
	}
	if !strings.Contains(err.Error(), "user-ACME-alice") || !strings.Contains(err.Error(), "revision 0") {
		t.Errorf("error does not say what was expected where: %v", err)
	}
	if err := mapAppendError("s", eventstore.Any, fmt.Errorf("could not send: %w", wev)); !errors.Is(err, eventstore.ErrConflict) {
		t.Errorf("wrapped WrongExpectedVersion not mapped: %v", err)
	}
	for _, code := range []esdbc.ErrorCode{esdbc.ErrorCodeStreamDeleted, esdbc.ErrorCodeAccessDenied, esdbc.ErrorUnavailable, esdbc.ErrorCodeDeadlineExceeded} {
		err := mapAppendError("s", eventstore.Any, clientError(t, code, nil))
		if errors.Is(err, eventstore.ErrConflict) {
			t.Errorf("code %v mapped to ErrConflict", code)
		}
		if err == nil {
			t.Errorf("code %v mapped to nil", code)
		}
	}
	if err := appendErrorFor("s", eventstore.NoStream, esdbc.ErrorCodeWrongExpectedVersion, errors.New("x")); !errors.Is(err, eventstore.ErrConflict) {
		t.Errorf("appendErrorFor: %v", err)
	}
}

func TestMapReadError(t *testing.T) {
	if mapReadError("s", nil) != nil {
		t.Error("nil error mapped to non-nil")
	}
	for _, code := range []esdbc.ErrorCode{esdbc.ErrorCodeResourceNotFound, esdbc.ErrorCodeStreamDeleted} {
		err := mapReadError("user-ACME-bob", clientError(t, code, errors.New("stream 'user-ACME-bob' is not found")))
		if !errors.Is(err, eventstore.ErrStreamNotFound) {
			t.Errorf("code %v: %v does not wrap ErrStreamNotFound", code, err)
		}
	}
	for _, code := range []esdbc.ErrorCode{esdbc.ErrorCodeUnknown, esdbc.ErrorCodeAccessDenied, esdbc.ErrorUnavailable} {
		if err := mapReadError("s", clientError(t, code, nil)); errors.Is(err, eventstore.ErrStreamNotFound) || err == nil {
			t.Errorf("code %v mapped to %v", code, err)
		}
	}
	if err := readErrorFor("s", esdbc.ErrorCodeResourceNotFound, errors.New("x")); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Errorf("readErrorFor: %v", err)
	}
}

func TestStreamFilter(t *testing.T) {
	all := streamFilter{}
	ours := streamFilter{prefixes: []string{"provider-", "user-"}}
	cases := []struct {
		stream, typ string
		all, ours   bool
	}{
		{"user-ACME-alice", "UserRegistered", true, true},
		{"provider-ACME", "ProviderRegistered", true, true},
		{"unmatched-requests", "ResetRequestRejected", true, false},
		{"billing-1", "InvoiceSent", true, false},
		{"$stats-127.0.0.1:2113", "$statsCollected", false, false},
		{"$$user-ACME-alice", "$metadata", false, false},
		{"$ce-user", "$>", false, false},
		{"$projections-$all", "$ProjectionsInitialized", false, false},
		{"user-ACME-alice", "$streamDeleted", false, false},
		{"", "X", false, false},
		{snapshotStream("user-ACME-alice"), snapshotEventType, false, false}, // snapshots are not events
	}
	for _, c := range cases {
		if got := all.match(c.stream, c.typ); got != c.all {
			t.Errorf("no prefixes: match(%q, %q) = %v, want %v", c.stream, c.typ, got, c.all)
		}
		if got := ours.match(c.stream, c.typ); got != c.ours {
			t.Errorf("prefixes: match(%q, %q) = %v, want %v", c.stream, c.typ, got, c.ours)
		}
	}

	f := all.subscriptionFilter()
	if f.Type != esdbc.StreamFilterType || len(f.Prefixes) != 0 || f.Regex == "" {
		t.Errorf("default subscription filter = %+v, want a stream-name regex", f)
	}
	f = ours.subscriptionFilter()
	if f.Type != esdbc.StreamFilterType || f.Regex != "" || !reflect.DeepEqual(f.Prefixes, []string{"provider-", "user-"}) {
		t.Errorf("prefix subscription filter = %+v", f)
	}
	f.Prefixes[0] = "mutated"
	if ours.prefixes[0] != "provider-" {
		t.Error("subscriptionFilter shares the prefix slice")
	}
}

func TestOptions(t *testing.T) {
	o := options{pageSize: DefaultPageSize}
	WithStreamPrefixes("user-", "", "provider-")(&o)
	if !reflect.DeepEqual(o.prefixes, []string{"user-", "provider-"}) {
		t.Errorf("prefixes = %q", o.prefixes)
	}
	WithPageSize(1)(&o)
	if o.pageSize != 2 {
		t.Errorf("page size 1 became %d, want 2 (a $all page must get past its first, repeated, event)", o.pageSize)
	}
	WithPageSize(100)(&o)
	if o.pageSize != 100 {
		t.Errorf("page size = %d", o.pageSize)
	}
}

func TestWithCtx(t *testing.T) {
	live := context.Background()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	base := errors.New("rpc error: code = Canceled desc = context canceled")
	if withCtx(live, nil) != nil || withCtx(cancelled, nil) != nil {
		t.Error("nil error became non-nil")
	}
	if got := withCtx(live, base); got != base {
		t.Errorf("live ctx: %v, want the error untouched", got)
	}
	got := withCtx(cancelled, base)
	if !errors.Is(got, context.Canceled) || !errors.Is(got, base) {
		t.Errorf("cancelled ctx: %v, want it to match context.Canceled and the original", got)
	}
	already := fmt.Errorf("x: %w", context.Canceled)
	if got := withCtx(cancelled, already); got != already {
		t.Errorf("already matching: %v, want untouched", got)
	}
}
