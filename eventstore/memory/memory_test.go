package memory

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"selfreset/eventstore"
	"selfreset/eventstore/storetest"
)

// TestContract runs the whole adapter contract, concurrency cases included, each subtest
// on a fresh store.
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) eventstore.Store {
		s := New()
		t.Cleanup(s.Close)
		return s
	})
}

func event(typ string) eventstore.EventData {
	return eventstore.EventData{ID: uuid.New(), Type: typ, SchemaVersion: 1,
		OccurredAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Data: json.RawMessage(`{"k":"v"}`)}
}

func TestBadInputChangesNothing(t *testing.T) {
	ctx := t.Context()
	s := New()
	defer s.Close()
	stored := event("Stored")
	if _, err := s.Append(ctx, "a", eventstore.NoStream, stored); err != nil {
		t.Fatal(err)
	}
	dup := event("Dup")
	cases := []struct {
		name   string
		stream string
		events []eventstore.EventData
		want   error // nil: any error
	}{
		{"empty stream name", "", []eventstore.EventData{event("X")}, nil},
		{"no id", "b", []eventstore.EventData{{Type: "X"}}, nil},
		{"no type", "b", []eventstore.EventData{{ID: uuid.New()}}, nil},
		{"id twice in one append", "b", []eventstore.EventData{dup, dup}, nil},
		{"data not JSON", "b", []eventstore.EventData{{ID: uuid.New(), Type: "X", Data: json.RawMessage(`{`)}}, nil},
		{"id stored in another stream", "b", []eventstore.EventData{event("X"), stored}, eventstore.ErrConflict},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Append(ctx, tc.stream, eventstore.Any, tc.events...)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("Append = %v, want an error (%v)", err, tc.want)
			}
			if _, err := s.ReadStream(ctx, "b", 0); !errors.Is(err, eventstore.ErrStreamNotFound) {
				t.Fatalf("after the refused append ReadStream(b) = %v, want ErrStreamNotFound", err)
			}
			if head, _ := s.Head(ctx); head != position(0) {
				t.Fatalf("head moved to %v", head)
			}
		})
	}
}

func TestCallersCannotEditStoredEvents(t *testing.T) {
	ctx := t.Context()
	s := New()
	defer s.Close()
	e := event("E")
	if _, err := s.Append(ctx, "a", eventstore.NoStream, e); err != nil {
		t.Fatal(err)
	}
	e.Data[2] = 'X' // the caller's buffer
	got, err := s.ReadStream(ctx, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	got[0].Data[2] = 'Y' // a reader's copy
	feed, err := s.ReadAll(ctx, eventstore.Start, 10)
	if err != nil {
		t.Fatal(err)
	}
	if string(feed[0].Data) != `{"k":"v"}` {
		t.Fatalf("stored data became %s", feed[0].Data)
	}
}

func TestCloseEndsSubscriptionsAndCalls(t *testing.T) {
	ctx := t.Context()
	s := New()
	done := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		done <- s.SubscribeAll(ctx, eventstore.Start, func(context.Context, eventstore.RecordedEvent) error {
			close(started)
			return nil
		})
	}()
	if _, err := s.Append(ctx, "a", eventstore.NoStream, event("E")); err != nil {
		t.Fatal(err)
	}
	<-started // the subscription is running; it now waits for the next append
	s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("SubscribeAll after Close = %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SubscribeAll did not return after Close")
	}
	if _, err := s.Append(ctx, "a", eventstore.Any, event("E")); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close = %v, want ErrClosed", err)
	}
	if _, err := s.Head(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Head after Close = %v, want ErrClosed", err)
	}
	s.Close() // twice is harmless
}

// BenchmarkAppend measures one-event appends to a growing stream (hash chain included).
func BenchmarkAppend(b *testing.B) {
	ctx := b.Context()
	s := New()
	defer s.Close()
	expected := eventstore.NoStream
	for b.Loop() {
		res, err := s.Append(ctx, "bench", expected, event("E"))
		if err != nil {
			b.Fatal(err)
		}
		expected = eventstore.Exact(res.NextRevision)
	}
}
