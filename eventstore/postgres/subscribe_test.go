package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"selfreset/eventstore"
	"selfreset/internal/testkit"
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

// listen joins s's listening connection as a subscription would, until the test ends.
func listen(t *testing.T, s *Store) *notices {
	t.Helper()
	if err := s.listen.join(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.listen.leave)
	return s.listen
}

// The subscriptions of one Store listen on one connection, opened by the first and closed
// after the last has ended, and every one of them is woken by an append.
func TestSubscriptionsShareOneListeningConnection(t *testing.T) {
	s := openStore(t, WithPollInterval(time.Hour)) // only a notification can wake them
	ctx, cancel := context.WithCancel(t.Context())
	const subscribers = 3
	got := make(chan int, subscribers)
	var wg sync.WaitGroup
	for i := range subscribers {
		wg.Go(func() {
			_ = s.SubscribeAll(ctx, eventstore.Start, func(context.Context, eventstore.RecordedEvent) error {
				got <- i
				return nil
			})
		})
	}
	// Each joins before its first read, the first one opening the connection.
	testkit.WaitFor(t, "every subscription joined", 10*time.Second, func() bool {
		s.listen.mu.Lock()
		defer s.listen.mu.Unlock()
		return s.listen.users == subscribers
	})
	if n := listeners(t, s); n != 1 {
		t.Fatalf("%d listening connections for %d subscriptions, want 1", n, subscribers)
	}
	if _, err := s.Append(ctx, "shared-listen", eventstore.NoStream, event("Woken")); err != nil {
		t.Fatal(err)
	}
	woken := map[int]bool{}
	for len(woken) < subscribers {
		select {
		case i := <-got:
			woken[i] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("after an append, only subscriptions %v were woken within 10s (polling every hour)", woken)
		}
	}
	cancel()
	wg.Wait()
	waitForListeners(t, s, 0)
}

// A listening connection that breaks is opened again, and notifications reach the
// subscriptions through the new one.
func TestListeningConnectionIsOpenedAgain(t *testing.T) {
	s := openStore(t, WithPollInterval(50*time.Millisecond)) // also the pause before listening again
	ctx := t.Context()
	ln := listen(t, s)
	waitForListeners(t, s, 1)
	var killed int
	if err := s.pool.QueryRow(ctx, `SELECT pid FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN %' AND pg_terminate_backend(pid)`).Scan(&killed); err != nil {
		t.Fatalf("terminating the listening backend: %v", err)
	}
	testkit.WaitFor(t, "a new listening connection", 10*time.Second, func() bool {
		var n int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
			AND query LIKE 'LISTEN %' AND state = 'idle' AND pid <> $1`, killed).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	})

	read := eventstore.Position{Commit: 100, Prepare: 1}
	if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, "101/1"); err != nil {
		t.Fatal(err)
	}
	announced, err := ln.next(ctx, 10*time.Second, read, read)
	if want := (eventstore.Position{Commit: 101, Prepare: 1}); err != nil || announced != want {
		t.Errorf("after the connection was opened again: announced %v, %v; want %v", announced, err, want)
	}
}

// listeners counts the backends of s's database listening for appends.
func listeners(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	if err := s.pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN %'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func waitForListeners(t *testing.T, s *Store, want int) {
	t.Helper()
	testkit.WaitFor(t, fmt.Sprintf("%d listening connections", want), 10*time.Second, func() bool { return listeners(t, s) == want })
}
