package postgres

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"selfreset/eventstore"
)

// A subscription reads the feed again only for a notification naming events beyond what
// it has read: stale ones queued while it was busy are passed over, and the wait still
// ends at its deadline.
func TestListenerPassesOverStaleNotifications(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	ln := listen(t, s)
	notify := func(payload string) {
		t.Helper()
		if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, payload); err != nil {
			t.Fatal(err)
		}
	}
	read := eventstore.Position{Commit: 100, Prepare: 7} // what the subscription has read

	// Two stale notifications, then one beyond what was read: next returns on the third.
	notify("90/5")
	notify("100/7")
	notify("101/8")
	announced, err := ln.next(ctx, 5*time.Second, read, eventstore.Start)
	if err != nil {
		t.Fatal(err)
	}
	if want := (eventstore.Position{Commit: 101, Prepare: 8}); announced != want {
		t.Errorf("announced %v after a fresh notification, want %v", announced, want)
	}

	// A stale notification queued before a fresh one: next passes over it (had it
	// returned there, the fresh position would not be announced yet).
	notify("99/1")
	notify("105/2")
	if announced, err = ln.next(ctx, 5*time.Second, read, announced); err != nil {
		t.Fatal(err)
	}
	if want := (eventstore.Position{Commit: 105, Prepare: 2}); announced != want {
		t.Errorf("announced %v, want %v", announced, want)
	}

	// Only stale ones: next ends at its deadline without an error, the newest announced
	// position kept.
	notify("104/9")
	got, err := ln.next(ctx, 50*time.Millisecond, eventstore.Position{Commit: 105, Prepare: 2}, announced)
	if err != nil || got != announced {
		t.Errorf("after stale notifications only: %v, %v; want %v, nil", got, err, announced)
	}
}

// Appends are announced once committed, coalesced: however many commit at once, a
// notification naming the newest of their positions arrives, and an append that fails
// announces nothing.
func TestAppendsAreAnnouncedAfterCommit(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	ln := listen(t, s)

	results := make(chan eventstore.AppendResult, 40)
	var wg sync.WaitGroup
	for i := range cap(results) {
		wg.Go(func() {
			res, err := s.Append(ctx, fmt.Sprintf("announced-%d", i), eventstore.NoStream, event("Announced"))
			if err != nil {
				t.Error(err)
				return
			}
			results <- res
		})
	}
	wg.Wait()
	close(results)
	var newest eventstore.Position
	for res := range results {
		if newest.Less(res.Position) {
			newest = res.Position
		}
	}
	var announced eventstore.Position
	for announced.Less(newest) {
		before := announced
		if announced, _ = ln.next(ctx, 5*time.Second, announced, announced); announced == before {
			t.Fatalf("no notification reached %v within 5s; newest announced %v", newest, announced)
		}
	}
	if announced != newest {
		t.Errorf("announced %v, beyond every append (newest %v)", announced, newest)
	}

	// A conflicting append commits nothing and announces nothing.
	if _, err := s.Append(ctx, "announced-0", eventstore.NoStream, event("Refused")); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("append to an existing stream under NoStream: %v", err)
	}
	if p, err := ln.next(ctx, 200*time.Millisecond, announced, announced); err != nil || p != announced {
		t.Errorf("after a refused append: announced %v, %v; want still %v", p, err, announced)
	}
}

// listen is a subscription's listener on s, closed when the test ends.
func listen(t *testing.T, s *Store) *listener {
	t.Helper()
	ln := &listener{cfg: s.pool.Config().ConnConfig}
	if err := ln.connect(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ln.close)
	return ln
}
