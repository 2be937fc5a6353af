package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"selfreset/eventstore"
	"selfreset/internal/testkit"
)

// heldFlushers starts one Update per flusher whose decision waits until release is
// called, and returns once every flusher is in such a decision (its stream locked):
// Updates made afterwards wait for a group.
func heldFlushers(t *testing.T, s *Store) (release func(), done <-chan error) {
	t.Helper()
	gate := make(chan struct{})
	errs := make(chan error, updateFlushers)
	entered := make(chan struct{}, updateFlushers)
	for i := range updateFlushers {
		go func() {
			_, err := s.Update(t.Context(), fmt.Sprintf("held-%d", i), 0, nil,
				func(eventstore.StreamTail, []eventstore.StreamTail) ([]eventstore.EventData, error) {
					entered <- struct{}{}
					<-gate
					return []eventstore.EventData{event("Held")}, nil
				})
			errs <- err
		}()
		// One at a time: started together, two could share a group, whose decisions run
		// one after the other.
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatalf("held Update %d did not reach its decision", i)
		}
	}
	return sync.OnceFunc(func() { close(gate) }), errs
}

// updateResult is one Update's answer, for the tests below.
type updateResult struct {
	stream string
	res    eventstore.AppendResult
	err    error
}

// decision is a test Update's decision; leave ends its caller's context, as a caller
// that gives up would.
type decision func(leave func()) ([]eventstore.EventData, error)

// queueUpdates starts an Update of each stream, appending what decide returns for it,
// and waits until all of them are queued behind the held flushers.
func queueUpdates(t *testing.T, s *Store, decide map[string]decision) <-chan updateResult {
	t.Helper()
	out := make(chan updateResult, len(decide))
	for stream, d := range decide {
		go func() {
			ctx, leave := context.WithCancel(t.Context())
			defer leave()
			res, err := s.Update(ctx, stream, 0, nil, func(eventstore.StreamTail, []eventstore.StreamTail) ([]eventstore.EventData, error) {
				return d(leave)
			})
			out <- updateResult{stream, res, err}
		}()
	}
	testkit.WaitFor(t, "the Updates queued", 10*time.Second, func() bool { return s.updates.queued() == len(decide) })
	return out
}

func appendOne(typ string) decision {
	return func(func()) ([]eventstore.EventData, error) { return []eventstore.EventData{event(typ)}, nil }
}

// Updates that arrive while every flusher is busy go together: one transaction (one
// transaction id in their positions) for all of them, each at its own stream's head.
func TestWaitingUpdatesShareOneTransaction(t *testing.T) {
	s := openStore(t)
	release, held := heldFlushers(t, s)
	t.Cleanup(release)
	results := queueUpdates(t, s, map[string]decision{
		"grouped-a": appendOne("A"), "grouped-b": appendOne("B"), "grouped-c": appendOne("C"),
	})
	release()
	commits := map[uint64]bool{}
	for range 3 {
		r := <-results
		if r.err != nil || r.res.NextRevision != 0 {
			t.Fatalf("Update of %s = %+v, %v; want revision 0", r.stream, r.res, r.err)
		}
		commits[r.res.Position.Commit] = true
	}
	for range updateFlushers {
		if err := <-held; err != nil {
			t.Fatalf("held Update: %v", err)
		}
	}
	if len(commits) != 1 {
		t.Errorf("three waiting Updates were written by %d transactions, want one", len(commits))
	}
	if n := s.updates.begun(); n != updateFlushers+1 {
		t.Errorf("%d group transactions, want %d: the held ones and one for the three that waited", n, updateFlushers+1)
	}
}

// In a group, a decision that fails (an event id another stream holds: the insert fails
// and takes the group's transaction with it), one that panics and one that refuses each
// answer only their own Update: the others are written, one at a time. One whose caller
// gave up meanwhile is not tried again.
func TestAFailingDecisionFailsOnlyItsOwnUpdate(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	taken := event("Taken")
	if _, err := s.Append(ctx, "holder", eventstore.NoStream, taken); err != nil {
		t.Fatal(err)
	}
	refused := errors.New("refused")
	release, held := heldFlushers(t, s)
	t.Cleanup(release)
	results := queueUpdates(t, s, map[string]decision{
		"duplicate": func(func()) ([]eventstore.EventData, error) { return []eventstore.EventData{taken}, nil },
		"panics":    func(func()) ([]eventstore.EventData, error) { panic("a bug in a decision") },
		"refuses":   func(func()) ([]eventstore.EventData, error) { return []eventstore.EventData{event("Never")}, refused },
		"gone": func(leave func()) ([]eventstore.EventData, error) {
			leave()
			return []eventstore.EventData{event("Gone")}, nil
		},
		"fine-1": appendOne("Fine"),
		"fine-2": appendOne("Fine"),
	})
	release()
	for range 6 {
		r := <-results
		var ok bool
		switch r.stream {
		case "duplicate":
			ok = errors.Is(r.err, eventstore.ErrConflict)
		case "panics":
			ok = r.err != nil && strings.Contains(r.err.Error(), "a bug in a decision")
		case "refuses":
			ok = errors.Is(r.err, refused) && r.res == eventstore.AppendResult{}
		case "gone":
			ok = errors.Is(r.err, context.Canceled)
		default:
			ok = r.err == nil && r.res.NextRevision == 0
		}
		if !ok {
			t.Errorf("Update of %s = %+v, %v", r.stream, r.res, r.err)
		}
	}
	for range updateFlushers {
		if err := <-held; err != nil {
			t.Fatalf("held Update: %v", err)
		}
	}
	for stream, want := range map[string]int{"duplicate": 0, "panics": 0, "refuses": 0, "gone": 0, "fine-1": 1, "fine-2": 1} {
		got, err := s.ReadStream(ctx, stream, 0)
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			err = nil
		}
		if err != nil || len(got) != want {
			t.Errorf("%s holds %d events (%v), want %d", stream, len(got), err, want)
		}
	}
}

// An Update of a stream that a group on its way holds decides on what that group wrote;
// and an Update whose caller gives up while it waits is answered with the caller's error
// and never runs.
func TestAStreamIsInOneGroupAtATime(t *testing.T) {
	s := openStore(t)
	release, held := heldFlushers(t, s)
	t.Cleanup(release)
	// held-0 is in a group on its way: this Update must wait for it, and see its event.
	seen := make(chan int, 1)
	after := make(chan error, 1)
	go func() {
		_, err := s.Update(t.Context(), "held-0", 0, nil, func(tail eventstore.StreamTail, _ []eventstore.StreamTail) ([]eventstore.EventData, error) {
			seen <- len(tail.Events)
			return []eventstore.EventData{event("After")}, nil
		})
		after <- err
	}()
	ctx, cancel := context.WithCancel(t.Context())
	var ran atomic.Bool
	gaveUp := make(chan error, 1)
	go func() {
		_, err := s.Update(ctx, "abandoned", 0, nil, func(eventstore.StreamTail, []eventstore.StreamTail) ([]eventstore.EventData, error) {
			ran.Store(true)
			return []eventstore.EventData{event("Abandoned")}, nil
		})
		gaveUp <- err
	}()
	testkit.WaitFor(t, "two Updates queued", 10*time.Second, func() bool { return s.updates.queued() == 2 })
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("the abandoned Update answered %v, want context.Canceled", err)
	}
	release()
	if n := <-seen; n != 1 {
		t.Errorf("the second Update of held-0 decided on %d events, want 1: the held group's", n)
	}
	if err := <-after; err != nil {
		t.Fatalf("second Update of held-0: %v", err)
	}
	for range updateFlushers {
		if err := <-held; err != nil {
			t.Fatalf("held Update: %v", err)
		}
	}
	testkit.WaitFor(t, "the queue emptied", 10*time.Second, func() bool { return s.updates.queued() == 0 })
	if ran.Load() {
		t.Error("the abandoned Update's decision ran")
	}
	if _, err := s.ReadStream(t.Context(), "abandoned", 0); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Errorf("the abandoned Update wrote something: %v", err)
	}
}

// A group's COMMIT skips the wait for its WAL flush only when every Update that writes in
// it is redelivered until acknowledged.
func TestCommitWaitsForTheFlushUnlessEveryWriterIsRedelivered(t *testing.T) {
	plain, redelivered := context.Background(), eventstore.WithRedelivery(context.Background())
	for _, tc := range []struct {
		name    string
		writers []context.Context
		wait    bool
	}{
		{"one plain", []context.Context{plain}, true},
		{"one redelivered", []context.Context{redelivered}, false},
		{"all redelivered", []context.Context{redelivered, redelivered, redelivered}, false},
		{"one plain among redelivered", []context.Context{redelivered, plain, redelivered}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &pgx.Batch{}
			queueCommit(b, tc.writers...)
			var sql []string
			for _, q := range b.QueuedQueries {
				sql = append(sql, q.SQL)
			}
			want := []string{"COMMIT"}
			if !tc.wait {
				want = []string{asyncCommitSQL, "COMMIT"} // SET LOCAL: inside the transaction it ends
			}
			if !slices.Equal(sql, want) {
				t.Fatalf("queued %q, want %q", sql, want)
			}
		})
	}
}
